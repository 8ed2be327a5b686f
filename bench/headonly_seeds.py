"""Head-only regime for the seed methods on cached EfficientNet-Lite0 CIFAR-10 features (CPU, minutes).

Protocol 1k/5k/54k (1,000 queries 100/class, 5,000 training 500/class from all 60,000; the
other 54,000 the database), mAP@all, plus mAP@1000 of plain Hamming vs DLBHC coarse-to-fine.
Usage: python bench/headonly_seeds.py [--image-size 128] [--iters 2000] [--out runs/headonly.json]
(features: EfficientNet-Lite0 on all 60,000 CIFAR-10 images, from deephash's resumable feature cache).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--methods", default="dlbhc,spp-pmt,deep-ranking")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    from deephash.eval.retrieval import coarse_to_fine_evaluation, hamming_map
    from deephash.hashers import create_hasher

    from deephash.eval.protocols import get_protocol

    from deephash.backbones import create_backbone
    from deephash.data import load_cifar10
    from deephash.features import extract_features

    archive = load_cifar10()
    fs = extract_features(archive, create_backbone("efficientnet-lite0", image_size=a.image_size))
    X, y = fs.features.astype(np.float32), archive.labels[fs.index]
    sp = get_protocol("cifar10-54k").split(y, seed=a.seed)
    q, tr, db = sp.query_idx, sp.train_idx, sp.db_idx
    res = {"protocol": "cifar10-54k", "bits": a.bits, "features": f"efficientnet-lite0@{a.image_size}px", "iters": a.iters, "methods": {}}
    for name in a.methods.split(","):
        h = create_hasher(name, a.bits, seed=a.seed, n_iters=a.iters, eval_every=max(1, a.iters // 4))
        t0 = time.perf_counter()
        h.fit(X[tr], y[tr])
        t_fit = time.perf_counter() - t0
        cq, cdb = h.encode(X[q]), h.encode(X[db])
        r = {"map_all": hamming_map(cq, cdb, y[q], y[db]), "train_s": t_fit}
        if hasattr(h, "classify"):
            r["query_accuracy"] = float((h.classify(X[q]) == y[q]).mean())
        c2f = coarse_to_fine_evaluation(cq[:200], h.rerank_features(X[q[:200]]), cdb, h.rerank_features(X[db]),
                                        y[q[:200]], y[db], k=1000)
        r["coarse_to_fine_200q"] = c2f
        res["methods"][name] = r
        print(name, json.dumps({k: v for k, v in r.items() if k != "coarse_to_fine_200q"}),
              "c2f@1000", round(c2f["map_coarse_to_fine"], 4), "hamming@1000", round(c2f["map_hamming"], 4),
              "pool", c2f["pool_size_mean"], "radius", c2f["radius_mean"], flush=True)
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
