"""End-to-end regime on CPU, tiny: a few steps on 64 CIFAR images at 32 px."""
import numpy as np
import pytest
import torch

from deephash.config import Preprocessing
from deephash.errors import ConfigError
from deephash.hashers import load_hasher
from deephash.index import pack_bits
from deephash.data.image_bank import ImageBank
from deephash.train.finetune import embed_images, fine_tune


@pytest.fixture(scope="module")
def tiny_images(cifar_full):
    from deephash.data.images import load_rgb

    tr = cifar_full.split_indices("train")
    idx = np.concatenate([tr[cifar_full.labels[tr] == c][:8] for c in range(8)])  # 64 images, 8 classes
    imgs = np.stack([load_rgb(cifar_full.abspath(i), 32) for i in idx])
    return imgs, cifar_full.labels[idx], [cifar_full.abspath(i) for i in idx]


def test_image_bank_augments_on_the_device():
    img = (np.arange(2 * 8 * 8 * 3) % 251).astype(np.uint8).reshape(2, 8, 8, 3)
    pp = Preprocessing(8, (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # identity normalisation
    plain = ImageBank(img, "cpu", pp, channels_last=False)
    x = plain[[0, 1]]
    assert x.shape == (2, 3, 8, 8) and torch.equal(x, torch.from_numpy(img).permute(0, 3, 1, 2).float())
    aug = ImageBank(img, "cpu", pp, train=True, pad=0, channels_last=False)
    for _ in range(5):  # pad 0: each image comes back as is or mirrored
        y = aug[[0, 1]]
        for i in range(2):
            assert torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(-1))
    crop = ImageBank(img, "cpu", pp, train=True, pad=2, flip=False, channels_last=False)[[0]]
    assert crop.shape == (1, 3, 8, 8)
    up = ImageBank(img, "cpu", Preprocessing(16), channels_last=False)[[0]]
    assert up.shape == (1, 3, 16, 16)  # resized to the backbone input size


@pytest.mark.parametrize("method", ["dlbhc", "spp-pmt", "deep-ranking"])
def test_fine_tune_tiny_and_encode_from_the_checkpoint_alone(method, tiny_images, tmp_path):
    from deephash.model import HashModel

    imgs, y, paths = tiny_images
    out = tmp_path / f"{method}.pt"
    h = fine_tune(method, imgs, y, bits=16, image_size=32, epochs=2, batch_size=24, device="cpu", out=out)
    r = h.report_
    assert r["iters"] == 2 * r["iters_per_epoch"] and r["n_train"] + r["n_val"] == 64
    assert r["images_per_second"] > 0 and r["seconds_per_epoch"] > 0 and len(r["val"]) == 2
    # the checkpoint carries the fine-tuned backbone and the recipe
    blob = torch.load(out, weights_only=True)
    assert any(k.startswith("trunk.") for k in blob["state"])
    assert blob["config"]["finetune"]["epochs"] == 2 and blob["config"]["backbone"] == "efficientnet-lite0"
    assert blob["config"]["preprocessing"]["size"] == 32
    # the fine-tuned weights differ from the pretrained ones
    from deephash.backbones import create_backbone

    pre = create_backbone("efficientnet-lite0", image_size=32).torch_module().state_dict()
    tk = next(k for k in blob["state"] if k.startswith("trunk.") and k.endswith("conv_stem.weight"))
    name = tk[len("trunk."):].split("net.", 1)[1] if "net." in tk else tk
    assert not torch.allclose(blob["state"][tk].float(), pre["net." + name].half().float())
    # images -> codes: training-time path and the checkpoint-alone path agree exactly
    desc, acts = embed_images(h, imgs[:6], device="cpu")
    model = HashModel.load(out)
    codes, feats, _ = model.encode_images(paths[:6])
    assert np.array_equal(codes, pack_bits(acts >= h.threshold))
    assert np.allclose(feats, desc, atol=1e-4)
    h2, cfg = load_hasher(out)
    assert cfg.finetune["method"] == method and np.array_equal(h2.encode(desc), codes)
    if hasattr(h, "classify"):
        assert h.classify(desc).shape == (6,)


def test_fine_tune_refuses_shallow_methods_and_missing_labels(tiny_images):
    imgs, y, _ = tiny_images
    with pytest.raises(ConfigError, match="not a network-trained method"):
        fine_tune("itq", imgs, y, epochs=1, image_size=32, device="cpu")
    with pytest.raises(ConfigError, match="needs labels"):
        fine_tune("dlbhc", imgs, None, epochs=1, image_size=32, device="cpu")


def test_finetune_command(small_cifar, tmp_path):
    from click.testing import CliRunner

    from deephash.cli.finetune_cmd import finetune

    out = tmp_path / "m.pt"
    res = CliRunner().invoke(finetune, [str(small_cifar), "--split", "train", "--method", "dlbhc", "--bits", "16",
                                        "--epochs", "1", "--image-size", "32", "--batch-size", "64", "--device", "cpu",
                                        "--out", str(out), "--report", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "fine-tuned dlbhc" in res.output and out.is_file() and (tmp_path / "r.json").is_file()


def test_fine_tune_resumes_after_an_interruption(tiny_images, tmp_path, monkeypatch):
    from deephash.hashers.dlbhc import DLBHC

    imgs, y, _ = tiny_images
    state = tmp_path / "train-state.pt"
    real = DLBHC.compute_loss
    calls = {"n": 0}

    def flaky(self, net, batch):
        calls["n"] += 1
        if calls["n"] == 4:  # in the second epoch (3 iterations an epoch), after the first checkpoint
            raise KeyboardInterrupt
        return real(self, net, batch)

    monkeypatch.setattr(DLBHC, "compute_loss", flaky)
    kw = dict(bits=16, image_size=32, epochs=2, batch_size=20, device="cpu", checkpoint_path=state)
    with pytest.raises(KeyboardInterrupt):
        fine_tune("dlbhc", imgs, y, **kw)
    assert state.is_file()
    h = fine_tune("dlbhc", imgs, y, **kw)
    assert h.history_["resumed_from"] == 3 and h.history_["iters"] == 6 and len(h.history_["val"]) == 2
    assert not state.is_file()  # finished: the resume file is removed


def test_two_finetuned_checkpoints_never_share_cached_features(tiny_images, small_cifar, tmp_path, tmp_cache):
    """The feature cache is keyed by the backbone's description: a fine-tuned backbone's carries a
    digest of its weights, so a second checkpoint from the same base computes its own features."""
    from deephash.data import open_archive
    from deephash.features import extract_features
    from deephash.model import HashModel

    imgs, y, _ = tiny_images
    cks = []
    for seed in (0, 1):
        out = tmp_path / f"m{seed}.pt"
        fine_tune("dlbhc", imgs, y, bits=16, image_size=32, epochs=1, batch_size=32, backbone_lr_mult=1.0,
                  seed=seed, device="cpu", out=out)
        cks.append(HashModel.load(out))
    d0, d1 = (m.backbone.describe() for m in cks)
    assert d0["weights_sha1"] != d1["weights_sha1"] and d0["finetuned"] and d0["decode_size"] == 32
    arc = open_archive(small_cifar, split="test")
    f0 = extract_features(arc, cks[0].backbone, np.arange(6), progress=False).features
    f1 = extract_features(arc, cks[1].backbone, np.arange(6), progress=False).features
    assert not np.allclose(f0, f1)
    again = extract_features(arc, cks[0].backbone, np.arange(6), progress=False).features  # from the cache
    assert np.array_equal(again, f0)
