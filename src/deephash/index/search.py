"""Exact Hamming k-NN search backends over packed codes.

Contract (FAISS's): ``search(queries uint8 (nq, K/8), k) -> (D int32 (nq, k), I int64 (nq, k))``,
``I`` holding *row positions* into the database, padded with -1 / ``D`` with ``n_bits + 1``
when the database holds fewer than ``k`` codes.

Ties: at equal distance the smaller row comes first (rows follow insertion order), so
results are deterministic and identical across backends.
"""
from __future__ import annotations

import numpy as np

from deephash.errors import ConfigError
from deephash.codes import check_codes
from deephash.optional import require
from deephash.registry import Registry

SEARCHERS: Registry["ExactSearcher"] = Registry("searcher")


class ExactSearcher:
    """Base of exact Hamming searchers: holds the packed database codes."""

    name = "base"

    def __init__(self, n_bits: int, *, n_threads: int = 1) -> None:
        self.n_bits = n_bits
        self.n_threads = n_threads
        self.codes = np.zeros((0, n_bits // 8), dtype=np.uint8)

    def reset(self, codes: np.ndarray) -> None:
        """Replace the whole database."""
        self.codes = check_codes(codes, self.n_bits)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = check_codes(queries, self.n_bits)
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer; got {k!r}")
        return self._search(queries, int(k))

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


def _pad(D: np.ndarray, I: np.ndarray, k: int, n_bits: int) -> tuple[np.ndarray, np.ndarray]:
    if D.shape[1] >= k:
        return D, I
    nq = D.shape[0]
    D2 = np.full((nq, k), n_bits + 1, dtype=np.int32)
    I2 = np.full((nq, k), -1, dtype=np.int64)
    D2[:, : D.shape[1]] = D
    I2[:, : I.shape[1]] = I
    return D2, I2


def topk_from_distances(dist: np.ndarray, k: int, n_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic top-k of a ``(nq, n)`` distance matrix: by distance, then by row."""
    n = dist.shape[1]
    kk = min(k, n)
    if kk == 0:
        return _pad(np.zeros((dist.shape[0], 0), np.int32), np.zeros((dist.shape[0], 0), np.int64), k, n_bits)
    # composite key distance * n + row is unique, so argpartition + argsort give a total order
    key = dist.astype(np.int64) * n + np.arange(n, dtype=np.int64)[None, :]
    if kk < n:
        part = np.argpartition(key, kk - 1, axis=1)[:, :kk]
    else:
        part = np.broadcast_to(np.arange(n), key.shape).copy()
    pk = np.take_along_axis(key, part, axis=1)
    order = np.argsort(pk, axis=1)
    I = np.take_along_axis(part, order, axis=1).astype(np.int64)
    D = np.take_along_axis(dist, I, axis=1).astype(np.int32)
    return _pad(D, I, k, n_bits)


@SEARCHERS.register("faiss-flat")
class FaissFlatSearcher(ExactSearcher):
    """FAISS ``IndexBinaryFlat``, with ties re-ordered by row so the answer is deterministic."""

    name = "faiss-flat"

    def __init__(self, n_bits: int, *, n_threads: int = 1) -> None:
        super().__init__(n_bits, n_threads=n_threads)
        self._index = None

    def reset(self, codes: np.ndarray) -> None:
        faiss = require("faiss", "the faiss-flat searcher")

        super().reset(codes)
        self._index = faiss.IndexBinaryFlat(self.n_bits)
        if len(self.codes):
            self._index.add(self.codes)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = require("faiss", "the faiss-flat searcher")

        n = len(self.codes)
        if n == 0 or self._index is None:
            return _pad(np.zeros((len(queries), 0), np.int32), np.zeros((len(queries), 0), np.int64), k, self.n_bits)
        kk = min(k, n)
        faiss.omp_set_num_threads(self.n_threads)
        D, I = self._index.search(queries, kk)
        # FAISS leaves ties unordered: order them by row inside the returned list. Which members of a
        # tie that straddles the k-th place are returned is FAISS's choice (distances are still exact).
        key = D.astype(np.int64) * (n + 1) + I
        o = np.argsort(key, axis=1)
        D = np.take_along_axis(D, o, axis=1).astype(np.int32)
        I = np.take_along_axis(I, o, axis=1).astype(np.int64)
        return _pad(D, I, k, self.n_bits)


@SEARCHERS.register("numpy")
class NumpySearcher(ExactSearcher):
    """Reference exact search with NumPy (slow; the obvious implementation tests compare against)."""

    name = "numpy"

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        from deephash.codes import hamming_matrix

        Ds, Is = [], []
        for s in range(0, len(queries), 256):
            D, I = topk_from_distances(hamming_matrix(queries[s : s + 256], self.codes), k, self.n_bits)
            Ds.append(D)
            Is.append(I)
        if not Ds:
            return np.zeros((0, k), np.int32), np.zeros((0, k), np.int64)
        return np.concatenate(Ds), np.concatenate(Is)
