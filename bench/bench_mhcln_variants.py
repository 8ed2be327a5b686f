"""MHCLN's two loss formulations on CIFAR-10 (the measurement behind the default ``loss_variant``).

    python bench/bench_mhcln_variants.py [--iters 3000] [--n-train 10000] [--bits 64]

Frozen EfficientNet-Lite0 (128 px) features; trains on a per-class sample of the training split,
queries 1,000 test images (100 per class) against all 50,000 training images; mAP@1000 and the
tie-aware mAP@1000.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from deephash.backbones import create_backbone
from deephash.data import load_cifar10
from deephash.eval.metrics import mean_average_precision, relevance_matrix, tie_aware_map
from deephash.features import extract_features
from deephash.hashers import create_hasher
from deephash.index import hamming_matrix
from deephash.data.sampling import per_class_sample


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--bits", type=int, default=64)
    a = ap.parse_args()
    archive = load_cifar10()
    fs = extract_features(archive, create_backbone("efficientnet-lite0", image_size=128))
    X, y, sp = fs.features, archive.labels[fs.index], np.asarray(archive.splits)[fs.index]
    q = per_class_sample(y, np.flatnonzero(sp == "test"), 1000, np.random.default_rng(0))
    d = np.flatnonzero(sp == "train")
    t = per_class_sample(y, d, a.n_train, np.random.default_rng(1))
    rel = relevance_matrix(y[q], y[d])
    print("| loss_variant | mAP@1000 | tie-aware mAP@1000 | train s |\n|---|---|---|---|")
    for variant in ("code", "paper"):
        h = create_hasher("mhcln", a.bits, loss_variant=variant, n_iters=a.iters, seed=0)
        t0 = time.time()
        h.fit(X[t], y[t])
        dt = time.time() - t0
        H = hamming_matrix(h.encode(X[q]), h.encode(X[d]))
        print(f"| {variant} | {mean_average_precision(H, rel, 1000):.4f} | {tie_aware_map(H, rel, 1000):.4f} | {dt:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
