"""Feature extraction: real backbone, cache reuse, resume after interruption, corrupt images skipped."""
import shutil

import numpy as np
import pytest

from deephash.backbones import create_backbone
from deephash.data import open_archive
from deephash.features import extract_features
import deephash.features.extract as ex


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("efficientnet-lite0", image_size=32)


def test_extract_skips_corrupt_and_caches(small_cifar, tmp_path, tmp_cache, backbone, monkeypatch):
    root = tmp_path / "arc"
    shutil.copytree(small_cifar / "test", root)
    (root / "cat" / "zz_truncated.jpg").write_bytes((root / "cat" / "0000.jpg").read_bytes()[:100])
    (root / "cat" / "zz_empty.jpg").write_bytes(b"")
    (root / "dog" / "zz_text.png").write_text("not an image")
    a = open_archive(root)
    fs = extract_features(a, backbone, progress=False)
    assert len(a) == 103 and len(fs) == 100 and fs.features.shape == (100, 1280)
    bad = sorted(p.split("/")[-1] for p, _ in fs.failed)
    assert bad == ["zz_empty.jpg", "zz_text.png", "zz_truncated.jpg"]
    assert all("zz_" not in a.paths[i] for i in fs.index)
    # second call reads the cache: no backbone calls at all
    monkeypatch.setattr(backbone, "embed", lambda x: (_ for _ in ()).throw(AssertionError("recomputed")))
    fs2 = extract_features(a, backbone, progress=False)
    assert np.array_equal(fs2.features, fs.features) and np.array_equal(fs2.index, fs.index)


def test_interrupted_extraction_resumes(small_cifar, tmp_cache, backbone, monkeypatch):
    a = open_archive(small_cifar, split="train")
    monkeypatch.setattr(ex, "CHUNK", 64)
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_cache / "reference"))
    full = extract_features(a, backbone, progress=False)
    monkeypatch.setenv("DEEPHASH_CACHE", str(tmp_cache / "interrupted"))
    calls = {"n": 0}
    real = backbone.embed

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(x)

    monkeypatch.setattr(backbone, "embed", flaky)
    pos = np.arange(250)
    with pytest.raises(KeyboardInterrupt):
        extract_features(a, backbone, pos, progress=False, batch_size=32)
    calls["n"] = -10**9  # never fail again; count calls on resume
    monkeypatch.setattr(backbone, "embed", lambda x: (calls.__setitem__("n", calls["n"] + 1), real(x))[1])
    before = calls["n"]
    fs = extract_features(a, backbone, pos, progress=False, batch_size=32)
    # 250 images = 4 chunks of 64; the first (2 batches) was finished before the interrupt
    assert calls["n"] - before == 6
    assert np.allclose(fs.features, full.features[:250], atol=1e-4)
    # a later call for other images of the same archive reuses these rows
    calls["n"] = 0
    fs_all = extract_features(a, backbone, progress=False, batch_size=50)
    assert calls["n"] == 1 and np.allclose(fs_all.features, full.features, atol=1e-4)


def test_another_weights_file_gets_its_own_feature_cache(tmp_path):
    """The cache is keyed by the backbone's description, which names its weights file: the same
    architecture with other weights never reads features cached for the first."""
    from deephash.backbones.efficientnet_lite import lite_weights_path

    default = create_backbone("efficientnet-lite0", image_size=32)
    other = tmp_path / "my-lite0-finetuned-elsewhere.pth"
    shutil.copyfile(lite_weights_path(0), other)
    custom = create_backbone("efficientnet-lite0", image_size=32, weights_path=str(other))
    assert default.describe()["weights"].startswith(lite_weights_path(0).name)
    assert custom.describe()["weights"].startswith(other.name) and custom.describe() != default.describe()


def test_features_are_cached_per_image_across_splits_label_files_and_moved_copies(small_cifar, tmp_cache, backbone,
                                                                                   monkeypatch, tmp_path):
    """Issue 15 item 6: training on the train split, then evaluating on the whole folder, computes
    only the test images; a moved copy of the archive computes nothing."""
    calls = {"images": 0}
    real = backbone.embed

    def counting(x):
        calls["images"] += len(x)
        return real(x)

    monkeypatch.setattr(backbone, "embed", counting)
    train = extract_features(open_archive(small_cifar, split="train"), backbone, progress=False)
    assert calls["images"] == 300
    whole = open_archive(small_cifar)
    fs = extract_features(whole, backbone, progress=False)
    assert calls["images"] == 400 and len(fs) == 400  # only the 100 test images were new
    by_path = dict(zip((whole.paths[i] for i in fs.index), fs.features))
    tr = open_archive(small_cifar, split="train")
    for i, f in zip(train.index, train.features):
        np.testing.assert_array_equal(by_path[tr.paths[i]], f)
    copy = tmp_path / "moved"
    shutil.copytree(small_cifar, copy)
    again = extract_features(open_archive(copy), backbone, progress=False)
    assert calls["images"] == 400 and np.array_equal(again.features, fs.features)


def test_a_bad_file_is_reported_under_its_own_name_in_every_archive(small_cifar, tmp_cache, backbone, tmp_path):
    """The same bad bytes in two archives: each report names its own file (failures are not shared
    through the content-keyed cache, only features are)."""
    reasons = {}
    for name in ("first", "second"):
        root = tmp_path / name
        shutil.copytree(small_cifar / "test" / "cat", root / "cat")
        (root / "cat" / f"{name}_empty.jpg").write_bytes(b"")
        fs = extract_features(open_archive(root), backbone, progress=False)
        assert [p for p, _ in fs.failed] == [f"cat/{name}_empty.jpg"]
        reasons[name] = fs.failed[0][1]
    assert "first" not in reasons["second"]
