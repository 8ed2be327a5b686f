"""Issue 12 item 1: file names that are not valid UTF-8 (Linux names are bytes) are indexed,
stored losslessly, shown readably, and survive save/load, the journal, the CLI and the service."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deephash.cli.main import cli
from deephash.data import open_archive
from deephash.names import display_path
from deephash.index.hash_index import HashIndex
from robust_fixtures import synth_archive, synth_ckpt  # noqa: F401  (session fixtures)

BAD = b"caf\xe9-\xff.jpg"  # Latin-1 bytes: not UTF-8


@pytest.fixture()
def bytes_archive(synth_archive, tmp_path) -> Path:
    """A two-class folder archive in which two files have names that are not UTF-8."""
    root = tmp_path / "arch"
    src = sorted((synth_archive / "blue").iterdir())[:4] + sorted((synth_archive / "red").iterdir())[:4]
    for i, f in enumerate(src):
        d = root / {"blue": "cat", "red": "dog"}[f.parent.name]
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, d / f.name)
    shutil.copyfile(src[0], os.path.join(os.fsencode(root / "cat"), BAD))
    shutil.copyfile(src[5], os.path.join(os.fsencode(root / "dog"), b"new\nline \x80.png"))
    return root


def test_display_path_is_readable_and_printable():
    p = os.fsdecode(b"cat/caf\xe9 \n.jpg")
    shown = display_path(p)
    assert shown == "cat/caf\\xe9 \\n.jpg"
    shown.encode("utf-8")  # printable anywhere
    assert display_path("cat/é.jpg") == "cat/é.jpg"


def test_archive_lists_bytes_names(bytes_archive):
    a = open_archive(bytes_archive)
    raw = {os.fsencode(p) for p in a.paths}
    assert b"cat/" + BAD in raw and b"dog/new\nline \x80.png" in raw
    assert len(a) == 10


def test_index_save_load_journal_roundtrip(bytes_archive, synth_ckpt, tmp_path):
    from deephash.pipeline import build_index

    a = open_archive(bytes_archive)
    ckpt = synth_ckpt
    out = tmp_path / "names.dhi"
    idx, skipped = build_index(a, ckpt, out, progress=False)
    assert not skipped and len(idx) == 10
    back = HashIndex.load(out)
    assert back.paths == idx.paths
    assert {os.fsencode(p) for p in back.paths} == {os.fsencode(p) for p in a.paths}
    # through the journal: add one more bytes-named row, reload without a save
    new = back.add(back.codes[:1], paths=[os.fsdecode(b"cat/\xfe\xfd.jpg")], labels=back.labels[:1],
                   features=back.features[:1] if back.features is not None else None)
    back.log_added(new)
    again = HashIndex.load(out)
    assert again.paths[-1] == os.fsdecode(b"cat/\xfe\xfd.jpg")
    again.save(out)
    assert HashIndex.load(out).paths == again.paths


def test_old_index_files_still_load(tmp_path):
    """Files of format 1 store the paths as newline-separated UTF-8: still read."""
    ix = HashIndex(8, searcher="numpy")
    ix.add(np.zeros((2, 1), np.uint8), paths=["a/é.jpg", "b/x.png"])
    p = ix.save(tmp_path / "old.dhi")
    # rewrite it as an old writer did: paths "\n"-joined, no path encoding field
    from deephash.index import hash_index as H

    data = p.read_bytes()
    assert HashIndex.load(p).paths == ["a/é.jpg", "b/x.png"]
    import json, struct, zlib

    magic, ver, flags, hlen = H._PREAMBLE.unpack_from(data, 0)
    header = json.loads(data[H._PREAMBLE.size:H._PREAMBLE.size + hlen])
    header.pop("path_encoding", None)
    body = data[H._PREAMBLE.size + hlen:]
    arrays, pos = {}, 0
    for s in header["arrays"]:
        arrays[s["name"]] = body[pos:pos + s["nbytes"]]
        pos += s["nbytes"]
    arrays["paths"] = "a/é.jpg\nb/x.png".encode("utf-8")
    off = 0
    for s in header["arrays"]:
        b = arrays[s["name"]]
        s.update(offset=off, nbytes=len(b), shape=[len(b)] if s["name"] == "paths" else s["shape"],
                 crc32=zlib.crc32(b) & 0xFFFFFFFF)
        off += len(b)
    header.pop("token", None)
    hb = json.dumps(header).encode()
    p.write_bytes(H._PREAMBLE.pack(magic, 1, 0, len(hb)) + hb + b"".join(arrays[s["name"]] for s in header["arrays"]) + H._TRAILER)
    assert HashIndex.load(p).paths == ["a/é.jpg", "b/x.png"]


def test_cli_index_and_search_with_bytes_names(bytes_archive, synth_ckpt, tmp_path):
    ckpt = synth_ckpt
    out = tmp_path / "cli.dhi"
    r = CliRunner().invoke(cli, ["index", str(bytes_archive), "--model", str(ckpt), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "indexed 10 images" in r.output
    q = os.path.join(os.fsencode(bytes_archive / "cat"), BAD)
    r = CliRunner().invoke(cli, ["search", str(out), os.fsdecode(q), "-k", "10"])
    assert r.exit_code == 0, r.output
    assert "caf\\xe9-\\xff.jpg" in r.output


def test_service_json_and_thumbnail_with_bytes_names(bytes_archive, synth_ckpt, tmp_path):
    from fastapi.testclient import TestClient

    from deephash.pipeline import build_index
    from deephash.service import create_app

    out = tmp_path / "svc.dhi"
    shutil.copyfile(synth_ckpt, tmp_path / "itq-64.pt")
    build_index(open_archive(bytes_archive), tmp_path / "itq-64.pt", out, progress=False)
    ix = HashIndex.load(out)
    row = [os.fsencode(p) for p in ix.paths].index(b"cat/" + BAD)
    image_id = int(ix.ids[row])
    with TestClient(create_app(out)) as c:
        r = c.get(f"/api/images/{image_id}")
        assert r.status_code == 200, r.text
        assert r.json()["path"] == "cat/caf\\xe9-\\xff.jpg"
        r = c.get(f"/api/images/{image_id}/thumb")
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/")
        r = c.get("/api/images", params={"limit": 100})
        assert r.status_code == 200, r.text


def test_targz_with_bytes_names_indexes(bytes_archive, synth_ckpt, tmp_path, tmp_cache):
    import tarfile

    from deephash.pipeline import build_index

    tgz = tmp_path / "arch.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(bytes_archive, arcname="arch")
    a = open_archive(tgz)
    assert b"cat/" + BAD in {os.fsencode(p) for p in a.paths}
    idx, skipped = build_index(a, synth_ckpt, tmp_path / "t.dhi", progress=False)
    assert len(idx) == 10 and HashIndex.load(tmp_path / "t.dhi").paths == idx.paths
