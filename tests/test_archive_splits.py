"""Label files with a split column: --split keeps that split's rows only, and --split on an
archive without split information is refused (never silently ignored)."""
import json

import pytest
from click.testing import CliRunner
from PIL import Image

from deephash.cli.main import cli
from deephash.data import open_archive
from deephash.data.archive import SPLIT_COLUMN
from deephash.errors import DataError


def _img(path, color):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (10, 10), color).save(path)


@pytest.fixture()
def flat_with_csv(tmp_path):
    """6 images in one flat folder; labels.csv marks 4 train and 2 test rows."""
    rows = [("a.png", "cat", "train"), ("b.png", "dog", "train"), ("c.png", "cat", "train"),
            ("d.png", "dog", "train"), ("e.png", "cat", "test"), ("f.png", "dog", "test")]
    for i, (name, _, _) in enumerate(rows):
        _img(tmp_path / "imgs" / name, (40 * i, 10, 200 - 30 * i))
    (tmp_path / "labels.csv").write_text("path,label,split\n" + "".join(f"{p},{c},{s}\n" for p, c, s in rows))
    return tmp_path


def test_the_documented_split_column_name():
    assert SPLIT_COLUMN == "split"


def test_csv_split_column_is_honoured(flat_with_csv):
    tr = open_archive(flat_with_csv / "imgs", split="train", labels_file=flat_with_csv / "labels.csv")
    assert tr.paths == ["a.png", "b.png", "c.png", "d.png"] and set(tr.splits) == {"train"}
    te = open_archive(flat_with_csv / "imgs", split="test", labels_file=flat_with_csv / "labels.csv")
    assert te.paths == ["e.png", "f.png"] and [te.class_names[i] for i in te.labels] == ["cat", "dog"]
    everything = open_archive(flat_with_csv / "imgs", labels_file=flat_with_csv / "labels.csv")
    assert len(everything) == 6 and everything.splits.count("test") == 2
    with pytest.raises(DataError, match=r"no row of .* is in split 'val'; its splits are: test, train"):
        open_archive(flat_with_csv / "imgs", split="val", labels_file=flat_with_csv / "labels.csv")


def test_json_split_key_is_honoured(flat_with_csv):
    doc = [{"path": "a.png", "label": "cat", "split": "train"}, {"path": "e.png", "label": "cat", "split": "test"}]
    (flat_with_csv / "l.json").write_text(json.dumps(doc))
    assert open_archive(flat_with_csv / "imgs", split="test", labels_file=flat_with_csv / "l.json").paths == ["e.png"]
    (flat_with_csv / "m.json").write_text(json.dumps({"a.png": {"labels": ["cat"], "split": "train"},
                                                      "f.png": {"labels": "dog", "split": "test"}}))
    assert open_archive(flat_with_csv / "imgs", split="train", labels_file=flat_with_csv / "m.json").paths == ["a.png"]


def test_split_without_split_information_is_refused(flat_with_csv, tmp_path):
    (tmp_path / "nosplit.csv").write_text("path,label\na.png,cat\nb.png,dog\n")
    with pytest.raises(DataError, match=r"--split train: .* has no split information \(add a 'split' column"):
        open_archive(flat_with_csv / "imgs", split="train", labels_file=tmp_path / "nosplit.csv")
    # a class-folder archive without split folders refuses it too
    _img(tmp_path / "classes" / "cat" / "1.png", (1, 2, 3))
    with pytest.raises(DataError, match="no split folder 'train'; found folders: cat"):
        open_archive(tmp_path / "classes", split="train")
    # and a flat folder of images
    with pytest.raises(DataError, match="no split folder 'train'; this archive has no split information"):
        open_archive(flat_with_csv / "imgs", split="train")


def test_cli_refuses_split_without_split_information_in_one_line(flat_with_csv, tmp_path):
    (tmp_path / "nosplit.csv").write_text("path,label\na.png,cat\nb.png,dog\n")
    r = CliRunner().invoke(cli, ["train", str(flat_with_csv / "imgs"), "--labels", str(tmp_path / "nosplit.csv"),
                                 "--split", "train", "--method", "lsh", "--out", str(tmp_path / "m.pt")])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --split train:") and "no split information" in lines[0]
    assert not (tmp_path / "m.pt").exists()
