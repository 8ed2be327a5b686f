"""IDX files (MNIST-style) as an archive source and the Fashion-MNIST dataset, on tiny IDX files the
tests write themselves."""
import gzip
import struct

import numpy as np
import pytest

from deephash.data import load_dataset, load_fashion_mnist, open_archive
from deephash.data.datasets import FASHION_MNIST_CLASSES, find_fashion_mnist
from deephash.data.idx import idx_pairs, read_idx
from deephash.errors import DataError
from deephash.eval.protocols import get_protocol


def idx_bytes(a: np.ndarray) -> bytes:
    """The IDX encoding written the slow, obvious way: magic, one big-endian uint32 per dimension, data."""
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C,
            np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}[a.dtype]
    head = bytes([0, 0, code, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write_idx(path, a, gz):
    data = idx_bytes(a)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def tiny_dataset(folder, gz=True, n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 3).astype(np.uint8)
        images = (rng.integers(0, 50, (n, 28, 28)) + 60 * labels[:, None, None]).astype(np.uint8)
        sfx = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{sfx}", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{sfx}", labels, gz)
        out[prefix] = (images, labels)
    return out


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_round_trips_every_type(tmp_path, gz, dtype):
    a = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4)
    a = (a % 256 if dtype == np.uint8 else a).astype(dtype)
    b = read_idx(write_idx(tmp_path / "a.idx", a, gz))
    assert b.shape == (2, 3, 4) and b.dtype == np.dtype(dtype) and np.array_equal(a, b)


def test_read_idx_errors(tmp_path):
    (tmp_path / "x").write_bytes(b"\x89PNG....")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "x")
    good = idx_bytes(np.zeros((4, 5), np.uint8))
    (tmp_path / "short").write_bytes(good[:-3])
    with pytest.raises(DataError, match="the file holds 17"):
        read_idx(tmp_path / "short")
    (tmp_path / "head").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(DataError, match="announces 3 dimensions"):
        read_idx(tmp_path / "head")
    with pytest.raises(DataError, match="cannot read IDX"):
        read_idx(tmp_path / "missing")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_opens_as_an_archive(tmp_path, gz):
    data = tiny_dataset(tmp_path / "mnistish", gz=gz)
    assert [s for s, _, _ in idx_pairs(tmp_path / "mnistish")] == ["test", "train"]
    a = open_archive(tmp_path / "mnistish")
    assert len(a) == 17 and a.class_names == ["0", "1", "2"]
    assert sorted(np.asarray(a.splits).tolist()) == ["test"] * 5 + ["train"] * 12
    from PIL import Image

    for i in range(len(a)):
        split = a.splits[i]
        n = int(a.abspath(i).stem)
        images, labels = data["train" if split == "train" else "t10k"]
        assert a.labels[i] == labels[n]
        assert np.array_equal(np.asarray(Image.open(a.abspath(i))), images[n])
    # written once: a second open reuses the same folder
    assert open_archive(tmp_path / "mnistish").root == a.root


def test_idx_folder_without_labels_is_refused(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((2, 3, 3), np.uint8), False)
    with pytest.raises(DataError, match="no label file beside it"):
        open_archive(folder)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(3, np.uint8), False)
    with pytest.raises(DataError, match="n labels"):
        open_archive(folder)


def test_fashion_mnist_found_by_env_with_named_classes_and_protocol(tmp_path, monkeypatch):
    tiny_dataset(tmp_path / "fm", n_train=30, n_test=6)
    monkeypatch.setenv("DEEPHASH_FASHION_MNIST", str(tmp_path / "fm"))
    assert find_fashion_mnist() == tmp_path / "fm"
    a = load_dataset("fashion-mnist")
    assert len(a) == 36 and set(a.class_names) == {"t-shirt-top", "trouser", "pullover"}
    assert len(FASHION_MNIST_CLASSES) == 10
    sp = get_protocol("fashion-mnist").split(a.labels, a.splits, 0)
    assert sp.sizes()["query"] == 6 and sp.sizes()["database"] == 30 and sp.sizes()["train"] == 30
    assert set(np.asarray(a.splits)[sp.query_idx]) == {"test"}
    monkeypatch.setenv("DEEPHASH_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist()
