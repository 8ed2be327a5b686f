"""One search path (issue 11): the HTTP API, the Python jobs API and the CLI give the same hits for
the same query and options — k, radius, label filter, re-rank, exclude-self — and many queries in
one CLI call give the answers each would give alone (issue 15 item 4)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from service_helpers import Server, copy_index  # noqa: E402

from deephash import api  # noqa: E402
from deephash.cli.main import cli  # noqa: E402
from deephash.index import HashIndex  # noqa: E402

CASES = [
    {"k": 7},
    {"k": 7, "rerank": True},
    {"k": 300, "radius": 24},
    {"k": 5, "label": "cat"},
    {"k": 6, "label": "ship", "rerank": True},
    {"k": 5, "exclude_self": True},
]


def cli_args(case: dict) -> list[str]:
    a = ["-k", str(case["k"])]
    if case.get("radius") is not None:
        a += ["--radius", str(case["radius"])]
    if case.get("label"):
        a += ["--label", case["label"]]
    if case.get("rerank"):
        a.append("--rerank")
    if case.get("exclude_self"):
        a.append("--exclude-self")
    return a


def http_params(case: dict) -> dict:
    return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in case.items()}


def cli_json(*args) -> list[dict]:
    r = CliRunner().invoke(cli, ["search", *map(str, args), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("{") and lines[0].endswith("}") and lines[1].startswith("{"):
        return [json.loads(ln) for ln in lines]  # many queries: one JSON object a line
    return [json.loads(r.output)]


@pytest.fixture(scope="module")
def served(demo_index, tmp_path_factory):
    d = tmp_path_factory.mktemp("paths")
    index = copy_index(demo_index, d / "idx")
    srv = Server(index, d / "server.log").start()
    with srv.client() as http:
        yield index, http
    srv.stop()


def hits(results: list[dict]) -> list[tuple]:
    return [(h["id"], h["hamming"], h.get("feature_distance"), h["label"], h["path"]) for h in results]


@pytest.mark.parametrize("case", [c for c in CASES if not c.get("exclude_self")], ids=str)
def test_an_uploaded_file_gets_the_same_hits_from_http_python_and_cli(served, small_cifar, case):
    index, http = served
    q = sorted((small_cifar / "test" / "cat").glob("*.jpg"))[2]  # not in the index: nothing to exclude
    lib = api.search(index, [q], **case)[0].json["results"]
    r = http.post("/api/search", params=http_params(case), files={"file": ("q.jpg", q.read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    cli_res = cli_json(index, q, *cli_args(case))[0]["results"]
    assert hits(r.json()["results"]) == hits(lib) == hits(cli_res)
    assert lib, "an empty answer would make the comparison vacuous"
    if case.get("radius") is not None:
        assert all(h["hamming"] <= case["radius"] for h in lib)
    if case.get("label"):
        assert {h["label"] for h in lib} == {case["label"]}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_an_indexed_id_gets_the_same_hits_from_http_python_and_cli(served, case):
    index, http = served
    ix = HashIndex.load(index)
    qid = int(ix.ids[11])
    lib = api.search(index, ids=[qid], **case)[0].json["results"]
    r = http.get(f"/api/search/{qid}", params=http_params(case))
    assert r.status_code == 200, r.text
    cli_res = cli_json(index, "--id", qid, *cli_args(case))[0]["results"]
    assert hits(r.json()["results"]) == hits(lib) == hits(cli_res)
    ids = [h["id"] for h in lib]
    if case.get("exclude_self"):
        assert qid not in ids
    elif not case.get("label") or case["label"] == ix.class_names[int(ix.labels[11])]:
        assert ids[0] == qid  # the query itself comes first


def test_an_indexed_file_comes_first_and_exclude_self_leaves_it_out(served, small_cifar):
    index, _ = served
    ix = HashIndex.load(index)
    root = ix.meta["archive_root"]
    q = f"{root}/{ix.paths[20]}"
    first = api.search(index, [q], k=3)[0].json["results"]
    assert first[0]["id"] == int(ix.ids[20]) and first[0]["hamming"] == 0
    more = api.search(index, [q], k=3, exclude_self=True)[0].json["results"]
    assert int(ix.ids[20]) not in [h["id"] for h in more]
    assert [h["id"] for h in more][:2] == [h["id"] for h in first][1:3]


def test_many_queries_in_one_cli_call_answer_as_each_alone(served, small_cifar):
    index, _ = served
    qs = [sorted((small_cifar / "test" / c).glob("*.jpg"))[0] for c in ("dog", "ship", "frog")]
    together = cli_json(index, *qs, "-k", 4, "--rerank")
    assert [a["query"] for a in together] == [str(q) for q in qs]
    for q, a in zip(qs, together):
        alone = cli_json(index, q, "-k", 4, "--rerank")[0]
        assert hits(a["results"]) == hits(alone["results"])
    # a folder expands to its images, in order
    folder = cli_json(index, small_cifar / "test" / "dog", "-k", 2)
    assert len(folder) == len(list((small_cifar / "test" / "dog").glob("*.jpg")))


def test_k_beyond_the_index_is_capped_and_says_so(served):
    index, http = served
    n = len(HashIndex.load(index))
    lib = api.search(index, ids=[0], k=10**9)[0].json
    assert len(lib["results"]) == n and lib.get("k_capped_at") == n
    r = http.get("/api/search/0", params={"k": 10**9})  # the service has its own documented limit on k
    assert r.status_code == 422 and "less than or equal to" in r.text, r.text


def test_a_faiss_uri_answers_alike_from_http_python_and_cli(demo_index, tmp_path):
    """The same ``faiss-hnsw:FILE?...`` name serves, searches from Python and from the CLI; every answer
    and the service's stats say which structure answered and that it is approximate."""
    index = copy_index(demo_index, tmp_path / "idx")
    uri = f"faiss-hnsw:{index}?ef_search=24"
    srv = Server(uri, tmp_path / "server.log").start()
    try:
        with srv.client() as http:
            qid = int(HashIndex.load(index).ids[5])
            for case in ({"k": 7}, {"k": 6, "rerank": True}, {"k": 300, "radius": 20}):
                lib = api.search(uri, ids=[qid], **case)[0].json
                r = http.get(f"/api/search/{qid}", params=http_params(case))
                assert r.status_code == 200, r.text
                cli_res = cli_json(uri, "--id", qid, *cli_args(case))[0]
                assert hits(r.json()["results"]) == hits(lib["results"]) == hits(cli_res["results"]) and lib["results"]
                assert r.json()["search"] == lib["search"] == cli_res["search"]
                assert lib["search"]["name"] == "hnsw" and lib["search"]["ef_search"] == 24 and lib["search"]["exact"] is False
            stats = http.get("/api/stats").json()["search"]
            assert stats["name"] == "hnsw" and stats["exact"] is False
    finally:
        srv.stop()
