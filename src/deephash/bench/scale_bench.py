"""``deephash bench scale``, part (a): many class-clustered codes in the local exact index, FAISS
``IndexBinaryFlat`` (one thread, the per-core scan rate), a FAISS IVF index and Milvus (BIN_FLAT, and
BIN_IVF_FLAT with an nprobe sweep), side by side in one run.

Codes: ``n`` codes drawn around ``centres`` random class centres with each bit flipped with
probability ``flip`` (deep-hash codes of one class sit close together; ``flip=0.5`` is uniformly
random codes); the queries are drawn the same way, held out. For each index: insert time, memory,
queries/s (the held-out queries in requests of ``batch``, all in one by default; median of 3),
optionally the latency of ``single`` one-query requests, and recall@k against exact search, counted
with ties (a returned code is a hit when its true Hamming distance is at most the true k-th
distance: 64-bit codes have 65 distances and thousands tie at the k-th); ``id_recall`` is the
plain overlap with the exact ids, which measures the tie order, for reference.
Memory: the local index's arrays, FAISS's ``memory_bytes``, Milvus's query-node accounting of
sealed rows and the server's resident memory (``--metrics-url``). Milvus is reached through
:class:`~deephash.index.MilvusIndex` (``metadata=False``: id + code, the layout the issue measures)
at the Bounded consistency level (a benchmark reads after a flush; the service's Strong reads add
one time tick per request).
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

import numpy as np

from deephash.bench.machine import machine_facts, machine_line, write_result
from deephash.errors import ConfigError


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


def id_recall(I: np.ndarray, I_ref: np.ndarray) -> float:
    """Mean share of the exact answer's ids that a search returned (ties make this < 1 even for exact search)."""
    return float(np.mean([len(np.intersect1d(a[a >= 0], b)) / len(b) for a, b in zip(I, I_ref)]))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def _timed_search(search: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], queries: np.ndarray, batch: int,
                  repeats: int = 3) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    """``(D, I)`` of every query, asked in requests of ``batch`` (0: all in one), and the median seconds of ``repeats`` passes."""
    step = batch or len(queries)

    def one_pass() -> tuple[np.ndarray, np.ndarray]:
        parts = [search(queries[s : s + step]) for s in range(0, len(queries), step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    times = []
    for _ in range(repeats):
        r, t = _timed(one_pass)
        times.append(t)
    return r, float(np.median(times))


def _single_ms(search: Callable[[np.ndarray], Any], queries: np.ndarray, n: int) -> float | None:
    """Mean milliseconds of ``n`` one-query requests (None for n = 0)."""
    if n <= 0:
        return None
    _, t = _timed(lambda: [search(queries[i : i + 1]) for i in range(min(n, len(queries)))])
    return round(1000 * t / min(n, len(queries)), 2)


class _Rows:
    """Measures one index's search and appends its row: q/s, recall with ties, id recall, one-query latency."""

    def __init__(self, codes: np.ndarray, queries: np.ndarray, k: int, batch: int, single: int) -> None:
        self.codes, self.queries, self.k, self.batch, self.single = codes, queries, k, batch, single
        self.rows: list[dict[str, Any]] = []
        self.kth: np.ndarray | None = None
        self.I_ref: np.ndarray | None = None

    def measure(self, label: str, search: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], *,
                insert_s: float | None, memory_bytes: int | None, **extra: Any) -> tuple[np.ndarray, np.ndarray]:
        (D, I), t = _timed_search(search, self.queries, self.batch)
        if self.kth is None:  # the first row is the exact reference
            self.kth, self.I_ref = D[:, -1], I
        ident = lambda ids: np.asarray(ids, np.int64)  # noqa: E731  (ids are rows here)
        self.rows.append({"index": label, "insert_s": None if insert_s is None else round(insert_s, 2),
                          "memory_bytes": memory_bytes, "qps": round(len(self.queries) / t, 1),
                          "latency_ms_single": _single_ms(search, self.queries, self.single),
                          "recall": round(recall_with_ties(self.kth, self.codes, self.queries, I, ident), 4),
                          "id_recall": round(id_recall(I, self.I_ref), 4), **extra})
        return D, I


def _faiss_flat_search(codes: np.ndarray, k: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """FAISS ``IndexBinaryFlat`` over ``codes``, searched on one OpenMP thread (the other FAISS rows keep theirs)."""
    from deephash.optional import require

    faiss = require("faiss", "deephash bench scale")
    index = faiss.IndexBinaryFlat(codes.shape[1] * 8)
    index.add(codes)

    def search(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return index.search(q, k)
        finally:
            faiss.omp_set_num_threads(threads)

    return search


def _milvus_rows(rows: _Rows, codes: np.ndarray, uri: str, *, bits: int, nlist: int, nprobes: Sequence[int],
                 kinds: Sequence[str], metrics_url: str | None) -> dict[str, Any]:
    """BIN_FLAT and/or BIN_IVF_FLAT rows on the server at ``uri`` (its collection is dropped first and after);
    returns the server's own memory accounting at each stage (with ``metrics_url``)."""
    from deephash.bench.milvus_metrics import fetch_metrics, resident_mb, sealed_entity_bytes
    from deephash.index.milvus_index import MilvusIndex, parse_milvus_uri

    server, coll, _ = parse_milvus_uri(uri)
    mi = MilvusIndex(server, coll, bits, index_type="BIN_FLAT", metadata=False, consistency_level="Bounded",
                     token=os.environ.get("DEEPHASH_MILVUS_TOKEN", ""), timeout=600)
    if mi._call("look up", mi._client.has_collection, coll):
        mi.drop()
        mi = MilvusIndex(server, coll, bits, index_type="BIN_FLAT", metadata=False, consistency_level="Bounded",
                         token=os.environ.get("DEEPHASH_MILVUS_TOKEN", ""), timeout=600)
    memory: dict[str, Any] = {}

    def server_memory(stage: str) -> int | None:
        if not metrics_url:
            return None
        text = fetch_metrics(metrics_url)
        cid = int(mi._client.describe_collection(coll)["collection_id"])
        memory[stage] = {"querynode": sealed_entity_bytes(text, cid), "server_rss_mb": resident_mb(text)}
        return memory[stage]["querynode"]["sealed_bytes"]

    server_memory("empty collection")
    _, t_ins = _timed(lambda: mi.add(codes, ids=np.arange(len(codes))))
    _, t_flush = _timed(mi.flush)
    mem = server_memory("BIN_FLAT loaded")
    mi.search(rows.queries[:1], rows.k)  # warm
    if "flat" in kinds:
        rows.measure("Milvus BIN_FLAT", lambda q: mi.search(q, rows.k), insert_s=t_ins + t_flush, memory_bytes=mem,
                     flush_s=round(t_flush, 2))
    if "ivf" in kinds:
        _, t_idx = _timed(lambda: mi.set_index("BIN_IVF_FLAT", nlist=nlist))
        mem = server_memory("BIN_IVF_FLAT loaded")
        for p in nprobes:
            mi.search(rows.queries[:1], rows.k, nprobe=p)
            rows.measure(f"Milvus BIN_IVF_FLAT nlist {nlist}, nprobe {p}", lambda q, p=p: mi.search(q, rows.k, nprobe=p),
                         insert_s=t_ins + t_flush + t_idx, memory_bytes=mem, index_build_s=round(t_idx, 2))
    mi.drop()
    return memory


MILVUS_KINDS = ("flat", "ivf")


def run_scale_bench(n: int, *, bits: int = 64, k: int = 100, n_queries: int = 200, milvus_uri: str | None = None,
                    metrics_url: str | None = None, nprobes: Sequence[int] = (1, 4, 16), nlist: int = 1024,
                    centres: int = 100, flip: float = 0.05, batch: int = 0, single: int = 0,
                    milvus_kinds: Sequence[str] = MILVUS_KINDS, seed: int = 0, json_path: str | None = None,
                    say: Callable[[str], None] = print) -> dict[str, Any]:
    from deephash.index import HashIndex, create_ann_index

    if not 0.0 <= flip <= 0.5 or centres < 1 or batch < 0 or single < 0:
        raise ConfigError(f"--flip must be in [0, 0.5], --centres >= 1, --batch and --single >= 0; "
                          f"got {flip}, {centres}, {batch}, {single}")
    bad = [m for m in milvus_kinds if m not in MILVUS_KINDS]
    if bad or not milvus_kinds:
        raise ConfigError(f"--milvus-index takes {', '.join(MILVUS_KINDS)}; got {', '.join(milvus_kinds) or 'none'}")
    machine = machine_facts()
    codes = clustered_codes(n, bits, centres, flip, seed)
    queries = clustered_codes(n_queries, bits, centres, flip, seed)  # same centres (same seed), new noise...
    queries = queries[::-1].copy()  # ...and not the first database rows
    rows = _Rows(codes, queries, k, batch, single)

    local = HashIndex(bits)
    _, t_ins = _timed(lambda: local.add(codes))
    rows.measure(f"local exact ({local.searcher_name}, 1 thread)", lambda q: local.search(q, k), insert_s=t_ins,
                 memory_bytes=int(local.codes.nbytes + local.ids.nbytes))
    flat, t_ins = _timed(lambda: _faiss_flat_search(codes, k))
    rows.measure("FAISS IndexBinaryFlat (1 thread)", flat, insert_s=t_ins, memory_bytes=int(codes.nbytes))
    rows.rows[-1]["codes_scanned_per_s_per_core"] = round(n * rows.rows[-1]["qps"])
    del flat
    ivf = create_ann_index("ivf", n_bits=bits, nlist=nlist, nprobe=nprobes[0])
    _, t_ins = _timed(lambda: ivf.train(codes).add(codes))
    for p in nprobes:
        ivf.set_params(nprobe=p)
        rows.measure(f"FAISS IndexBinaryIVF nlist {nlist}, nprobe {p}", lambda q: ivf.search(q, k), insert_s=t_ins,
                     memory_bytes=int(ivf.memory_bytes()))
    milvus_memory = None
    if milvus_uri:
        milvus_memory = _milvus_rows(rows, codes, milvus_uri, bits=bits, nlist=nlist, nprobes=nprobes,
                                     kinds=milvus_kinds, metrics_url=metrics_url)
    out = {"benchmark": "scale-a", "n": n, "bits": bits, "k": k, "n_queries": n_queries, "seed": seed,
           "codes": f"{centres} random centres, {flip:.0%} of bits flipped", "batch": batch or n_queries,
           "single": single, "kernel_isa": machine["kernel_isa"], "cores": os.cpu_count(),
           "load_average": os.getloadavg(), "machine": machine, "milvus_memory": milvus_memory, "rows": rows.rows}
    say(f"{n:,} {bits}-bit codes around {centres} centres ({flip:.0%} of bits flipped), {n_queries} held-out queries "
        f"in requests of {out['batch']}, k={k}, recall with ties")
    say(machine_line(machine))
    say("| index | insert s | memory MB | queries/s | 1-query ms | recall@k | id recall@k |\n"
        "|---|---:|---:|---:|---:|---:|---:|")
    for r in rows.rows:
        mem = "n/a" if r["memory_bytes"] is None else f"{r['memory_bytes'] / 1e6:.1f}"
        one = "–" if r["latency_ms_single"] is None else r["latency_ms_single"]
        say(f"| {r['index']} | {r['insert_s']} | {mem} | {r['qps']:,} | {one} | {r['recall']} | {r['id_recall']} |")
    if milvus_memory:
        say(f"Milvus's own memory accounting: {milvus_memory}")
    write_result(json_path, out, say)
    return out
