"""The streaming encoder (deephash.encoding): the same features, codes, order and skipped images as
decoding and embedding one image after the other; JPEG draft decoding close to full decoding;
resumable extraction with worker processes; int8 backbones that run and stay close to float32."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

import deephash.features.extract as ex
from deephash.backbones import create_backbone
from deephash.data import open_archive
from deephash.data.images import decode_image, load_rgb
from deephash.encoding import StreamEncoder, encode_images
from deephash.errors import ConfigError, DataError
from deephash.features import extract_features
from deephash.hashers import create_hasher
from synthetic import draw


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("efficientnet-lite0", image_size=32)


@pytest.fixture(scope="module")
def corrupt_archive(small_cifar, tmp_path_factory):
    """The small archive's test split plus three bad files, spread between good ones."""
    root = tmp_path_factory.mktemp("encoder_arc") / "arc"
    shutil.copytree(small_cifar / "test", root)
    (root / "bird" / "0004_truncated.jpg").write_bytes((root / "bird" / "0000.jpg").read_bytes()[:90])
    (root / "cat" / "0003_empty.jpg").write_bytes(b"")
    (root / "ship" / "0007_text.png").write_text("not an image")
    return open_archive(root)


def plain_encode(paths, backbone, hasher=None):
    """The slow obvious way: decode each file fully on its own, embed each good image alone, hash."""
    feats, good, bad = [], [], []
    for i, p in enumerate(paths):
        try:
            img = load_rgb(p, backbone.preprocessing.size)
        except DataError as e:
            bad.append((i, str(e)))
            continue
        feats.append(backbone.embed(img[None])[0])
        good.append(i)
    feats = np.stack(feats)
    return np.array(good), feats, None if hasher is None else hasher.encode(feats), bad


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_matches_plain_path_with_corrupt_files(corrupt_archive, backbone, workers):
    paths = [corrupt_archive.abspath(i) for i in range(len(corrupt_archive))]
    hasher = create_hasher("itq", 16, seed=0)
    hasher.fit(encode_images(paths, backbone, workers=0).features)
    good, feats, codes, bad = plain_encode(paths, backbone, hasher)
    assert len(bad) == 3 and len(good) == len(paths) - 3

    batches = list(StreamEncoder(backbone, hasher, batch_size=16, workers=workers, draft=False).stream(paths))
    assert [(b.start, b.stop) for b in batches] == [(s, min(s + 16, len(paths))) for s in range(0, len(paths), 16)]
    pos = np.concatenate([b.positions for b in batches])
    assert np.array_equal(pos, good)
    assert np.allclose(np.concatenate([b.features for b in batches]), feats, atol=1e-4)
    assert np.array_equal(np.concatenate([b.codes for b in batches]), codes)
    assert [f for b in batches for f in b.failed] == bad
    assert "0004_truncated.jpg" in bad[0][1] and "empty file" in bad[1][1] and "not a readable image" in bad[2][1]


def test_encode_batches_yields_bad_images_in_place(corrupt_archive, backbone, tmp_path):
    """The service/CLI batch path: a batch with a bad image comes one image at a time, in source order."""
    from deephash.model import HashModel

    paths = [corrupt_archive.abspath(i) for i in range(len(corrupt_archive))]
    hasher = create_hasher("lsh", 64, seed=0)
    hasher.fit(encode_images(paths[:40], backbone, workers=0).features)
    model = HashModel(backbone, hasher)
    good, _, codes, bad = plain_encode(paths, backbone, hasher)
    seen, got, skipped = [], [], []
    for pos, c, f, t in model.encode_batches(paths, batch_size=16, workers=2):
        seen += pos
        if c is None:
            skipped.append((pos[0], t))
        else:
            got.append(c)
            assert set(t) == {"decode", "backbone", "hash"} and len(c) == len(pos) == len(f)
    assert seen == list(range(len(paths)))
    assert skipped == bad
    assert np.array_equal(np.concatenate(got), codes)
    # the single-batch entry raises on the first bad image, with its reason
    with pytest.raises(DataError, match="empty file"):
        model.encode_images(paths[30:45])


def test_extract_features_matches_plain_path(corrupt_archive, backbone, tmp_cache):
    fs = extract_features(corrupt_archive, backbone, progress=False, batch_size=16, workers=2)
    paths = [corrupt_archive.abspath(i) for i in range(len(corrupt_archive))]
    good, feats, _, bad = plain_encode(paths, backbone)
    assert np.array_equal(fs.index, good) and np.allclose(fs.features, feats, atol=1e-4)
    assert fs.failed == [(corrupt_archive.paths[i], why) for i, why in bad]


def test_interrupted_extraction_with_workers_resumes(small_cifar, backbone, tmp_cache, monkeypatch):
    a = open_archive(small_cifar, split="train")
    monkeypatch.setattr(ex, "CHUNK", 64)
    full = extract_features(a, backbone, progress=False, batch_size=32, workers=0, use_cache=False)
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_cache / "interrupted"))
    real = backbone.embed
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(x)

    monkeypatch.setattr(backbone, "embed", flaky)
    with pytest.raises(KeyboardInterrupt):
        extract_features(a, backbone, progress=False, batch_size=32, workers=2)
    calls["n"] = -10**9
    fs = extract_features(a, backbone, progress=False, batch_size=32, workers=2)
    # 300 images, 32 a batch: the 3 batches finished before the interrupt were kept (a checkpoint after
    # 2, and one on the way out); the other 204 images are 7 batches
    assert calls["n"] + 10**9 == 7
    assert np.array_equal(fs.index, full.index) and np.allclose(fs.features, full.features, atol=1e-4)


# ----------------------------------------------------------------------------- draft decoding
@pytest.fixture(scope="module")
def large_jpegs(tmp_path_factory):
    """20 synthetic images up-scaled to 1024x768 with a little noise, as JPEGs of quality 90."""
    d = tmp_path_factory.mktemp("large")
    rng = np.random.default_rng(3)
    out = []
    for i in range(20):
        small = Image.fromarray(draw(i % 10, 10, 64, rng))
        big = np.asarray(small.resize((1024, 768), Image.BICUBIC), np.float32) + rng.normal(0, 4, (768, 1024, 3))
        p = d / f"{i:02d}.jpg"
        Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(p, quality=90)
        out.append(p)
    return out


def test_draft_decoding_reduces_scale_only_for_large_jpegs(large_jpegs, small_cifar):
    assert decode_image(large_jpegs[0], draft_size=128).size == (256, 192)  # 1/4: both sides still >= 128
    assert decode_image(large_jpegs[0], draft_size=96).size == (128, 96)  # 1/8
    assert decode_image(large_jpegs[0]).size == (1024, 768)
    small = next((small_cifar / "test" / "cat").glob("*.jpg"))
    assert np.array_equal(load_rgb(small, 128, draft=True), load_rgb(small, 128))  # 32 px: nothing to reduce


def test_draft_decoding_stays_close_to_full_decoding(large_jpegs):
    bb = create_backbone("efficientnet-lite0", image_size=128)
    full = np.stack([load_rgb(p, 128) for p in large_jpegs]).astype(np.float32)
    draft = np.stack([load_rgb(p, 128, draft=True) for p in large_jpegs]).astype(np.float32)
    assert 0 < np.abs(full - draft).mean() < 3.0  # grey levels: different pixels, close ones
    f_full = encode_images(large_jpegs, bb, draft=False, workers=0).features
    f_draft = encode_images(large_jpegs, bb, draft=True, workers=2).features
    cos = (f_full * f_draft).sum(1) / np.linalg.norm(f_full, axis=1) / np.linalg.norm(f_draft, axis=1)
    assert cos.min() > 0.97 and cos.mean() > 0.985
    # each image's nearest neighbour among the fully decoded ones is itself
    sim = f_draft @ f_full.T / np.linalg.norm(f_draft, axis=1)[:, None] / np.linalg.norm(f_full, axis=1)[None]
    assert np.array_equal(sim.argmax(1), np.arange(len(large_jpegs)))


def test_draft_and_full_decoding_have_their_own_feature_cache(corrupt_archive, backbone):
    assert ex.feature_store_key(backbone, True) != ex.feature_store_key(backbone, False)


# ----------------------------------------------------------------------------- int8
def test_int8_backbone_runs_stays_close_and_is_cached(small_cifar, tmp_cache, monkeypatch):
    from deephash.encoding.int8 import int8_backbone

    a = open_archive(small_cifar, split="train")
    paths = [a.abspath(i) for i in range(len(a))]
    bb = create_backbone("efficientnet-lite0", image_size=64)
    q8 = int8_backbone(bb, paths, n=64)
    assert q8.describe()["int8"]["calibration"] and q8.describe() != bb.describe() and q8.dim == bb.dim
    test = [small_cifar / "test" / c / "0001.jpg" for c in ("cat", "dog", "ship", "truck", "frog")]
    f32 = encode_images(test, bb, workers=0).features
    f8 = encode_images(test, q8, workers=0).features
    cos = (f32 * f8).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(f8, axis=1)
    assert f8.shape == f32.shape and cos.min() > 0.9
    assert not np.array_equal(f8, f32)  # it really runs another (quantised) model
    # the same calibration set: the cached model, no second quantisation
    import onnxruntime.quantization as oq

    monkeypatch.setattr(oq, "quantize_static", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-quantised")))
    again = int8_backbone(bb, paths, n=64)
    assert again.int8_path == q8.int8_path
    assert np.allclose(encode_images(test, again, workers=0).features, f8)


def test_int8_needs_an_onnx_backbone():
    from deephash.backbones.int8 import Int8Backbone

    class TorchOnly:
        name, dim = "torch-only", 8

    with pytest.raises(ConfigError, match="needs a backbone run by ONNX Runtime"):
        Int8Backbone(TorchOnly(), lambda: np.zeros((1, 8, 8, 3), np.uint8), "x")


def test_encoder_rejects_bad_settings(backbone):
    with pytest.raises(ConfigError, match="batch_size must be a positive whole number; got 0"):
        StreamEncoder(backbone, batch_size=0)
    with pytest.raises(ConfigError, match="workers must be 0"):
        StreamEncoder(backbone, workers=-1)
    with pytest.raises(ConfigError, match="names must match the images one to one"):
        list(StreamEncoder(backbone).stream([b"x"], names=["a", "b"]))


def test_choose_workers_from_measured_costs():
    from deephash.encoding.stream import choose_workers

    assert choose_workers(0.0003, 0.0045, cores=2) == 0  # CIFAR-size: decoding ~7 % of the backbone, inline
    assert choose_workers(0.040, 0.0045, cores=2) == 2  # 12-MP: decoding dominates, one process per core
    assert choose_workers(0.040, 0.0045, cores=1) == 0  # one core: workers would hide nothing
    assert choose_workers(0.040, 0.0045, cores=64) == 8


@pytest.mark.parametrize("chosen", [0, 2])
def test_measured_decoder_choice_changes_nothing_but_speed(corrupt_archive, backbone, monkeypatch, chosen):
    """workers=None: the first chunk is decoded inline and timed, then ``choose_workers`` decides; whatever it
    decides, features, order and skipped images are those of the inline encoder."""
    import deephash.encoding.stream as stream

    monkeypatch.delenv("DEEPHASH_DECODE_WORKERS", raising=False)
    calls = []
    monkeypatch.setattr(stream, "choose_workers", lambda d, b, cores=None: calls.append((d, b)) or chosen)
    paths = [corrupt_archive.abspath(i) for i in range(len(corrupt_archive))]
    ref = list(StreamEncoder(backbone, batch_size=16, workers=0).stream(paths))
    got = list(StreamEncoder(backbone, batch_size=16).stream(paths))
    assert len(calls) == 1 and calls[0][0] > 0 and calls[0][1] > 0
    assert {b.workers for b in got} == {chosen} and {b.workers for b in ref} == {0}
    assert [(b.start, b.stop) for b in got] == [(b.start, b.stop) for b in ref]
    for a, b in zip(ref, got):
        assert np.array_equal(a.positions, b.positions) and a.failed == b.failed
        assert np.allclose(a.features, b.features, atol=1e-5)


def test_decoder_choice_from_the_environment(small_cifar, backbone, monkeypatch):
    import deephash.encoding.stream as stream

    paths = sorted((small_cifar / "test").rglob("*.jpg"))[:40]
    monkeypatch.setattr(stream, "choose_workers", lambda *a, **k: pytest.fail("DEEPHASH_DECODE_WORKERS is set"))
    monkeypatch.setenv("DEEPHASH_DECODE_WORKERS", "0")
    assert {b.workers for b in StreamEncoder(backbone, batch_size=16).stream(paths)} == {0}
    monkeypatch.setenv("DEEPHASH_DECODE_WORKERS", "two")
    with pytest.raises(ConfigError, match="DEEPHASH_DECODE_WORKERS must be a whole number"):
        list(StreamEncoder(backbone, batch_size=16).stream(paths))


def test_ort_spinning_setting(monkeypatch):
    from deephash.backbones._onnx_runtime import spinning_default

    monkeypatch.delenv("DEEPHASH_ORT_SPINNING", raising=False)
    assert spinning_default() is False
    monkeypatch.setenv("DEEPHASH_ORT_SPINNING", "1")
    assert spinning_default() is True
    monkeypatch.setenv("DEEPHASH_ORT_SPINNING", "yes")
    with pytest.raises(ConfigError, match="DEEPHASH_ORT_SPINNING must be 0 or 1; got 'yes'"):
        spinning_default()
