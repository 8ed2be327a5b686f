"""End-to-end latency of one query image on CPU: decode -> backbone -> hash -> search -> re-rank.

Usage: python bench/bench_query_latency.py INDEX [--images N] [--k 10] [--json out.json]
Prints the median and p90 of each stage over N query images (first call excluded as warm-up).
"""
from __future__ import annotations

import argparse
import glob
import json
import statistics
import time
from pathlib import Path

from deephash.index import HashIndex
from deephash.model import HashModel
from deephash.pipeline import model_path_of, search_loaded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    index = HashIndex.load(a.index)
    model = HashModel.load(model_path_of(index, a.index))
    root = Path(index.meta["archive_root"])
    files = sorted(glob.glob(str(root / "test" / "*" / "*.jpg")))[:: max(1, 10000 // a.images)][: a.images + 1]
    stages: dict[str, list[float]] = {}
    for i, f in enumerate(files):
        for rerank in (False, True):
            t0 = time.perf_counter()
            codes, feats, t = model.encode_images([f])
            r = search_loaded(index, codes, feats, t, k=a.k, rerank=rerank)
            total = (time.perf_counter() - t0) * 1000
            if i == 0:
                continue  # warm-up
            for name, ms in r["timings_ms"].items():
                stages.setdefault(name, []).append(ms)
            stages.setdefault("total (rerank)" if rerank else "total (hamming)", []).append(total)
    rows = {n: {"median_ms": statistics.median(v), "p90_ms": sorted(v)[int(0.9 * (len(v) - 1))], "n": len(v)}
            for n, v in stages.items()}
    print(f"one query image, {len(index)} indexed, {index.n_bits} bits, k={a.k}, {len(files) - 1} queries")
    print("| stage | median ms | p90 ms |\n|---|---:|---:|")
    for n, r in rows.items():
        print(f"| {n} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
