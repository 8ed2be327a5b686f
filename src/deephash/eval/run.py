"""``deephash evaluate``: trained checkpoints (or methods trained head-only on the protocol's
training split) evaluated under one named protocol, written as a report (Markdown, JSON, PNGs)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from deephash.data.archive import ImageArchive
from deephash.errors import ConfigError
from deephash.eval.metrics import evaluate_codes, evaluate_distances, evaluate_features
from deephash.eval.protocols import Protocol, Split
from deephash.eval.report import write_report
from deephash.utils import Timer


def protocol_split(archive: ImageArchive, protocol: Protocol, seed: int, split_file: str | None,
                   out_dir: Path) -> Split:
    """The protocol's split for this archive: read from ``split_file`` or drawn and saved beside the report."""
    if split_file:
        return Split.load(split_file, archive.paths)
    split = protocol.split_archive(archive, seed)
    split.save(out_dir / "split.json", archive.paths)
    return split


def _hamming_ranking(idx, hasher, qf: np.ndarray, qcodes: np.ndarray, dcodes: np.ndarray, yq, yd, protocol: Protocol,
                     loo: bool) -> tuple[dict[str, Any], Any, int]:
    """Hamming codes: the metrics of the codes; the timed search is every query's code."""
    return evaluate_codes(qcodes, dcodes, yq, yd, protocol, exclude_self=loo or None), qcodes, len(qcodes)


def _asymmetric_ranking(idx, hasher, qf: np.ndarray, qcodes: np.ndarray, dcodes: np.ndarray, yq, yd, protocol: Protocol,
                        loo: bool) -> tuple[dict[str, Any], Any, int]:
    """Quantisation codes (PQ / DPQ): ranked by the hasher's asymmetric distance, never Hamming; the timed
    search is a bounded batch of queries (it builds a (queries x database) float matrix)."""
    r = evaluate_distances(lambda sl: hasher.query_distances(qf[sl], dcodes), len(qf), len(dcodes), yq, yd,
                           protocol, name=f"asymmetric ({idx.code_kind})", exclude_self=loo or None)
    n_timed = min(256, len(qf))
    return r, (lambda c: hasher.query_distances(qf[:n_timed], c)), n_timed


#: the index type's ``metric`` -> (metrics, the queries its ``search`` is timed on, how many)
RANKINGS = {"hamming": _hamming_ranking, "asymmetric": _asymmetric_ranking}


def evaluate_archive(
    archive: ImageArchive,
    protocol: Protocol,
    out_dir: str | os.PathLike,
    *,
    checkpoints: Sequence[str] = (),
    methods: Sequence[str] = (),
    bits: Sequence[int] = (64,),
    backbone: str = "efficientnet-lite0",
    image_size: int = 128,
    seed: int = 0,
    split_file: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate checkpoints and/or head-only methods on ``archive`` under ``protocol``; write the report."""
    from deephash.backbones import create_backbone
    from deephash.features import extract_features
    from deephash.hashers import create_hasher
    from deephash.index import index_type_for
    from deephash.model import HashModel

    if not checkpoints and not methods:
        raise ConfigError("nothing to evaluate: give --model CHECKPOINT and/or --method NAME")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    split = protocol_split(archive, protocol, seed, split_file, out)
    loo = split.leave_one_out
    if not loo:
        # the usual (non tie-aware) numbers break Hamming ties by database position: use a seeded
        # random order, not the archive's (class-sorted) file order
        split.db_idx = np.random.default_rng(seed + 2).permutation(split.db_idx)
    say = (lambda *a: print(*a, file=sys.stderr)) if progress else (lambda *a: None)
    say(f"protocol {protocol.name}: {split.sizes()}")
    need = np.unique(np.concatenate([split.query_idx, split.train_idx, split.db_idx]))
    results: list[dict[str, Any]] = []
    feature_sets: dict[str, Any] = {}

    def features_for(bb) -> tuple[np.ndarray, np.ndarray]:
        key = repr(bb.describe())
        if key not in feature_sets:
            fs = extract_features(archive, bb, need, progress=progress)
            row = np.full(len(archive), -1, np.int64)
            row[fs.index] = np.arange(len(fs.index))
            feature_sets[key] = (fs, row)
            qf, df = fs.features[row[split.query_idx][row[split.query_idx] >= 0]], fs.features[row[split.db_idx][row[split.db_idx] >= 0]]
            r = evaluate_features(qf, df, archive.labels[split.query_idx][row[split.query_idx] >= 0],
                                  archive.labels[split.db_idx][row[split.db_idx] >= 0], protocol,
                                  exclude_self=loo or None)
            results.append({"method": f"float kNN ({bb.name}@{bb.preprocessing.size}px)", "bits": None, **r})
        return feature_sets[key]

    def run_one(name: str, n_bits: int, hasher, bb, train_s: float | None, model_bytes: int | None) -> None:
        fs, row = features_for(bb)
        qrow, drow = row[split.query_idx], row[split.db_idx]
        qrow, drow = qrow[qrow >= 0], drow[drow >= 0]
        yq, yd = archive.labels[fs.index[qrow]], archive.labels[fs.index[drow]]
        with Timer() as t_enc:
            dcodes = hasher.encode(fs.features[drow])
            qcodes = hasher.encode(fs.features[qrow])
        idx = index_type_for(hasher)(n_bits)  # a HashIndex, or a PQIndex for quantisation codes
        idx.add(dcodes)
        r, queries, n_timed = RANKINGS[idx.metric](idx, hasher, fs.features[qrow], qcodes, dcodes, yq, yd, protocol, loo)
        with Timer() as t_q:
            idx.search(queries, min(100, len(dcodes)))
        results.append({"method": name, "bits": n_bits, **r, "train_s": train_s, "encode_s": t_enc.seconds,
                        "query_s": t_q.seconds / max(1, n_timed), "model_bytes": model_bytes,
                        "index_bytes": int(dcodes.nbytes)})
        say(f"  {name} {n_bits} bits: mAP {r['map']:.4f} (tie-aware {r['tie_aware_map']:.4f})")

    models = [(ck, HashModel.load(ck)) for ck in checkpoints]
    # one line per method in the mAP-vs-bits plot: a checkpoint is named by its method, and by its file
    # only where two checkpoints share method and bit length
    seen: dict[tuple[str, int], int] = {}
    for _, m in models:
        seen[(m.hasher.name, m.hasher.n_bits)] = seen.get((m.hasher.name, m.hasher.n_bits), 0) + 1
    for ck, model in models:
        h = model.hasher
        name = h.name if seen[(h.name, h.n_bits)] == 1 and h.name not in methods else f"{h.name} ({Path(ck).name})"
        run_one(name, h.n_bits, h, model.backbone, None, Path(ck).stat().st_size)
    if methods:
        bb = create_backbone(backbone, image_size=image_size)
        fs, row = features_for(bb)
        trow = row[split.train_idx]
        trow = trow[trow >= 0]
        Xt, yt = fs.features[trow], archive.labels[fs.index[trow]]
        from deephash.hashers import DeepHasher

        for name in methods:
            for k in bits:
                h = create_hasher(name, int(k), seed=seed)
                say(f"training {name} at {int(k)} bits on {len(Xt):,} images ...")
                fit_kw = {"progress": progress} if isinstance(h, DeepHasher) else {}
                with Timer() as t_tr:
                    h.fit(Xt, yt, **fit_kw) if h.supervised else h.fit(Xt, **fit_kw)
                ck = h.save(out / "models" / f"{name}-{k}.pt", backbone=bb.name, preprocessing=bb.preprocessing.to_dict())
                run_one(name, int(k), h, bb, t_tr.seconds, ck.stat().st_size)
    drawn = {**split.sizes(), "total": len(archive)}
    evaluated_bits = sorted({int(r["bits"]) for r in results if r["bits"] is not None})
    config = {"protocol": {**protocol.to_dict(), "words": protocol.describe(drawn)}, "seed": seed,
              "split": {**split.sizes(), "file": str(split_file or out / "split.json")},
              "database_order": "as in the split" if loo else f"seeded random permutation (seed {seed + 2})",
              "archive": str(archive.root), "checkpoints": list(checkpoints), "methods": list(methods),
              "bits": evaluated_bits, "backbone": backbone, "image_size": image_size}
    if methods:
        config["method_bits"] = list(bits)
    files = write_report(results, out, config)
    return {"results": results, "files": {k: str(v) for k, v in files.items()}, "config": config}
