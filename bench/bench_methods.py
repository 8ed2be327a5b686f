"""Method comparison on a precomputed feature file — a thin wrapper over
:func:`deephash.bench.run_methods_bench` (the ``deephash bench methods`` command calls the same function).

    python bench/bench_methods.py --features ~/.cache/deephash/cifar10-lite0-128.npz \\
        --protocol cifar10-54k --bits 16,32,48,64 --json runs/bench/methods-54k.json --md runs/bench/methods-54k.md

The .npz holds ``features`` (n, d), ``labels`` (n,) and ``splits`` (n,) of 'train'/'test'.
``--param mhcln.n_iters=3000`` overrides a method's constructor argument (value parsed as JSON if it can be).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from deephash.bench import run_methods_bench
from deephash.errors import DeepHashError


def _params(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for it in items:
        key, sep, val = it.partition("=")
        method, dot, name = key.rpartition(".")
        if not sep or not dot:
            raise SystemExit(f"--param takes METHOD.NAME=VALUE (e.g. mhcln.n_iters=3000); got {it!r}")
        try:
            v = json.loads(val)
        except json.JSONDecodeError:
            v = val
        out.setdefault(method, {})[name] = v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", required=True, help=".npz with features, labels, splits")
    ap.add_argument("--protocol", default="cifar10-50k", choices=["cifar10-50k", "cifar10-54k", "demo"])
    ap.add_argument("--bits", default="16,32,48,64")
    ap.add_argument("--methods", default=None, help="comma-separated (default: every registered hasher)")
    ap.add_argument("--n-query", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", dest="json_path", default=None)
    ap.add_argument("--md", dest="md_path", default=None)
    ap.add_argument("--param", action="append", default=[], help="METHOD.NAME=VALUE, repeatable")
    ap.add_argument("--resume", action="store_true", help="keep the finished rows of an existing --json")
    a = ap.parse_args(argv)
    with np.load(a.features, allow_pickle=False) as z:
        features, labels = z["features"], z["labels"]
        splits = z["splits"] if "splits" in z.files else None
    try:
        report = run_methods_bench(
            features, labels, splits, methods=a.methods.split(",") if a.methods else None,
            bits=[int(b) for b in a.bits.split(",")], protocol=a.protocol, n_query=a.n_query, seed=a.seed,
            json_path=a.json_path, md_path=a.md_path, method_params=_params(a.param), resume=a.resume, progress=True)
    except DeepHashError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from deephash.bench import format_methods_markdown

    print(format_methods_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
