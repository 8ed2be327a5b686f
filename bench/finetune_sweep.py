"""Several end-to-end fine-tuning variants back to back on one CIFAR-10 protocol, in one process
(data decoded once, cuDNN autotuning paid once); each variant's JSON is written as soon as it ends.

  python bench/finetune_sweep.py --protocol cifar10-54k --out $OUT \
      --variants '[{"name": "csq-bb03-e40", "method": "csq", "epochs": 40, "backbone_lr_mult": 0.3}]'

A variant is a dict of FinetuneConfig fields (``params`` for the method's own) plus ``name``.
Evaluation is cheap on purpose: Hamming mAP (the protocol's cutoff) and the query classification
accuracy; no coarse-to-fine. ``val_fraction`` defaults to 0 here (all training images train, no
per-epoch validation, the final weights are evaluated).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--protocol", default="cifar10-54k")
    ap.add_argument("--variants", required=True, help="JSON list of dicts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--cache", default=None, help="npz of all decoded images, reused across runs")
    ap.add_argument("--save-max-mb", type=float, default=16.0)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default="runs/sweep")
    a = ap.parse_args()

    import torch

    from deephash.bench.finetune_bench import evaluate_finetuned, load_protocol_images
    from deephash.data import load_cifar10
    from deephash.train.finetune import fine_tune, save_finetuned

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_protocol_images(load_cifar10(a.data), a.protocol, seed=a.seed, tiny=a.tiny, workers=a.workers,
                                cache=a.cache)
    for v in json.loads(a.variants):
        v = dict(v)
        name = v.pop("name")
        method = v.pop("method", "dlbhc")
        v.setdefault("val_fraction", 0.0)
        v.setdefault("seed", a.seed)
        tv = time.perf_counter()
        h = fine_tune(method, data.images[data.train], data.labels[data.train], **v)
        rep = h.report_
        res = {"name": name, "method": method, "variant": v, "recipe": h.finetune_, **evaluate_finetuned(h, data),
               "train": {k: rep[k] for k in rep if k != "val"}, "loss_log": h.history_.get("loss", [])[-8:],
               "data_seconds": data.seconds, "variant_seconds": time.perf_counter() - tv, "torch": torch.__version__}
        ck = save_finetuned(h, out / f"{name}.pt")
        res["checkpoint_mb"] = ck.stat().st_size / 2**20
        if res["checkpoint_mb"] > a.save_max_mb:
            ck.unlink()
        (out / f"{name}.json").write_text(json.dumps(res, indent=1, default=str))
        print("RESULT " + json.dumps({"name": name, "map": res["map"], "acc": res["query_accuracy"],
                                      "s_per_epoch": rep["seconds_per_epoch"], "img_s": rep["images_per_second"],
                                      "variant_s": res["variant_seconds"]}), flush=True)
        del h
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
