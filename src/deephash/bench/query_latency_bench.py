"""End-to-end latency of one query image on CPU: decode → backbone → hash → search (→ re-rank).

Every query goes through :func:`deephash.api.search`, the path the CLI and the service use, one
image per call (what a user who searches one photo waits for), with the index and model loaded
once. The first query is a warm-up and is not counted. Reported per stage: median and p90 of the
stage times the answer itself carries, and the wall time of the whole call.
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from deephash.bench.machine import write_result


def default_queries(index, index_path: str | os.PathLike, n: int) -> list[Path]:
    """``n`` indexed images spread over the index (they are real files of the archive it was built from)."""
    from deephash.errors import ConfigError

    root = index.meta.get("archive_root")
    if not root or not Path(root).is_dir():
        raise ConfigError(f"{index_path} names no readable archive folder to take query images from: pass --queries DIR")
    paths = [Path(root) / p for p in index.paths]
    step = max(1, len(paths) // (n + 1))
    return [p for p in paths[::step] if p.is_file()][: n + 1]


def _pct(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * (len(s) - 1)))]


def run_query_latency_bench(index_path: str | os.PathLike, *, queries: Sequence[str | os.PathLike] = (),
                            n_images: int = 100, k: int = 10, json_path: str | os.PathLike | None = None,
                            say: Callable[[str], None] = print) -> dict[str, Any]:
    from deephash.api import collect_images, open_for_search, search
    from deephash.index.kernel_searcher import kernel_isa

    loaded = open_for_search(index_path)
    index, model = loaded
    files = collect_images(queries)[: n_images + 1] if queries else default_queries(index, index_path, n_images)
    stages: dict[str, list[float]] = {}
    modes = [False, True] if index.features is not None else [False]
    for i, f in enumerate(files):
        for rerank in modes:
            t0 = time.perf_counter()
            ans = search(index_path, [f], k=k, rerank=rerank, loaded=loaded)[0]
            total = (time.perf_counter() - t0) * 1000
            if i == 0:
                continue  # warm-up: first-call allocations, ONNX Runtime's graph set-up
            for name, ms in ans.json["timings_ms"].items():
                if name == "total" or ms is None or (rerank and name not in ("search", "rerank")):
                    continue  # the encoding stages are counted once, in the Hamming pass
                stages.setdefault("search (re-rank's candidates)" if rerank and name == "search" else name, []).append(ms)
            stages.setdefault("whole call, re-rank" if rerank else "whole call, Hamming", []).append(total)
    rows = {n: {"median_ms": statistics.median(v), "p90_ms": _pct(v, 0.9), "n": len(v)} for n, v in stages.items()}
    say(f"one query image per call through deephash.api.search: {len(index):,} indexed, {index.n_bits} bits, k={k}, "
        f"{max(0, len(files) - 1)} queries (+1 warm-up); search kernel ISA {kernel_isa()}; {os.cpu_count()} cores")
    say("| stage | median ms | p90 ms |\n|---|---:|---:|")
    for n, r in rows.items():
        say(f"| {n} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} |")
    out = {"benchmark": "query-latency", "index": str(index_path), "n_indexed": len(index), "bits": index.n_bits,
           "k": k, "n_queries": max(0, len(files) - 1), "kernel_isa": kernel_isa(), "cores": os.cpu_count(),
           "stages": rows}
    write_result(json_path, out, say, lead="\n")
    return out
