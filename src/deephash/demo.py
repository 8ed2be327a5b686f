"""``deephash demo``: CIFAR-10 end to end — features, the hasher, an index, search, mAP against LSH and float kNN."""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deephash import __version__
from deephash.backbones import DEFAULT_BACKBONE, create_backbone
from deephash.data.datasets import load_cifar10
from deephash.data.sampling import per_class_sample
from deephash.eval.metrics import mean_average_precision, relevance_matrix, tie_aware_map
from deephash.features import extract_features
from deephash.hashers import create_hasher
from deephash.hashers.base import require_hamming_codes
from deephash.index import HashIndex, hamming_matrix
from deephash.utils import Timer, atomic_write_json, seed_everything


def cosine_distances(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    dn = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return -(qn @ dn.T)


@dataclass
class DemoConfig:
    """The demo's protocol: ``n_query`` test images (equal per class) against the training split."""

    data: str | None = None
    bits: int = 64
    backbone: str = DEFAULT_BACKBONE
    image_size: int = 128
    n_query: int = 1000
    n_database: int | None = None  # None: the whole training split (50,000)
    topk: int = 1000
    method: str = "mhcln"
    loss_variant: str = "code"
    n_iters: int = 4000
    seed: int = 0
    out_dir: str = "runs/demo"
    progress: bool = True


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """CIFAR-10 end to end: features -> train the hasher -> index -> search -> mAP vs LSH and float kNN."""
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = (lambda *a: print(*a, file=sys.stderr)) if cfg.progress else (lambda *a: None)
    archive = load_cifar10(cfg.data)
    q_pos = per_class_sample(archive.labels, archive.split_indices("test"), cfg.n_query, rng)
    db_pos = per_class_sample(archive.labels, archive.split_indices("train"), cfg.n_database, rng)
    backbone = create_backbone(cfg.backbone, image_size=cfg.image_size)
    say(f"deephash demo: {len(q_pos)} queries (test) vs {len(db_pos)} database images (train), {cfg.bits} bits, "
        f"{cfg.backbone}@{cfg.image_size}px")
    fq = extract_features(archive, backbone, q_pos, progress=cfg.progress)
    fd = extract_features(archive, backbone, db_pos, progress=cfg.progress)
    yq, yd = archive.labels[fq.index], archive.labels[fd.index]
    results: dict[str, Any] = {"map": {}, "tie_aware_map": {}, "map_all": {}, "train_s": {}, "encode_s": {}}
    rel = relevance_matrix(yq, yd)

    # the float-feature ceiling: exact cosine kNN
    with Timer() as t:
        dist = cosine_distances(fq.features, fd.features)
    results["map"]["float_knn"] = mean_average_precision(dist, rel, cfg.topk)
    results["tie_aware_map"]["float_knn"] = tie_aware_map(dist, rel, cfg.topk)
    results["map_all"]["float_knn"] = mean_average_precision(dist, rel)
    results["float_query_s"] = t.seconds

    require_hamming_codes(create_hasher(cfg.method, cfg.bits))  # the demo ends in a Hamming index
    hashers = {}
    for name in ("lsh", cfg.method):
        params: dict[str, Any] = {"seed": cfg.seed}
        if name == "mhcln":
            params.update(loss_variant=cfg.loss_variant, n_iters=cfg.n_iters)
        h = create_hasher(name, cfg.bits, **params)
        with Timer() as t:
            h.fit(fd.features, yd) if h.supervised else h.fit(fd.features)
        results["train_s"][name] = t.seconds
        with Timer() as t:
            cd = h.encode(fd.features)
        results["encode_s"][name] = t.seconds
        cq = h.encode(fq.features)
        hd = hamming_matrix(cq, cd)
        results["map"][name] = mean_average_precision(hd, rel, cfg.topk)
        results["tie_aware_map"][name] = tie_aware_map(hd, rel, cfg.topk)
        results["map_all"][name] = mean_average_precision(hd, rel)
        hashers[name] = (h, cq, cd)
        say(f"  {name}: mAP@{cfg.topk} = {results['map'][name]:.4f}  (train {results['train_s'][name]:.1f} s)")

    h, cq, cd = hashers[cfg.method]
    ckpt = h.save(out / f"{cfg.method}-{cfg.bits}.pt", backbone=backbone.name, preprocessing=backbone.preprocessing.to_dict())
    from deephash.model import ModelIdentity, checkpoint_digest

    identity = ModelIdentity(cfg.method, cfg.bits, checkpoint_digest(ckpt)).to_dict()
    index = HashIndex(cfg.bits, meta={"model": ckpt.name, "model_identity": identity, "method": cfg.method,
                                      "backbone": backbone.describe(),
                                      "archive_root": str(archive.root), "deephash_version": __version__},
                      class_names=archive.class_names)
    index.add(cd, ids=fd.index, paths=[archive.paths[i] for i in fd.index], labels=yd, features=fd.features)
    index_path = index.save(out / "index.dhi")
    index = HashIndex.load(index_path)
    with Timer() as t:
        D, I = index.search(cq, cfg.topk)
    results["query_s"] = t.seconds
    skipped = archive.skipped + fq.failed + fd.failed
    report = {
        "dataset": "cifar10",
        "bits": cfg.bits,
        "n_query": int(len(fq.index)),
        "n_database": int(len(fd.index)),
        "protocol": {
            "name": "demo-cifar10-test-vs-train",
            "query": f"{len(fq.index)} test images, {cfg.n_query // 10} per class, seed {cfg.seed}",
            "database": "the training split" + ("" if cfg.n_database is None else f", {cfg.n_database} images per-class sample"),
            "training": "the database images (10% held out per class for early stopping)",
            "map_at": cfg.topk,
            "relevance": "same class",
            "ties": "mAP: Hamming ties ordered by database position (class order for CIFAR-10); "
                    "tie_aware_map: the expected AP over random orders within each tie",
            "ap_normalisation": "AP divides by the relevant items found in the top K; a query with none scores 0",
        },
        "index_path": str(index_path),
        "checkpoint": str(ckpt),
        "map": results["map"],
        "tie_aware_map": results["tie_aware_map"],
        "map_all": results["map_all"],
        "timings_s": {"train": results["train_s"], "encode_database_codes": results["encode_s"],
                      "feature_extraction": fq.seconds + fd.seconds,
                      "index_search_all_queries": results["query_s"],
                      "index_query_ms": 1000 * results["query_s"] / max(1, len(cq)),
                      "float_knn_all_queries": results["float_query_s"]},
        "backbone": backbone.describe(),
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "n_skipped": len(skipped),
        "config": asdict(cfg),
        "deephash_version": __version__,
    }
    atomic_write_json(out / "demo.json", report)
    return report


def format_demo_table(r: dict[str, Any]) -> str:
    K = r["protocol"]["map_at"]
    lines = [f"deephash demo — CIFAR-10, {r['bits']} bits, {r['n_query']} queries vs {r['n_database']} database images",
             f"protocol: {r['protocol']['query']}; database: {r['protocol']['database']}; mAP@{K}; {r['protocol']['ties']}",
             "", f"| method | mAP@{K} | tie-aware mAP@{K} | mAP@all |", "|---|---|---|---|"]
    for m in ("lsh", r["config"]["method"], "float_knn"):
        lines.append(f"| {m} | {r['map'][m]:.4f} | {r['tie_aware_map'][m]:.4f} | {r['map_all'][m]:.4f} |")
    t = r["timings_s"]
    lines += ["", f"feature extraction: {t['feature_extraction']:.1f} s; training {r['config']['method']}: "
                  f"{t['train'][r['config']['method']]:.1f} s; encode database codes: {t['encode_database_codes'][r['config']['method']]:.3f} s",
              f"index query: {t['index_query_ms']:.3f} ms/query (k={K}); float kNN all queries: {t['float_knn_all_queries']:.2f} s",
              f"skipped images: {r['n_skipped']}", f"index written to {r['index_path']} (model {r['checkpoint']})"]
    return "\n".join(lines)
