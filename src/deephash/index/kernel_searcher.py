"""KernelSearcher: exact Hamming k-NN and radius lookup with deephash's C kernel (``_hamming``).

The kernel fuses XOR + popcount over 64-bit words with a counting top-k (distances are small
integers), scans the database in cache-sized blocks for a batch of queries at a time, and picks
AVX-512 VPOPCNTDQ / AVX2 / POPCNT / plain C at run time. Results follow the searcher contract of
:mod:`deephash.index.search`: ``(D int32 (nq, k), I int64 (nq, k))``, ties by row (smaller row
first), padded with ``(n_bits + 1, -1)``.

When the extension was not built, :func:`kernel_available` is False, importing this module
still works, and the ``"deephash"`` searcher warns once and answers with FAISS's flat index.
"""
from __future__ import annotations

import warnings

import numpy as np

from deephash.errors import ConfigError
from deephash.index.codes import check_codes
from deephash.index.search import SEARCHERS, ExactSearcher, FaissFlatSearcher

try:  # the compiled kernel; absent when deephash was installed without a C compiler
    from deephash.index import _hamming
except ImportError as e:  # pragma: no cover - exercised only on broken installs
    _hamming = None
    _IMPORT_ERROR: str | None = str(e)
else:
    _IMPORT_ERROR = None

_warned = False


def kernel_available() -> bool:
    """True when the compiled ``deephash.index._hamming`` extension can be used."""
    return _hamming is not None


def kernel_isa() -> str | None:
    """The instruction set the kernel dispatches to on this CPU (None without the extension)."""
    return _hamming.isa() if _hamming is not None else None


def warn_kernel_missing() -> None:
    """Say once per process that search falls back to FAISS because the extension is missing."""
    global _warned
    if not _warned and _hamming is None:
        _warned = True
        warnings.warn(
            "deephash's C search kernel (deephash.index._hamming) could not be imported "
            f"({_IMPORT_ERROR}); exact search falls back to FAISS IndexBinaryFlat, which is several "
            "times slower. Reinstall deephash with a C compiler available (pip install .) to build it.",
            RuntimeWarning,
            stacklevel=3,
        )


def default_searcher_name() -> str:
    """``"deephash"`` when the kernel is built, else ``"faiss-flat"`` (with a one-time warning)."""
    if _hamming is not None:
        return "deephash"
    warn_kernel_missing()
    return "faiss-flat"


def n_words(n_bits: int) -> int:
    """64-bit words per code: ``ceil(n_bits / 64)``."""
    return (int(n_bits) + 63) // 64


def to_words(codes: np.ndarray, n_bits: int) -> np.ndarray:
    """Packed ``uint8 (n, n_bits/8)`` -> ``uint64 (n, W)``, zero-padded to whole words (little-endian)."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    W = n_words(n_bits)
    nb = n_bits // 8
    if nb != W * 8:
        padded = np.zeros((len(codes), W * 8), dtype=np.uint8)
        padded[:, :nb] = codes
        codes = padded
    return np.ascontiguousarray(codes).view("<u8").astype(np.uint64, copy=False).reshape(len(codes), W)


def to_layout(codes: np.ndarray, n_bits: int) -> np.ndarray:
    """Packed codes -> the kernel's interleaved layout: ``layout[g, w, j]`` = word w of row 8g+j, flattened."""
    words = to_words(codes, n_bits)
    n, W = words.shape
    ng = (n + 7) // 8
    if ng * 8 != n:
        words = np.concatenate([words, np.zeros((ng * 8 - n, W), np.uint64)])
    return np.ascontiguousarray(words.reshape(ng, 8, W).transpose(0, 2, 1)).reshape(-1)


@SEARCHERS.register("deephash")
class KernelSearcher(ExactSearcher):
    """Exact Hamming search with deephash's C kernel; falls back to FAISS when it is not built."""

    name = "deephash"

    def __init__(self, n_bits: int, *, n_threads: int = 1) -> None:
        super().__init__(n_bits, n_threads=n_threads)
        if not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
            raise ConfigError(f"n_threads must be a positive integer; got {n_threads!r}")
        self._layout = to_layout(self.codes, n_bits)
        self._fallback: FaissFlatSearcher | None = None
        if _hamming is None:
            warn_kernel_missing()
            self._fallback = FaissFlatSearcher(n_bits, n_threads=n_threads)

    def reset(self, codes: np.ndarray) -> None:
        super().reset(codes)
        if self._fallback is not None:
            self._fallback.reset(self.codes)
        else:
            self._layout = to_layout(self.codes, self.n_bits)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._fallback is not None:
            return self._fallback._search(queries, k)
        return _hamming.knn(self._layout, len(self.codes), self.n_bits, to_words(queries, self.n_bits), k,
                            int(self.n_threads))

    def search_radius(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All rows within Hamming ``radius``: ``(lims int64 (nq+1), D int32, I int64)`` (FAISS's range layout).

        Query ``i``'s hits are ``D[lims[i]:lims[i+1]]`` / ``I[...]``, sorted by (distance, row). Exact.
        """
        queries = check_codes(queries, self.n_bits)
        if not isinstance(radius, (int, np.integer)) or radius < 0:
            raise ConfigError(f"radius must be a non-negative integer; got {radius!r}")
        if self._fallback is not None:
            from deephash.index.codes import hamming_matrix

            lims, Ds, Is = [0], [], []
            for s in range(0, len(queries), 64):
                dist = hamming_matrix(queries[s : s + 64], self.codes)
                for row in dist:
                    hit = np.flatnonzero(row <= radius)
                    o = hit[np.lexsort((hit, row[hit]))]
                    Ds.append(row[o].astype(np.int32))
                    Is.append(o.astype(np.int64))
                    lims.append(lims[-1] + len(o))
            cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)  # noqa: E731
            return np.asarray(lims, np.int64), cat(Ds, np.int32), cat(Is, np.int64)
        return _hamming.radius(self._layout, len(self.codes), self.n_bits, to_words(queries, self.n_bits),
                               int(radius), int(self.n_threads))

    def ceiling(self, queries: np.ndarray, *, qbatch: int = 32) -> np.ndarray:
        """Sum of distances from each query to every row: XOR + popcount with no top-k (the speed ceiling)."""
        if _hamming is None:
            raise ConfigError("the ceiling pass needs the compiled kernel (deephash.index._hamming)")
        queries = check_codes(queries, self.n_bits)
        return _hamming.ceiling(self._layout, len(self.codes), self.n_bits, to_words(queries, self.n_bits),
                                int(self.n_threads), int(qbatch))
