"""The search benchmark runs end to end on a tiny set and writes the keys the CLI and README rely on (no timing asserted)."""
import json

from deephash.bench.search_bench import make_codes, run_search_bench


def test_bench_writes_the_documented_json(tmp_path):
    out = run_search_bench(3000, 64, 10, 20, 1, True, tmp_path / "out.json", repeats=1, verbose=False,
                           sublinear=("ivf", "mih", "radius"))
    data = json.loads((tmp_path / "out.json").read_text())
    assert set(data["qps"]) >= {"deephash", "faiss_flat", "ceiling"}
    assert data["ratios"]["deephash_vs_faiss"] > 0 and data["config"]["seed"] == 0
    names = {r["index"] for r in out["sublinear"]}
    assert {"ivf", "mih", "radius"} <= names
    assert all(0.0 <= r["recall_at_k"] <= 1.0 for r in out["sublinear"])


def test_clustered_codes_are_seeded_and_clustered():
    a, c = make_codes(500, 64, clustered=True, seed=3)
    b, _ = make_codes(500, 64, clustered=True, seed=3)
    assert (a == b).all() and len(c) == 100
    r, _ = make_codes(10, 64, clustered=False, seed=3)
    assert r.shape == (10, 8)
