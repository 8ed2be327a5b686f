"""The HTTP service as users meet it: a real ``deephash serve`` process on 127.0.0.1, driven with httpx.

Covers search by upload and by id (checked against the library and brute force), label filter,
radius, re-rank, thumbnails and originals, every kind of bad input (each a 4xx that says what was
wrong), keyed writes that survive a restart, and concurrent searches while a writer adds images.
"""
from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from service_helpers import KEY, Server, bomb_png, copy_index, png_bytes  # noqa: E402

from deephash.index import HashIndex  # noqa: E402
from deephash.codes import hamming_matrix  # noqa: E402

MAX_UPLOAD = 256 * 1024  # the server below runs with --max-upload-mb 0.25


@pytest.fixture(scope="module")
def served(demo_index, small_cifar, tmp_path_factory):
    d = tmp_path_factory.mktemp("served")
    index = copy_index(demo_index, d / "idx")
    # two rows whose recorded paths lead out of the archive, as a tampered index file could
    outside = small_cifar.parent / "outside.jpg"
    shutil.copyfile(next((small_cifar / "train" / "cat").glob("*.jpg")), outside)
    ix = HashIndex.load(index)
    evil = ix.add(ix.codes[:2], paths=["../outside.jpg", "/etc/hostname"], labels=ix.labels[:2], features=ix.features[:2])
    ix.save(index)
    srv = Server(index, d / "server.log", "--api-key", KEY, "--max-upload-mb", "0.25").start()
    with srv.client() as http:
        yield SimpleNamespace(srv=srv, http=http, index=index, evil=[int(i) for i in evil], archive=small_cifar, log=d / "server.log")
    srv.stop()


def jpg(small_cifar, cls="cat", split="test", i=0):
    return sorted((small_cifar / split / cls).glob("*.jpg"))[i]


def upload(path_or_bytes, name="q.jpg"):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return {"file": (name, data, "image/jpeg")}


# ----------------------------------------------------------------------------- reads
def test_health_stats_and_openapi(served):
    h = served.http.get("/health").json()
    assert h == {"status": "ok", "count": 302, "bits": 64}
    s = served.http.get("/api/stats").json()
    assert (s["count"], s["bits"], s["method"], s["backbone"]["name"]) == (302, 64, "itq", "efficientnet-lite0")
    assert s["class_names"][3] == "cat" and s["has_features"] and s["auth"]["writes_enabled"]
    paths = served.http.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/search/{image_id}", "/api/images", "/api/images/{image_id}/thumb", "/health"} <= set(paths)
    page = served.http.get("/")
    assert page.status_code == 200 and "deephash" in page.text and "/static/app.js" in page.text
    assert served.http.get("/static/app.js").status_code == 200


def test_search_by_upload_matches_the_library(served, small_cifar):
    from deephash import api

    q = jpg(small_cifar, "cat")
    r = served.http.post("/api/search", params={"k": 5}, files=upload(q))
    assert r.status_code == 200, r.text
    ans = r.json()
    lib = api.search(served.index, [q], k=5)[0].json
    assert ans["results"] == lib["results"]  # one JSON shape of a hit everywhere
    t = ans["timings_ms"]
    assert all(t[s] is not None and t[s] >= 0 for s in ("decode", "backbone", "hash", "search")) and t["rerank"] is None
    hit = ans["results"][0]
    th = served.http.get(hit["thumb_url"])
    assert th.status_code == 200 and th.headers["content-type"] == "image/jpeg" and th.content[:2] == b"\xff\xd8"
    orig = served.http.get(hit["original_url"])
    root = HashIndex.load(served.index).meta["archive_root"]
    assert orig.status_code == 200 and orig.content == (Path(root) / hit["path"]).read_bytes()


def test_search_by_id_and_its_filters_against_brute_force(served):
    ix = HashIndex.load(served.index)
    qid = int(ix.ids[7])
    code = ix.codes[7:8]
    d = hamming_matrix(code, ix.codes)[0]

    n_same = int((d == 0).sum())  # the query's own code, and any identical ones before it
    ans = served.http.get(f"/api/search/{qid}", params={"k": n_same}).json()
    assert ans["query_id"] == qid and {h["hamming"] for h in ans["results"]} == {0}
    assert [h["id"] for h in ans["results"]] == ix.ids[np.flatnonzero(d == 0)].tolist()
    assert ans["timings_ms"]["decode"] is None and ans["timings_ms"]["search"] is not None

    # label filter: the nearest cats; Hamming ties ordered by the stored float features, then id
    fd = np.sqrt(((ix.features.astype(np.float32) - ix.features[7:8].astype(np.float32)) ** 2).sum(axis=1))
    cat = ix.class_names.index("cat")
    rows = np.flatnonzero(ix.labels == cat)
    want = rows[np.lexsort((ix.ids[rows], fd[rows], d[rows]))][:20]
    got = served.http.get(f"/api/search/{qid}", params={"k": 20, "label": "cat"}).json()["results"]
    assert [h["id"] for h in got] == ix.ids[want].tolist() and {h["label"] for h in got} == {"cat"}

    # radius: every image within it, and nothing else
    radius = int(np.sort(d)[10])
    got = served.http.get(f"/api/search/{qid}", params={"k": 1000, "radius": radius}).json()["results"]
    inside = np.flatnonzero(d <= radius)
    assert [h["id"] for h in got] == ix.ids[inside[np.lexsort((ix.ids[inside], fd[inside], d[inside]))]].tolist()

    # re-rank: the library's DLBHC coarse-to-fine answer
    ref = ix.search_rerank(code, ix.features[7:8].astype(np.float32), 10)[0]
    ans = served.http.get(f"/api/search/{qid}", params={"k": 10, "rerank": "true"}).json()
    assert [h["id"] for h in ans["results"]] == ref.ids.tolist()
    assert np.allclose([h["feature_distance"] for h in ans["results"]], ref.distances, rtol=1e-5)
    assert ans["rerank_pool"] == {"size": ref.pool_size, "radius": ref.radius} and ans["timings_ms"]["rerank"] is not None

    # all three at once
    got = served.http.get(f"/api/search/{qid}", params={"k": 10, "rerank": "true", "label": "cat", "radius": 20}).json()
    assert all(h["label"] == "cat" and h["hamming"] <= 20 for h in got["results"])
    dists = [h["feature_distance"] for h in got["results"]]
    assert dists == sorted(dists)


def test_image_listing_and_info(served):
    page = served.http.get("/api/images", params={"offset": 3, "limit": 4}).json()
    assert page["total"] == 302 and len(page["items"]) == 4
    one = page["items"][0]
    assert served.http.get(f"/api/images/{one['id']}").json() == one
    spread = served.http.get("/api/images", params={"offset": 1, "limit": 10, "step": 30}).json()["items"]
    ix = HashIndex.load(served.index)
    assert [x["id"] for x in spread] == ix.ids[1::30][:10].tolist()
    assert len({x["label"] for x in spread}) == 10  # 30 training images per class, in class order


# ----------------------------------------------------------------------------- bad input
def _truncated(path, frac=0.5) -> bytes:
    data = path.read_bytes()
    return data[: int(len(data) * frac)]


def _chunked_upload(n_bytes: int):
    """A multipart body streamed with chunked transfer encoding (no Content-Length to check up front)."""
    def gen():
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        for _ in range(n_bytes // 65536):
            yield b"0" * 65536
        yield b"\r\n--B--\r\n"
    return {"content": gen(), "headers": {"content-type": "multipart/form-data; boundary=B"}}


BAD = [
    # (name, method, url, kwargs-builder, status, message fragment)
    ("missing upload", "post", "/api/search", lambda s: {}, 400, "no image uploaded"),
    ("field is text, not a file", "post", "/api/search", lambda s: {"data": {"file": "cat.jpg"}}, 422, "file"),
    ("empty upload", "post", "/api/search", lambda s: {"files": upload(b"")}, 400, "empty"),
    ("not an image", "post", "/api/search", lambda s: {"files": upload(b"this is not an image, just text\n" * 10)}, 400, "not a readable image"),
    ("truncated jpeg", "post", "/api/search", lambda s: {"files": upload(_truncated(jpg(s.archive)))}, 400, "truncated"),
    ("truncated png", "post", "/api/search", lambda s: {"files": upload(png_bytes(64, 64)[:3000], "t.png")}, 400, "truncated"),
    ("image bomb (100000^2 px)", "post", "/api/search", lambda s: {"files": upload(bomb_png(100_000, 100_000), "b.png")}, 400, "pixels"),
    ("image bomb (8000^2 px)", "post", "/api/search", lambda s: {"files": upload(bomb_png(8000, 8000), "b.png")}, 400, "more than the limit of 40000000"),
    ("upload just over the limit", "post", "/api/search", lambda s: {"files": upload(b"\xff\xd8" + b"0" * (MAX_UPLOAD + 10))}, 413, "larger than the limit"),
    ("upload far over the limit", "post", "/api/search", lambda s: {"files": upload(b"0" * (3 * 2**20))}, 413, "more than the limit"),
    ("streamed upload over the limit", "post", "/api/search", lambda s: _chunked_upload(2 * 2**20), 413, "larger than the limit"),
    ("unknown id", "get", "/api/search/123456789", lambda s: {}, 404, "unknown image id 123456789"),
    ("id not a number", "get", "/api/search/abc", lambda s: {}, 422, "image_id"),
    ("id negative", "get", "/api/search/-3", lambda s: {}, 422, "image_id"),
    ("id beyond int64", "get", "/api/search/99999999999999999999", lambda s: {}, 422, "image_id"),
    ("k zero", "get", "/api/search/{id}?k=0", lambda s: {}, 422, "k: Input should be greater than or equal to 1"),
    ("k too large", "get", "/api/search/{id}?k=1001", lambda s: {}, 422, "k: Input should be less than or equal to 1000"),
    ("k not a number", "get", "/api/search/{id}?k=ten", lambda s: {}, 422, "k: "),
    ("k too large on upload", "post", "/api/search?k=5000", lambda s: {"files": upload(jpg(s.archive))}, 422, "k: "),
    ("radius negative", "get", "/api/search/{id}?radius=-1", lambda s: {}, 422, "radius"),
    ("radius over the code length", "get", "/api/search/{id}?radius=65", lambda s: {}, 400, "radius must be between 0 and 64"),
    ("unknown label", "get", "/api/search/{id}?label=zebra", lambda s: {}, 400, "unknown class 'zebra'"),
    ("rerank not a boolean", "get", "/api/search/{id}?rerank=maybe", lambda s: {}, 422, "rerank"),
    ("thumbnail size", "get", "/api/images/{id}/thumb?size=5000", lambda s: {}, 422, "size"),
    ("thumbnail of unknown id", "get", "/api/images/987654321/thumb", lambda s: {}, 404, "unknown image id"),
    ("original of unknown id", "get", "/api/images/987654321/original", lambda s: {}, 404, "unknown image id"),
    ("original outside the archive (../)", "get", "/api/images/{evil0}/original", lambda s: {}, 403, "outside the indexed archive"),
    ("original outside the archive (absolute)", "get", "/api/images/{evil1}/original", lambda s: {}, 403, "outside the indexed archive"),
    ("thumbnail outside the archive", "get", "/api/images/{evil0}/thumb", lambda s: {}, 403, "outside the indexed archive"),
    ("static path traversal", "get", "/static/..%2f..%2fservice%2fapp.py", lambda s: {}, 404, ""),
    ("add without a key", "post", "/api/images", lambda s: {"files": upload(jpg(s.archive))}, 401, "need an API key"),
    ("add with a wrong key", "post", "/api/images", lambda s: {"files": upload(jpg(s.archive)), "headers": {"X-API-Key": "wrong-key-000"}}, 403, "wrong API key"),
    ("remove with a wrong key", "delete", "/api/images/{id}", lambda s: {"headers": {"Authorization": "Bearer nope-nope"}}, 403, "wrong API key"),
    ("remove unknown id", "delete", "/api/images/123456789", lambda s: {"headers": {"X-API-Key": KEY}}, 404, "unknown image id"),
    ("add an unknown label", "post", "/api/images", lambda s: {"files": upload(jpg(s.archive)), "data": {"label": "zebra"}, "headers": {"X-API-Key": KEY}}, 400, "unknown class"),
    ("add a non-image", "post", "/api/images", lambda s: {"files": upload(b"GIF89a broken"), "headers": {"X-API-Key": KEY}}, 400, "image"),
    ("unknown endpoint", "get", "/api/nothing-here", lambda s: {}, 404, "no such endpoint"),
    ("wrong method", "put", "/api/search", lambda s: {}, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("name,method,url,kw,status,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_that_says_what_was_wrong(served, name, method, url, kw, status, fragment):
    ix_first = served.http.get("/api/images", params={"limit": 1}).json()["items"][0]["id"]
    url = url.format(id=ix_first, evil0=served.evil[0], evil1=served.evil[1])
    count_before = served.http.get("/health").json()["count"]
    r = served.http.request(method.upper(), url, **kw(served))
    assert r.status_code == status, (name, r.status_code, r.text)
    if fragment:
        body = r.json()
        assert isinstance(body["detail"], str) and fragment in body["detail"], (name, body)
    assert "Traceback" not in r.text and 'File "' not in r.text
    assert served.http.get("/health").json()["count"] == count_before  # nothing was written


# ----------------------------------------------------------------------------- writes
def test_add_remove_and_restart_keeps_acknowledged_writes(served, small_cifar):
    h = {"X-API-Key": KEY}
    before = served.http.get("/health").json()["count"]
    dog = jpg(small_cifar, "dog", i=2)
    r = served.http.post("/api/images", files=upload(dog, "my-dog.jpg"), data={"label": "dog"}, headers=h)
    assert r.status_code == 201, r.text
    added = r.json()
    assert added["label"] == "dog" and added["path"].startswith("@uploads/") and added["count"] == before + 1
    assert served.http.get(added["thumb_url"]).status_code == 200
    assert served.http.get(added["original_url"]).content == dog.read_bytes()
    exact = {"k": 1000, "radius": 0}  # every image with the same code
    hits = served.http.post("/api/search", params=exact, files=upload(dog)).json()["results"]
    assert added["id"] in [x["id"] for x in hits]

    r = served.http.post("/api/images", files=upload(png_bytes(seed=3), "noise.png"), headers=h)
    assert r.status_code == 201 and r.json()["label"] is None
    temp = r.json()
    uploads = served.index.with_name(served.index.name + ".uploads")
    assert (uploads / temp["path"].split("/", 1)[1]).is_file()
    r = served.http.delete(f"/api/images/{temp['id']}", headers=h)
    assert r.status_code == 200 and r.json() == {"id": temp["id"], "removed": True, "count": before + 1}
    assert not (uploads / temp["path"].split("/", 1)[1]).exists()
    assert served.http.get(f"/api/images/{temp['id']}").status_code == 404
    assert served.http.delete(f"/api/images/{temp['id']}", headers=h).status_code == 404

    gone = served.http.get("/api/images", params={"offset": 5, "limit": 1}).json()["items"][0]["id"]
    assert served.http.delete(f"/api/images/{gone}", headers=h).status_code == 200

    served.srv.stop()
    served.srv.start()
    assert served.http.get("/health").json()["count"] == before
    info = served.http.get(f"/api/images/{added['id']}").json()
    assert info["label"] == "dog" and info["path"] == added["path"]
    assert served.http.get(added["thumb_url"]).status_code == 200
    for i in (temp["id"], gone):
        assert served.http.get(f"/api/images/{i}").status_code == 404
    hits = served.http.post("/api/search", params=exact, files=upload(dog)).json()["results"]
    assert added["id"] in [x["id"] for x in hits]
    # ids are never reused, even after a restart
    r = served.http.post("/api/images", files=upload(png_bytes(seed=4), "n.png"), headers=h)
    assert r.json()["id"] > temp["id"]
    served.http.delete(f"/api/images/{r.json()['id']}", headers=h)


# ----------------------------------------------------------------------------- concurrency
def _queries(served, small_cifar, n_ids=8):
    ids = [x["id"] for x in served.http.get("/api/images", params={"offset": 20, "limit": n_ids}).json()["items"]]
    qs = [("get", f"/api/search/{i}", {"k": 10}, None) for i in ids]
    qs += [("get", f"/api/search/{ids[0]}", {"k": 10, "rerank": "true"}, None),
           ("get", f"/api/search/{ids[1]}", {"k": 10, "label": "ship"}, None)]
    qs += [("post", "/api/search", {"k": 10}, jpg(small_cifar, c)) for c in ("cat", "ship", "frog")]
    return qs


def _ask(http, q):
    method, url, params, f = q
    r = http.post(url, params=params, files=upload(f)) if method == "post" else http.get(url, params=params)
    assert r.status_code == 200, r.text
    return [(h["id"], h["hamming"], round(h.get("feature_distance") or 0.0, 4)) for h in r.json()["results"]]


def test_concurrent_searches_equal_sequential_ones(served, small_cifar):
    qs = _queries(served, small_cifar)
    sequential = [_ask(served.http, q) for q in qs]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda q: _ask(served.http, q), qs * 3))
    assert concurrent == sequential * 3


def test_searches_keep_answering_and_agree_while_a_writer_adds(served, small_cifar):
    # k above the index size: the full ranking, so images added meanwhile can be set aside exactly
    qs = [(m, u, {**p, "k": 1000}, f) for m, u, p, f in _queries(served, small_cifar) if "rerank" not in p]
    sequential = [_ask(served.http, q) for q in qs]
    original = {x["id"] for x in served.http.get("/api/images", params={"limit": 1000}).json()["items"]}
    added: list[int] = []
    stop = threading.Event()

    def writer():
        with served.srv.client(headers={"X-API-Key": KEY}) as w:
            for i, f in enumerate(sorted((small_cifar / "test" / "airplane").glob("*.jpg"))[:4]):
                r = w.post("/api/images", files=upload(f, f"plane{i}.jpg"), data={"label": "airplane"})
                assert r.status_code == 201, r.text
                added.append(r.json()["id"])
        stop.set()

    t = threading.Thread(target=writer)
    t.start()
    rounds = 0
    with ThreadPoolExecutor(6) as pool:
        while not stop.is_set() or rounds < 2:
            answers = list(pool.map(lambda q: _ask(served.http, q), qs))
            for got, want in zip(answers, sequential):
                assert [x for x in got if x[0] in original] == want
            rounds += 1
    t.join()
    assert len(added) == 4 and rounds >= 2
    after = [_ask(served.http, q) for q in qs]
    for got, want in zip(after, sequential):
        assert [x for x in got if x[0] not in added] == want
    for i in added:
        assert served.http.delete(f"/api/images/{i}", headers={"X-API-Key": KEY}).status_code == 200


def test_no_request_reached_the_catch_all_handler(served):
    assert served.http.get("/api/stats").json()["internal_errors"] == 0
    log = served.log.read_text()
    assert "Traceback" not in log and "unhandled error" not in log
