"""The CLI end to end on a small real CIFAR-10 archive, and its error behaviour."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from deephash.cli.main import cli


def run(*args, **kw):
    return CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False, **kw)


@pytest.fixture(scope="module")
def demo_out(small_cifar, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    r = run("demo", "--data", small_cifar, "--n-query", 50, "--image-size", 32, "--iters", 300,
            "--out", out, "--json", out / "out.json")
    assert r.exit_code == 0, r.output
    return out, r


def test_demo_writes_the_promised_json(demo_out):
    out, r = demo_out
    j = json.loads((out / "out.json").read_text())
    for key in ("dataset", "bits", "n_query", "n_database", "protocol", "index_path", "map"):
        assert key in j
    assert set(j["map"]) >= {"lsh", "mhcln", "float_knn"}
    assert j["bits"] == 64 and j["n_query"] == 50 and j["n_database"] == 300
    assert "| mhcln |" in r.output and "mAP@1000" in r.output
    assert j["map"]["mhcln"] > j["map"]["lsh"]


def test_search_and_encode_with_the_demo_artifacts(demo_out, small_cifar):
    out, _ = demo_out
    img = next((small_cifar / "test" / "cat").glob("*.jpg"))
    r = run("search", out / "index.dhi", img, "-k", 3, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert len(res["results"]) == 3 and {"id", "hamming", "label", "path"} <= set(res["results"][0])
    r = run("search", out / "index.dhi", img, "-k", 3, "--rerank")
    assert r.exit_code == 0 and "rank" in r.output
    r = run("encode", out / "mhcln-64.pt", img)
    assert r.exit_code == 0 and len(r.output.split()[0]) == 16  # 64 bits in hex


def test_train_and_index_commands(small_cifar, tmp_path):
    ck = tmp_path / "itq.pt"
    r = run("train", small_cifar, "--split", "train", "--method", "itq", "--bits", 16, "--image-size", 32, "--out", ck)
    assert r.exit_code == 0, r.output
    r = run("index", small_cifar, "--split", "test", "--model", ck, "--out", tmp_path / "i.dhi")
    assert r.exit_code == 0 and "indexed 100 images (16 bits)" in r.output


def test_errors_are_one_line_and_nonzero(tmp_path):
    (tmp_path / "bad.jpg").write_text("nope")
    proc = subprocess.run([sys.executable, "-m", "deephash.cli.main", "search", str(tmp_path / "missing.dhi"),
                           str(tmp_path / "bad.jpg")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
    (tmp_path / "empty").mkdir()  # neither images nor class folders (a flat folder of images is an unlabelled archive)
    r = CliRunner().invoke(cli, ["train", str(tmp_path / "empty"), "--out", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and "or one sub-folder per class" in r.output


def test_methods_lists_one_a_line():
    r = run("methods")
    assert "mhcln" in r.output.splitlines() and "lsh" in r.output.splitlines()


def test_protocols_and_evaluate_write_a_report(small_cifar, tmp_path):
    r = run("protocols")
    assert {"cifar10-54k", "cifar10-59k", "cifar10-50k", "folder-split", "leave-one-out"} <= set(r.output.split())
    out = tmp_path / "rep"
    r = run("evaluate", "--dataset", small_cifar, "--protocol", "folder-split", "--method", "itq", "--method", "lsh",
            "--bits", "16,32", "--image-size", 32, "--out", out)
    assert r.exit_code == 0, r.output
    j = json.loads((out / "report.json").read_text())
    rows = {(x["method"], x["bits"]) for x in j["results"]}
    assert {("itq", 16), ("itq", 32), ("lsh", 16), ("lsh", 32)} <= rows
    assert any(b is None for _, b in rows)  # the float-feature ceiling row
    for f in ("report.md", "pr_curves.png", "p_at_k.png", "map_vs_bits.png", "split.json"):
        assert (out / f).is_file(), f
    # the saved split reproduces the same numbers
    r2 = run("evaluate", "--dataset", small_cifar, "--protocol", "folder-split", "--method", "itq", "--bits", "16",
             "--image-size", 32, "--split-file", out / "split.json", "--out", tmp_path / "rep2")
    j2 = json.loads((tmp_path / "rep2" / "report.json").read_text())
    m1 = next(x["map"] for x in j["results"] if x["method"] == "itq" and x["bits"] == 16)
    m2 = next(x["map"] for x in j2["results"] if x["method"] == "itq" and x["bits"] == 16)
    assert m1 == m2
    r = CliRunner().invoke(cli, ["evaluate", "--dataset", str(small_cifar), "--protocol", "nope", "--method", "lsh"])
    assert r.exit_code == 2 and "unknown protocol" in r.output


def test_pq_models_index_and_search_by_asymmetric_distance(small_cifar, tmp_path):
    """A PQ model's index holds codeword indices, not bits: `deephash search` and the service rank
    it by the model's asymmetric distance (checked against a slow sort of query_distances); the
    Hamming-only options are refused with the reason."""
    import numpy as np

    from deephash.index import PQIndex, open_index
    from deephash.model import HashModel

    ck, ix = tmp_path / "pq.pt", tmp_path / "pq.dhi"
    r = run("train", small_cifar, "--split", "train", "--method", "pq", "--bits", 32, "--image-size", 32, "--out", ck)
    assert r.exit_code == 0, r.output
    assert run("index", small_cifar, "--split", "test", "--model", ck, "--out", ix).exit_code == 0
    index = open_index(ix)  # the model's code kind picked the index type; the file's picks it again
    assert type(index) is PQIndex and index.code_kind == "pq" and index.metric == "asymmetric"
    img = next((small_cifar / "test" / "cat").glob("*.jpg"))
    res = json.loads(run("search", ix, img, "-k", 5, "--json").output)
    model = HashModel.load(ck)
    _, feats, _ = model.encode_images([img])
    d = model.hasher.query_distances(feats, index.codes)[0]
    order = sorted(range(len(d)), key=lambda r: (d[r], r))[:5]  # slow obvious ranking, ties by row
    assert [x["id"] for x in res["results"]] == [int(index.ids[r]) for r in order]
    assert np.allclose([x["distance"] for x in res["results"]], d[order], rtol=1e-5)
    assert "distance" in run("search", ix, img, "-k", 2).output
    r = CliRunner().invoke(cli, ["search", str(ix), str(img), "--rerank"])
    assert r.exit_code == 2 and "asymmetric distance" in r.output
    # the service ranks it the same way; Hamming-only options are refused with the reason
    import warnings

    with warnings.catch_warnings():  # starlette's note about a future httpx, raised on import
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from deephash.service import create_app

    client = TestClient(create_app(ix))
    ans = client.post("/api/search", files={"file": ("q.jpg", img.read_bytes(), "image/jpeg")}, params={"k": 5}).json()
    assert [h["id"] for h in ans["results"]] == [x["id"] for x in res["results"]]
    assert all(h.get("hamming") is None and h["distance"] >= 0 for h in ans["results"])
    cat = client.post("/api/search", files={"file": ("q.jpg", img.read_bytes(), "image/jpeg")},
                      params={"k": 5, "label": "cat"}).json()
    assert {h["label"] for h in cat["results"]} == {"cat"}
    by_id = client.get(f"/api/search/{res['results'][0]['id']}", params={"k": 3}).json()
    assert by_id["results"][0]["id"] == res["results"][0]["id"] and by_id["results"][0]["distance"] >= 0
    for bad in ({"radius": 2}, {"rerank": "true"}):
        r = client.post("/api/search", files={"file": ("q.jpg", img.read_bytes(), "image/jpeg")}, params={"k": 5, **bad})
        assert r.status_code == 400 and "asymmetric distance" in r.json()["detail"]
    assert client.get("/api/stats").json()["code_kind"] == "pq"
    # deephash evaluate ranks quantisation codes by asymmetric distance too (never Hamming over codeword
    # bytes); folder-split trains on 200 images, too few for PQ's 256 centroids, so DPQ stands in here
    out = tmp_path / "rep"
    r = run("evaluate", "--dataset", small_cifar, "--protocol", "folder-split", "--method", "dpq", "--method", "itq",
            "--bits", "16", "--image-size", 32, "--out", out)
    assert r.exit_code == 0, r.output
    rows = {x["method"]: x for x in json.loads((out / "report.json").read_text())["results"]}
    assert rows["dpq"]["kind"] == "distances" and rows["dpq"]["distance"] == "asymmetric (pq)"
    assert rows["itq"]["kind"] == "codes" and (out / "report.md").is_file()


def test_index_update_adds_new_images_and_prunes_gone_ones_without_retraining(small_cifar, tmp_path):
    import shutil

    import numpy as np

    from deephash.index import HashIndex

    arch = tmp_path / "arch"
    shutil.copytree(small_cifar, arch)
    ck, ix = tmp_path / "itq.pt", tmp_path / "i.dhi"
    assert run("train", arch, "--split", "train", "--method", "itq", "--bits", 16, "--image-size", 32,
               "--out", ck).exit_code == 0
    assert run("index", arch, "--split", "test", "--model", ck, "--out", ix).exit_code == 0
    on_disk = ix.read_bytes()
    before = HashIndex.load(ix)
    # new scenes arrive (one of a class the index has never seen), two files are deleted
    new = []
    for i, src in enumerate(sorted((arch / "train" / "dog").glob("*.jpg"))[:4]):
        dst = arch / "test" / ("dog" if i < 3 else "wolf") / f"new{i}.jpg"
        dst.parent.mkdir(exist_ok=True)
        shutil.copyfile(src, dst)
        new.append(dst.relative_to(arch).as_posix())
    gone = sorted((arch / "test" / "cat").glob("*.jpg"))[:2]
    for g in gone:
        g.unlink()
    r = run("index", arch, "--split", "test", "--model", ck, "--out", ix, "--update", "--prune")
    assert r.exit_code == 0, r.output
    assert "added 4, removed 2; it holds 102 images" in r.output
    after = HashIndex.load(ix)
    assert len(after) == 102 and set(new) <= set(after.paths)
    assert not {g.relative_to(arch).as_posix() for g in gone} & set(after.paths)
    assert "wolf" in after.class_names and after.label_of_row(after.paths.index(new[3])) == after.class_names.index("wolf")
    assert after.label_of_row(after.paths.index(new[0])) == after.class_names.index("dog")
    kept = [p for p in before.paths if p in set(after.paths)]  # untouched entries keep their codes
    assert np.array_equal(before.codes[[before.paths.index(p) for p in kept]], after.codes[[after.paths.index(p) for p in kept]])
    res = json.loads(run("search", ix, arch / new[1], "-k", 1, "--json").output)
    assert res["results"][0]["path"] == new[1] and res["results"][0]["hamming"] == 0
    # an update that finds nothing new only journals nothing; without new classes it appends to the journal
    shutil.copyfile(arch / new[0], arch / "test" / "dog" / "new9.jpg")
    r = run("index", arch, "--split", "test", "--model", ck, "--out", ix, "--update")
    assert "added 1, removed 0" in r.output and "appended to its journal" in r.output and ix.read_bytes() != on_disk
    assert len(HashIndex.load(ix)) == 103
    # another model's codes are not comparable: refused with the reason
    other = tmp_path / "lsh.pt"
    assert run("train", arch, "--split", "train", "--method", "lsh", "--bits", 16, "--image-size", 32,
               "--out", other).exit_code == 0
    r = CliRunner().invoke(cli, ["index", str(arch), "--split", "test", "--model", str(other), "--out", str(ix), "--update"])
    assert r.exit_code == 2 and "not comparable" in r.output


def test_faiss_uris_build_update_and_search_an_index(small_cifar, tmp_path):
    """``--out faiss-ivf:FILE?...`` builds the file with an IVF structure recorded in it; ``search`` on the
    plain path uses it and says the answer is approximate; ``--update --out faiss-hnsw:FILE`` turns it
    into an HNSW file; a bad parameter is a one-line error."""
    import shutil

    from deephash.index.hash_index import read_header

    arch = tmp_path / "arch"
    shutil.copytree(small_cifar, arch)
    ck, ix = tmp_path / "itq.pt", tmp_path / "i.dhi"
    assert run("train", arch, "--split", "train", "--method", "itq", "--bits", 16, "--image-size", 32,
               "--out", ck).exit_code == 0
    r = run("index", arch, "--split", "test", "--model", ck, "--out", f"faiss-ivf:{ix}?nprobe=2")
    assert r.exit_code == 0 and "indexed 100 images (16 bits)" in r.output, r.output
    assert read_header(ix)["search"] == {"name": "ivf", "nlist": 2, "nprobe": 2}
    q = sorted((arch / "test" / "ship").glob("*.jpg"))[3]
    res = json.loads(run("search", ix, q, "-k", 3, "--json").output)
    assert res["search"]["name"] == "ivf" and res["search"]["exact"] is False
    assert res["results"][0]["path"] == q.relative_to(arch).as_posix() and res["results"][0]["hamming"] == 0
    shutil.copyfile(q, arch / "test" / "ship" / "again.jpg")
    r = run("index", arch, "--split", "test", "--model", ck, "--out", f"faiss-hnsw:{ix}", "--update")
    assert r.exit_code == 0 and "added 1, removed 0; it holds 101 images; rewrote the index file" in r.output, r.output
    assert read_header(ix)["search"]["name"] == "hnsw"
    text = run("search", f"faiss-hnsw:{ix}?ef_search=200", q, "-k", 2).output
    assert "approximate: FAISS hnsw (M=16, ef_construction=40, ef_search=200) may miss neighbours" in text
    r = CliRunner().invoke(cli, ["search", f"faiss-ivf:{ix}?nprobes=2", str(q)])
    assert r.exit_code != 0 and r.output.strip().splitlines()[-1].endswith("faiss-ivf has no parameter 'nprobes'; it takes nlist, nprobe")
