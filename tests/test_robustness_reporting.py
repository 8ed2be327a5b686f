"""Issue 12 item 9: what is skipped is reported with its true reason; non-images are ignored (not
"bad images"); ``deephash encode --out codes.npy`` writes the file of each row beside the codes."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deephash import api
from deephash.cli.main import cli
from deephash.data import open_archive
from deephash.data.images import decode_image
from deephash.errors import DataError
from robust_fixtures import draw_image, synth_archive, synth_ckpt  # noqa: F401  (session fixtures)


@pytest.fixture()
def messy(tmp_path) -> Path:
    """A flat folder: 4 images, a folder named x.jpg, notes.txt, labels.csv, a pipe named y.png."""
    root = tmp_path / "flat"
    for i in range(4):
        draw_image(root / f"{i}.png", seed=i)
    (root / "x.jpg").mkdir()
    draw_image(root / "x.jpg" / "inner.png", seed=9)
    (root / "notes.txt").write_text("holiday 2019")
    (root / "labels.csv").write_text("a,b\n")
    os.mkfifo(root / "y.png")
    return root


def _truncated(p: Path) -> Path:
    data = draw_image(p, seed=3, size=64).read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


@pytest.mark.parametrize("make,msg", [
    (lambda d: d / "missing.jpg", "no such file"),
    (lambda d: (d / "dir.jpg").mkdir() or d / "dir.jpg", "a folder, not an image file"),
    (lambda d: os.mkfifo(d / "p.jpg") or d / "p.jpg", "not a regular file"),
    (lambda d: (d / "e.jpg").write_bytes(b"") and None or d / "e.jpg", "empty file"),
    (lambda d: _truncated(d / "t.jpg"), "corrupt or truncated image"),
])
def test_decode_says_what_the_file_is(tmp_path, make, msg):
    p = make(tmp_path)
    with pytest.raises(DataError) as e:
        decode_image(p)
    assert msg in str(e.value)
    if msg != "corrupt or truncated image":
        assert "corrupt" not in str(e.value)


def test_a_folder_named_like_an_image_is_reported_and_non_images_ignored(messy):
    a = open_archive(messy)
    assert a.paths == ["0.png", "1.png", "2.png", "3.png"]
    got = dict(a.skipped)
    assert got == {"x.jpg": "a folder named like an image file: skipped",
                   "y.png": "not a regular file (a pipe, socket or device): skipped"}
    assert sorted(a.ignored) == ["labels.csv", "notes.txt"]


def test_the_cli_reports_skips_and_counts_ignored_files(messy, synth_ckpt, tmp_path):
    r = CliRunner().invoke(cli, ["index", str(messy), "--model", str(synth_ckpt), "--out", str(tmp_path / "m.dhi")])
    assert r.exit_code == 0, r.output
    assert "x.jpg: a folder named like an image file: skipped" in r.output
    assert "ignored 2 file(s) that are not images: .csv 1, .txt 1" in r.output
    assert "notes.txt" not in r.output and "corrupt" not in r.output


def test_encode_and_search_report_folders_named_like_images(messy, synth_ckpt, tmp_path):
    r = CliRunner().invoke(cli, ["encode", str(synth_ckpt), str(messy)])
    assert r.exit_code == 0, r.output
    assert f"{messy / 'x.jpg'}: a folder named like an image file: skipped" in r.output
    assert "notes.txt" not in r.output
    # the image inside the folder named x.jpg is still encoded (it is an image below the folder)
    assert "inner.png" in r.output


def test_encode_out_writes_the_file_of_each_row(synth_archive, synth_ckpt, tmp_path):
    src = tmp_path / "q"
    shutil.copytree(synth_archive / "red", src)
    (src / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    bad_name = os.path.join(os.fsencode(src), b"caf\xe9.png")
    shutil.copyfile(src / "00.png", bad_name)
    out = tmp_path / "codes.npy"
    r = CliRunner().invoke(cli, ["encode", str(synth_ckpt), str(src), "--out", str(out)])
    assert r.exit_code == 0, r.output
    listing = tmp_path / "codes.files.json"
    assert f"and the file of each row to {listing}" in r.output
    codes = np.load(out)
    meta = json.loads(listing.read_text())
    assert meta["rows"] == len(codes) == len(meta["files"]) == 13 and meta["bits"] == 16
    assert [p for p, _ in meta["skipped"]] == [str(src / "bad.png")]
    # row i is the code of files[i]: recompute each from its file alone
    ref = api.encode(synth_ckpt, [meta["files"][0], meta["files"][-1]])
    assert np.array_equal(ref.codes, codes[[0, -1]])
    assert bad_name in [os.fsencode(f) for f in meta["files"]]  # a name that is not UTF-8 survives the JSON losslessly


def test_a_bad_file_with_a_hostile_name_is_reported_on_one_line(synth_archive, synth_ckpt, tmp_path):
    """A name holding a newline and bytes that are not UTF-8: its skip line and its error line are each
    one printable line, and the file's name is not repeated."""
    root = tmp_path / "arch"
    shutil.copytree(synth_archive, root)
    bad = os.path.join(os.fsencode(root / "red"), b"evil\nname \xff.jpg")
    with open(bad, "wb") as fh:
        fh.write(b"not an image")
    r = CliRunner().invoke(cli, ["index", str(root), "--model", str(synth_ckpt), "--out", str(tmp_path / "i.dhi")])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if "evil" in ln]
    assert lines == ["  red/evil\\nname \\xff.jpg: not a readable image (not a format PIL can identify)"]
    r = CliRunner().invoke(cli, ["search", str(tmp_path / "i.dhi"), os.fsdecode(bad)])
    assert r.exit_code == 2
    err = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(err) == 1 and "evil\\nname \\xff.jpg: not a readable image" in err[0]
    err[0].encode("utf-8")


def test_an_empty_folder_named_like_an_image_inside_a_class_is_reported(synth_archive, tmp_path):
    root = tmp_path / "arch"
    shutil.copytree(synth_archive, root)
    (root / "red" / "empty.jpg").mkdir()
    (root / "red" / "full.jpg").mkdir()
    draw_image(root / "red" / "full.jpg" / "inner.png", seed=1)
    a = open_archive(root)
    assert dict(a.skipped) == {"red/empty.jpg": "a folder named like an image file: skipped"}
    assert "red/full.jpg/inner.png" in a.paths  # the images below it are the class's
