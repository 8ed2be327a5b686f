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
