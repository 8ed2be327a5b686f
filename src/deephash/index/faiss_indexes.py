"""Sub-linear Hamming search over packed codes: FAISS's binary indexes and an exact radius lookup.

Every index here is built from packed ``uint8 (n, n_bits/8)`` codes and shares one interface::

    index = create_ann_index("ivf", n_bits=64, nlist=1024)
    index.train(codes); index.add(codes)
    D, I = index.search(queries, k)      # int32 / int64 (nq, k), padded with (n_bits+1, -1)
    index.ntotal, index.memory_bytes()

``I`` holds row positions (insertion order), or the labels given to ``add(codes, labels)``. Within
each returned list ties are ordered by row (label);
which rows an approximate index finds is its own business, so its recall against exact search
(:func:`recall_at_k`) is what the benchmark and the tests report:

- ``"ivf"`` (``IndexBinaryIVF``): k-means on Hamming codes into ``nlist`` lists, ``nprobe`` visited.
  On clustered (trained-like) codes recall@100 is ~0.99 at nprobe 4-8; on random codes it is poor.
- ``"hnsw"`` (``IndexBinaryHNSW``): graph search, ``M`` links, ``ef_search`` breadth. Slow to build.
- ``"mih"`` (``IndexBinaryMultiHash``): ``nhash`` tables over disjoint ``b``-bit substrings probed
  with ``nflip`` bit flips; every code it returns has its exact distance.
- ``"radius"`` (:class:`RadiusIndex`): multi-index hashing configured to be *exact* — all codes
  within Hamming radius r (``search_radius``), and exact k-NN by growing r (``search``).

The ``selectable`` ones (ivf, hnsw, mih) are also index backends: the local index file searched
through them (``faiss-ivf:archive.dhi?nprobe=8``; :mod:`deephash.index.ann_search`). For that they
take labels, remove by label where FAISS can (``can_remove``: IVF only), answer radius queries
(``search_radius``), report their parameters (``params()``) and serialize (``to_bytes`` /
:meth:`AnnIndex.from_bytes`).
"""
from __future__ import annotations

import time

import numpy as np

from deephash.errors import ConfigError, NotFittedError
from deephash.codes import check_codes, check_n_bits
from deephash.index.search import _pad
from deephash.optional import require
from deephash.registry import Registry

ANN_INDEXES: Registry["AnnIndex"] = Registry("ANN index")


def create_ann_index(name: str, *, n_bits: int, **params) -> "AnnIndex":
    """``create_ann_index("hnsw", n_bits=64, M=16)``; unknown names raise with the list of known ones."""
    return ANN_INDEXES.create(name, n_bits=n_bits, **params)


def list_ann_indexes(pattern: str = "*") -> list[str]:
    return ANN_INDEXES.names(pattern)


def _positive_int(name: str, v) -> int:
    if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
        raise ConfigError(f"{name} must be a positive integer; got {v!r}")
    return int(v)


def _sort_lists(lims: np.ndarray, D: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Range-search lists as ``(lims int64, D int32, I int64)``, each list ordered by (distance, label)."""
    lims, D, I = lims.astype(np.int64), D.astype(np.int32), I.astype(np.int64)
    for i in range(len(lims) - 1):
        s, e = lims[i], lims[i + 1]
        if e - s > 1:
            o = np.lexsort((I[s:e], D[s:e]))
            D[s:e], I[s:e] = D[s:e][o], I[s:e][o]
    return lims, D, I


def _check_radius(radius) -> int:
    if not isinstance(radius, (int, np.integer)) or isinstance(radius, bool) or radius < 0:
        raise ConfigError(f"radius must be a non-negative integer; got {radius!r}")
    return int(radius)


def _order_ties_by_row(D: np.ndarray, I: np.ndarray, n_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS leaves equal distances in no particular order: sort each list by (distance, row), -1 last."""
    D = D.astype(np.int32, copy=False)
    I = I.astype(np.int64, copy=False)
    missing = I < 0
    D = np.where(missing, n_bits + 1, D).astype(np.int32)
    key = D.astype(np.int64) * (2**40) + np.where(missing, 2**40 - 1, I)
    o = np.argsort(key, axis=1, kind="stable")
    return np.take_along_axis(D, o, axis=1), np.where(np.take_along_axis(missing, o, axis=1), -1,
                                                      np.take_along_axis(I, o, axis=1))


class AnnIndex:
    """Base of the sub-linear indexes: argument checks, thread setting, padding; subclasses wrap one FAISS index."""

    name = "base"
    #: True when ``search`` returns the exact answer (the radius index); False: see the recall tables.
    exact = False
    needs_training = False
    #: an index backend too (``faiss-<name>:PATH``): the approximate structures a user picks
    selectable = False
    #: FAISS removes codes from the structure itself (``remove``); else the caller masks them
    can_remove = False
    #: parameters fixed when the structure is built (changing one means building it again)
    build_params: tuple[str, ...] = ()

    def __init__(self, n_bits: int, *, n_threads: int = 1) -> None:
        self.n_bits = check_n_bits(n_bits)
        self.n_threads = _positive_int("n_threads", n_threads)
        self.index_ = None
        self.is_trained_ = not self.needs_training
        self.build_seconds_ = 0.0

    # -- the common interface --------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return 0 if self.index_ is None else int(self.index_.ntotal)

    def train(self, codes: np.ndarray) -> "AnnIndex":
        codes = check_codes(codes, self.n_bits)
        t = time.perf_counter()
        self._with_threads(lambda: self._train(codes))
        self.build_seconds_ += time.perf_counter() - t
        self.is_trained_ = True
        return self

    def add(self, codes: np.ndarray, labels: np.ndarray | None = None) -> "AnnIndex":
        """Add codes; ``labels`` (int64) are what ``search`` returns for them (default: their row,
        ``ntotal`` on). Only a structure that can remove codes takes labels other than the next rows."""
        codes = check_codes(codes, self.n_bits)
        if not self.is_trained_:
            raise NotFittedError(f"the {self.name!r} index must be trained before codes are added; call train(codes)")
        if labels is not None:
            labels = np.ascontiguousarray(labels, dtype=np.int64)
            if labels.shape != (len(codes),):
                raise ConfigError(f"got {len(codes)} codes but {labels.shape} labels")
            if not self.can_remove and not np.array_equal(labels, np.arange(self.ntotal, self.ntotal + len(codes))):
                raise ConfigError(f"the {self.name!r} index labels codes by row only (FAISS stores no ids for it)")
        t = time.perf_counter()
        self._with_threads(lambda: self._add(codes) if labels is None else self._add_with_labels(codes, labels))
        self.build_seconds_ += time.perf_counter() - t
        return self

    def remove(self, labels: np.ndarray) -> int:
        """Remove the codes of ``labels`` from the structure (``can_remove`` structures only); returns how many."""
        if not self.can_remove:
            raise ConfigError(f"FAISS cannot remove codes from a {self.name!r} index; rebuild it")
        return int(self.index_.remove_ids(np.ascontiguousarray(labels, dtype=np.int64))) if self.index_ is not None else 0

    def search_radius(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Codes within Hamming ``radius`` (inclusive) that the structure finds: ``(lims (nq+1), D int32,
        I int64)``, each list by (distance, label). By FAISS's range search where it has one, else by
        k-NN searches with a growing k until the k-th hit lies beyond the radius."""
        queries = check_codes(queries, self.n_bits)
        radius = min(_check_radius(radius), self.n_bits)
        if self.ntotal == 0 or len(queries) == 0:
            return np.zeros(len(queries) + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64)
        return self._range(queries, radius)

    def _range(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.has_range_search:
            self._apply_params()
            # FAISS's binary range search keeps distances strictly below its threshold
            return _sort_lists(*self._with_threads(lambda: self.index_.range_search(queries, radius + 1)))
        lists: list[tuple[np.ndarray, np.ndarray]] = []
        for q in queries:
            k = min(64, self.ntotal)
            while True:
                D, I = self.search(q[None], k)
                if D[0, -1] > radius or k >= self.ntotal:
                    break
                k = min(4 * k, self.ntotal)
            keep = (I[0] >= 0) & (D[0] <= radius)
            lists.append((D[0][keep], I[0][keep]))
        lims = np.zeros(len(queries) + 1, np.int64)
        lims[1:] = np.cumsum([len(d) for d, _ in lists])
        return (lims, np.concatenate([d for d, _ in lists]).astype(np.int32),
                np.concatenate([i for _, i in lists]).astype(np.int64))

    has_range_search = False

    def params(self) -> dict[str, int | None]:
        """The build and search parameters, as they are now (an automatic ``nlist`` once built)."""
        return {p: getattr(self, p) for p in self.build_params + self.search_params}

    def to_bytes(self) -> np.ndarray:
        """The FAISS structure serialized (``faiss.serialize_index_binary``): uint8 (nbytes,)."""
        faiss = require("faiss", "FAISS indexes")

        if self.index_ is None or not self.is_trained_:
            raise NotFittedError(f"the {self.name!r} index is not built yet")
        return faiss.serialize_index_binary(self.index_)

    @classmethod
    def from_bytes(cls, data: np.ndarray, *, n_bits: int, n_threads: int = 1, **params) -> "AnnIndex":
        """The structure :meth:`to_bytes` wrote, with ``params`` (its build parameters must be the ones it was built with)."""
        faiss = require("faiss", "FAISS indexes")

        ix = cls(n_bits, n_threads=n_threads, **params)
        ix.index_ = faiss.deserialize_index_binary(np.ascontiguousarray(data, dtype=np.uint8))
        if ix.index_.d != ix.n_bits:
            raise ConfigError(f"the stored {cls.name!r} structure holds {ix.index_.d}-bit codes; expected {ix.n_bits}")
        ix._restored()
        ix.is_trained_ = True
        return ix

    def _restored(self) -> None:
        """Hook: read back build parameters the deserialized structure knows."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = check_codes(queries, self.n_bits)
        k = _positive_int("k", k)
        if self.ntotal == 0:
            z = np.zeros((len(queries), 0))
            return _pad(z.astype(np.int32), z.astype(np.int64), k, self.n_bits)
        kk = min(k, self.ntotal)
        D, I = self._with_threads(lambda: self._search(queries, kk))
        D, I = _order_ties_by_row(D, I, self.n_bits)
        return _pad(D, I, k, self.n_bits)

    def memory_bytes(self) -> int:
        """Size of the serialized FAISS index: codes, lists / graph / hash tables."""
        faiss = require("faiss", "FAISS indexes")

        if self.index_ is None:
            return 0
        return int(faiss.serialize_index_binary(self.index_).nbytes)

    def set_params(self, **params) -> "AnnIndex":
        """Change search-time parameters (``nprobe``, ``ef_search``, ``nflip``) without rebuilding."""
        for k, v in params.items():
            if k not in self.search_params:
                raise ConfigError(f"{self.name!r} has no search parameter {k!r}; it has {sorted(self.search_params)}")
            setattr(self, k, _positive_int(k, v) if k != "nflip" else int(v))
        self._apply_params()
        return self

    search_params: tuple[str, ...] = ()

    # -- hooks -------------------------------------------------------------------------------
    def _train(self, codes: np.ndarray) -> None:
        pass

    def _add(self, codes: np.ndarray) -> None:
        self.index_.add(codes)

    def _add_with_labels(self, codes: np.ndarray, labels: np.ndarray) -> None:
        self._add(codes)  # labels are the next rows (checked by add)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self._apply_params()
        return self.index_.search(queries, k)

    def _apply_params(self) -> None:
        pass

    def _with_threads(self, fn):
        faiss = require("faiss", "FAISS indexes")

        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.n_threads)
        try:
            return fn()
        finally:
            faiss.omp_set_num_threads(before)


@ANN_INDEXES.register("ivf")
class IVFIndex(AnnIndex):
    """FAISS ``IndexBinaryIVF``: Hamming k-means into ``nlist`` lists; ``nprobe`` lists are scanned."""

    name = "ivf"
    needs_training = True
    selectable = True
    can_remove = True
    has_range_search = True
    build_params = ("nlist",)
    search_params = ("nprobe",)

    def __init__(self, n_bits: int, *, nlist: int | None = None, nprobe: int = 8, n_threads: int = 1) -> None:
        """``nlist=None``: chosen when trained, by :func:`auto_nlist`."""
        super().__init__(n_bits, n_threads=n_threads)
        require("faiss", "FAISS indexes")
        self.nlist = None if nlist is None else _positive_int("nlist", nlist)
        self.nprobe = _positive_int("nprobe", nprobe)
        if self.nlist is not None:
            self._make(self.nlist)

    def _make(self, nlist: int) -> None:
        faiss = require("faiss", "FAISS indexes")

        self.nlist = nlist
        self._quantizer = faiss.IndexBinaryFlat(self.n_bits)
        self.index_ = faiss.IndexBinaryIVF(self._quantizer, self.n_bits, self.nlist)

    def _train(self, codes: np.ndarray) -> None:
        if self.index_ is None:
            self._make(auto_nlist(len(codes)))
        if len(codes) < self.nlist:
            raise ConfigError(f"IVF with nlist={self.nlist} needs at least {self.nlist} training codes; got {len(codes)}")
        self.index_.train(codes)

    def _add_with_labels(self, codes: np.ndarray, labels: np.ndarray) -> None:
        self.index_.add_with_ids(codes, labels)

    def _restored(self) -> None:
        self.nlist = int(self.index_.nlist)

    def _apply_params(self) -> None:
        if self.index_ is not None:
            self.index_.nprobe = min(self.nprobe, self.nlist)


def auto_nlist(n: int) -> int:
    """IVF lists for ``n`` codes when none is given: the power of two nearest 4 sqrt(n) (FAISS's guideline
    is 4-16 sqrt(n)), at most n / 39 so that k-means sees 39 codes per list (below, FAISS warns)."""
    guide = 2 ** int(round(np.log2(max(1.0, 4 * np.sqrt(max(n, 1))))))
    return int(max(1, min(guide, n // 39)))


@ANN_INDEXES.register("hnsw")
class HNSWIndex(AnnIndex):
    """FAISS ``IndexBinaryHNSW``: ``M`` links per node, ``ef_construction`` / ``ef_search`` breadth."""

    name = "hnsw"
    selectable = True
    build_params = ("M", "ef_construction")
    search_params = ("ef_search",)

    def __init__(self, n_bits: int, *, M: int = 16, ef_construction: int = 40, ef_search: int = 64,
                 n_threads: int = 1) -> None:
        super().__init__(n_bits, n_threads=n_threads)
        faiss = require("faiss", "FAISS indexes")

        self.M = _positive_int("M", M)
        self.ef_construction = _positive_int("ef_construction", ef_construction)
        self.ef_search = _positive_int("ef_search", ef_search)
        self.index_ = faiss.IndexBinaryHNSW(self.n_bits, self.M)
        self.index_.hnsw.efConstruction = self.ef_construction

    def _apply_params(self) -> None:
        self.index_.hnsw.efSearch = self.ef_search

    def _restored(self) -> None:
        self.index_.hnsw.efConstruction = self.ef_construction


@ANN_INDEXES.register("mih")
class MultiHashIndex(AnnIndex):
    """FAISS ``IndexBinaryMultiHash``: ``nhash`` hash tables on disjoint ``b``-bit substrings, ``nflip`` flips probed.

    A code at distance d from the query is found for sure when d <= nhash * (nflip + 1) - 1 (pigeonhole);
    farther codes only by luck, hence recall below 1 at large k.
    """

    name = "mih"
    selectable = True
    has_range_search = True
    build_params = ("nhash", "b")
    search_params = ("nflip",)

    def __init__(self, n_bits: int, *, nhash: int | None = None, b: int | None = None, nflip: int = 1,
                 n_threads: int = 1) -> None:
        super().__init__(n_bits, n_threads=n_threads)
        faiss = require("faiss", "FAISS indexes")

        self.nhash = _positive_int("nhash", nhash if nhash is not None else max(1, self.n_bits // 16))
        self.b = _positive_int("b", b if b is not None else self.n_bits // self.nhash)
        if self.nhash * self.b > self.n_bits or self.b > 64:
            raise ConfigError(f"need nhash * b <= n_bits ({self.n_bits}) and b <= 64; got nhash={self.nhash}, b={self.b}")
        if not isinstance(nflip, (int, np.integer)) or nflip < 0:
            raise ConfigError(f"nflip must be a non-negative integer; got {nflip!r}")
        self.nflip = int(nflip)
        self.index_ = faiss.IndexBinaryMultiHash(self.n_bits, self.nhash, self.b)

    def _apply_params(self) -> None:
        self.index_.nflip = self.nflip


@ANN_INDEXES.register("radius")
class RadiusIndex(MultiHashIndex):
    """Exact Hamming-radius lookup (the hash-table lookup hashing promises), by multi-index hashing.

    ``nhash`` tables on disjoint substrings: a code within radius r differs from the query in at
    most ``r // nhash`` bits of some substring (pigeonhole), so probing ``nflip = r // nhash`` flips
    in every table and checking the full distance of each candidate finds *all* of them. The
    cost grows quickly with r; exact for every r, cheap for r up to about ``2 * nhash``.
    ``search(q, k)`` is exact k-NN by growing the radius until k codes are found.
    """

    name = "radius"
    exact = True
    selectable = False
    build_params = ("nhash",)
    search_params = ()

    def __init__(self, n_bits: int, *, nhash: int | None = None, n_threads: int = 1) -> None:
        n_bits = check_n_bits(n_bits)
        nh = nhash if nhash is not None else max(1, n_bits // 16)
        super().__init__(n_bits, nhash=nh, b=min(64, n_bits // _positive_int("nhash", nh)), nflip=0,
                         n_threads=n_threads)

    def _range(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All rows within ``radius``: probing ``radius // nhash`` flips in every table finds every one."""
        self.index_.nflip = radius // self.nhash
        # FAISS's binary range search keeps distances strictly below its threshold
        return _sort_lists(*self._with_threads(lambda: self.index_.range_search(queries, radius + 1)))

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        D = np.full((len(queries), k), self.n_bits + 1, np.int32)
        I = np.full((len(queries), k), -1, np.int64)
        todo = np.arange(len(queries))
        r = 0
        while len(todo):
            lims, d, i = self.search_radius(queries[todo], r)
            counts = np.diff(lims)
            done = (counts >= k) | (r >= self.n_bits)
            for j in np.flatnonzero(done):
                s = lims[j]
                m = min(k, counts[j])
                D[todo[j], :m] = d[s : s + m]
                I[todo[j], :m] = i[s : s + m]
            todo = todo[~done]
            r = r + 1 if r < 4 else min(self.n_bits, r + max(1, r // 4))
        return D, I


def recall_at_k(I_approx: np.ndarray, D_exact: np.ndarray, D_approx: np.ndarray, k: int) -> float:
    """Tie-aware recall@k: the share of the k slots holding a code at most as far as the exact k-th.

    Any member of a tie at the k-th distance counts (it is as good an answer as the one exact
    search returned); padding (-1) never counts. Needs ``D_approx`` to be true distances (FAISS's are).
    """
    kth = D_exact[:, k - 1 : k]
    good = (I_approx[:, :k] >= 0) & (D_approx[:, :k] <= kth)
    return float(good.sum() / (len(I_approx) * k))
