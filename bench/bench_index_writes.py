"""What one added or removed image costs on disk: the journal append vs rewriting the index file.

Usage: python bench/bench_index_writes.py [--n 5000,50000,200000] [--dim 1280] [--repeats 15] [--json out.json]
An index of n random 64-bit codes with float16 features of ``dim`` (the service's layout) is saved
in a temporary folder; then, for each of ``repeats`` single-image adds and removes, the time of
``HashIndex.log_added`` / ``log_removed`` (append + fsync) is compared with ``HashIndex.save``
(rewrite + fsync + rename, what every write cost before the journal). The in-memory change
(``HashIndex.add``: amortised O(1); ``remove``: a copy of the arrays) is timed apart. Medians and ratios are
printed as a table; the JSON holds every row.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from deephash.index import HashIndex


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def run(n: int, dim: int, repeats: int, folder: Path) -> dict:
    rng = np.random.default_rng(0)
    ix = HashIndex(64)
    ix.add(rng.integers(0, 256, (n, 8), dtype=np.uint8), paths=[f"img/{i}.jpg" for i in range(n)],
           labels=rng.integers(0, 10, n), features=rng.normal(size=(n, dim)).astype(np.float16))
    path = folder / f"bench-{n}.dhi"
    ix.save(path)

    pending: list[int] = []
    mem: dict[str, list[float]] = {"add": [], "remove": []}

    def mutate(kind, fn):
        t0 = time.perf_counter()
        out = fn()
        mem[kind].append((time.perf_counter() - t0) * 1000)
        return out

    add_t, rm_t = [], []  # the append + fsync only; the in-memory change is timed apart
    for _ in range(repeats):
        new = mutate("add", lambda: ix.add(rng.integers(0, 256, (1, 8), dtype=np.uint8), paths=["new.jpg"], labels=[1],
                                    features=rng.normal(size=(1, dim))))
        pending.append(int(new[0]))
        add_t.append(_median_ms(lambda: ix.log_added([pending[-1]]), 1))
    for _ in range(repeats):
        i = pending.pop()
        mutate("remove", lambda: ix.remove([i]))
        rm_t.append(_median_ms(lambda: ix.log_removed([i]), 1))
    add_ms, remove_ms = statistics.median(add_t), statistics.median(rm_t)
    journal_bytes = ix.journal_bytes
    rewrite_ms = _median_ms(lambda: ix.save(path), max(3, repeats // 3))
    size = path.stat().st_size
    return {"n": n, "dim": dim, "index_mb": size / 2**20, "journal_add_ms": add_ms, "journal_remove_ms": remove_ms,
            "rewrite_ms": rewrite_ms, "rewrite_over_add": rewrite_ms / add_ms, "journal_bytes_per_change":
            journal_bytes / (2 * repeats), "in_memory_add_ms": statistics.median(mem["add"]),
            "in_memory_remove_ms": statistics.median(mem["remove"]), "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="5000,50000,200000")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--dir", default=None, help="where to write the index files (default: a temporary folder)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        for n in (int(x) for x in a.n.split(",")):
            rows.append(run(n, a.dim, a.repeats, Path(d)))
            r = rows[-1]
            print(f"n={n}: add {r['journal_add_ms']:.2f} ms, rewrite {r['rewrite_ms']:.1f} ms", flush=True)
    print("\n| images | index file | journal add | journal remove | rewrite (before) | rewrite / add | bytes per change | in-memory add | in-memory remove |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']:,} | {r['index_mb']:.1f} MB | {r['journal_add_ms']:.2f} ms | {r['journal_remove_ms']:.2f} ms | "
              f"{r['rewrite_ms']:.1f} ms | {r['rewrite_over_add']:.0f}x | {r['journal_bytes_per_change']:.0f} | "
              f"{r['in_memory_add_ms']:.2f} ms | {r['in_memory_remove_ms']:.1f} ms |")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
