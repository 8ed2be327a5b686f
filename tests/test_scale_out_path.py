"""Issue 14's "done when", as one test against the real servers: the three commands a user types.

1. ``deephash index ARCHIVE --engine ray --out milvus://...`` (a CLI process that starts its own
   local 2-worker Ray cluster and writes into the session's real Milvus server),
2. ``deephash serve milvus://...`` twice, on two ports (two processes),
3. a search on each over HTTP: the same hits; then an image added through one replica is found
   by a search on the other right after the add is acknowledged.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service_helpers import KEY, ServeProcess, png_bytes
from synthetic import make_archive
from test_index_backends import milvus_uri
from test_milvus_service import _search

from deephash.bench.replicas_bench import start_all  # noqa: E402  (after the tests' own modules)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """130 synthetic JPEGs (13 per class) and a 32-bit ITQ model fitted on their 32 px features."""
    from deephash.backbones import create_backbone
    from deephash.data import open_archive
    from deephash.features import extract_features
    from deephash.hashers import create_hasher

    work = tmp_path_factory.mktemp("scale_out")
    root = make_archive(work / "arch", {"train": 13}, seed=5)
    bb = create_backbone("efficientnet-lite0", image_size=32)
    fs = extract_features(open_archive(root), bb, progress=False)
    h = create_hasher("itq", 32, seed=0)
    h.fit(fs.features)
    ckpt = h.save(work / "itq-32.pt", backbone=bb.name, preprocessing=bb.preprocessing.to_dict())
    return root, Path(ckpt), work


def test_index_with_ray_into_milvus_then_two_replicas_serve_it_as_one(milvus_server, tiny, tmp_path):
    from deephash.index.backend import open_index

    root, ckpt, _ = tiny
    uri = milvus_uri(milvus_server) + f"dh_done_when_{os.getpid()}"
    env = dict(os.environ, DEEPHASH_CACHE=str(tmp_path / "cache"), DEEPHASH_THREADS="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    # 1. the archive encoded on a local Ray cluster that the command starts (no --address), indexed into Milvus
    p = subprocess.run([sys.executable, "-m", "deephash.cli.main", "index", str(root), "--model", str(ckpt),
                        "--out", uri, "--engine", "ray", "--workers", "2", "--shard-size", "48"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"indexed 130 images (32 bits) into {uri} (ray: 3 shards, 3 encoded, 0 reused" in p.stdout
    # 2. two replicas of the service on that one collection, two ports
    uploads = tmp_path / "shared-uploads"
    a = ServeProcess(uri, tmp_path / "a.log", "--api-key", KEY, "--uploads", str(uploads))
    b = ServeProcess(uri, tmp_path / "b.log", "--api-key", KEY, "--uploads", str(uploads))
    assert a.port != b.port
    try:
        start_all([a, b])
        # 3. a search on each: the same hits, the query image itself first
        query = root / "train" / "ship" / "0002.jpg"
        with a.client(headers={"X-API-Key": KEY}) as ca, b.client(headers={"X-API-Key": KEY}) as cb:
            ha, hb = _search(ca, query.read_bytes(), k=10), _search(cb, query.read_bytes(), k=10)
            assert ha == hb and len(ha) == 10
            assert any(h["path"] == "train/ship/0002.jpg" and h["hamming"] == 0 and h["label"] == "ship" for h in ha)
            # an add through replica a, acknowledged, then found by a search on replica b
            img = png_bytes(40, 40, seed=23)
            r = ca.post("/api/images", files={"file": ("new.png", img, "image/png")}, data={"label": "cat"})
            assert r.status_code == 201, r.text
            new_id = r.json()["id"]
            assert r.json()["count"] == 131
            hits = _search(cb, img, k=3)
            assert any(h["id"] == new_id and h["hamming"] == 0 and h["label"] == "cat" for h in hits)
    finally:
        a.stop()
        b.stop()
        open_index(uri).drop()


def test_replicas_bench_measures_every_setup_under_the_same_load(milvus_server, tiny, tmp_path):
    """``deephash bench replicas`` on the tiny archive: the local-file service, one and two Milvus replicas,
    every request answered, the same hits as the local file, figures consistent with their times, JSON written."""
    import json

    from deephash.bench.replicas_bench import SETUPS, run_replicas_bench

    root, ckpt, _ = tiny
    uri = milvus_uri(milvus_server) + f"dh_bench_replicas_{os.getpid()}"
    lines: list[str] = []
    r = run_replicas_bench(uri, dataset=str(root), n_images=40, model=str(ckpt), image_size=32, requests=12,
                           concurrency=2, warmup=2, json_path=str(tmp_path / "c.json"), say=lines.append)
    assert [(x["setup"], x["mode"]) for x in r["rows"]] == [(s, m) for s in SETUPS for m in ("id", "upload")]
    for row in r["rows"]:
        assert (row["ok"], row["failed"], row["hits_as_local_file"]) == (12, 0, True), row
        assert row["searches_per_s"] == pytest.approx(12 / row["wall_s"], rel=0.02)
        assert row["p50_ms"] <= row["p99_ms"]
    assert r["indexed"] == 40 and json.loads((tmp_path / "c.json").read_text())["rows"] == r["rows"]
    assert any(ln.startswith("| Milvus, 2 replicas | by id (search only) |") for ln in "\n".join(lines).splitlines())
    from deephash.index.backend import open_index
    from deephash.errors import DeepHashError

    with pytest.raises(DeepHashError):  # the bench drops its collection
        open_index(uri)
