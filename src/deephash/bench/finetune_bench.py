"""Shared set-up of the end-to-end fine-tuning benchmarks (``bench/finetune_cifar.py``,
``bench/finetune_sweep.py``): a named protocol's split of an archive, its images decoded once,
and the evaluation of a fine-tuned hasher on that split.

The split is the registered protocol's (:func:`deephash.eval.protocols.get_protocol`), so an
end-to-end figure and a head-only figure under the same protocol name use the same rule.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deephash.errors import ConfigError

#: the short names the first GPU runs used (docs/finetune.md), mapped to the registered protocols
PROTOCOL_ALIASES = {"10k50k": "cifar10-50k", "1k5k54k": "cifar10-54k"}


def resolve_protocol(name: str):
    """The registered protocol for ``name`` (a registered name or one of :data:`PROTOCOL_ALIASES`)."""
    from deephash.eval.protocols import get_protocol

    return get_protocol(PROTOCOL_ALIASES.get(name, name))


@dataclass
class ProtocolImages:
    """A protocol's split of an archive with the images it needs decoded (uint8 NHWC).

    ``query``, ``train`` and ``database`` are row positions into ``images`` / ``labels``;
    ``archive_index[row]`` is the row's position in the archive. Files that failed to decode
    are left out of every part and listed in ``failed`` as ``(path, reason)``."""

    protocol: str
    topk: int | None
    images: np.ndarray
    labels: np.ndarray
    archive_index: np.ndarray
    query: np.ndarray
    train: np.ndarray
    database: np.ndarray
    failed: list = field(default_factory=list)
    seconds: float = 0.0

    def sizes(self) -> dict[str, int]:
        return {"query": len(self.query), "train": len(self.train), "database": len(self.database)}


def _few_per_class(idx: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    return np.sort(np.concatenate([idx[labels[idx] == c][:n] for c in np.unique(labels[idx])]))


def load_protocol_images(archive, protocol: str, *, seed: int = 0, tiny: bool = False, workers: int | None = None,
                         cache: str | Path | None = None, store_size: int = 32) -> ProtocolImages:
    """Split ``archive`` (an :class:`~deephash.data.ImageArchive` with 'train'/'test' splits) by
    ``protocol`` and decode the images of the split at ``store_size`` px.

    ``tiny`` keeps 3 queries, 8 training and 10 database images per class (a CPU check of a
    whole script). ``cache``: an ``.npz`` of every decoded image of the archive, written on the
    first full run and read on later ones (decoding 60,000 JPEGs is the slow part of a sweep)."""
    from deephash.train.finetune import archive_images

    t0 = time.perf_counter()
    p = resolve_protocol(protocol)
    labels = np.asarray(archive.labels)
    sp = p.split_archive(archive, seed)
    q, tr, db = sp.query_idx, sp.train_idx, sp.db_idx
    if tiny:
        q, tr, db = _few_per_class(q, labels, 3), _few_per_class(tr, labels, 8), _few_per_class(db, labels, 10)
    need = np.unique(np.concatenate([q, tr, db]))
    cache = Path(cache) if cache is not None and not tiny else None
    if cache is not None and cache.is_file():
        z = np.load(cache)
        if len(z["labels"]) != len(labels) or not np.array_equal(z["labels"], labels):
            raise ConfigError(f"image cache {cache} holds {len(z['labels'])} images whose labels do not match the "
                              f"archive's {len(labels)}; delete it or pass another --cache")
        imgs, y, kept, failed = z["imgs"][need], labels[need], need, []
    else:
        imgs, y, kept, failed = archive_images(archive, need, store_size=store_size, workers=workers)
        if cache is not None and len(need) == len(labels) and not failed:
            from deephash.utils import atomic_path

            with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, imgs=imgs, labels=y)
    row = {int(i): r for r, i in enumerate(kept)}

    def rows(ix: np.ndarray) -> np.ndarray:
        return np.array([row[int(i)] for i in ix if int(i) in row], dtype=np.int64)

    out = ProtocolImages(protocol=p.name, topk=p.topk, images=imgs, labels=np.asarray(y), archive_index=np.asarray(kept),
                         query=rows(q), train=rows(tr), database=rows(db), failed=list(failed),
                         seconds=time.perf_counter() - t0)
    s = out.sizes()
    print(f"{p.name}: {s['query']} queries, {s['train']} training, {s['database']} database images ready in "
          f"{out.seconds:.1f} s ({len(failed)} failed to decode)", file=sys.stderr, flush=True)
    return out


def _hamming_map(h, dq, cq, cdb, yq, ydb, topk) -> dict[str, float]:
    from deephash.eval.retrieval import hamming_map

    return {"map": hamming_map(cq, cdb, yq, ydb, topk), "bit_mean": float(np.unpackbits(cdb, axis=1)[:, : h.n_bits].mean())}


def _asymmetric_map(h, dq, cq, cdb, yq, ydb, topk) -> dict[str, float]:
    """Quantisation codes: asymmetric distances, a chunk of queries at a time."""
    from deephash.eval.metrics import evaluate_distances

    return {"map": evaluate_distances(lambda sl: h.query_distances(dq[sl], cdb), len(yq), len(ydb), yq, ydb, topk)["map"]}


#: the metric of the index type that holds the hasher's codes -> its mAP (and code statistics)
_MAP_BY_METRIC = {"hamming": _hamming_map, "asymmetric": _asymmetric_map}


def evaluate_finetuned(h, data: ProtocolImages, *, batch: int = 1024, rerank_queries: int = 0,
                       seed: int = 0) -> dict[str, Any]:
    """mAP (the protocol's cutoff) of a fine-tuned hasher on its protocol split — Hamming ranking,
    or asymmetric distance for quantisation codes — with the query classification accuracy where
    the method classifies, embedding speed and, with ``rerank_queries`` > 0, DLBHC's
    coarse-to-fine search (Hamming pool, re-ranked by the deep features) on that many random queries."""
    from deephash.eval.retrieval import coarse_to_fine_evaluation
    from deephash.index.backend import index_type_for
    from deephash.train.finetune import embed_images

    te = time.perf_counter()
    dq, _ = embed_images(h, data.images[data.query], batch=batch)
    ddb, _ = embed_images(h, data.images[data.database], batch=batch)
    t_embed = time.perf_counter() - te
    cq, cdb = h.encode(dq), h.encode(ddb)
    yq, ydb = data.labels[data.query], data.labels[data.database]
    tm = time.perf_counter()
    res: dict[str, Any] = {"protocol": data.protocol, "map_at": data.topk or "all", **{f"n_{k}": v for k, v in data.sizes().items()}}
    res.update(_MAP_BY_METRIC[index_type_for(h).metric](h, dq, cq, cdb, yq, ydb, data.topk))
    res["distance"] = h.code_kind
    res["map_seconds"] = time.perf_counter() - tm
    res["query_accuracy"] = float((h.classify(dq) == yq).mean()) if hasattr(h, "classify") else None
    res["embed_seconds"] = t_embed
    res["embed_images_per_second"] = (len(yq) + len(ydb)) / t_embed
    if rerank_queries > 0 and hasattr(h, "rerank_features"):  # DLBHC, Deep Ranking, SPP-PMT: Hamming codes
        sel = np.random.default_rng(seed).choice(len(yq), min(rerank_queries, len(yq)), replace=False)
        t0 = time.perf_counter()
        c2f = coarse_to_fine_evaluation(cq[sel], h.rerank_features(dq[sel]), cdb, h.rerank_features(ddb), yq[sel], ydb,
                                        k=data.topk or 1000)
        c2f["seconds"] = time.perf_counter() - t0
        res["coarse_to_fine"] = c2f
    return res

