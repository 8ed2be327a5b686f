"""Search benchmark: deephash's exact kernel on each instruction set vs FAISS IndexBinaryFlat vs the
hardware ceiling of that instruction set, plus the sub-linear indexes' speed / recall / build time /
memory, all measured in one run.

For every code length, thread count and instruction set (``isas``: AVX-512, AVX2, scalar ... — each
forced the way ``DEEPHASH_ISA`` forces it, so an AVX-512 machine also measures the AVX2-only path):

- ``deephash``: :class:`~deephash.index.kernel_searcher.KernelSearcher` on that instruction set, with
  the layout it picks (exact, ties by row).
- ``ceiling``: the fastest popcount pass the project has *on that instruction set* — XOR + popcount
  of every (query, code) pair summed, no top-k — over every layout the instruction set can read:
  AVX-512 VPOPCNTDQ (4 queries per load); for AVX2 the faster of the Harley-Seal carry-save
  popcount (Mula, Kurz & Lemire) on the interleaved words and the nibble-table (vpshufb) pass on
  the byte-sliced layout, 4 queries per load. Every candidate's q/s is in the JSON.
- ``faiss_flat``: raw ``faiss.IndexBinaryFlat.search`` with the same thread count (no tie re-ordering,
  so FAISS is timed doing strictly less work than deephash); FAISS picks its own SIMD.

Each method is timed ``repeats`` times, interleaved (A, B, C, A, B, C, ...), and the median is reported.
Codes are synthetic and seeded: ``clustered=True`` draws each code from one of ``n_classes`` random
centres with every bit flipped with probability ``flip`` (trained deep-hash codes cluster by class
like this); ``clustered=False`` draws uniform random codes.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Any, Sequence

import numpy as np

from deephash.bench.machine import cpu_name, write_result
from deephash.errors import ConfigError
from deephash.codes import check_n_bits
from deephash.optional import require

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


def _as_list(v: int | Sequence[int], name: str) -> list[int]:
    vals = [v] if isinstance(v, (int, np.integer)) else list(v)
    if not vals or any(not isinstance(x, (int, np.integer)) or x < 1 for x in vals):
        raise ConfigError(f"{name} must be positive integers; got {v!r}")
    return [int(x) for x in vals]


def default_isas() -> list[str]:
    """The vector instruction sets this CPU runs, best first (the scalar paths only when there is none)."""
    from deephash.index.kernel_searcher import supported_isas

    have = supported_isas()
    vec = [i for i in ("avx512", "avx2") if i in have]
    return vec or have[-1:]


def _faiss_simd() -> str:
    faiss = require("faiss", "the search benchmark")

    try:
        return str(faiss.get_compile_options()).strip()
    except AttributeError:  # pragma: no cover - old FAISS
        return "unknown"


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return None


def run_search_bench(
    n: int = 1_000_000,
    bits: int | Sequence[int] = 64,
    k: int = 100,
    n_queries: int = 1000,
    threads: int | Sequence[int] = 1,
    clustered: bool = True,
    json_path: str | os.PathLike | None = None,
    *,
    isas: Sequence[str] | None = None,
    repeats: int = 5,
    seed: int = 0,
    sublinear: Sequence[str] | None = ("ivf", "hnsw", "mih", "radius"),
    radius: int = 2,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run the search benchmark, print Markdown tables, write JSON (when ``json_path``) and return the dict.

    ``exact`` holds one row per (bits, threads, isa): medians over ``repeats`` of deephash's, the
    ceiling's and FAISS's q/s, the ratios, every run's numbers and every ceiling candidate. ``qps`` /
    ``ratios`` repeat the first row of the first instruction set (the best by default), and
    ``sublinear`` has one row per sub-linear index setting at the first bits and thread count
    (build seconds, memory MB, QPS, tie-aware recall@k against exact search).
    """
    faiss = require("faiss", "the search benchmark")

    from deephash.index.faiss_indexes import create_ann_index, recall_at_k
    from deephash.index.kernel_searcher import LAYOUTS, KernelSearcher, _hamming, kernel_available, resolve_isa, to_words

    bit_list = [check_n_bits(b) for b in _as_list(bits, "bits")]
    thread_list = _as_list(threads, "threads")
    for name, v in (("n", n), ("k", k), ("n_queries", n_queries), ("repeats", repeats)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name} must be a positive integer; got {v!r}")
    if not kernel_available():
        raise ConfigError("the search benchmark needs deephash's C kernel (deephash.index._hamming); reinstall with pip install .")
    isa_list = [resolve_isa(i) for i in (isas or default_isas())]
    say = print if verbose else (lambda *a, **kw: None)
    say(f"# deephash search benchmark: n={n:,} bits={','.join(map(str, bit_list))} k={k} queries={n_queries} "
        f"threads={','.join(map(str, thread_list))} isas={','.join(isa_list)} "
        f"codes={'clustered (100 centres, 8% flips)' if clustered else 'random'} seed={seed}")
    say(f"CPU: {cpu_name()}; kernel ISAs: {', '.join(_hamming.supported_isas())}; FAISS {faiss.__version__} "
        f"({_faiss_simd()}); load average {_load()}")

    rows: list[dict[str, Any]] = []
    first: dict[str, Any] = {}
    for bits_ in bit_list:
        t_gen, (db, centres) = _timed(lambda: make_codes(n, bits_, clustered=clustered, seed=seed))
        q, _ = make_codes(n_queries, bits_, clustered=clustered, seed=seed + 1, centres=centres if clustered else None)
        qw = to_words(q, bits_)
        flat = faiss.IndexBinaryFlat(bits_)
        t_build_flat, _ = _timed(lambda: flat.add(db))
        for th in thread_list:
            methods: dict[str, Any] = {}
            sear: dict[str, KernelSearcher] = {}
            build: dict[str, float] = {"faiss_flat": t_build_flat}
            cands: dict[str, list[str]] = {}
            for isa in isa_list:
                ker = KernelSearcher(bits_, n_threads=th, isa=isa)
                build[isa], _ = _timed(lambda: ker.reset(db))
                sear[isa] = ker
                methods[f"deephash/{isa}"] = (lambda ker=ker: ker._search(q, k))
                cands[isa] = []
                for lay, make in LAYOUTS.items():
                    if lay == "byte-sliced" and (isa != "avx2" or bits_ > 128):
                        continue
                    arr = ker._layout if lay == ker.layout_kind else make(db, bits_)
                    name = f"ceiling/{isa}/{lay}"
                    methods[name] = (lambda arr=arr, isa=isa: _hamming.ceiling(arr, n, bits_, qw, th, isa=isa))
                    cands[isa].append(name)

            def run_faiss():
                faiss.omp_set_num_threads(th)
                return flat.search(q, k)

            methods["faiss_flat"] = run_faiss
            runs: dict[str, list[float]] = {m: [] for m in methods}
            cpu_runs: dict[str, list[float]] = {m: [] for m in methods}
            results: dict[str, Any] = {}
            for rep in range(repeats):
                for m, fn in methods.items():
                    c0 = time.process_time()
                    dt, r = _timed(fn)
                    runs[m].append(n_queries / dt)
                    cpu_runs[m].append(n_queries / max(time.process_time() - c0, 1e-9))
                    if rep == 0:
                        results[m] = r
            Df = results["faiss_flat"][0].astype(np.int32)
            I0 = None
            for isa in isa_list:
                D, I = results[f"deephash/{isa}"]
                if not np.array_equal(D, Df):
                    raise AssertionError(f"deephash ({isa}) and FAISS disagree on distances: the answers are not exact")
                if I0 is not None and not np.array_equal(I, I0):
                    raise AssertionError(f"deephash's {isa} path returns other rows than the {isa_list[0]} path")
                I0 = I
                sums = {results[c].tobytes() for c in cands[isa]}
                if len(sums) != 1:
                    raise AssertionError(f"the {isa} ceiling passes disagree on the sum of distances")
            med = {m: float(statistics.median(v)) for m, v in runs.items()}
            for isa in isa_list:
                best = max(cands[isa], key=lambda c: med[c])
                row = {"bits": bits_, "threads": th, "isa": isa, "path": sear[isa].path,
                       "qps": {"deephash": med[f"deephash/{isa}"], "ceiling": med[best], "faiss_flat": med["faiss_flat"]},
                       "ceiling_method": best.split("/", 1)[1],
                       "ceiling_candidates": {c.split("/", 1)[1]: med[c] for c in cands[isa]},
                       "runs": {"deephash": runs[f"deephash/{isa}"], "ceiling": runs[best], "faiss_flat": runs["faiss_flat"]},
                       "build_seconds": {"deephash": build[isa], "faiss_flat": build["faiss_flat"]},
                       "memory_mb": {"deephash": sear[isa]._layout.nbytes / 2**20, "faiss_flat": db.nbytes / 2**20},
                       "load_average": _load()}
                row["ratios"] = {"deephash_vs_faiss": med[f"deephash/{isa}"] / med["faiss_flat"],
                                 "deephash_vs_ceiling": med[f"deephash/{isa}"] / med[best],
                                 "faiss_vs_ceiling": med["faiss_flat"] / med[best]}
                # the same ratios taken inside each repeat (runs next to each other in time), then the median:
                # steadier than the ratio of medians when other jobs load the machine
                # queries per CPU-second of this process: on a machine shared with other jobs the time spent
                # waiting for a core drops out (meaningful for 1 thread; with n threads it sums their CPU time)
                cmed = {m: float(statistics.median(v)) for m, v in cpu_runs.items()}
                best_cpu = max(cands[isa], key=lambda c: cmed[c])  # the ceiling is again the fastest candidate
                row["qps_cpu"] = {"deephash": cmed[f"deephash/{isa}"], "ceiling": cmed[best_cpu],
                                  "faiss_flat": cmed["faiss_flat"]}
                row["ceiling_method_cpu"] = best_cpu.split("/", 1)[1]
                row["ceiling_candidates_cpu"] = {c.split("/", 1)[1]: cmed[c] for c in cands[isa]}
                row["ratios_cpu"] = {"deephash_vs_faiss": cmed[f"deephash/{isa}"] / cmed["faiss_flat"],
                                     "deephash_vs_ceiling": cmed[f"deephash/{isa}"] / cmed[best_cpu]}
                dh = runs[f"deephash/{isa}"]
                row["ratios_paired"] = {
                    "deephash_vs_faiss": float(statistics.median(a / b for a, b in zip(dh, runs["faiss_flat"]))),
                    "deephash_vs_ceiling": float(statistics.median(a / b for a, b in zip(dh, runs[best])))}
                rows.append(row)
            if not first:
                first = {"db": db, "q": q, "bits": bits_, "threads": th, "D": results[f"deephash/{isa_list[0]}"][0],
                         "ker": sear[isa_list[0]]}
            say(f"bits={bits_} threads={th}: codes generated in {t_gen:.1f} s; load average {_load()}")

    say("")
    say(f"## Exact k-NN, n={n:,}, k={k} (median of {repeats} interleaved runs; ceiling = fastest popcount pass of the ISA)")
    say("")
    say("| bits | threads | ISA (path) | ceiling q/s (method) | deephash q/s | FAISS flat q/s | of ceiling | vs FAISS "
        "| of ceiling, paired | vs FAISS, paired |")
    say("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        say(f"| {r['bits']} | {r['threads']} | {r['isa']} ({r['path'].split('/')[1]}) | {r['qps']['ceiling']:,.0f} "
            f"({r['ceiling_method'].split('/')[1]}) | {r['qps']['deephash']:,.0f} | {r['qps']['faiss_flat']:,.0f} | "
            f"{r['ratios']['deephash_vs_ceiling']:.2f} | {r['ratios']['deephash_vs_faiss']:.1f}x | "
            f"{r['ratios_paired']['deephash_vs_ceiling']:.2f} | {r['ratios_paired']['deephash_vs_faiss']:.1f}x |")
    say("(paired: the ratio inside each repeat, then the median over repeats)")
    say("")
    say("Per CPU-second of this process (time spent waiting for a core on a shared machine drops out; 1-thread rows):")
    say("")
    say("| bits | ISA (path) | ceiling q/cpu-s | deephash q/cpu-s | FAISS flat q/cpu-s | of ceiling | vs FAISS |")
    say("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["threads"] == 1:
            c = r["qps_cpu"]
            say(f"| {r['bits']} | {r['isa']} ({r['path'].split('/')[1]}) | {c['ceiling']:,.0f} | {c['deephash']:,.0f} | "
                f"{c['faiss_flat']:,.0f} | {r['ratios_cpu']['deephash_vs_ceiling']:.2f} | {r['ratios_cpu']['deephash_vs_faiss']:.1f}x |")

    out: dict[str, Any] = {
        "config": {"n": n, "bits": bit_list, "k": k, "n_queries": n_queries, "threads": thread_list, "isas": isa_list,
                   "clustered": clustered, "n_classes": 100 if clustered else 0, "flip": 0.08 if clustered else None,
                   "repeats": repeats, "seed": seed, "radius": radius},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "kernel_isas": list(_hamming.supported_isas()),
                    "faiss": faiss.__version__, "faiss_simd": _faiss_simd(), "numpy": np.__version__},
        "exact": rows,
        "qps": rows[0]["qps"],
        "ratios": rows[0]["ratios"],
        "sublinear": [],
    }

    sub_rows: list[dict[str, Any]] = []
    db, q, bits_, th, D, ker = (first[x] for x in ("db", "q", "bits", "threads", "D", "ker"))
    for name in sublinear or ():
        if name == "radius":
            sub_rows.extend(_bench_radius(db, q, bits_, radius, th, repeats, ker, create_ann_index))
            continue
        for cfg in DEFAULT_SUBLINEAR[name]:
            ix = create_ann_index(name, n_bits=bits_, n_threads=th, **cfg["build"])
            t0 = time.perf_counter()
            if ix.needs_training:
                ntrain = min(n, 64 * cfg["build"].get("nlist", 1))
                ix.train(db[np.random.default_rng(seed + 2).choice(n, ntrain, replace=False)] if ntrain < n else db)
            ix.add(db)
            build_s = time.perf_counter() - t0
            mem = ix.memory_bytes() / 2**20
            for sw in cfg["sweep"]:
                ix.set_params(**sw)
                times, res = [], None
                for _ in range(max(1, min(repeats, 3))):
                    dt, res = _timed(lambda: ix.search(q, k))
                    times.append(n_queries / dt)
                Da, Ia = res
                sub_rows.append({"index": name, "build_params": cfg["build"], "search_params": sw, "build_s": build_s,
                                 "memory_mb": mem, "qps": float(statistics.median(times)),
                                 "recall_at_k": recall_at_k(Ia, D, Da, k), "k": k})
    out["sublinear"] = sub_rows
    if sub_rows:
        say("")
        say(f"## Sub-linear indexes vs exact ({bits_} bits, {th} thread(s), {'clustered' if clustered else 'random'} codes; "
            f"recall@{k} is tie-aware)")
        say("")
        say(f"| index | build params | search params | build s | memory MB | QPS | recall@{k} |")
        say("|---|---|---|---:|---:|---:|---:|")
        for r in sub_rows:
            bp = ", ".join(f"{a}={b}" for a, b in r["build_params"].items()) or "-"
            sp = ", ".join(f"{a}={b}" for a, b in r["search_params"].items()) or "-"
            rec = f"{r['recall_at_k']:.3f}" if r["k"] is not None else f"exact ({r['mean_hits']:.1f} hits/query)"
            say(f"| {r['index']} | {bp} | {sp} | {r['build_s']:.1f} | {r['memory_mb']:.0f} | {r['qps']:,.0f} | {rec} |")
        say("")
        say(f"exact deephash ({ker.path}) for comparison: {rows[0]['qps']['deephash']:,.0f} QPS, recall 1.000, "
            f"{rows[0]['memory_mb']['deephash']:.0f} MB")
    write_result(json_path, out, say, lead="\n")
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
