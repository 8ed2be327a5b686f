"""KernelSearcher: exact Hamming k-NN and radius lookup with deephash's C kernel (``_hamming``).

The kernel fuses XOR + popcount with a counting top-k (distances are small integers), scans the
database in cache-sized blocks for a batch of queries at a time, and has one path per instruction
set: AVX-512 VPOPCNTDQ, AVX2, scalar POPCNT and plain C. Results follow the searcher contract of
:mod:`deephash.index.search`: ``(D int32 (nq, k), I int64 (nq, k))``, ties by row (smaller row
first), padded with ``(n_bits + 1, -1)``.

The instruction set is fixed when a searcher is built (the best the CPU has, or the one named by
``DEEPHASH_ISA=avx512|avx2|scalar`` to measure or test a path) and the database layout is chosen
with it (:data:`LAYOUTS`, :func:`layout_for`): the AVX2 path on codes of at most 128 bits reads a
byte-sliced copy (32 rows per block, byte b of the 32 rows together, so a query's nibble tables
replace the XOR); every other path reads the interleaved 64-bit-word layout. ``searcher.isa`` and
``searcher.layout_kind`` say which path answers.

When the extension was not built, :func:`kernel_available` is False, importing this module
still works, and the ``"deephash"`` searcher warns once and answers with FAISS's flat index.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable

import numpy as np

from deephash.errors import ConfigError
from deephash.codes import check_codes
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


ISA_ENV = "DEEPHASH_ISA"
#: names DEEPHASH_ISA accepts -> the kernel's instruction-set name ("scalar": POPCNT, or plain C without it)
ISA_ALIASES = {"avx512": "avx512", "avx2": "avx2", "scalar": "popcnt", "popcnt": "popcnt", "generic": "generic"}


def kernel_isa() -> str | None:
    """The instruction set a searcher built now would use (DEEPHASH_ISA, else the CPU's best; None without the extension)."""
    return resolve_isa() if _hamming is not None else None


def supported_isas() -> list[str]:
    """The kernel's instruction sets this CPU runs (empty without the extension)."""
    return list(_hamming.supported_isas()) if _hamming is not None else []


def resolve_isa(requested: str | None = None) -> str:
    """The kernel instruction set for ``requested``, else ``$DEEPHASH_ISA``, else the best this CPU has.

    Raises ConfigError for an unknown name or one this CPU (or this build) cannot run.
    """
    source = "isa"
    if requested is None and os.environ.get(ISA_ENV, "").strip():
        requested, source = os.environ[ISA_ENV], ISA_ENV
    if requested is None:
        return _hamming.isa()
    name = str(requested).strip().lower()
    if name not in ISA_ALIASES:
        raise ConfigError(f"{source} must be one of avx512, avx2, scalar (or popcnt, generic); got {requested!r}")
    isa = ISA_ALIASES[name]
    have = supported_isas()
    if isa == "popcnt" and name == "scalar" and "popcnt" not in have:
        isa = "generic"
    if isa not in have:
        raise ConfigError(f"{source}={name} asks for an instruction set this CPU cannot run; it runs "
                          f"{', '.join(have) or 'none (the kernel is not built)'}")
    return isa


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


def to_byte_sliced(codes: np.ndarray, n_bits: int) -> np.ndarray:
    """Packed codes -> the AVX2 byte-sliced layout: ``bsl[blk, b, j]`` = byte b of row 32*blk+j, flattened (uint8)."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    n, nb = len(codes), n_bits // 8
    nblk = (n + 31) // 32
    if nblk * 32 != n:
        codes = np.concatenate([codes, np.zeros((nblk * 32 - n, nb), np.uint8)])
    return np.ascontiguousarray(codes.reshape(nblk, 32, nb).transpose(0, 2, 1)).reshape(-1)


#: database layouts the kernel reads: name -> builder from packed codes
LAYOUTS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "interleaved": to_layout,
    "byte-sliced": to_byte_sliced,
}


def layout_for(isa: str, n_bits: int) -> str:
    """The fastest layout for an instruction set and code length: byte-sliced for AVX2 up to 128 bits.

    (AVX2 has no vector popcount; on byte-sliced codes a query's XOR folds into its nibble tables and a
    row's distance is a vertical byte sum. Longer codes would overflow the byte sums; AVX-512 VPOPCNTDQ
    and the scalar paths count 64-bit words directly.)
    """
    return "byte-sliced" if isa == "avx2" and n_bits <= 128 else "interleaved"


@SEARCHERS.register("deephash")
class KernelSearcher(ExactSearcher):
    """Exact Hamming search with deephash's C kernel; falls back to FAISS when it is not built."""

    name = "deephash"

    def __init__(self, n_bits: int, *, n_threads: int = 1, isa: str | None = None, layout: str | None = None) -> None:
        super().__init__(n_bits, n_threads=n_threads)
        if not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
            raise ConfigError(f"n_threads must be a positive integer; got {n_threads!r}")
        self._fallback: FaissFlatSearcher | None = None
        self.isa: str | None = None
        self.layout_kind: str | None = None
        if _hamming is None:
            warn_kernel_missing()
            self._fallback = FaissFlatSearcher(n_bits, n_threads=n_threads)
            return
        self.isa = resolve_isa(isa)
        self.layout_kind = layout or layout_for(self.isa, n_bits)
        if self.layout_kind not in LAYOUTS:
            raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
        if self.layout_kind == "byte-sliced" and (self.isa != "avx2" or n_bits > 128):
            raise ConfigError(f"the byte-sliced layout needs the avx2 path and codes of at most 128 bits; "
                              f"got {self.isa} and {n_bits} bits")
        self._layout = LAYOUTS[self.layout_kind](self.codes, n_bits)

    @property
    def path(self) -> str:
        """The code path that answers: ``"<isa>/<layout>"`` (``"faiss-flat"`` when the kernel is not built)."""
        return f"{self.isa}/{self.layout_kind}" if self._fallback is None else "faiss-flat"

    def reset(self, codes: np.ndarray) -> None:
        super().reset(codes)
        if self._fallback is not None:
            self._fallback.reset(self.codes)
        else:
            self._layout = LAYOUTS[self.layout_kind](self.codes, self.n_bits)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._fallback is not None:
            return self._fallback._search(queries, k)
        return _hamming.knn(self._layout, len(self.codes), self.n_bits, to_words(queries, self.n_bits), k,
                            int(self.n_threads), isa=self.isa)

    def search_radius(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All rows within Hamming ``radius``: ``(lims int64 (nq+1), D int32, I int64)`` (FAISS's range layout).

        Query ``i``'s hits are ``D[lims[i]:lims[i+1]]`` / ``I[...]``, sorted by (distance, row). Exact.
        """
        queries = check_codes(queries, self.n_bits)
        if not isinstance(radius, (int, np.integer)) or radius < 0:
            raise ConfigError(f"radius must be a non-negative integer; got {radius!r}")
        if self._fallback is not None:
            from deephash.codes import hamming_matrix

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
                               int(radius), int(self.n_threads), isa=self.isa)

    def ceiling(self, queries: np.ndarray, *, qbatch: int = 32) -> np.ndarray:
        """Sum of distances from each query to every row on this searcher's path: popcounts with no top-k."""
        if _hamming is None:
            raise ConfigError("the ceiling pass needs the compiled kernel (deephash.index._hamming)")
        queries = check_codes(queries, self.n_bits)
        return _hamming.ceiling(self._layout, len(self.codes), self.n_bits, to_words(queries, self.n_bits),
                                int(self.n_threads), int(qbatch), isa=self.isa)
