"""One query against an open index: plain Hamming k-NN, Hamming radius, label filter, DLBHC re-rank.

The plain case goes to :meth:`HashIndex.search` (FAISS). A label filter or re-ranking works
on a consistent snapshot of the index with exact NumPy Hamming distances over the candidate
rows; ties are broken by row (insertion order) exactly as the index's own searchers do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deephash.index import HashIndex
from deephash.index.codes import hamming_matrix
from deephash.utils import Timer

#: DLBHC coarse pool: the Hamming radius starts here and grows until the pool holds MIN_POOL candidates.
START_RADIUS = 2
MIN_POOL = 100


@dataclass
class Snapshot:
    """Arrays of an index taken together under its writer's lock (mutations replace arrays, never edit them)."""

    codes: np.ndarray
    ids: np.ndarray
    labels: np.ndarray | None
    features: np.ndarray | None


@dataclass
class Hits:
    ids: np.ndarray
    hamming: np.ndarray | None  # None for a quantisation index (see ``distance``)
    feature_distance: np.ndarray | None
    timings: dict[str, float]
    pool_size: int | None = None
    pool_radius: int | None = None
    distance: np.ndarray | None = None  # asymmetric distances (PQ / DPQ indexes)

    def keep(self, mask: np.ndarray) -> "Hits":
        cut = (lambda a: None if a is None else a[mask])  # noqa: E731
        return Hits(self.ids[mask], cut(self.hamming), cut(self.feature_distance), self.timings, self.pool_size,
                    self.pool_radius, cut(self.distance))


def _candidate_rows(snap: Snapshot, class_index: int | None) -> np.ndarray:
    """Every row of the snapshot, or those carrying the label ``class_index``."""
    return np.arange(len(snap.ids)) if class_index is None else np.flatnonzero(label_mask(snap.labels, class_index))


def run_asymmetric_search(snap_fn, query_distances, feat: np.ndarray, *, k: int, class_index: int | None) -> Hits:
    """Top ``k`` of a quantisation index (PQ / DPQ codes) by the model's asymmetric distance from the
    query's float features ``feat`` (1, D), optionally within one label; ties by row, as everywhere."""
    with Timer() as t:
        snap: Snapshot = snap_fn()
        rows = _candidate_rows(snap, class_index)
        d = query_distances(feat, snap.codes[rows])[0] if len(rows) else np.zeros(0, np.float32)
        o = np.lexsort((rows, d))[:k]
    return Hits(snap.ids[rows[o]], None, None, {"search": t.seconds}, distance=d[o])


def label_mask(labels: np.ndarray, class_index: int) -> np.ndarray:
    """Rows that carry ``class_index`` (single-label: equal; multi-label: that column set)."""
    return labels == class_index if labels.ndim == 1 else labels[:, class_index] > 0


def run_search(index: HashIndex, snap_fn, code: np.ndarray, feat: np.ndarray | None, *, k: int,
               radius: int | None, rerank: bool, class_index: int | None) -> Hits:
    """Top ``k`` of one packed query ``code`` (1, K/8) with optional cap ``radius``, label and re-rank."""
    timings: dict[str, float] = {}
    if not rerank and class_index is None:
        with Timer() as t:
            D, ids = index.search(code, k)
            keep = ids[0] >= 0
            if radius is not None:
                keep &= D[0] <= radius
        timings["search"] = t.seconds
        return Hits(ids[0][keep], D[0][keep], None, timings)

    with Timer() as t:
        snap: Snapshot = snap_fn()
        rows = _candidate_rows(snap, class_index)
        d = hamming_matrix(code, snap.codes[rows])[0] if len(rows) else np.zeros(0, np.int32)
        if radius is not None:
            inside = d <= radius
            rows, d = rows[inside], d[inside]
        if not rerank:
            o = np.lexsort((rows, d))[:k]
    timings["search"] = t.seconds
    if not rerank:
        return Hits(snap.ids[rows[o]], d[o], None, timings)

    with Timer() as t:
        rad = START_RADIUS if radius is None else min(START_RADIUS, radius)
        cap = radius if radius is not None else int(code.shape[1] * 8)
        while rad < cap and int((d <= rad).sum()) < min(MIN_POOL, len(d)):
            rad += 1
        sel = d <= rad
        prow, pham = rows[sel], d[sel]
        diff = snap.features[prow].astype(np.float32) - np.asarray(feat, np.float32).reshape(1, -1)
        eu = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        o = np.lexsort((prow, eu))[:k]
    timings["rerank"] = t.seconds
    return Hits(snap.ids[prow[o]], pham[o], eu[o], timings, pool_size=int(sel.sum()), pool_radius=int(rad))
