"""Issue 12: a .zip is unpacked as a .tar.gz is — each unsafe member (an absolute path, ``..`` out of
the archive, a link leaving it, a device) skipped and reported, the rest indexed — and neither lets
a decompression bomb through: a member unpacking to more than the member limit is skipped and
reported before any of it is written, an archive that would not fit on the cache disk is refused in
one line, and an image declaring too many pixels inside an archive is skipped; memory stays bounded
(the peak of a child process is measured, as for the pixel limit)."""
from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from archive_bombs import MIB, tar_gz_bomb, tar_sparse, zip_bomb
from deephash.cli.main import cli
from deephash.data import open_archive
from deephash.data.archive import DEFAULT_MAX_MEMBER_BYTES, MAX_MEMBER_BYTES_ENV, max_member_bytes
from deephash.errors import ConfigError, DataError
from deephash.index import HashIndex
from robust_fixtures import draw_image, synth_ckpt, synth_archive  # noqa: F401  (session fixtures)
from service_helpers import bomb_png

REAL = [f"{c}/{i}.png" for c in ("cat", "dog") for i in range(3)]
#: member -> (kind, link target); the same unsafe members in both formats
UNSAFE = {
    "/abs.png": ("file", None),
    "top/../../up.png": ("file", None),
    "top/cat/abs-link.png": ("symlink", "/etc/passwd"),
    "top/cat/up-link.png": ("symlink", "../../../../x.png"),
    "top/dog/dev.png": ("device", None),
}
SAFE_EXTRA = {"top/cat/ok-link.png": ("symlink", "0.png"), "top/dog/../dog/dotdot.png": ("file", None)}


def _images(root: Path) -> dict[str, bytes]:
    return {f"top/{p}": draw_image(root / p, seed=i).read_bytes() for i, p in enumerate(REAL)}


def _write_zip(path: Path, files: dict[str, bytes], special: dict[str, tuple[str, str | None]]) -> Path:
    modes = {"file": stat.S_IFREG | 0o644, "symlink": stat.S_IFLNK | 0o777, "device": stat.S_IFCHR | 0o666}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, (kind, target) in special.items():
            zi = zipfile.ZipInfo(name)
            zi.external_attr = modes[kind] << 16
            zf.writestr(zi, target if kind == "symlink" else files["top/cat/0.png"] if kind == "file" else b"")
    return path


def _write_tar(path: Path, files: dict[str, bytes], special: dict[str, tuple[str, str | None]]) -> Path:
    types = {"file": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE, "device": tarfile.CHRTYPE}
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for name, (kind, target) in special.items():
            ti = tarfile.TarInfo(name)
            ti.type = types[kind]
            data = files["top/cat/0.png"] if kind == "file" else b""
            ti.size, ti.linkname = len(data), target or ""
            tf.addfile(ti, io.BytesIO(data))
    return path


WRITERS = {"zip": _write_zip, "tar.gz": _write_tar}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_unsafe_members_are_skipped_one_by_one_and_the_rest_indexed(kind, tmp_path, tmp_cache, synth_ckpt):
    arc = WRITERS[kind](tmp_path / f"a.{kind}", _images(tmp_path / "src"), {**UNSAFE, **SAFE_EXTRA})
    a = open_archive(arc)
    assert sorted(a.paths) == sorted(REAL + ["cat/ok-link.png", "dog/dotdot.png"])
    got = dict(a.skipped)
    assert set(got) == set(UNSAFE)
    assert got["/abs.png"] == got["top/../../up.png"] == "member path leaves the archive (absolute or with ..): skipped"
    assert got["top/cat/abs-link.png"] == "symbolic link leaving the archive (to /etc/passwd): skipped"
    assert got["top/cat/up-link.png"] == "symbolic link leaving the archive (to ../../../../x.png): skipped"
    assert got["top/dog/dev.png"] == "not a regular file (a device or a pipe): skipped"
    assert os.path.islink(a.root / "cat" / "ok-link.png")  # a link inside the archive is made, as from a tar
    assert not (tmp_cache / "up.png").exists() and not (tmp_cache / "archives" / "up.png").exists()
    assert dict(open_archive(arc).skipped) == got  # unpacked once; the second open still reports it
    out = tmp_path / "i.dhi"
    r = CliRunner().invoke(cli, ["index", str(arc), "--model", str(synth_ckpt), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "top/cat/abs-link.png: symbolic link leaving the archive (to /etc/passwd): skipped" in r.output
    assert "/abs.png: member path leaves the archive" in r.output
    assert len(HashIndex.load(out)) == len(REAL) + 2


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_dotdot_after_a_link_is_judged_where_it_lands(kind, tmp_path, tmp_cache):
    """``top/cat/l/../../../../x.png`` with ``l`` a link to ``a/b``: the system follows the link before
    the ``..``, so it lands beside ``top``, inside — and one more ``..`` leaves. A name normalised as
    text puts the first outside the unpacked folder: a .zip did, found while writing these tests."""
    files = {**_images(tmp_path / "src"), "top/cat/a/b/deep.png": b"\x89PNG-not-really"}
    arc = WRITERS[kind](tmp_path / f"l.{kind}", files, {"top/cat/l": ("symlink", "a/b"),
                                                         "top/cat/l/../../../../x.png": ("file", None),
                                                         "top/cat/l/../../../../../out.png": ("file", None)})
    a = open_archive(arc)
    assert dict(a.skipped)["top/cat/l/../../../../../out.png"] == "member path leaves the archive (absolute or with ..): skipped"
    assert (a.root / "x.png").is_file() and (a.root / "top").is_dir()  # beside top/, where the link took it
    assert [p.name for p in (tmp_cache / "archives").iterdir()] == [a.root.name]  # nothing beside the folder
    assert not list(tmp_cache.rglob("out.png"))


def test_a_damaged_zip_member_is_skipped_alone(tmp_path, tmp_cache):
    files = _images(tmp_path / "src")
    arc = _write_zip(tmp_path / "d.zip", files, {})
    data = bytearray(arc.read_bytes())
    with zipfile.ZipFile(arc) as zf:
        info = zf.getinfo("top/dog/1.png")
    start = info.header_offset + 30 + len(info.filename)
    data[start + info.compress_size // 2] ^= 0xFF  # inside its stored bytes: its CRC-32 fails
    arc.write_bytes(bytes(data))
    a = open_archive(arc)
    assert sorted(a.paths) == sorted(p for p in REAL if p != "dog/1.png")
    assert dict(a.skipped) == {"top/dog/1.png": "damaged or unreadable member (Bad CRC-32 for file 'top/dog/1.png'): skipped"}


def test_the_member_limit(monkeypatch):
    assert max_member_bytes() == DEFAULT_MAX_MEMBER_BYTES == 2**30
    monkeypatch.setenv(MAX_MEMBER_BYTES_ENV, "64_000")
    assert max_member_bytes() == 64_000
    for raw in ("lots", "0", "-1", str(2**62 + 1)):
        monkeypatch.setenv(MAX_MEMBER_BYTES_ENV, raw)
        with pytest.raises(ConfigError, match=f"^{MAX_MEMBER_BYTES_ENV} must be a whole number of bytes between 1 and 2\\^62; got"):
            max_member_bytes()


def test_the_member_limit_follows_the_environment(tmp_path, tmp_cache, monkeypatch):
    files = _images(tmp_path / "src")
    arc = _write_tar(tmp_path / "small.tar.gz", {**files, "top/cat/big.png": bytes(5000)}, {})
    monkeypatch.setenv(MAX_MEMBER_BYTES_ENV, "4000")  # the drawn PNGs are ~3 KB
    a = open_archive(arc)
    assert sorted(a.paths) == sorted(REAL)
    assert dict(a.skipped)["top/cat/big.png"].startswith("unpacks to 5000 bytes, more than the limit of 4000 for one member")
    monkeypatch.setenv(MAX_MEMBER_BYTES_ENV, "6000")  # another limit: unpacked again, not the cached folder
    assert "cat/big.png" in open_archive(arc).paths


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_larger_than_the_disk_is_refused_in_one_line(kind, tmp_path, tmp_cache, monkeypatch):
    """Declared sizes (a zip's central directory; a tar's sparse member) are counted before anything is
    written: 1 PiB cannot fit, and nothing is left behind."""
    monkeypatch.setenv(MAX_MEMBER_BYTES_ENV, str(2**62))  # the member limit out of the way
    files = _images(tmp_path / "src")
    arc = (zip_bomb(tmp_path / "p.zip", files, "top/cat/huge.png", 1, declare=2**50) if kind == "zip"
           else tar_sparse(tmp_path / "p.tar.gz", files, "top/cat/huge.png", 2**50))
    with pytest.raises(DataError) as e:
        open_archive(arc)
    msg = str(e.value)
    assert "\n" not in msg and "unpacking it needs more than the" in msg and "free on the disk of the cache folder" in msg
    assert not any((tmp_cache / "archives").iterdir())  # the half-unpacked folder is gone


_BOMBS = """
import json, resource, sys
from pathlib import Path
from deephash import api
ckpt, clean, outdir, *bombs = sys.argv[1:]
api.build_index(clean, ckpt, Path(outdir) / "clean.dhi", progress=False)  # the model loaded and run once: the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = {}
for i, b in enumerate(bombs):
    built = api.build_index(b, ckpt, Path(outdir) / f"{i}.dhi", progress=False)
    out[b] = {"indexed": sorted(built.index.paths), "skipped": dict(built.skipped)}
out["grew_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps(out))
"""


def test_decompression_bombs_are_skipped_with_memory_bounded(tmp_path, synth_archive, synth_ckpt):
    """Inside a .zip: a member of 1.1 GiB of zeros (1 MiB packed); inside a .tar.gz: a sparse member
    declaring 1 PiB, and (the limit lowered to 64 MiB, so that the test reads no gigabyte) 256 MiB of
    zeros; in both an image declaring 10^10 pixels. Each is skipped and reported, the rest indexed, and
    the indexing process's peak memory grows by far less than one bomb."""
    import json

    files = _images(tmp_path / "src")
    files["top/cat/pixels.png"] = bomb_png(100_000, 100_000)
    z = zip_bomb(tmp_path / "z.zip", files, "top/dog/zeros.png", 1100)
    s = tar_sparse(tmp_path / "s.tar.gz", files, "top/dog/sparse.png", 2**50)
    t = tar_gz_bomb(tmp_path / "t.tar.gz", files, "top/dog/zeros.png", 256)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"),
               DEEPHASH_CACHE=str(tmp_path / "cache"))
    env.pop(MAX_MEMBER_BYTES_ENV, None)
    env.pop("DEEPHASH_MAX_PIXELS", None)
    r = subprocess.run([sys.executable, "-c", _BOMBS, str(synth_ckpt), str(synth_archive), str(tmp_path), str(z), str(s)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    res = json.loads(r.stdout.splitlines()[-1])
    env[MAX_MEMBER_BYTES_ENV] = str(64 * MIB)
    r2 = subprocess.run([sys.executable, "-c", _BOMBS, str(synth_ckpt), str(synth_archive), str(tmp_path), str(t)],
                        capture_output=True, text=True, timeout=600, env=env)
    assert r2.returncode == 0 and "Traceback" not in r2.stderr, r2.stderr[-3000:]
    res2 = json.loads(r2.stdout.splitlines()[-1])
    expect = {str(z): ("top/dog/zeros.png", 1100 * MIB, 2**30), str(s): ("top/dog/sparse.png", 2**50, 2**30),
              str(t): ("top/dog/zeros.png", 256 * MIB, 64 * MIB)}
    for arc, (member, size, limit) in expect.items():
        got = (res if arc in res else res2)[arc]
        assert got["indexed"] == sorted(REAL), arc
        assert got["skipped"][member] == (f"unpacks to {size} bytes, more than the limit of {limit} for one member "
                                          f"(a decompression bomb? ${MAX_MEMBER_BYTES_ENV} raises it): skipped"), arc
        assert "declares 10000000000 pixels, more than the limit of 40000000" in got["skipped"]["cat/pixels.png"], arc
        assert len(got["skipped"]) == 2, got["skipped"]
    print(f"peak memory growth while indexing the bombs: {res['grew_kb']} KiB (zip, sparse tar), {res2['grew_kb']} KiB (tar.gz)")
    for grew_kb in (res["grew_kb"], res2["grew_kb"]):
        assert grew_kb < 100_000, (res["grew_kb"], res2["grew_kb"])  # < 100 MB, against 256 MiB .. 1 PiB of bombs
