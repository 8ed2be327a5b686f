"""Several end-to-end fine-tuning variants back to back on one CIFAR-10 protocol, in one process
(data decoded once, cuDNN autotuning paid once); each variant's JSON is written as soon as it ends.

  python bench/finetune_sweep.py --protocol 1k5k54k --out $OUT \
      --variants '[{"name": "csq-bb03-e40", "method": "csq", "epochs": 40, "backbone_lr_mult": 0.3}]'

A variant is a dict of FinetuneConfig fields (``params`` for the method's own) plus ``name``.
Evaluation is cheap on purpose: Hamming mAP (@all on 1k5k54k, @1000 on 10k50k) and the query
classification accuracy; no coarse-to-fine. ``val_fraction`` defaults to 0 here (all training
images train, no per-epoch validation, the final weights are evaluated).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_cifar import protocol_indices  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--protocol", default="1k5k54k", choices=["10k50k", "1k5k54k"])
    ap.add_argument("--variants", required=True, help="JSON list of dicts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--save-max-mb", type=float, default=16.0)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default="runs/sweep")
    a = ap.parse_args()

    import torch

    from deephash.data import load_cifar10
    from deephash.eval.retrieval import hamming_map
    from deephash.index.codes import pack_bits
    from deephash.train.finetune import archive_images, embed_images, fine_tune, save_finetuned

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    arc = load_cifar10(a.data)
    labels, splits = arc.labels, np.asarray(arc.splits)
    q, tr, db, topk = protocol_indices(labels, splits, a.protocol, a.seed, a.tiny)
    need = np.unique(np.concatenate([q, tr, db]))
    imgs, y_all, kept, failed = archive_images(arc, need, store_size=32, workers=a.workers)
    pos = {int(i): r for r, i in enumerate(kept)}
    take = lambda ix: np.array([pos[int(i)] for i in ix if int(i) in pos])  # noqa: E731
    rq, rtr, rdb = take(q), take(tr), take(db)
    t_data = time.perf_counter() - t0
    print(f"data: {len(rq)} q, {len(rtr)} train, {len(rdb)} db in {t_data:.1f}s", file=sys.stderr, flush=True)
    for v in json.loads(a.variants):
        v = dict(v)
        name = v.pop("name")
        method = v.pop("method", "dlbhc")
        v.setdefault("val_fraction", 0.0)
        v.setdefault("seed", a.seed)
        tv = time.perf_counter()
        h = fine_tune(method, imgs[rtr], y_all[rtr], **v)
        rep = h.report_
        te = time.perf_counter()
        dq, aq = embed_images(h, imgs[rq], batch=1024)
        _, adb = embed_images(h, imgs[rdb], batch=1024)
        t_embed = time.perf_counter() - te
        yq, ydb = y_all[rq], y_all[rdb]
        res = {"name": name, "method": method, "protocol": a.protocol, "map_at": topk or "all", "n_query": len(rq),
               "n_train": len(rtr), "n_database": len(rdb), "variant": v, "recipe": h.finetune_,
               "map": hamming_map(pack_bits(aq >= h.threshold), pack_bits(adb >= h.threshold), yq, ydb, topk),
               "bit_mean": float((adb >= h.threshold).mean()),
               "query_accuracy": float((h.classify(dq) == yq).mean()) if hasattr(h, "classify") else None,
               "embed_seconds": t_embed, "embed_images_per_second": (len(rq) + len(rdb)) / t_embed,
               "train": {k: rep[k] for k in rep if k != "val"}, "loss_log": h.history_.get("loss", [])[-8:],
               "data_seconds": t_data, "variant_seconds": time.perf_counter() - tv, "torch": torch.__version__}
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
