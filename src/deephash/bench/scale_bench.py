"""``deephash bench scale``, part (a): many class-clustered codes in the local exact index, a FAISS IVF
index and Milvus (BIN_FLAT, and BIN_IVF_FLAT with an nprobe sweep), side by side in one run.

For each: insert time, memory, queries/s (all held-out queries in one call, median of 3) and recall@k
against exact search, counted with ties (a returned code is a hit when its true Hamming distance
is at most the true k-th distance: 64-bit codes have 65 distances and thousands tie at the k-th).
Memory: the local index's arrays, FAISS's ``memory_bytes``, Milvus's query-node accounting of
sealed rows (``--metrics-url``). Milvus is reached through :class:`~deephash.index.MilvusIndex`
(``metadata=False``: id + code, the layout the issue measures) at the Bounded consistency level
(a benchmark reads after a flush; the service's Strong reads add one time tick per request).
"""
from __future__ import annotations

import os
import re
import time
import urllib.request
from typing import Any, Callable, Sequence

import numpy as np

from deephash.utils import atomic_write_json


def clustered_codes(n: int, bits: int, n_centres: int, flip: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (n_centres, bits), dtype=np.uint8)
    out = np.empty((n, bits // 8), np.uint8)
    for s in range(0, n, 200_000):
        m = min(n, s + 200_000) - s
        y = rng.integers(0, n_centres, m)
        out[s : s + m] = np.packbits(centres[y] ^ (rng.random((m, bits)) < flip).astype(np.uint8), axis=1)
    return out


def recall_with_ties(D_true_kth: np.ndarray, codes: np.ndarray, queries: np.ndarray, I: np.ndarray,
                     id_to_row: Callable[[np.ndarray], np.ndarray]) -> float:
    """Share of returned ids whose true distance is <= the true k-th distance (padding -1 counts as a miss)."""
    from deephash.index import hamming_matrix

    hits = total = 0
    for qi in range(len(queries)):
        ids = I[qi]
        ok = ids >= 0
        rows = id_to_row(ids[ok])
        d = hamming_matrix(queries[qi : qi + 1], codes[rows])[0] if len(rows) else np.zeros(0)
        hits += int((d <= D_true_kth[qi]).sum())
        total += len(ids)
    return hits / total


def _sealed_bytes(metrics_url: str, collection_id: int) -> dict[str, Any]:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    size = num = 0.0
    for line in text.splitlines():
        if f'collection_id="{collection_id}"' in line and 'segment_state="Sealed"' in line:
            m = re.match(r"milvus_querynode_entity_(size|num)\{.*\}\s+(\S+)$", line)
            if m and m.group(1) == "size":
                size += float(m.group(2))
            elif m:
                num += float(m.group(2))
    return {"sealed_rows": int(num), "bytes": int(size), "bytes_per_code": round(size / num, 1) if num else None}


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def _timed_search(fn: Callable[[], Any], repeats: int = 3) -> tuple[Any, float]:
    """The result and the median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        r, t = _timed(fn)
        times.append(t)
    return r, float(np.median(times))


def run_scale_bench(n: int, *, bits: int = 64, k: int = 100, n_queries: int = 200, milvus_uri: str | None = None,
                    metrics_url: str | None = None, nprobes: Sequence[int] = (1, 4, 16), nlist: int = 1024,
                    seed: int = 0, json_path: str | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    from deephash.index import HashIndex, create_ann_index, kernel_available
    from deephash.index.kernel_searcher import kernel_isa

    codes = clustered_codes(n, bits, 100, 0.05, seed)
    queries = clustered_codes(n_queries, bits, 100, 0.05, seed)  # same centres (same seed), new noise...
    queries = queries[::-1].copy()  # ...and not the first database rows
    rows: list[dict[str, Any]] = []

    local = HashIndex(bits)
    _, t_ins = _timed(lambda: local.add(codes))
    (D_ref, I_ref), t_q = _timed_search(lambda: local.search(queries, k))
    kth = D_ref[:, -1]
    ident = lambda ids: np.asarray(ids, np.int64)  # noqa: E731  (ids are rows here)
    rows.append({"index": f"local exact ({local.searcher_name}, 1 thread)", "insert_s": round(t_ins, 2),
                 "memory_bytes": int(local.codes.nbytes + local.ids.nbytes), "qps": round(n_queries / t_q, 1),
                 "recall": recall_with_ties(kth, codes, queries, I_ref, ident)})
    ivf = create_ann_index("ivf", n_bits=bits, nlist=nlist, nprobe=nprobes[0])
    _, t_ins = _timed(lambda: ivf.train(codes).add(codes))
    for p in nprobes:
        ivf.set_params(nprobe=p)
        (D, I), t_q = _timed_search(lambda: ivf.search(queries, k))
        rows.append({"index": f"FAISS IndexBinaryIVF nlist {nlist}, nprobe {p}", "insert_s": round(t_ins, 2),
                     "memory_bytes": int(ivf.memory_bytes()), "qps": round(n_queries / t_q, 1),
                     "recall": recall_with_ties(kth, codes, queries, I, ident)})
    if milvus_uri:
        from deephash.index.milvus_index import MilvusIndex, parse_milvus_uri

        server, coll, _ = parse_milvus_uri(milvus_uri)
        mi = MilvusIndex(server, coll, bits, index_type="BIN_FLAT", metadata=False, consistency_level="Bounded",
                         token=os.environ.get("DEEPHASH_MILVUS_TOKEN", ""), timeout=600)
        if mi._call("look up", mi._client.has_collection, coll):
            mi.drop()
        _, t_ins = _timed(lambda: mi.add(codes, ids=np.arange(n)))
        _, t_flush = _timed(mi.flush)
        cid = int(mi._client.describe_collection(coll)["collection_id"])
        mem = _sealed_bytes(metrics_url, cid)["bytes"] if metrics_url else None
        mi.search(queries[:1], k)  # warm
        (D, I), t_q = _timed_search(lambda: mi.search(queries, k))
        rows.append({"index": "Milvus BIN_FLAT", "insert_s": round(t_ins + t_flush, 2), "memory_bytes": mem,
                     "qps": round(n_queries / t_q, 1), "recall": recall_with_ties(kth, codes, queries, I, ident)})
        _, t_idx = _timed(lambda: mi.set_index("BIN_IVF_FLAT", nlist=nlist))
        mem = _sealed_bytes(metrics_url, cid)["bytes"] if metrics_url else None
        for p in nprobes:
            mi.search(queries[:1], k, nprobe=p)
            (D, I), t_q = _timed_search(lambda: mi.search(queries, k, nprobe=p))
            rows.append({"index": f"Milvus BIN_IVF_FLAT nlist {nlist}, nprobe {p}", "insert_s": round(t_ins + t_flush + t_idx, 2),
                         "memory_bytes": mem, "qps": round(n_queries / t_q, 1),
                         "recall": recall_with_ties(kth, codes, queries, I, ident)})
        mi.drop()
    for r in rows:
        r["recall"] = round(r["recall"], 4)
    out = {"benchmark": "scale-a", "n": n, "bits": bits, "k": k, "n_queries": n_queries, "seed": seed,
           "codes": "100 random centres, 5 % of bits flipped", "kernel_isa": kernel_isa() if kernel_available() else None,
           "cores": os.cpu_count(), "load_average": os.getloadavg(), "rows": rows}
    say(f"{n:,} class-clustered {bits}-bit codes, {n_queries} held-out queries, k={k}, recall with ties; "
        f"kernel ISA {out['kernel_isa']}; {os.cpu_count()} cores, load average {out['load_average'][0]:.1f}")
    say("| index | insert s | memory MB | queries/s | recall@k |\n|---|---:|---:|---:|---:|")
    for r in rows:
        mem = "n/a" if r["memory_bytes"] is None else f"{r['memory_bytes'] / 1e6:.1f}"
        say(f"| {r['index']} | {r['insert_s']} | {mem} | {r['qps']:,} | {r['recall']} |")
    if json_path:
        atomic_write_json(json_path, out)
        say(f"wrote {json_path}")
    return out
