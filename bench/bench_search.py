"""Exact and sub-linear Hamming search benchmark (thin wrapper over deephash.bench.search_bench).

    python bench/bench_search.py --n 1000000 --bits 64 --k 100 --json out.json
"""
import os

# numpy's OpenBLAS threads spin on the second core after start-up; a 2-core machine has none to spare
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402

from deephash.bench.search_bench import run_search_bench  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000, help="database codes")
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--random", action="store_true", help="uniform random codes instead of clustered ones")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sublinear", default="ivf,hnsw,mih,radius", help="comma-separated; empty for none")
    p.add_argument("--radius", type=int, default=2)
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args()
    run_search_bench(a.n, a.bits, a.k, a.queries, a.threads, not a.random, a.json, repeats=a.repeats, seed=a.seed,
                     sublinear=[s for s in a.sublinear.split(",") if s], radius=a.radius)


if __name__ == "__main__":
    main()
