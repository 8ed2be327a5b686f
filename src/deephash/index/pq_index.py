"""PQIndex: an index of quantisation codes (PQ, DPQ, DQN, DTQ), ranked by asymmetric distance.

Such codes are one byte of codeword index per sub-space (``uint8 (n, n_bits/8)``, the file header's
``code_kind`` "pq"): the same arrays, file and journal as :class:`~deephash.index.HashIndex`, whose
storage this class shares, but the Hamming distance between them means nothing. A query is ranked
by the model's asymmetric distance from its float features to every stored code (the hasher's
``query_distances``: the query's lookup tables against the model's codebooks, so the index holds no
codebook), ties by id (:func:`deephash.query.asymmetric_topk`, the one top-k).

The backend interface (:mod:`deephash.index.backend`) with the query given as that distance
function, ``distances(codes) -> (nq, n)``:

- ``search(distances, k) -> (D float32 (nq, k), ids int64 (nq, k))``, padded with inf / -1;
- the view's ``nearest(distances, k, cls)``; its ``metric`` is "asymmetric";
- a radius (``search_radius``, the view's ``within``) and the re-rank of a Hamming pool
  (``search_rerank``) are Hamming notions: they refuse with the reason. Milvus holds Hamming codes
  only and refuses these codes (:meth:`deephash.index.MilvusIndex.create_uri`).

``open_index`` / :meth:`HashIndex.load` give this class for a file whose header says "pq", and
``new_index(path, code_kind="pq")`` makes one (the jobs API passes the model's ``code_kind``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

from deephash.errors import ConfigError
from deephash.index.backend import register_local_index
from deephash.index.hash_index import HashIndex, IndexSnapshot, _pad_to, check_result_size

#: why a radius does not apply (one line: the CLI, the service and the Python API show it as it is)
RADIUS_REFUSAL = ("a radius is a Hamming distance, and this index holds PQ codes ranked by asymmetric distance "
                  "from the query's float features: search without a radius")

Distances = Callable[[np.ndarray], np.ndarray]


def _distance_fn(q: Any) -> Distances:
    if not callable(q):
        raise ConfigError("a PQ index ranks by asymmetric distance: its query is the model's distance function "
                          f"(codes -> distances, e.g. lambda codes: hasher.query_distances(features, codes)); got {type(q).__name__}")
    return q


@dataclass
class PQSnapshot(IndexSnapshot):
    """The view of a :class:`PQIndex` (keys are rows): ``nearest`` ranks by asymmetric distance."""

    metric: ClassVar[str] = "asymmetric"

    def nearest(self, distances: Distances, k: int, cls: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows (of class ``cls``) nearest by ``distances(codes) -> (1, n)``, by (distance, id)."""
        from deephash.query import asymmetric_topk

        rows = np.arange(len(self), dtype=np.int64) if cls is None else self._class_rows(cls).astype(np.int64)
        d = (np.asarray(_distance_fn(distances)(self.codes[rows]), np.float32).reshape(-1) if len(rows)
             else np.zeros(0, np.float32))
        if len(d) != len(rows):
            raise ConfigError(f"distances must have one value per candidate ({len(rows)}); got {len(d)}")
        o = asymmetric_topk(d, self.ids[rows], int(k))
        return d[o], rows[o]

    def within(self, distances: Distances, radius: int, cls: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        raise ConfigError(RADIUS_REFUSAL)


@register_local_index
class PQIndex(HashIndex):
    """A local index of quantisation codes, searched by asymmetric distance (see the module docstring)."""

    code_kind: ClassVar[str] = "pq"
    metric: ClassVar[str] = "asymmetric"

    def snapshot(self) -> PQSnapshot:
        """A consistent view of the index for one query (:class:`PQSnapshot`)."""
        with self._lock:
            return PQSnapshot(self.n_bits, self.codes, self.ids, self.labels, self.features, self.paths, None,
                              list(self.class_names))

    @property
    def search_path(self) -> str:
        return "asymmetric"

    def search(self, distances: Distances, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact k-NN by asymmetric distance: ``distances(codes)`` -> ``(nq, n)`` for this index's codes
        (in row order), e.g. ``lambda codes: hasher.query_distances(query_features, codes)``. Returns
        ``(D float32 (nq, k), ids int64 (nq, k))`` padded with inf / -1 (FAISS's contract); equal
        distances are ordered by id (:func:`deephash.query.asymmetric_topk`, the one top-k)."""
        from deephash.query import asymmetric_topk

        distances = _distance_fn(distances)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be >= 1; got {k}")
        with self._lock:
            codes, ids = self.codes, self.ids
        D = np.atleast_2d(np.asarray(distances(codes), dtype=np.float32))
        if D.shape[1] != len(ids):
            raise ConfigError(f"distances must have one column per indexed item ({len(ids)}); got shape {D.shape}")
        check_result_size(len(D), int(k), len(ids))
        kk = min(int(k), len(ids))
        out_d = np.full((len(D), kk), np.inf, np.float32)
        out_i = np.full((len(D), kk), -1, np.int64)
        for qi, d in enumerate(D):
            o = asymmetric_topk(d, ids, kk)
            out_d[qi, : len(o)], out_i[qi, : len(o)] = d[o], ids[o]
        return _pad_to(out_d, out_i, int(k), np.inf)

    def search_radius(self, queries: Any, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        raise ConfigError(RADIUS_REFUSAL)

    def search_rerank(self, queries: Any, query_features: np.ndarray, k: int, **rule: Any) -> list:
        from deephash.query import ASYMMETRIC_RERANK_REFUSAL

        raise ConfigError(ASYMMETRIC_RERANK_REFUSAL)

    def stats(self) -> dict[str, Any]:
        """:meth:`HashIndex.stats`, the searcher being the asymmetric scan."""
        return {**super().stats(), "searcher": "asymmetric"}
