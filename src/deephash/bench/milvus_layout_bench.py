"""``deephash bench milvus-layout``: what one image costs in Milvus in deephash's layout, measured.

Builds a collection through :func:`deephash.index.backend.new_index` exactly as ``deephash index
--out milvus://...`` does — 64-bit codes (BINARY_VECTOR), ids, paths (VARCHAR) and labels (JSON) in
``COLLECTION``, float features in ``COLLECTION__features`` (FLOAT_VECTOR) — from synthetic
class-clustered codes and random features, seals both (flush), and reads the query node's own
accounting of sealed rows (``milvus_querynode_entity_size`` / ``_entity_num`` per collection on
the server's ``/metrics``). Also times the insert and one query through :func:`deephash.query.search`
(Strong consistency, as the service reads) with and without re-ranking.
"""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np

from deephash.bench.machine import machine_facts, write_result
from deephash.bench.milvus_metrics import fetch_metrics, sealed_entity_bytes


def run_milvus_layout_bench(uri: str, *, n: int = 20_000, bits: int = 64, dim: int = 1280, n_queries: int = 30,
                            metrics_url: str | None = None, seed: int = 0, json_path: str | None = None,
                            say: Callable[[str], None] = print) -> dict[str, Any]:
    from deephash import query as Q
    from deephash.errors import DataError
    from deephash.index.backend import new_index, open_index

    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (10, bits), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    codes = np.packbits(centres[y] ^ (rng.random((n, bits)) < 0.05).astype(np.uint8), axis=1)
    feats = rng.normal(size=(n, dim)).astype(np.float32)
    paths = [f"train/class{c}/{i:07d}.jpg" for i, c in enumerate(y)]
    try:
        open_index(uri).drop()
    except DataError:
        pass
    ix = new_index(uri, bits, class_names=[f"class{c}" for c in range(10)], meta={"bench": "milvus-layout"},
                   feature_dim=dim, labels="single", index_type="flat")
    t = time.perf_counter()
    for s in range(0, n, 5000):
        ix.add(codes[s : s + 5000], ids=np.arange(s, min(n, s + 5000)), paths=paths[s : s + 5000], labels=y[s : s + 5000],
               features=feats[s : s + 5000])
    insert_s = time.perf_counter() - t
    t = time.perf_counter()
    ix.flush()
    flush_s = time.perf_counter() - t
    lat: dict[str, list[float]] = {"hamming": [], "rerank": []}
    for qi in rng.choice(n, n_queries, replace=False):
        q = Q.Query(codes[qi : qi + 1], feats[qi : qi + 1])
        for mode in lat:
            t = time.perf_counter()
            Q.search(ix, q, 10, rerank=mode == "rerank" or None)
            lat[mode].append((time.perf_counter() - t) * 1000)
    mem = None
    if metrics_url:
        c = ix._client
        ids = {name: int(c.describe_collection(name)["collection_id"]) for name in (ix.collection, ix.features_collection)}
        text = fetch_metrics(metrics_url)
        mem = {"codes, ids, paths, labels": sealed_entity_bytes(text, ids[ix.collection]),
               "features": sealed_entity_bytes(text, ids[ix.features_collection])}
    out = {"benchmark": "milvus-layout", "machine": machine_facts(), "uri": ix.location, "n": n, "bits": bits, "feature_dim": dim, "seed": seed,
           "mean_path_bytes": float(np.mean([len(p) for p in paths])), "insert_s": round(insert_s, 2),
           "insert_rows_per_s": round(n / insert_s), "flush_s": round(flush_s, 2),
           "query_ms_median": {m: round(statistics.median(v), 1) for m, v in lat.items()}, "querynode_memory": mem}
    say(f"deephash's Milvus layout, {n:,} images, {bits}-bit codes, {dim}-dim float32 features ({ix.location}):")
    say("| part | bytes per image (query node, sealed) |\n|---|---:|")
    for part, m in (mem or {}).items():
        say(f"| {part} | {m['bytes_per_row']} |")
    say(f"insert {insert_s:.1f} s ({n / insert_s:,.0f} images/s), flush {flush_s:.1f} s; one query (k=10, Strong): "
        f"{out['query_ms_median']['hamming']} ms Hamming, {out['query_ms_median']['rerank']} ms with re-rank (median)")
    ix.drop()
    write_result(json_path, out, say)
    return out
