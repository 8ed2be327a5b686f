"""Issue 12 item 5: symbolic links that leave a folder archive or a .tar.gz are skipped and reported
as such (never opened: the check reads the link, not its target), and the rest is indexed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from deephash import api
from deephash.cli.main import cli
from deephash.data import open_archive
from deephash.index import HashIndex
from robust_fixtures import draw_image, synth_archive, synth_ckpt  # noqa: F401  (session fixtures)

REAL = ["cat/0.png", "cat/1.png", "cat/2.png", "dog/0.png", "dog/1.png", "dog/2.png"]


def _plain(root: Path) -> Path:
    for c in ("cat", "dog"):
        for i in range(3):
            draw_image(root / c / f"{i}.png", seed=10 * len(c) + i)
    return root


@pytest.fixture()
def linked(tmp_path) -> tuple[Path, Path]:
    """A folder archive with links out of it (a file, /etc/passwd, a folder), a link within it, a
    link to a folder within it, a broken link and a pipe; ``outside`` holds an image beside it."""
    root = _plain(tmp_path / "arch")
    outside = draw_image(tmp_path / "outside" / "secret.png", seed=99)
    os.symlink(outside, root / "cat" / "out.png")
    os.symlink("/etc/passwd", root / "cat" / "passwd.jpg")
    os.symlink("../../outside", root / "dog" / "more")
    os.symlink(tmp_path / "outside", root / "evil")  # a whole class folder outside
    os.symlink("0.png", root / "cat" / "same.png")  # inside: indexed
    os.symlink("../dog", root / "cat" / "dogs")  # a folder inside: not followed (its images are indexed anyway)
    os.symlink("gone.png", root / "dog" / "broken.png")
    os.mkfifo(root / "dog" / "pipe.jpg")
    return root, outside


EXPECTED_SKIPS = {
    "cat/out.png": "symbolic link leaving the archive",
    "cat/passwd.jpg": "symbolic link leaving the archive (to /etc/passwd)",
    "dog/more": "symbolic link leaving the archive",
    "evil": "symbolic link leaving the archive",
    "cat/dogs": "symbolic link to a folder (to ../dog): not followed",
    "dog/broken.png": "broken symbolic link",
    "dog/pipe.jpg": "not a regular file",
}


def test_links_leaving_a_folder_archive_are_skipped_and_reported(linked):
    root, _ = linked
    a = open_archive(root)
    assert sorted(a.paths) == sorted(REAL + ["cat/same.png"])
    assert a.class_names == ["cat", "dog"]
    got = dict(a.skipped)
    assert set(got) == set(EXPECTED_SKIPS)
    for p, why in EXPECTED_SKIPS.items():
        assert why in got[p], (p, got[p])


def test_index_holds_no_code_of_an_image_outside_the_archive(linked, synth_ckpt, tmp_path):
    root, outside = linked
    out = tmp_path / "i.dhi"
    r = CliRunner().invoke(cli, ["index", str(root), "--model", str(synth_ckpt), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "cat/passwd.jpg: symbolic link leaving the archive (to /etc/passwd): skipped" in r.output
    assert "dog/pipe.jpg: not a regular file" in r.output
    idx = HashIndex.load(out)
    assert sorted(idx.paths) == sorted(REAL + ["cat/same.png"])
    # the outside image is not in the index: searching with it finds no Hamming-0 feature twin
    res = api.search(out, [outside], k=1)[0].json["results"][0]
    assert res["feature_distance"] is None or res["feature_distance"] > 1e-3


def test_a_link_to_a_pipe_outside_is_never_opened(tmp_path, synth_ckpt):
    """Opening a FIFO for reading blocks until a writer comes: were the link followed before the
    check, ``deephash index`` would hang; it finishes and reports the link."""
    root = _plain(tmp_path / "arch")
    os.mkfifo(tmp_path / "trap")
    os.symlink(tmp_path / "trap", root / "cat" / "trap.jpg")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    r = subprocess.run([sys.executable, "-m", "deephash.cli.main", "index", str(root), "--model", str(synth_ckpt),
                        "--out", str(tmp_path / "i.dhi")], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert "cat/trap.jpg: symbolic link leaving the archive" in r.stderr
    assert len(HashIndex.load(tmp_path / "i.dhi")) == 6


def _tar(path: Path, root: Path, links: dict[str, str], extra=()) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for p in REAL:
            tf.add(root / p, f"top/{p}")
        for name, target in links.items():
            ti = tarfile.TarInfo(f"top/{name}")
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            tf.addfile(ti)
        for ti in extra:
            tf.addfile(ti)
    return path


def test_a_tar_gz_with_links_leaving_it_indexes_the_rest(tmp_path, synth_ckpt):
    src = _plain(tmp_path / "src")
    dev = tarfile.TarInfo("top/dog/dev.png")
    dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
    t = _tar(tmp_path / "a.tar.gz", src, {"cat/abs.png": "/etc/passwd", "cat/up.png": "../../../../x.png",
                                          "cat/ok.png": "0.png"}, [dev])
    a = open_archive(t)
    assert sorted(a.paths) == sorted(REAL + ["cat/ok.png"])
    got = dict(a.skipped)
    assert "symbolic link leaving the archive (to /etc/passwd)" in got["top/cat/abs.png"]
    assert "symbolic link leaving the archive (to ../../../../x.png)" in got["top/cat/up.png"]
    assert "not a regular file" in got["top/dog/dev.png"]
    # the second open reuses the unpacked folder and still reports what unpacking skipped
    assert dict(open_archive(t).skipped) == got
    out = tmp_path / "t.dhi"
    r = CliRunner().invoke(cli, ["index", str(t), "--model", str(synth_ckpt), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "top/cat/abs.png: symbolic link leaving the archive (to /etc/passwd): skipped" in r.output
    assert len(HashIndex.load(out)) == 7


def test_a_label_file_cannot_point_outside_the_archive(tmp_path):
    root = _plain(tmp_path / "flat")
    shutil.copyfile(root / "cat" / "0.png", tmp_path / "elsewhere.png")
    lf = tmp_path / "labels.csv"
    lf.write_text("path,label\ncat/0.png,a\ndog/0.png,b\n../elsewhere.png,a\n/etc/passwd,b\n")
    a = open_archive(root, labels_file=lf)
    assert a.paths == ["cat/0.png", "dog/0.png"]
    got = dict(a.skipped)
    assert "outside the archive folder" in got["../elsewhere.png"] and "outside the archive folder" in got["/etc/passwd"]
