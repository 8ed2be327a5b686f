"""End-to-end fine-tuning on CIFAR-10 under a named protocol; writes JSON + a checkpoint.

  cifar10-50k (alias 10k50k)  : 10,000 test queries vs the 50,000 training images; train on train; mAP@1000
  cifar10-54k (alias 1k5k54k) : from all 60,000 images, 1,000 queries (100/class) and 5,000 training
                                images (500/class); the other 54,000 are the database; mAP@all

The split is the registered protocol's (``deephash protocols``), as in ``deephash evaluate``.
Usage (GPU):  python bench/finetune_cifar.py --protocol cifar10-54k --method dlbhc --epochs 40 --out runs/e2e
Tiny CPU check: python bench/finetune_cifar.py --protocol cifar10-54k --tiny --epochs 1 --out /tmp/e2e
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--protocol", default="cifar10-54k")
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

    from deephash.bench.finetune_bench import evaluate_finetuned, load_protocol_images
    from deephash.data import load_cifar10
    from deephash.train.finetune import fine_tune, save_finetuned

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load_protocol_images(load_cifar10(a.data), a.protocol, seed=a.seed, tiny=a.tiny, workers=a.workers,
                                cache=a.cache)
    h = fine_tune(a.method, data.images[data.train], data.labels[data.train], bits=a.bits, epochs=a.epochs,
                  image_size=a.image_size, batch_size=a.batch_size, lr=a.lr, backbone_lr_mult=a.backbone_lr_mult,
                  val_fraction=a.val_fraction, seed=a.seed, progress=True)
    rep = h.report_
    print(f"trained: {rep['seconds_per_epoch']:.1f} s/epoch, {rep['images_per_second']:.0f} img/s", file=sys.stderr, flush=True)
    res = {"method": a.method, "bits": a.bits,
           **evaluate_finetuned(h, data, batch=512, rerank_queries=a.rerank_queries, seed=a.seed)}
    res.update(train=rep, data_seconds=data.seconds, torch=torch.__version__)
    name = f"{a.method}-{data.protocol}-{a.bits}"
    ck = save_finetuned(h, out / f"{name}.pt")
    res["checkpoint"] = ck.name
    res["checkpoint_mb"] = ck.stat().st_size / 2**20
    res["total_seconds"] = time.perf_counter() - t0
    (out / f"{name}.json").write_text(json.dumps(res, indent=1, default=str))
    c2f = res.get("coarse_to_fine", {})
    summary = {k: res[k] for k in ("protocol", "method", "map", "n_query", "n_database")}
    summary.update(s_per_epoch=rep["seconds_per_epoch"], img_s=rep["images_per_second"], acc=res["query_accuracy"],
                   c2f=c2f.get("map_coarse_to_fine"), c2f_ham=c2f.get("map_hamming"), total_s=res["total_seconds"])
    print("RESULT " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
