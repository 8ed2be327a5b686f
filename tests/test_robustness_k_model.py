"""Issue 12 items 2 and 3: ``k`` far beyond the index size is capped (never a huge allocation) in
every entry point, and an index refuses a model other than the one that made its codes (a
checkpoint retrained in place: another method or other weights at the same path and bit length)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from deephash import api
from deephash.cli.main import cli
from deephash.errors import ConfigError, DeepHashError
from deephash.index import HashIndex
from robust_fixtures import synth_archive, synth_ckpt  # noqa: F401  (session fixtures)

HUGE = (10**9, 99999999999)


@pytest.fixture(scope="module")
def built(synth_archive, synth_ckpt, tmp_path_factory) -> Path:
    """An index of the 24-image synthetic archive, its checkpoint beside it."""
    d = tmp_path_factory.mktemp("kmodel")
    ck = d / "model.pt"
    shutil.copyfile(synth_ckpt, ck)
    api.build_index(str(synth_archive), ck, d / "index.dhi", progress=False)
    return d / "index.dhi"


def _query(synth_archive) -> Path:
    return sorted((synth_archive / "red").iterdir())[0]


# ----------------------------------------------------------------------------- item 2: k
@pytest.mark.parametrize("k", HUGE)
def test_python_api_caps_k_at_the_index_size(built, synth_archive, k):
    res = api.search(built, [_query(synth_archive)], k=k)
    a = res[0].json
    assert a["k_capped_at"] == 24 and a["count"] == 24
    assert sorted(r["id"] for r in a["results"]) == list(range(24))  # every image, once
    ham = [r["hamming"] for r in a["results"]]
    assert ham == sorted(ham)
    by_id = api.search(built, ids=[3], k=k)[0].json
    assert by_id["k_capped_at"] == 24 and by_id["count"] == 24 and by_id["results"][0]["id"] == 3


@pytest.mark.parametrize("k", HUGE)
def test_query_search_caps_k_for_label_radius_and_rerank(built, k):
    from deephash.query import Query, search

    idx = HashIndex.load(built)
    q = Query.of_id(idx, 0)
    assert len(search(idx, q, k)) == 24
    h = search(idx, q, k, label="red")
    assert h.k_capped_at == 12 and len(h) == 12
    h = search(idx, q, k, radius=16)
    assert len(h) == 24 and h.k_capped_at == 24
    h = search(idx, q, k, rerank=True)
    assert len(h) == 24


@pytest.mark.parametrize("k", [str(x) for x in HUGE])
def test_cli_caps_k_and_says_so(built, synth_archive, k):
    r = CliRunner().invoke(cli, ["search", str(built), str(_query(synth_archive)), "-k", k])
    assert r.exit_code == 0, r.output
    assert "k capped at 24 (the images the index holds)" in r.output
    rows = [ln for ln in r.output.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    assert len(rows) == 24
    j = CliRunner().invoke(cli, ["search", str(built), "--id", "5", "-k", k, "--json"])
    assert j.exit_code == 0 and '"k_capped_at": 24' in j.output


def test_http_caps_k_at_the_index_size_and_refuses_k_over_max_k(built, synth_archive):
    from deephash.service import create_app

    c = TestClient(create_app(built, max_k=100_000))
    r = c.get("/api/search/2", params={"k": 100_000})
    assert r.status_code == 200 and r.json()["count"] == 24 and r.json()["k_capped_at"] == 24
    r = c.post("/api/search", params={"k": 50_000}, files={"file": ("q.png", _query(synth_archive).read_bytes(), "image/png")})
    assert r.status_code == 200 and r.json()["count"] == 24
    for k in HUGE:
        r = c.get("/api/search/2", params={"k": k})
        assert r.status_code == 422 and "100000" in r.text


# ----------------------------------------------------------------------------- item 3: model identity
def _retrain_in_place(ck: Path, synth_archive: Path, method: str, seed: int = 0) -> None:
    """Overwrite ``ck`` with ``method`` fitted on the same features (same backbone, same 16 bits)."""
    from deephash.backbones import create_backbone
    from deephash.data import open_archive
    from deephash.features import extract_features
    from deephash.hashers import create_hasher

    bb = create_backbone("efficientnet-lite0", image_size=32)
    fs = extract_features(open_archive(synth_archive), bb, progress=False)
    h = create_hasher(method, 16, seed=seed)
    h.fit(fs.features)
    h.save(ck, backbone=bb.name, preprocessing=bb.preprocessing.to_dict())


@pytest.fixture()
def index_copy(built, tmp_path) -> Path:
    d = tmp_path / "copy"
    d.mkdir()
    shutil.copyfile(built, d / "index.dhi")
    shutil.copyfile(built.parent / "model.pt", d / "model.pt")
    return d / "index.dhi"


def test_the_index_records_the_models_identity(index_copy):
    from deephash.model import HashModel

    meta = HashIndex.load(index_copy).meta
    ident = HashModel.load(index_copy.parent / "model.pt").identity
    assert meta["model_identity"] == {"method": "itq", "bits": 16, "digest": ident.digest}
    import hashlib

    assert ident.digest == hashlib.sha256((index_copy.parent / "model.pt").read_bytes()).hexdigest()[:16]


@pytest.mark.parametrize("method,seed", [("lsh", 0), ("itq", 7)])
def test_a_checkpoint_retrained_in_place_is_refused_by_search_and_serve(index_copy, synth_archive, method, seed):
    from deephash.service import create_app

    ck = index_copy.parent / "model.pt"
    before = ck.read_bytes()
    _retrain_in_place(ck, synth_archive, method, seed)
    assert ck.read_bytes() != before
    want = "was built with another model (itq, 16 bits, digest"
    with pytest.raises(ConfigError, match=r"was built with another model \(itq, 16 bits"):
        api.search(index_copy, [_query(synth_archive)], k=5)
    with pytest.raises(DeepHashError, match="its codes are not comparable"):
        create_app(index_copy)
    r = CliRunner().invoke(cli, ["search", str(index_copy), "--id", "0"])
    assert r.exit_code == 2 and want in r.output and f"{method}, 16 bits" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(cli, ["serve", str(index_copy), "--port", "1"])
    assert r.exit_code == 2 and want in r.output and "Traceback" not in r.output
    with pytest.raises(ConfigError, match="was built with another model"):
        api.update_index(str(synth_archive), ck, index_copy, progress=False)
    # putting the original back (same bytes, any path) is accepted again
    ck.write_bytes(before)
    assert api.search(index_copy, ids=[0], k=3)[0].json["count"] == 3
    moved = index_copy.parent / "elsewhere.pt"
    shutil.copyfile(ck, moved)
    assert api.search(index_copy, ids=[0], k=3, model=moved)[0].json["count"] == 3
