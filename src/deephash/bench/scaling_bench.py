"""Cost curves of search: how exact and IVF search speed, memory, and index save/load time and peak
memory grow with the number of codes N (``deephash bench scaling``).

For each code length and each N (10^5, 10^6, 10^7 by default), on the same seeded class-clustered
codes as ``deephash bench search``:

- exact k-NN q/s, 1 thread: deephash's kernel on each vector instruction set (``isas``; the layout
  it picks) and FAISS ``IndexBinaryFlat``; their memory (the kernel's layout, FAISS's code array);
- FAISS ``IndexBinaryIVF`` (``nlist`` lists, trained on ``64 * nlist`` codes) at each ``nprobe``:
  q/s, tie-aware recall@k against the exact answer, build seconds, memory;
- a :class:`~deephash.index.HashIndex` of the N codes (ids, no paths or features): ``save`` seconds,
  ``load`` seconds, the first search after a load (it builds the kernel's layout), the file size,
  and the peak resident memory of a fresh process doing each (``VmHWM``), minus that of the same
  process before it touched the codes.

Every timing is a median of ``repeats`` interleaved runs; query counts shrink with N (multiples of
32, the kernel's query batch) so a large N does not take hours. An N whose working set would not
fit in half of the memory available now is skipped, and the JSON says so and why. Results: one
JSON and two PNG plots in ``out_dir``.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deephash.bench.machine import cpu_name
from deephash.bench.search_bench import _faiss_simd, _load, _timed, default_isas, make_codes
from deephash.errors import ConfigError
from deephash.codes import check_n_bits
from deephash.optional import require
from deephash.utils import atomic_write_json

DEFAULT_NS = (100_000, 1_000_000, 10_000_000)

# runs in a fresh interpreter: build + save, or load + first search, of a HashIndex; prints JSON
_CHILD = r"""
import json, sys, time
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
import numpy as np
from deephash.index import HashIndex
mode, codes_path, index_path, bits = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base = hwm()
out = {"baseline_bytes": base}
if mode == "save":
    codes = np.load(codes_path, mmap_mode="r")
    t = time.perf_counter(); idx = HashIndex(bits); idx.add(np.asarray(codes)); out["add_s"] = time.perf_counter() - t
    del codes
    t = time.perf_counter(); idx.save(index_path); out["save_s"] = time.perf_counter() - t
else:
    t = time.perf_counter(); idx = HashIndex.load(index_path); out["load_s"] = time.perf_counter() - t
    q = np.zeros((1, bits // 8), np.uint8)
    t = time.perf_counter(); idx.search(q, 10); out["first_search_s"] = time.perf_counter() - t
    out["searcher"] = getattr(idx._get_searcher(), "path", idx.searcher_name)
out["peak_bytes"] = hwm()
print(json.dumps(out))
"""


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _working_set(n: int, bits: int, n_isas: int) -> int:
    """Bytes the run holds at once for one N: codes, one kernel layout per ISA, FAISS flat, IVF (codes + ids), index."""
    nb = bits // 8
    return n * (nb * (3 + n_isas) + 8 + 8)


def _child(mode: str, codes_path: Path, index_path: Path, bits: int) -> dict[str, Any]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _CHILD, mode, str(codes_path), str(index_path), str(bits)],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"index {mode} child failed: {r.stderr.strip().splitlines()[-1:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def queries_for(n: int) -> int:
    """Queries timed at database size n: about 3 * 10^8 / n, 64..1000, a multiple of 32."""
    q = int(min(1000, max(64, 3e8 / n)))
    return max(32, q // 32 * 32)


def run_scaling_bench(
    ns: Sequence[int] = DEFAULT_NS,
    bits: Sequence[int] = (64, 128),
    *,
    k: int = 100,
    isas: Sequence[str] | None = None,
    nlist: int = 1024,
    nprobes: Sequence[int] = (4, 16),
    repeats: int = 3,
    seed: int = 0,
    index_io: bool = True,
    out_dir: str | os.PathLike | None = "docs/results/search-scaling-vs-n",
    resume: bool = False,
    verbose: bool = True,
) -> dict[str, Any]:
    """Measure the cost curves, print a Markdown table, write ``scaling.json`` and the PNG plots to ``out_dir``.

    With ``resume``, the rows an earlier run wrote to ``out_dir/scaling.json`` are kept (their (N, bits)
    are not measured again) and the table and plots cover all of them: a large N can be added later.
    """
    faiss = require("faiss", "the scaling benchmark")
    from deephash.index.faiss_indexes import create_ann_index, recall_at_k
    from deephash.index.kernel_searcher import KernelSearcher, kernel_available, resolve_isa

    if not kernel_available():
        raise ConfigError("the scaling benchmark needs deephash's C kernel (deephash.index._hamming); reinstall with pip install .")
    for name, vals in (("ns", ns), ("nprobes", nprobes)):
        if not vals or any(not isinstance(v, (int, np.integer)) or v < 1 for v in vals):
            raise ConfigError(f"{name} must be positive integers; got {vals!r}")
    for name, v in (("k", k), ("nlist", nlist), ("repeats", repeats)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name} must be a positive integer; got {v!r}")
    bit_list = [check_n_bits(b) for b in bits]
    isa_list = [resolve_isa(i) for i in (isas or default_isas())]
    say = print if verbose else (lambda *a, **kw: None)
    say(f"# deephash scaling benchmark: N={','.join(f'{n:,}' for n in ns)} bits={','.join(map(str, bit_list))} k={k} "
        f"isas={','.join(isa_list)} IVF nlist={nlist} nprobe={','.join(map(str, nprobes))} repeats={repeats} seed={seed}")
    say(f"CPU: {cpu_name()}; FAISS {faiss.__version__} ({_faiss_simd()}); load average {_load()}")
    faiss.omp_set_num_threads(1)

    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    old: dict[str, Any] = {}
    if resume and out_dir is not None and (Path(out_dir) / "scaling.json").is_file():
        old = json.loads((Path(out_dir) / "scaling.json").read_text())
        rows = list(old.get("rows", []))
    done = {(r["n"], r["bits"]) for r in rows}
    tmp = Path(tempfile.mkdtemp(prefix="deephash-scaling-"))
    try:
        for b in bit_list:
            for n in sorted(ns):
                if (n, b) in done:
                    say(f"N={n:,} bits={b}: kept from the earlier run")
                    continue
                need, avail = _working_set(n, b, len(isa_list)), _mem_available()
                if avail is not None and need > avail // 2:
                    reason = (f"needs about {need / 2**30:.1f} GiB at once (codes, {len(isa_list)} kernel layouts, FAISS flat "
                              f"and IVF copies, the index) and only {avail / 2**30:.1f} GiB is available; the run keeps under half")
                    skipped.append({"n": n, "bits": b, "reason": reason})
                    say(f"skip N={n:,} bits={b}: {reason}")
                    continue
                rows.append(_measure(n, b, k, isa_list, nlist, nprobes, repeats, seed, index_io, tmp, say,
                                     faiss, KernelSearcher, create_ann_index, recall_at_k))
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()

    rows.sort(key=lambda r: (r["bits"], r["n"]))
    skipped += [x for x in old.get("skipped", []) if (x["n"], x["bits"]) not in {(r["n"], r["bits"]) for r in rows}
                and (x["n"], x["bits"]) not in {(y["n"], y["bits"]) for y in skipped}]
    out: dict[str, Any] = {
        "config": {"ns": sorted({r["n"] for r in rows} | set(ns)), "bits": sorted({r["bits"] for r in rows} | set(bit_list)), "k": k, "isas": isa_list, "nlist": nlist, "nprobes": list(nprobes),
                   "repeats": repeats, "seed": seed, "codes": "clustered (100 centres, 8% flips)", "threads": 1},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "faiss": faiss.__version__, "faiss_simd": _faiss_simd(),
                    "numpy": np.__version__, "mem_available_bytes": _mem_available()},
        "rows": rows,
        "skipped": skipped,
    }
    say("")
    say(format_scaling_markdown(out))
    if out_dir is not None:
        out_dir = Path(out_dir)
        atomic_write_json(out_dir / "scaling.json", out)
        plots = plot_scaling(out, out_dir)
        say(f"\nwrote {out_dir / 'scaling.json'}, " + ", ".join(str(p) for p in plots))
    return out


def _measure(n, b, k, isa_list, nlist, nprobes, repeats, seed, index_io, tmp, say, faiss, KernelSearcher,
             create_ann_index, recall_at_k) -> dict[str, Any]:
    t_gen, (db, centres) = _timed(lambda: make_codes(n, b, clustered=True, seed=seed))
    nq = queries_for(n)
    q, _ = make_codes(nq, b, clustered=True, seed=seed + 1, centres=centres)
    say(f"N={n:,} bits={b}: codes in {t_gen:.1f} s, {nq} queries, load average {_load()}")
    row: dict[str, Any] = {"n": n, "bits": b, "n_queries": nq, "qps": {}, "memory_mb": {}, "build_s": {}, "recall": {}}
    methods: dict[str, Any] = {}
    for isa in isa_list:
        ker = KernelSearcher(b, isa=isa)
        row["build_s"][f"deephash/{isa}"], _ = _timed(lambda: ker.reset(db))
        row["memory_mb"][f"deephash/{isa}"] = ker._layout.nbytes / 2**20
        methods[f"deephash/{isa}"] = (lambda ker=ker: ker._search(q, k))
    flat = faiss.IndexBinaryFlat(b)
    row["build_s"]["faiss_flat"], _ = _timed(lambda: flat.add(db))
    row["memory_mb"]["faiss_flat"] = flat.ntotal * flat.code_size / 2**20
    methods["faiss_flat"] = lambda: flat.search(q, k)
    runs: dict[str, list[float]] = {m: [] for m in methods}
    res: dict[str, Any] = {}
    for rep in range(repeats):
        for m, fn in methods.items():
            dt, r = _timed(fn)
            runs[m].append(nq / dt)
            res.setdefault(m, r)
    D = res[f"deephash/{isa_list[0]}"][0]
    for m in methods:
        if not np.array_equal(res[m][0].astype(np.int32), D):
            raise AssertionError(f"{m} disagrees with deephash/{isa_list[0]} on exact distances at N={n}")
    del flat, methods, res
    row["qps"].update({m: float(statistics.median(v)) for m, v in runs.items()})
    row["runs"] = runs

    ivf = create_ann_index("ivf", n_bits=b, n_threads=1, nlist=nlist)
    t0 = time.perf_counter()
    ntrain = min(n, 64 * nlist)
    ivf.train(db[np.random.default_rng(seed + 2).choice(n, ntrain, replace=False)] if ntrain < n else db)
    ivf.add(db)
    row["build_s"]["ivf"] = time.perf_counter() - t0
    row["memory_mb"]["ivf"] = ivf.memory_bytes() / 2**20
    for p in nprobes:
        ivf.set_params(nprobe=p)
        times, r = [], None
        for _ in range(repeats):
            dt, r = _timed(lambda: ivf.search(q, k))
            times.append(nq / dt)
        row["qps"][f"ivf/nprobe={p}"] = float(statistics.median(times))
        row["recall"][f"ivf/nprobe={p}"] = recall_at_k(r[1], D, r[0], k)
    del ivf

    if index_io:
        codes_path, index_path = tmp / f"codes-{n}-{b}.npy", tmp / f"index-{n}-{b}.dhi"
        np.save(codes_path, db)
        del db
        saved = _child("save", codes_path, index_path, b)
        codes_path.unlink()
        loaded = _child("load", codes_path, index_path, b)
        row["index"] = {"save_s": saved["save_s"], "add_s": saved["add_s"], "load_s": loaded["load_s"],
                        "first_search_s": loaded["first_search_s"], "searcher": loaded["searcher"],
                        "file_mb": index_path.stat().st_size / 2**20,
                        "save_peak_mb": saved["peak_bytes"] / 2**20, "load_peak_mb": loaded["peak_bytes"] / 2**20,
                        "save_peak_extra_mb": (saved["peak_bytes"] - saved["baseline_bytes"]) / 2**20,
                        "load_peak_extra_mb": (loaded["peak_bytes"] - loaded["baseline_bytes"]) / 2**20}
        index_path.unlink()
    row["load_average"] = _load()
    say("  " + ", ".join(f"{m} {v:,.0f} q/s" for m, v in row["qps"].items()))
    return row


def format_scaling_markdown(out: dict[str, Any]) -> str:
    """The results as Markdown tables: search speed and memory, then index save/load."""
    rows = out["rows"]
    if not rows:
        return "(no rows)"
    qkeys = list(rows[0]["qps"])
    lines = ["| bits | N | " + " | ".join(f"{m} q/s" for m in qkeys) + " | "
             + " | ".join(f"{m} recall@{out['config']['k']}" for m in rows[0]["recall"]) + " | "
             + " | ".join(f"{m} MB" for m in rows[0]["memory_mb"]) + " |"]
    lines.append("|" + "---:|" * (2 + len(qkeys) + len(rows[0]["recall"]) + len(rows[0]["memory_mb"])))
    for r in rows:
        lines.append(f"| {r['bits']} | {r['n']:,} | " + " | ".join(f"{r['qps'].get(m, float('nan')):,.1f}" for m in qkeys) + " | "
                     + " | ".join(f"{v:.3f}" for v in r["recall"].values()) + " | "
                     + " | ".join(f"{v:,.1f}" for v in r["memory_mb"].values()) + " |")
    if any("index" in r for r in rows):
        lines += ["", "| bits | N | file MB | save s | load s | first search s | peak MB save (extra) | peak MB load (extra) |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in rows if "index" in r):
            x = r["index"]
            lines.append(f"| {r['bits']} | {r['n']:,} | {x['file_mb']:,.1f} | {x['save_s']:.3f} | {x['load_s']:.3f} | "
                         f"{x['first_search_s']:.3f} | {x['save_peak_mb']:,.0f} ({x['save_peak_extra_mb']:,.0f}) | "
                         f"{x['load_peak_mb']:,.0f} ({x['load_peak_extra_mb']:,.0f}) |")
    for s in out.get("skipped", []):
        lines.append(f"\nskipped N={s['n']:,} bits={s['bits']}: {s['reason']}")
    return "\n".join(lines)


def plot_scaling(out: dict[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """Two PNGs in ``out_dir``: search (q/s and IVF recall vs N) and index (memory, save/load time, peak memory vs N)."""
    matplotlib = require("matplotlib", "the scaling plots")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot", "the scaling plots")

    out_dir = Path(out_dir)
    rows = out["rows"]
    bit_list = sorted({r["bits"] for r in rows})
    styles = {b: s for b, s in zip(bit_list, ("-", "--", ":", "-."))}
    files = []

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6))
    for b in bit_list:
        rs = [r for r in rows if r["bits"] == b]
        ns = [r["n"] for r in rs]
        for i, m in enumerate(rs[0]["qps"]):
            a1.plot(ns, [r["qps"].get(m, np.nan) for r in rs], styles[b], marker="o", color=f"C{i}", label=f"{m}, {b} bits")
        for i, m in enumerate(rs[0]["recall"]):
            a2.plot(ns, [r["recall"].get(m, np.nan) for r in rs], styles[b], marker="o", color=f"C{i + len(rs[0]['qps']) - len(rs[0]['recall'])}",
                    label=f"{m}, {b} bits")
    if rows:  # a 1/N guide through the first exact point: a pure scan follows it
        r0 = min(rows, key=lambda r: r["n"])
        m0 = next(iter(r0["qps"]))
        xs = np.array(sorted({r["n"] for r in rows}), float)
        a1.plot(xs, r0["qps"][m0] * r0["n"] / xs, color="grey", lw=0.8, ls=(0, (1, 3)), label="∝ 1/N")
    a1.set(xscale="log", yscale="log", xlabel="codes N", ylabel="queries / s (1 thread, k=%d)" % out["config"]["k"],
           title="search speed vs N")
    a1.grid(True, which="both", alpha=0.3)
    a1.legend(fontsize=7)
    a2.set(xscale="log", xlabel="codes N", ylabel=f"recall@{out['config']['k']} (tie-aware)",
           title=f"FAISS IVF (nlist={out['config']['nlist']}) recall vs N")
    a2.grid(True, which="both", alpha=0.3)
    a2.legend(fontsize=7)
    fig.tight_layout()
    files.append(out_dir / "scaling-search.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4.4))
    for b in bit_list:
        rs = [r for r in rows if r["bits"] == b]
        ns = [r["n"] for r in rs]
        for i, m in enumerate(rs[0]["memory_mb"]):
            a1.plot(ns, [r["memory_mb"].get(m, np.nan) for r in rs], styles[b], marker="o", color=f"C{i}", label=f"{m}, {b} bits")
        ri = [r for r in rs if "index" in r]
        ni = [r["n"] for r in ri]
        if ri:
            for i, m in enumerate(("save_s", "load_s", "first_search_s")):
                a2.plot(ni, [r["index"][m] for r in ri], styles[b], marker="o", color=f"C{i}", label=f"{m[:-2]}, {b} bits")
            for i, m in enumerate(("save_peak_extra_mb", "load_peak_extra_mb")):
                a3.plot(ni, [max(r["index"][m], 0.1) for r in ri], styles[b], marker="o", color=f"C{i}",
                        label=f"{m.replace('_extra_mb', '')}, {b} bits")
            a3.plot(ni, [r["index"]["file_mb"] for r in ri], styles[b], color="grey", label=f"index file, {b} bits")
    a1.set(xscale="log", yscale="log", xlabel="codes N", ylabel="MB", title="index memory vs N")
    a2.set(xscale="log", yscale="log", xlabel="codes N", ylabel="seconds", title="HashIndex save / load vs N")
    a3.set(xscale="log", yscale="log", xlabel="codes N", ylabel="MB above the bare process",
           title="peak resident memory vs N")
    for a in (a1, a2, a3):
        a.grid(True, which="both", alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    fig.tight_layout()
    files.append(out_dir / "scaling-index.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files
