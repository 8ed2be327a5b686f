"""Search benchmark: deephash's exact kernel vs FAISS IndexBinaryFlat vs the hardware ceiling, plus
the sub-linear indexes' speed / recall / build time / memory, all measured in one run.

- ``deephash``: :class:`~deephash.index.kernel_searcher.KernelSearcher` (exact, ties by row).
- ``faiss_flat``: raw ``faiss.IndexBinaryFlat.search`` with the same thread count (no tie re-ordering,
  so FAISS is timed doing strictly less work than deephash).
- ``ceiling``: the kernel's ``ceiling`` pass — XOR + popcount of every (query, code) pair summed, no
  top-k — with the fastest code path the project has (AVX-512 VPOPCNTDQ where present, 4 queries per
  database load, queries batched over cache-sized blocks). ``ceiling_stream`` is the same pass one
  query at a time (a plain streaming scan), reported for reference.

Each method is timed ``repeats`` times, interleaved (A, B, C, A, B, C, ...), and the median is reported.
Codes are synthetic and seeded: ``clustered=True`` draws each code from one of ``n_classes`` random
centres with every bit flipped with probability ``flip`` (trained deep-hash codes cluster by class
like this); ``clustered=False`` draws uniform random codes.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deephash.errors import ConfigError
from deephash.index.codes import check_n_bits
from deephash.optional import require
from deephash.utils import atomic_write_json

DEFAULT_SUBLINEAR: dict[str, list[dict[str, Any]]] = {
    # build parameters -> the search settings swept on the built index
    "ivf": [{"build": {"nlist": 1024}, "sweep": [{"nprobe": p} for p in (1, 2, 4, 8, 16, 32)]}],
    "hnsw": [{"build": {"M": 16, "ef_construction": 40}, "sweep": [{"ef_search": e} for e in (16, 64, 128, 256)]}],
    "mih": [{"build": {}, "sweep": [{"nflip": f} for f in (0, 1, 2)]}],
}


def make_codes(n: int, n_bits: int, *, clustered: bool, seed: int, n_classes: int = 100, flip: float = 0.08,
               centres: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(codes uint8 (n, n_bits/8), centres)``; random codes when ``clustered`` is False (centres is then empty)."""
    rng = np.random.default_rng(seed)
    nb = n_bits // 8
    if not clustered:
        return rng.integers(0, 256, (n, nb), dtype=np.uint8), np.zeros((0, nb), np.uint8)
    if centres is None:
        centres = rng.integers(0, 256, (n_classes, nb), dtype=np.uint8)
    out = np.empty((n, nb), np.uint8)
    step = 131_072
    for s in range(0, n, step):
        m = min(step, n - s)
        flips = np.packbits(rng.random((m, n_bits), dtype=np.float32) < flip, axis=1)
        out[s : s + m] = centres[rng.integers(0, len(centres), m)] ^ flips
    return out, centres


def _timed(fn) -> tuple[float, Any]:
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_search_bench(
    n: int = 1_000_000,
    bits: int = 64,
    k: int = 100,
    n_queries: int = 1000,
    threads: int = 1,
    clustered: bool = True,
    json_path: str | os.PathLike | None = None,
    *,
    repeats: int = 5,
    seed: int = 0,
    sublinear: Sequence[str] | None = ("ivf", "hnsw", "mih", "radius"),
    radius: int = 2,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run the search benchmark, print Markdown tables, write JSON (when ``json_path``) and return the dict.

    The dict holds at least ``{"qps": {"deephash", "faiss_flat", "ceiling"}}`` (medians over
    ``repeats``), the ratios between them, every run's raw numbers, and one row per sub-linear
    index setting (build seconds, memory MB, QPS, tie-aware recall@k against exact search).
    """
    faiss = require("faiss", "the search benchmark")

    from deephash.index.faiss_indexes import create_ann_index, recall_at_k
    from deephash.index.kernel_searcher import KernelSearcher, kernel_available, kernel_isa

    bits = check_n_bits(bits)
    for name, v in (("n", n), ("k", k), ("n_queries", n_queries), ("threads", threads), ("repeats", repeats)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name} must be a positive integer; got {v!r}")
    if not kernel_available():
        raise ConfigError("the search benchmark needs deephash's C kernel (deephash.index._hamming); reinstall with pip install .")
    say = print if verbose else (lambda *a, **kw: None)

    t_gen, (db, centres) = _timed(lambda: make_codes(n, bits, clustered=clustered, seed=seed))
    q, _ = make_codes(n_queries, bits, clustered=clustered, seed=seed + 1, centres=centres if clustered else None)
    say(f"# deephash search benchmark: n={n:,} bits={bits} k={k} queries={n_queries} threads={threads} "
        f"codes={'clustered (100 centres, 8% flips)' if clustered else 'random'} seed={seed}")
    say(f"generated codes in {t_gen:.1f} s; kernel ISA: {kernel_isa()}; CPU: {_cpu_name()}")

    ker = KernelSearcher(bits, n_threads=threads)
    t_build_ker, _ = _timed(lambda: ker.reset(db))
    flat = faiss.IndexBinaryFlat(bits)
    t_build_flat, _ = _timed(lambda: flat.add(db))

    from deephash.index import kernel_searcher as _ks

    qw = _ks.to_words(q, bits)

    def run_deephash():
        return ker._search(q, k)

    def run_faiss():
        faiss.omp_set_num_threads(threads)
        return flat.search(q, k)

    def run_ceiling():
        return _ks._hamming.ceiling(ker._layout, n, bits, qw, threads)

    def run_stream():
        return _ks._hamming.ceiling(ker._layout, n, bits, qw, threads, 1, 1)

    methods = {"deephash": run_deephash, "faiss_flat": run_faiss, "ceiling": run_ceiling, "ceiling_stream": run_stream}
    runs: dict[str, list[float]] = {m: [] for m in methods}
    results: dict[str, Any] = {}
    for rep in range(repeats):
        for m, fn in methods.items():
            dt, r = _timed(fn)
            runs[m].append(n_queries / dt)
            if rep == 0:
                results[m] = r
    D, I = results["deephash"]
    Df, If = results["faiss_flat"]
    if not np.array_equal(D, Df.astype(np.int32)):
        raise AssertionError("deephash and FAISS disagree on distances: the benchmark's answers are not exact")
    qps = {m: float(statistics.median(v)) for m, v in runs.items()}
    ratios = {"deephash_vs_faiss": qps["deephash"] / qps["faiss_flat"], "deephash_vs_ceiling": qps["deephash"] / qps["ceiling"],
              "faiss_vs_ceiling": qps["faiss_flat"] / qps["ceiling"]}
    say("")
    say(f"## Exact k-NN (median of {repeats} interleaved runs)")
    say("")
    say("| method | QPS (median) | runs | vs FAISS | vs ceiling |")
    say("|---|---:|---|---:|---:|")
    for m in methods:
        say(f"| {m} | {qps[m]:,.0f} | {', '.join(f'{x:,.0f}' for x in runs[m])} | {qps[m] / qps['faiss_flat']:.2f}x | "
            f"{qps[m] / qps['ceiling']:.2f} |")

    out: dict[str, Any] = {
        "config": {"n": n, "bits": bits, "k": k, "n_queries": n_queries, "threads": threads, "clustered": clustered,
                   "n_classes": 100 if clustered else 0, "flip": 0.08 if clustered else None, "repeats": repeats,
                   "seed": seed, "radius": radius},
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "kernel_isa": kernel_isa(),
                    "faiss": faiss.__version__, "numpy": np.__version__},
        "qps": qps,
        "qps_runs": runs,
        "ratios": ratios,
        "build_seconds": {"deephash": t_build_ker, "faiss_flat": t_build_flat},
        "memory_mb": {"deephash": ker._layout.nbytes / 2**20, "faiss_flat": db.nbytes / 2**20},
        "sublinear": [],
    }

    rows: list[dict[str, Any]] = []
    for name in sublinear or ():
        if name == "radius":
            rows.extend(_bench_radius(db, q, bits, radius, threads, repeats, ker, create_ann_index))
            continue
        for cfg in DEFAULT_SUBLINEAR[name]:
            ix = create_ann_index(name, n_bits=bits, n_threads=threads, **cfg["build"])
            t0 = time.perf_counter()
            if ix.needs_training:
                ntrain = min(n, 64 * cfg["build"].get("nlist", 1))
                ix.train(db[np.random.default_rng(seed + 2).choice(n, ntrain, replace=False)] if ntrain < n else db)
            ix.add(db)
            build = time.perf_counter() - t0
            mem = ix.memory_bytes() / 2**20
            for sw in cfg["sweep"]:
                ix.set_params(**sw)
                times, res = [], None
                for _ in range(max(1, min(repeats, 3))):
                    dt, res = _timed(lambda: ix.search(q, k))
                    times.append(n_queries / dt)
                Da, Ia = res
                rows.append({"index": name, "build_params": cfg["build"], "search_params": sw, "build_s": build,
                             "memory_mb": mem, "qps": float(statistics.median(times)),
                             "recall_at_k": recall_at_k(Ia, D, Da, k), "k": k})
    out["sublinear"] = rows
    if rows:
        say("")
        say(f"## Sub-linear indexes vs exact ({'clustered' if clustered else 'random'} codes; recall@{k} is tie-aware)")
        say("")
        say(f"| index | build params | search params | build s | memory MB | QPS | recall@{k} |")
        say("|---|---|---|---:|---:|---:|---:|")
        for r in rows:
            bp = ", ".join(f"{a}={b}" for a, b in r["build_params"].items()) or "-"
            sp = ", ".join(f"{a}={b}" for a, b in r["search_params"].items()) or "-"
            rec = f"{r['recall_at_k']:.3f}" if r["k"] is not None else f"exact ({r['mean_hits']:.1f} hits/query)"
            say(f"| {r['index']} | {bp} | {sp} | {r['build_s']:.1f} | {r['memory_mb']:.0f} | {r['qps']:,.0f} | {rec} |")
        say("")
        say(f"exact deephash for comparison: {qps['deephash']:,.0f} QPS, recall 1.000, "
            f"{out['memory_mb']['deephash']:.0f} MB, build {t_build_ker:.2f} s")
    if json_path is not None:
        atomic_write_json(json_path, out)
        say(f"\nwrote {json_path}")
    return out


def _bench_radius(db, q, bits, radius, threads, repeats, ker, create_ann_index) -> list[dict[str, Any]]:
    """Exact radius lookup: the multi-index-hashing table vs the kernel's radius scan (both exact; checked)."""
    nq = len(q)
    rows = []
    ix = create_ann_index("radius", n_bits=bits, n_threads=threads)
    t0 = time.perf_counter()
    ix.add(db)
    build = time.perf_counter() - t0
    for r in sorted({0, radius}):
        times, res = [], None
        for _ in range(max(1, min(repeats, 3))):
            dt, res = _timed(lambda: ix.search_radius(q, r))
            times.append(nq / dt)
        scan_times, ref = [], None
        for _ in range(max(1, min(repeats, 3))):
            dt, ref = _timed(lambda: ker.search_radius(q, r))
            scan_times.append(nq / dt)
        exact = all(np.array_equal(a, b) for a, b in zip(res, ref))
        if not exact:
            raise AssertionError(f"radius lookup r={r} differs from the exact scan")
        hits = float(np.diff(res[0]).mean())
        rows.append({"index": "radius", "build_params": {"nhash": ix.nhash, "b": ix.b}, "search_params": {"r": r},
                     "build_s": build, "memory_mb": ix.memory_bytes() / 2**20, "qps": float(statistics.median(times)),
                     "recall_at_k": 1.0, "k": None, "mean_hits": hits,
                     "kernel_scan_qps": float(statistics.median(scan_times))})
        rows.append({"index": "radius-scan (deephash kernel)", "build_params": {}, "search_params": {"r": r},
                     "build_s": 0.0, "memory_mb": ker._layout.nbytes / 2**20,
                     "qps": float(statistics.median(scan_times)), "recall_at_k": 1.0, "k": None, "mean_hits": hits})
    return rows
