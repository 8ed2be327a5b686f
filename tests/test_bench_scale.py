"""``deephash bench scale`` part (a) on a small database, with and without the real Milvus server of
the test session: its recall is the slow obvious count, and the exact indexes find the exact answer."""
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
    assert rows["FAISS IndexBinaryFlat (1 thread)"]["recall"] == 1.0 and out["machine"]["kernel_isa"] == out["kernel_isa"]
    assert rows["FAISS IndexBinaryIVF nlist 16, nprobe 16"]["recall"] == 1.0  # every list scanned: exact
    assert rows["FAISS IndexBinaryIVF nlist 16, nprobe 1"]["recall"] <= 1.0
    assert json.loads((tmp_path / "s.json").read_text())["rows"] == out["rows"]


def test_scale_bench_random_codes_in_batches_with_one_query_latency(tmp_path):
    out = run_scale_bench(2000, bits=64, k=5, n_queries=12, nlist=8, nprobes=(8,), flip=0.5, batch=5, single=3,
                          say=lambda s: None)
    assert out["codes"] == "100 random centres, 50% of bits flipped" and out["batch"] == 5
    for r in out["rows"]:
        assert r["recall"] == 1.0 and r["latency_ms_single"] > 0  # nprobe = nlist: IVF scans every list


def test_scale_bench_measures_milvus(milvus_server, tmp_path):
    """Milvus's rows against the session's real server: BIN_FLAT is exact, and BIN_IVF_FLAT with every
    list probed is too (milvus-lite is a file, not a server: the part needs a server)."""
    import os

    import pytest

    if milvus_server.kind == "lite":
        pytest.skip("bench scale measures a Milvus server (milvus://HOST:PORT); milvus-lite is a file")
    uri = milvus_server.uri.replace("http://", "milvus://") + f"/dh_bench_scale_{os.getpid()}"
    out = run_scale_bench(2000, bits=64, k=10, n_queries=10, nlist=8, nprobes=(8,), milvus_uri=uri, single=2,
                          milvus_kinds=["flat", "ivf"] if milvus_server.supports_ivf else ["flat"],
                          json_path=tmp_path / "s.json", say=lambda s: None)
    rows = {r["index"]: r for r in out["rows"]}
    assert rows["Milvus BIN_FLAT"]["recall"] == 1.0 and rows["Milvus BIN_FLAT"]["insert_s"] > 0
    if milvus_server.supports_ivf:
        assert rows["Milvus BIN_IVF_FLAT nlist 8, nprobe 8"]["recall"] == 1.0
    assert json.loads((tmp_path / "s.json").read_text())["rows"] == out["rows"]
