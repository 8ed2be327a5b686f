"""``deephash bench ...``: benchmarks that print a Markdown table and write JSON."""
from __future__ import annotations

import os

import click


@click.group()
def bench() -> None:
    """Benchmarks (search speed, method comparison)."""


@bench.command("search")
@click.option("--n", type=int, default=1_000_000, show_default=True, help="database codes")
@click.option("--bits", type=int, default=64, show_default=True)
@click.option("--k", type=int, default=100, show_default=True)
@click.option("--queries", "n_queries", type=int, default=1000, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--random", "random_codes", is_flag=True, help="uniformly random codes instead of class-clustered ones")
@click.option("--repeats", type=int, default=5, show_default=True)
@click.option("--sublinear", default="ivf,hnsw,mih,radius", show_default=True,
              help="comma-separated sub-linear indexes to measure ('' for none)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "json_path", type=click.Path(), default=None)
def bench_search(n, bits, k, n_queries, threads, random_codes, repeats, sublinear, seed, json_path):
    """Exact search QPS against FAISS IndexBinaryFlat and the XOR+popcount ceiling; sub-linear recall curves."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from deephash.bench.search_bench import run_search_bench

    subs = [s for s in sublinear.split(",") if s] or None
    run_search_bench(n, bits, k, n_queries, threads, not random_codes, json_path, repeats=repeats, seed=seed,
                     sublinear=subs)
