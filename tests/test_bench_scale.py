"""``deephash bench scale`` part (a) on a small database (no Milvus: that part runs against a server
in the benchmark itself, measured in docs/scale-out.md): its recall is the slow obvious count."""
from __future__ import annotations

import json

import numpy as np

from deephash.bench.scale_bench import clustered_codes, recall_with_ties, run_scale_bench
from deephash.index import hamming_matrix


def test_recall_with_ties_is_the_share_of_returned_codes_within_the_true_kth_distance():
    codes = clustered_codes(500, 32, 5, 0.1, seed=3)
    queries = clustered_codes(4, 32, 5, 0.1, seed=4)
    rng = np.random.default_rng(0)
    I = rng.integers(-1, 500, (4, 10))  # some padding, some wrong
    d = hamming_matrix(queries, codes)
    kth = np.sort(d, axis=1)[:, 9]
    want = sum(int(d[q, i] <= kth[q]) for q in range(4) for i in I[q] if i >= 0) / I.size
    assert recall_with_ties(kth, codes, queries, I, lambda ids: ids) == want


def test_scale_bench_rows_and_json(tmp_path):
    out = run_scale_bench(3000, bits=32, k=10, n_queries=20, nlist=16, nprobes=(1, 16), json_path=tmp_path / "s.json",
                          say=lambda s: None)
    rows = {r["index"]: r for r in out["rows"]}
    assert out["rows"][0]["index"].startswith("local exact") and out["rows"][0]["recall"] == 1.0
    assert rows["FAISS IndexBinaryIVF nlist 16, nprobe 16"]["recall"] == 1.0  # every list scanned: exact
    assert rows["FAISS IndexBinaryIVF nlist 16, nprobe 1"]["recall"] <= 1.0
    assert json.loads((tmp_path / "s.json").read_text())["rows"] == out["rows"]
