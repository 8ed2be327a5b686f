"""Evaluate hashers on cached CIFAR-10 backbone features: train on the 50k 'train' split, query
100 'test' images per class (1,000) against the 'train' database, mAP@1000 (and mAP@all).

    python scripts/survey_eval.py --features ~/.cache/deephash/cifar10-lite0-128.npz \
        --methods lsh itq mhcln dpsh csq csq:lam=0.1 --bits 64 --out results.jsonl [--set dpsh.lr=3e-4 ...]
"""
from __future__ import annotations

import argparse
import ast
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True)
    ap.add_argument("--methods", nargs="+", required=True)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-class", type=int, default=100, help="queries per class from the test split")
    ap.add_argument("--train-limit", type=int, default=0, help="train on the first N training rows only (0: all)")
    ap.add_argument("--set", nargs="*", default=[], help="method.param=value overrides")
    ap.add_argument("--out", default=None, help="append one JSON line per method here")
    ap.add_argument("--device", default=None, help="training device for deep hashers (default: their own, 'auto')")
    ap.add_argument("--float-knn", action="store_true", help="also score exact cosine kNN on the float features")
    a = ap.parse_args()

    import torch

    from deephash.eval.metrics import mean_average_precision, relevance_matrix
    from deephash.hashers import create_hasher

    d = np.load(a.features, allow_pickle=False)
    F, y, sp = d["features"].astype(np.float32), np.asarray(d["labels"]), np.asarray(d["splits"]).astype(str)
    tr, te = np.flatnonzero(sp == "train"), np.flatnonzero(sp == "test")
    rng = np.random.default_rng(a.seed)
    q = np.concatenate([rng.permutation(te[y[te] == c])[: a.per_class] for c in np.unique(y)])
    Xdb, ydb, Xq, yq = F[tr], y[tr], F[q], y[q]
    Xfit, yfit = (Xdb[: a.train_limit], ydb[: a.train_limit]) if a.train_limit else (Xdb, ydb)
    rel = relevance_matrix(yq, ydb)
    print(f"database {Xdb.shape}, queries {Xq.shape}, training {Xfit.shape}, torch threads {torch.get_num_threads()}", flush=True)
    overrides: dict[str, dict] = {}
    for s in a.set:
        k, v = s.split("=", 1)
        m, p = k.split(".", 1)
        try:
            v = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            pass
        overrides.setdefault(m, {})[p] = v
    rows = []
    if a.float_knn:
        Fn = Xdb / np.linalg.norm(Xdb, axis=1, keepdims=True)
        Qn = Xq / np.linalg.norm(Xq, axis=1, keepdims=True)
        dist = -(Qn @ Fn.T)
        rows.append({"method": "float-cosine-knn", "map@1000": mean_average_precision(dist, rel, 1000),
                     "map@all": mean_average_precision(dist, rel, None)})
        print(json.dumps(rows[-1]), flush=True)
    for spec in a.methods:
        # "name" or "name:param=value:param=value" (a variant for sweeps)
        name, *extra = spec.split(":")
        params = dict(overrides.get(name, {}))
        for e in extra:
            k, v = e.split("=", 1)
            try:
                params[k] = ast.literal_eval(v)
            except (ValueError, SyntaxError):
                params[k] = v
        h = create_hasher(name, a.bits, seed=a.seed, **params)
        if a.device and hasattr(h, "device"):
            h.device = a.device
        t0 = time.perf_counter()
        h.fit(Xfit, yfit) if h.supervised else h.fit(Xfit)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        codes = h.encode(Xdb)
        t_enc = time.perf_counter() - t0
        dist = h.query_distances(Xq, codes)
        hist = getattr(h, "history_", {}) or {}
        rows.append({"method": name, "spec": spec, "bits": a.bits, "seed": a.seed, "params": {k: v for k, v in h.get_params().items()},
                     "map@1000": round(mean_average_precision(dist, rel, 1000), 4),
                     "map@all": round(mean_average_precision(dist, rel, None), 4),
                     "fit_s": round(t_fit, 1), "encode_db_s": round(t_enc, 1), "iters": hist.get("iters"),
                     "best_val_map": hist.get("best_val_map"), "val": [round(v["map"], 4) for v in hist.get("val", [])]})
        print(json.dumps(rows[-1], default=str), flush=True)
        if a.out:
            with open(a.out, "a") as fh:
                fh.write(json.dumps(rows[-1], default=str) + "\n")


if __name__ == "__main__":
    main()
