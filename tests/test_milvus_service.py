"""Milvus behind ``deephash index``, ``search`` and ``serve``, against the real standalone server the session
fixture starts (tests/milvus_fixtures.py; no mock): the CLI path, a model of another identity or bit
length refused, an unreachable server named in one line, and two real ``deephash serve`` replicas
on two ports acting as one service (an add on one found on the other; a remove likewise; 503 while
Milvus is unreachable, and back when it returns).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from deephash.bench.replicas_bench import start_all
from deephash.cli.main import cli
from milvus_fixtures import TcpRelay
from service_helpers import KEY, Server, free_port, png_bytes
from test_index_backends import milvus_uri


def run(*args):
    return CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)


@pytest.fixture(scope="module")
def built(milvus_server, demo_index, small_cifar, tmp_path_factory):
    """``deephash index`` of a copy of the small archive's training split into a Milvus collection,
    with the demo index's model (the demo index itself is the same archive as a local file)."""
    work = tmp_path_factory.mktemp("milvus_cli")
    archive = work / "cifar10"
    shutil.copytree(small_cifar, archive)
    ckpt = demo_index.parent / "itq-64.pt"
    uri = milvus_uri(milvus_server) + f"dh_cli_{os.getpid()}"
    r = run("index", archive, "--split", "train", "--model", ckpt, "--out", uri, "--milvus-index", "flat")
    assert r.exit_code == 0, r.output
    assert f"indexed 300 images (64 bits) into {uri}" in r.output
    yield uri, archive, ckpt, work
    from deephash.index.backend import open_index

    open_index(uri).drop()


def _results(r) -> list[dict]:
    assert r.exit_code == 0, r.output
    return [{k: v for k, v in hit.items()} for hit in json.loads(r.output)["results"]]


def test_cli_index_search_update_on_milvus_answer_like_the_local_index(built, demo_index, small_cifar):
    uri, archive, ckpt, _ = built
    query = next((small_cifar / "test" / "cat").glob("*.jpg"))
    for opts in ([], ["--rerank"], ["--label", "cat"], ["--radius", "12", "-k", "50"]):
        local = _results(run("search", demo_index, query, "--json", *opts))
        remote = _results(run("search", uri, query, "--json", *opts))
        assert remote == local and remote, opts
    # a query file inside the indexed archive is found as itself (by its path) and left out
    inside = sorted((archive / "train" / "dog").glob("*.jpg"))[0]
    hits = _results(run("search", uri, inside, "--json", "--exclude-self", "-k", "5"))
    assert len(hits) == 5 and all(h["path"] != "train/dog/" + inside.name for h in hits)
    hits = _results(run("search", uri, inside, "--json", "-k", "1"))
    assert hits[0]["path"] == "train/dog/" + inside.name and hits[0]["hamming"] == 0
    # --update --prune: one file gone from the archive, one new
    gone = sorted((archive / "train" / "bird").glob("*.jpg"))[0]
    gone.unlink()
    shutil.copyfile(query, archive / "train" / "cat" / "zz_new.jpg")
    r = run("index", archive, "--split", "train", "--model", ckpt, "--out", uri, "--update", "--prune")
    assert r.exit_code == 0, r.output
    assert f"updated {uri}: added 1, removed 1; it holds 300 images" in r.output
    hits = _results(run("search", uri, query, "--json", "-k", "1"))
    assert hits[0]["path"] == "train/cat/zz_new.jpg" and hits[0]["hamming"] == 0 and hits[0]["label"] == "cat"
    every = {h["path"] for h in _results(run("search", uri, query, "--json", "-k", "300"))}
    assert len(every) == 300 and "train/bird/" + gone.name not in every and "train/cat/zz_new.jpg" in every


def test_a_model_of_another_identity_or_length_is_refused(built, demo_index, small_cifar, tmp_path):
    from deephash.backbones import create_backbone
    from deephash.data import open_archive
    from deephash.features import extract_features
    from deephash.hashers import create_hasher

    uri, archive, _, _ = built
    bb = create_backbone("efficientnet-lite0", image_size=32)
    fs = extract_features(open_archive(small_cifar, split="train"), bb, progress=False)  # cached by demo_index
    query = next((small_cifar / "test" / "cat").glob("*.jpg"))
    for bits, seed in ((64, 7), (32, 0)):
        h = create_hasher("itq", bits, seed=seed)
        h.fit(fs.features)
        other = h.save(tmp_path / f"itq-{bits}-{seed}.pt", backbone=bb.name, preprocessing=bb.preprocessing.to_dict())
        r = run("search", uri, query, "--model", other)
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
        assert f"error: {uri} was built with another model (itq, 64 bits, digest" in r.output
        if bits == 64:
            r = run("index", archive, "--split", "train", "--model", other, "--out", uri, "--update")
            assert r.exit_code == 2 and "was built with another model" in r.output


def test_an_unreachable_milvus_is_one_line_naming_the_uri(tmp_path, small_cifar, monkeypatch):
    monkeypatch.setenv("DEEPHASH_MILVUS_TOKEN", "root:never-printed-7f3a")
    uri = f"milvus://127.0.0.1:{free_port()}/nowhere"
    query = next((small_cifar / "test" / "cat").glob("*.jpg"))
    r = run("search", uri + "?timeout=2", query)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert r.output.startswith(f"error: cannot connect to the Milvus server at {uri} within 2 s")
    r = run("serve", uri + "?timeout=2", "--port", free_port(), "--milvus-token", "root:also-secret-19c")
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert r.output.startswith(f"error: cannot connect to the Milvus server at {uri} within 2 s")
    assert "never-printed" not in r.output and "also-secret" not in r.output
    r = run("search", "milvus://127.0.0.1:1/x?color=red", query)
    assert r.exit_code == 2 and "unknown option(s) color" in r.output, r.output


def _search(client: httpx.Client, data: bytes, **params) -> list[dict]:
    r = client.post("/api/search", files={"file": ("q.png", data, "image/png")}, params=params)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_two_serve_replicas_on_one_milvus_act_as_one_service(built, milvus_server, tmp_path):
    uri, _, _, _ = built
    relay = TcpRelay(int(milvus_server.uri.rsplit(":", 1)[1])).start()
    uploads = tmp_path / "shared-uploads"
    a = Server(uri, tmp_path / "a.log", "--api-key", KEY, "--uploads", str(uploads))
    b = Server(uri.replace(f":{milvus_server.uri.rsplit(':', 1)[1]}/", f":{relay.port}/") + "?timeout=2",
               tmp_path / "b.log", "--api-key", KEY, "--uploads", str(uploads))
    t0 = time.monotonic()
    start_all([a, b])
    print(f"replicas up in {time.monotonic() - t0:.1f} s")
    try:
        with a.client(headers={"X-API-Key": KEY}) as ca, b.client(headers={"X-API-Key": KEY}) as cb:
            img = png_bytes(40, 40, seed=11)
            r = ca.post("/api/images", files={"file": ("new.png", img, "image/png")}, data={"label": "cat"})
            assert r.status_code == 201, r.text
            new_id = r.json()["id"]
            assert 2**40 <= new_id < 2**52 and r.json()["count"] == 301
            hits = _search(cb, img, k=3)  # the other replica, right after the acknowledgement
            assert hits[0]["id"] == new_id and hits[0]["hamming"] == 0 and hits[0]["label"] == "cat"
            info = cb.get(f"/api/images/{new_id}").json()
            assert info["path"].startswith("@uploads/") and cb.get(f"/api/images/{new_id}/thumb").status_code == 200
            assert ca.get("/api/stats").json()["uploaded"] == 1 == cb.get("/api/stats").json()["uploaded"]
            r = cb.delete(f"/api/images/{new_id}")
            assert r.status_code == 200 and r.json() == {"id": new_id, "removed": True, "count": 300}
            assert new_id not in {h["id"] for h in _search(ca, img, k=5)}
            r = ca.get(f"/api/images/{new_id}")
            assert r.status_code == 404 and r.json()["detail"].startswith(f"unknown image id {new_id}")
            # the local service's key, limits and error shapes
            for c in (a, b):
                with c.client() as anon:
                    r = anon.post("/api/images", files={"file": ("x.png", img, "image/png")})
                    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]
                    r = anon.get("/api/search/0", params={"k": 5000})
                    assert r.status_code == 422 and r.json()["detail"].startswith("k: Input should be less than or equal to 1000")
            # Milvus unreachable for replica b: a 503 that says so; back when Milvus is
            relay.stop()
            r = cb.get("/api/search/3", params={"k": 3})
            assert r.status_code == 503 and "Milvus" in r.json()["detail"], r.text
            assert cb.get("/health").status_code == 503
            relay.start()
            t0 = time.monotonic()
            deadline = time.monotonic() + 60
            while cb.get("/health").status_code != 200:
                assert time.monotonic() < deadline, "replica b did not recover within 60 s of Milvus returning"
                time.sleep(0.5)
            print(f"replica b answered again {time.monotonic() - t0:.1f} s after Milvus returned")
            r = cb.get("/api/search/3", params={"k": 3})
            assert r.status_code == 200 and r.json()["results"][0]["id"] == 3
    finally:
        a.stop()
        b.stop()
        relay.stop()
