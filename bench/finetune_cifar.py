"""End-to-end fine-tuning on CIFAR-10 under the two standard protocols; writes JSON + checkpoints.

  10k50k   : 10,000 test queries vs the 50,000 training images as database; train on train; mAP@1000
  1k5k54k  : from all 60,000 images, 1,000 queries (100/class) and 5,000 training images
             (500/class); the other 54,000 are the database; mAP@all

Usage (GPU):  python bench/finetune_cifar.py --protocol 1k5k54k --method spp-pmt --epochs 30 --out runs/e2e
Tiny CPU check: python bench/finetune_cifar.py --protocol 1k5k54k --tiny --out /tmp/e2e
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def protocol_indices(labels: np.ndarray, splits: np.ndarray, name: str, seed: int, tiny: bool = False):
    rng = np.random.default_rng(seed)
    if name == "10k50k":
        q, tr = np.flatnonzero(splits == "test"), np.flatnonzero(splits == "train")
        db = tr
        topk = 1000
    elif name == "1k5k54k":
        q, tr = [], []
        for c in np.unique(labels):
            ix = rng.permutation(np.flatnonzero(labels == c))
            q.append(ix[:100])
            tr.append(ix[100:600])
        q, tr = np.sort(np.concatenate(q)), np.sort(np.concatenate(tr))
        db = np.setdiff1d(np.arange(len(labels)), np.concatenate([q, tr]))
        topk = None
    else:
        raise SystemExit(f"unknown protocol {name}")
    if tiny:  # a few per class, for a CPU check of the whole script
        def few(ix, n):
            return np.sort(np.concatenate([ix[labels[ix] == c][:n] for c in np.unique(labels)]))
        q, tr, db = few(q, 3), few(tr, 8), few(db, 10)
    return q, tr, db, topk


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--protocol", default="1k5k54k", choices=["10k50k", "1k5k54k"])
    ap.add_argument("--method", default="spp-pmt")
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--backbone-lr-mult", type=float, default=0.1)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--rerank-queries", type=int, default=1000, help="queries for the coarse-to-fine evaluation")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--cache", default=None, help="npz of all decoded images, reused across runs")
    ap.add_argument("--out", default="runs/e2e")
    a = ap.parse_args()

    import torch

    from deephash.data import load_cifar10
    from deephash.eval.retrieval import coarse_to_fine_evaluation, hamming_map
    from deephash.index.codes import pack_bits
    from deephash.train.finetune import archive_images, embed_images, fine_tune, save_finetuned

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    arc = load_cifar10(a.data)
    labels, splits = arc.labels, np.asarray(arc.splits)
    q, tr, db, topk = protocol_indices(labels, splits, a.protocol, a.seed, a.tiny)
    need = np.unique(np.concatenate([q, tr, db]))
    cache = Path(a.cache) if a.cache and not a.tiny else None
    if cache and cache.is_file():
        z = np.load(cache)
        imgs, y_all, kept, failed = z["imgs"][need], z["labels"][need], need, []
    else:
        imgs, y_all, kept, failed = archive_images(arc, need, store_size=32, workers=a.workers)
        if cache and len(need) == len(labels) and not failed:
            np.savez(cache, imgs=imgs, labels=y_all)
    pos = {int(i): r for r, i in enumerate(kept)}
    take = lambda ix: np.array([pos[int(i)] for i in ix if int(i) in pos])  # noqa: E731
    rq, rtr, rdb = take(q), take(tr), take(db)
    t_data = time.perf_counter() - t0
    print(f"data: {len(rq)} queries, {len(rtr)} train, {len(rdb)} database; decoded in {t_data:.1f}s "
          f"({len(failed)} failed)", file=sys.stderr, flush=True)

    h = fine_tune(a.method, imgs[rtr], y_all[rtr], bits=a.bits, epochs=a.epochs, image_size=a.image_size,
                  batch_size=a.batch_size, lr=a.lr, backbone_lr_mult=a.backbone_lr_mult, val_fraction=a.val_fraction,
                  seed=a.seed, progress=True)
    rep = h.report_
    print(f"trained: {rep['seconds_per_epoch']:.1f} s/epoch, {rep['images_per_second']:.0f} img/s", file=sys.stderr, flush=True)

    te = time.perf_counter()
    dq, aq = embed_images(h, imgs[rq])
    ddb, adb = embed_images(h, imgs[rdb])
    t_embed = time.perf_counter() - te
    cq, cdb = pack_bits(aq >= h.threshold), pack_bits(adb >= h.threshold)
    yq, ydb = y_all[rq], y_all[rdb]
    res = {"protocol": a.protocol, "map_at": topk or "all", "n_query": len(rq), "n_train": len(rtr),
           "n_database": len(rdb), "bits": a.bits, "method": a.method}
    tm = time.perf_counter()
    res["map"] = hamming_map(cq, cdb, yq, ydb, topk)
    res["map_seconds"] = time.perf_counter() - tm
    res["embed_seconds"] = t_embed
    res["embed_images_per_second"] = (len(rq) + len(rdb)) / t_embed
    res["bit_mean"] = float((adb >= h.threshold).mean())
    if hasattr(h, "classify"):
        res["query_accuracy"] = float((h.classify(dq) == yq).mean())
    if hasattr(h, "rerank_features") and a.rerank_queries > 0:
        nq = min(a.rerank_queries, len(rq))
        sel = np.random.default_rng(a.seed).choice(len(rq), nq, replace=False)
        k = topk or 1000
        tr0 = time.perf_counter()
        res["coarse_to_fine"] = coarse_to_fine_evaluation(cq[sel], h.rerank_features(dq[sel]), cdb,
                                                          h.rerank_features(ddb), yq[sel], ydb, k=k)
        res["coarse_to_fine"]["seconds"] = time.perf_counter() - tr0
    res["train"] = rep
    res["data_seconds"] = t_data
    res["torch"] = torch.__version__
    name = f"{a.method}-{a.protocol}-{a.bits}"
    ck = save_finetuned(h, out / f"{name}.pt")
    res["checkpoint"] = ck.name
    res["checkpoint_mb"] = ck.stat().st_size / 2**20
    res["total_seconds"] = time.perf_counter() - t0
    (out / f"{name}.json").write_text(json.dumps(res, indent=1, default=str))
    summary = {k: res[k] for k in ("protocol", "method", "map", "n_query", "n_database")}
    summary.update(s_per_epoch=rep["seconds_per_epoch"], img_s=rep["images_per_second"],
                   acc=res.get("query_accuracy"), c2f=res.get("coarse_to_fine", {}).get("map_coarse_to_fine"),
                   c2f_ham=res.get("coarse_to_fine", {}).get("map_hamming"), total_s=res["total_seconds"])
    print("RESULT " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
