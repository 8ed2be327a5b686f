"""Retrieval metrics over Hamming (or any) distance matrices.

Conventions, written down once:
- ``relevance[i, j]`` is True when database item j is relevant to query i (same label, or
  at least one shared label for multi-label data).
- Ranking: ascending distance; ties are ordered by database position (a stable sort), the
  order deephash's index returns. :func:`tie_aware_map` removes that arbitrariness.
- mAP@K: AP of a query = (1 / R_K) * sum_{k <= K, rel_k} P@k, where R_K is the number of
  relevant items *found in the top K*; a query with none in its top K scores 0, and counts.
"""
from __future__ import annotations

import numpy as np

from deephash.errors import ConfigError


def relevance_matrix(query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """Bool ``(nq, ndb)``: same label (1-D int labels) or >= 1 shared label (2-D multi-hot)."""
    q, d = np.asarray(query_labels), np.asarray(db_labels)
    if q.ndim != d.ndim:
        raise ConfigError(f"query labels are {q.ndim}-D, database labels {d.ndim}-D; both must be 1-D or multi-hot 2-D")
    if q.ndim == 1:
        return q[:, None] == d[None, :]
    if q.shape[1] != d.shape[1]:
        raise ConfigError(f"multi-hot labels disagree on the class count: {q.shape[1]} vs {d.shape[1]}")
    return (q.astype(np.float32) @ d.astype(np.float32).T) > 0


def _check(dist: np.ndarray, relevance: np.ndarray) -> None:
    if dist.shape != relevance.shape:
        raise ConfigError(f"distance matrix {dist.shape} and relevance matrix {relevance.shape} differ in shape")


def mean_average_precision(dist: np.ndarray, relevance: np.ndarray, topk: int | None = None) -> float:
    """mAP@topk (``None`` = all) over a ranking by ascending distance, ties by database position."""
    dist, relevance = np.asarray(dist), np.asarray(relevance, dtype=bool)
    _check(dist, relevance)
    n = dist.shape[1]
    K = n if topk is None else min(int(topk), n)
    if K < 1:
        raise ConfigError(f"topk must be >= 1; got {topk}")
    aps = np.zeros(dist.shape[0])
    for s in range(0, dist.shape[0], 256):
        order = np.argsort(dist[s : s + 256], axis=1, kind="stable")[:, :K]
        rel = np.take_along_axis(relevance[s : s + 256], order, axis=1)
        hits = np.cumsum(rel, axis=1)
        prec = hits / np.arange(1, K + 1)[None, :]
        found = hits[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            aps[s : s + 256] = np.where(found > 0, (prec * rel).sum(axis=1) / np.maximum(found, 1), 0.0)
    return float(aps.mean()) if len(aps) else 0.0
