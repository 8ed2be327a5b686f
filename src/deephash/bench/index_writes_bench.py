"""``deephash bench index-writes``: what one added or removed image costs on disk — the journal
append against rewriting the whole index file.

An index of ``n`` random 64-bit codes with float16 features of ``dim`` (the service's layout) is
saved in a folder; then, for each of ``repeats`` single-image adds and removes, the time of
``HashIndex.log_added`` / ``log_removed`` (append + fsync) is compared with ``HashIndex.save``
(rewrite + fsync + rename, what every write cost before the journal). The in-memory change
(``HashIndex.add``: amortised O(1); ``remove``: a copy of the arrays) is timed apart.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from deephash.bench.machine import machine_facts, machine_line, write_result
from deephash.errors import ConfigError


def _ms(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000


def measure_index_writes(n: int, dim: int, repeats: int, folder: Path, *, seed: int = 0) -> dict[str, Any]:
    """One row: medians over ``repeats`` single-image adds then removes on an index of ``n`` images."""
    from deephash.index import HashIndex

    rng = np.random.default_rng(seed)
    ix = HashIndex(64)
    ix.add(rng.integers(0, 256, (n, 8), dtype=np.uint8), paths=[f"img/{i}.jpg" for i in range(n)],
           labels=rng.integers(0, 10, n), features=rng.normal(size=(n, dim)).astype(np.float16))
    path = folder / f"bench-{n}.dhi"
    ix.save(path)
    t: dict[str, list[float]] = {"add": [], "remove": [], "journal_add": [], "journal_remove": []}
    added: list[int] = []
    for _ in range(repeats):
        new, ms = _ms(lambda: ix.add(rng.integers(0, 256, (1, 8), dtype=np.uint8), paths=["new.jpg"], labels=[1],
                                     features=rng.normal(size=(1, dim))))
        t["add"].append(ms)
        added.append(int(new[0]))
        t["journal_add"].append(_ms(lambda: ix.log_added(added[-1:]))[1])
    for i in reversed(added):
        t["remove"].append(_ms(lambda: ix.remove([i]))[1])
        t["journal_remove"].append(_ms(lambda: ix.log_removed([i]))[1])
    journal_bytes = ix.journal_bytes
    rewrite_ms = statistics.median(_ms(lambda: ix.save(path))[1] for _ in range(max(3, repeats // 3)))
    add_ms = statistics.median(t["journal_add"])
    return {"n": n, "dim": dim, "index_mb": path.stat().st_size / 2**20, "journal_add_ms": add_ms,
            "journal_remove_ms": statistics.median(t["journal_remove"]), "rewrite_ms": rewrite_ms,
            "rewrite_over_add": rewrite_ms / add_ms, "journal_bytes_per_change": journal_bytes / (2 * repeats),
            "in_memory_add_ms": statistics.median(t["add"]), "in_memory_remove_ms": statistics.median(t["remove"]),
            "repeats": repeats}


def format_index_writes_markdown(report: dict[str, Any]) -> str:
    lines = [machine_line(report["machine"]), "",
             "| images | index file | journal add | journal remove | rewrite (before) | rewrite / add | bytes per change "
             "| in-memory add | in-memory remove |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['n']:,} | {r['index_mb']:.1f} MB | {r['journal_add_ms']:.2f} ms | {r['journal_remove_ms']:.2f} ms "
                     f"| {r['rewrite_ms']:.1f} ms | {r['rewrite_over_add']:.0f}x | {r['journal_bytes_per_change']:.0f} "
                     f"| {r['in_memory_add_ms']:.2f} ms | {r['in_memory_remove_ms']:.1f} ms |")
    return "\n".join(lines)


def run_index_writes_bench(ns: Sequence[int] = (5000, 50_000, 200_000), *, dim: int = 1280, repeats: int = 15,
                           folder: str | os.PathLike | None = None, seed: int = 0,
                           json_path: str | os.PathLike | None = None,
                           say: Callable[[str], None] = print) -> dict[str, Any]:
    """Every ``n`` of ``ns`` measured in a temporary folder (under ``folder`` if given: the disk measured)."""
    if not ns or any(n < 1 for n in ns) or repeats < 1 or dim < 1:
        raise ConfigError(f"--n, --repeats and --dim must be positive; got n={list(ns)}, repeats={repeats}, dim={dim}")
    report: dict[str, Any] = {"benchmark": "index-writes", "bits": 64, "dim": dim, "repeats": repeats, "seed": seed,
                              "machine": machine_facts(), "rows": []}
    with tempfile.TemporaryDirectory(dir=folder, prefix="deephash-index-writes-") as d:
        for n in ns:
            r = measure_index_writes(n, dim, repeats, Path(d), seed=seed)
            report["rows"].append(r)
            say(f"n={n:,}: journal add {r['journal_add_ms']:.2f} ms, rewrite {r['rewrite_ms']:.1f} ms")
    say(format_index_writes_markdown(report))
    write_result(json_path, report, say)
    return report
