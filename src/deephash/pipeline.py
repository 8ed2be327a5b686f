"""End-to-end jobs that the CLI and the Python API share: train on an archive, build an index, the demo."""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deephash import __version__
from deephash.backbones import DEFAULT_BACKBONE, create_backbone
from deephash.data.archive import ImageArchive
from deephash.data.datasets import load_cifar10
from deephash.errors import ConfigError
from deephash.eval.metrics import mean_average_precision, relevance_matrix, tie_aware_map
from deephash.features import extract_features
from deephash.hashers import create_hasher
from deephash.hashers.base import require_hamming_codes
from deephash.index import HashIndex, hamming_matrix
from deephash.utils import Timer, atomic_write_json, seed_everything


def per_class_sample(labels: np.ndarray, pool: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices from ``pool`` with the same count per class (all of ``pool`` when n is None)."""
    if n is None or n >= len(pool):
        return np.sort(pool)
    keys = labels[pool] if labels.ndim == 1 else np.argmax(labels[pool], axis=1)
    classes = np.unique(keys)
    per = n // len(classes)
    if per < 1:
        raise ConfigError(f"cannot draw {n} images evenly from {len(classes)} classes")
    out = [rng.choice(pool[keys == c], size=min(per, int((keys == c).sum())), replace=False) for c in classes]
    return np.sort(np.concatenate(out))


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
    index = HashIndex(cfg.bits, meta={"model": ckpt.name, "method": cfg.method, "backbone": backbone.describe(),
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


def build_index(archive: ImageArchive, checkpoint: str | os.PathLike, out: str | os.PathLike, *,
                store_features: bool = True, progress: bool = True) -> tuple[HashIndex, list[tuple[str, str]]]:
    """Encode every image of ``archive`` with the checkpoint's backbone + hasher and save an index.

    Returns the index and the skipped files (path, reason)."""
    from deephash.model import HashModel

    model = HashModel.load(checkpoint)
    fs = extract_features(archive, model.backbone, progress=progress)
    codes = model.hasher.encode(fs.features)
    out = Path(out)
    rel_model = os.path.relpath(Path(checkpoint).resolve(), out.resolve().parent)
    index = HashIndex(model.hasher.n_bits, class_names=archive.class_names, code_kind=model.hasher.code_kind,
                      meta={"model": rel_model, "method": model.hasher.name, "backbone": model.backbone.describe(),
                            "archive_root": str(archive.root.resolve()), "deephash_version": __version__})
    index.add(codes, ids=fs.index, paths=[archive.paths[i] for i in fs.index],
              labels=archive.labels[fs.index] if archive.labelled else None,  # a flat unlabelled folder: none
              features=fs.features if store_features else None)
    index.save(out)
    return index, archive.skipped + fs.failed


#: paths of images added through the service (kept in ``<index>.uploads/``, not in the archive)
UPLOAD_PREFIX = "@uploads/"


@dataclass
class IndexUpdate:
    """What :func:`update_index` changed."""

    added: int
    removed: int
    skipped: list[tuple[str, str]]
    total: int
    rewritten: bool  # True: the index file was rewritten; False: the changes went to its journal
    journal_bytes: int


def _index_labels(index: HashIndex, archive: ImageArchive, rows: np.ndarray) -> np.ndarray | None:
    """``archive.labels[rows]`` in the index's class numbering; new class names are appended to it."""
    if index.labels is None:
        return None
    if archive.labels.ndim == 2:
        if list(archive.class_names) != list(index.class_names):
            raise ConfigError(f"this multi-label archive's classes ({', '.join(archive.class_names)}) differ from the "
                              f"index's ({', '.join(index.class_names)}); rebuild the index with deephash index")
        return archive.labels[rows]
    out = np.empty(len(rows), np.int64)
    for j, lab in enumerate(archive.labels[rows]):
        name = archive.class_names[int(lab)]
        if name not in index.class_names:
            index.class_names.append(name)
        out[j] = index.class_names.index(name)
    return out


def update_index(archive: ImageArchive, checkpoint: str | os.PathLike, index_path: str | os.PathLike, *,
                 prune: bool = False, progress: bool = True, fold_ratio: float = 0.25) -> IndexUpdate:
    """Bring a saved index up to date with its archive without retraining: encode and add the
    images it does not hold yet (matched by path), and with ``prune`` remove the entries whose
    files are gone. Changes are appended to the index's journal; the file is rewritten (the
    journal folded in) when the journal passes ``fold_ratio`` of it or new class names appeared."""
    from deephash.model import HashModel

    index_path = Path(index_path)
    index = HashIndex.load(index_path)
    used = model_path_of(index, index_path).resolve()
    if used != Path(checkpoint).resolve():
        raise ConfigError(f"{index_path} was built with {used}, not {Path(checkpoint).resolve()}: codes of another "
                          "model are not comparable; use that model, or rebuild the index with deephash index")
    root = index.meta.get("archive_root")
    if root and Path(root).resolve() != archive.root.resolve():
        raise ConfigError(f"{index_path} indexes the archive at {root}; got {archive.root.resolve()}")
    model = HashModel.load(checkpoint)
    have = set(index.paths)
    new_rows = np.array([i for i, p in enumerate(archive.paths) if p not in have], np.int64)
    n_classes = len(index.class_names)
    added = np.zeros(0, np.int64)
    failed: list[tuple[str, str]] = []
    if len(new_rows):
        fs = extract_features(archive, model.backbone, new_rows, progress=progress)
        failed = fs.failed
        if len(fs.index):
            added = index.add(model.hasher.encode(fs.features), paths=[archive.paths[i] for i in fs.index],
                              labels=_index_labels(index, archive, fs.index),
                              features=fs.features if index.has_features else None)
    gone: list[int] = []
    if prune:
        present = set(archive.paths)
        gone = [int(i) for i, p in zip(index.ids, index.paths) if not p.startswith(UPLOAD_PREFIX) and p not in present]
        if gone:
            index.remove(gone)
    rewrite = len(index.class_names) != n_classes  # the class names live in the file's header
    if not rewrite:
        if len(added):
            index.log_added(added)
        if gone:
            index.log_removed(gone)
        rewrite = index.journal_outgrown(fold_ratio)
    if rewrite:
        index.save(index_path)
    return IndexUpdate(int(len(added)), len(gone), archive.skipped + failed, len(index), rewrite, index.journal_bytes)


def _label_name(index: HashIndex, row: int) -> Any:
    lab = index.label_of_row(row)
    if lab is not None and index.class_names:
        lab = index.class_names[lab] if isinstance(lab, int) else [index.class_names[j] for j in lab]
    return lab


def model_path_of(index: HashIndex, index_path: str | os.PathLike) -> Path:
    m = index.meta.get("model")
    if not m:
        raise ConfigError(f"{index_path}: the index names no model, so images cannot be searched (only codes)")
    p = Path(m)
    return p if p.is_absolute() else (Path(index_path).resolve().parent / p)


def search_image(index_path: str | os.PathLike, image: str | os.PathLike | bytes, *, k: int = 10,
                 rerank: bool = False) -> dict[str, Any]:
    """Search one image in a saved index; returns neighbours with distances, labels, paths and timings."""
    from deephash.model import HashModel

    if k < 1:
        raise ConfigError(f"k must be >= 1; got {k}")
    index = HashIndex.load(index_path)
    model = HashModel.load(model_path_of(index, index_path))
    codes, feats, timings = model.encode_images([image])
    return search_loaded(index, codes, feats, timings, k=k, rerank=rerank, hasher=model.hasher)


def search_loaded(index: HashIndex, codes: np.ndarray, feats: np.ndarray, timings: dict[str, float], *, k: int,
                  rerank: bool, hasher=None) -> dict[str, Any]:
    """Search already-encoded query codes in an open index (shared by the CLI and the service).

    An index of quantisation codes (PQ / DPQ) is ranked by the ``hasher``'s asymmetric distance
    from the query's float features; its items carry ``distance`` instead of ``hamming``."""
    pq = index.code_kind != "hamming"
    if pq and rerank:
        raise ConfigError(f"--rerank is DLBHC's Hamming pool + feature re-ranking; this index holds "
                          f"{index.code_kind!r} codes, which are ranked by asymmetric distance already")
    if pq and (hasher is None or hasher.code_kind != index.code_kind):
        raise ConfigError(f"this index holds {index.code_kind!r} codes: searching it needs the model that made them")
    with Timer() as t:
        if rerank:
            r = index.search_rerank(codes, feats, k)[0]
            ids, dist, extra = r.ids, r.hamming, {"pool_size": r.pool_size, "radius": r.radius, "feature_distance": r.distances.tolist()}
        else:
            D, I = (index.search_asymmetric(lambda c: hasher.query_distances(feats, c), k) if pq
                    else index.search(codes, k))
            keep = I[0] >= 0
            ids, dist, extra = I[0][keep], D[0][keep], {}
    timings = {**timings, ("rerank" if rerank else "search"): t.seconds}
    key, as_value = ("distance", float) if pq else ("hamming", int)
    rows = index.rows_of(ids) if len(ids) else np.zeros(0, np.int64)
    results = []
    for i, (id_, d, row) in enumerate(zip(ids, dist, rows)):
        item = {"id": int(id_), key: as_value(d), "label": _label_name(index, int(row)), "path": index.paths[int(row)]}
        if rerank:
            item["feature_distance"] = float(extra["feature_distance"][i])
        results.append(item)
    out = {"results": results, "timings_ms": {k2: round(v * 1000, 3) for k2, v in timings.items()},
           "code": codes[0].tobytes().hex()}
    if rerank:
        out.update(pool_size=extra["pool_size"], radius=extra["radius"])
    if pq:
        out["distance"] = f"asymmetric ({index.code_kind})"
    return out
