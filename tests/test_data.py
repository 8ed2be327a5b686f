"""Archives: image folders with and without splits, label files (multi-label), tar.gz/zip, bad files."""
import io
import json
import shutil
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from deephash.data import decode_image, open_archive
from deephash.errors import DataError


def _img(path, color=(200, 10, 10), size=(12, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_cifar_folder_with_splits(small_cifar):
    a = open_archive(small_cifar)
    assert len(a) == 400 and len(a.class_names) == 10 and set(a.splits) == {"train", "test"}
    assert len(a.split_indices("train")) == 300
    tr = open_archive(small_cifar, split="train")
    assert len(tr) == 300 and set(tr.splits) == {"train"}
    with pytest.raises(DataError, match="no split folder 'val'"):
        open_archive(small_cifar, split="val")


def test_nested_class_folders_and_non_images(tmp_path):
    _img(tmp_path / "r" / "cat" / "a" / "b" / "1.png")
    _img(tmp_path / "r" / "dog" / "2.jpg")
    (tmp_path / "r" / "dog" / "notes.txt").write_text("hi")
    a = open_archive(tmp_path / "r")
    assert a.paths == ["cat/a/b/1.png", "dog/2.jpg"] and a.labels.tolist() == [0, 1]
    assert a.skipped == [] and a.ignored == ["dog/notes.txt"]  # not an image: ignored, not a bad image


def test_label_files_csv_and_json_multilabel(tmp_path):
    for n in ("a.jpg", "b.jpg", "c.jpg"):
        _img(tmp_path / "imgs" / n)
    (tmp_path / "l.csv").write_text("path,labels\na.jpg,sea;beach\nb.jpg,forest\nc.jpg,sea\nmissing.jpg,sea\n")
    a = open_archive(tmp_path / "imgs", labels_file=tmp_path / "l.csv")
    assert a.multi_label and a.class_names == ["beach", "forest", "sea"]
    assert a.labels.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert a.skipped == [("missing.jpg", "listed in the label file but missing on disk")]
    (tmp_path / "l.json").write_text(json.dumps({"a.jpg": "x", "b.jpg": "y"}))
    b = open_archive(tmp_path / "imgs", labels_file=tmp_path / "l.json")
    assert not b.multi_label and b.labels.tolist() == [0, 1]
    (tmp_path / "bad.csv").write_text("file_name,whatever\na.jpg,1\n")
    with pytest.raises(DataError, match="expected a header with a path column"):
        open_archive(tmp_path / "imgs", labels_file=tmp_path / "bad.csv")


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_packed_archives_unpack_once(tmp_path, tmp_cache, kind):
    src = tmp_path / "src" / "data"
    _img(src / "train" / "a" / "1.png")
    _img(src / "train" / "b" / "2.png")
    arc = tmp_path / f"data.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(arc, "w") as zf:
            for f in src.rglob("*.png"):
                zf.write(f, f.relative_to(src.parent))
    else:
        with tarfile.open(arc, "w:gz") as tf:
            tf.add(src, arcname="data")
    a = open_archive(arc)
    assert len(a) == 2 and a.splits == ["train", "train"]
    assert open_archive(arc).root == a.root  # unpacked once
    (tmp_path / "broken.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="cannot unpack archive"):
        open_archive(tmp_path / "broken.tar.gz")


def test_decode_rejects_bad_images(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "JPEG")
    good = buf.getvalue()
    assert decode_image(good).size == (64, 64)
    with pytest.raises(DataError, match="empty file"):
        decode_image(b"")
    with pytest.raises(DataError, match="not a readable image"):
        decode_image(b"hello world")
    with pytest.raises(DataError, match="truncated"):
        decode_image(good[: len(good) // 2])
    with pytest.raises(DataError, match="declares"):
        decode_image(good, max_pixels=100)


def test_missing_archive_message(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_archive(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="expected a folder or a"):
        open_archive(tmp_path / "x.txt")
