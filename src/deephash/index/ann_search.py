"""The FAISS structure of a local index file, kept in step with its rows (:class:`AnnSearcher`), and
what one snapshot searches through (:class:`AnnView`). The design — what is stored, when it is
built, how removals are handled, what is approximate — is in :mod:`deephash.index.faiss_backend`."""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from deephash.codes import check_codes
from deephash.errors import ConfigError, IndexFormatError
from deephash.index.faiss_indexes import ANN_INDEXES, AnnIndex, create_ann_index

#: masked (removed) codes past this share of a structure that cannot remove them make the next
#: write of the index file build it again from the live codes
REBUILD_DEAD_FRACTION = 0.25


def spec_of(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A search spec ``{"name": ..., **params}`` with the parameter names checked and the values made
    integers (they may be strings, from a URI's query); the structure checks their ranges when made."""
    cls = ANN_INDEXES.get(name)
    if not getattr(cls, "selectable", False):
        known = ", ".join(n for n in ANN_INDEXES.names() if ANN_INDEXES.get(n).selectable)
        raise ConfigError(f"{name!r} is not a search structure an index can use; known: {known}")
    allowed = cls.build_params + cls.search_params
    out: dict[str, Any] = {"name": name}
    for key, v in params.items():
        if key not in allowed:
            raise ConfigError(f"faiss-{name} has no parameter {key!r}; it takes {', '.join(allowed)}")
        if v is None:
            out[key] = None
            continue
        try:
            out[key] = int(v)
        except (TypeError, ValueError):
            raise ConfigError(f"faiss-{name}: {key} must be an integer; got {v!r}") from None
    return out


class AnnView:
    """One snapshot's view of the structure: the searcher contract of :mod:`deephash.index.search`
    (``search -> (D, rows)``, ``search_radius -> (lims, D, rows)``, padded with ``(n_bits + 1, -1)``,
    by (distance, row)) over the rows the snapshot holds. Codes added later are not seen; codes
    removed later may drop out (the structure is shared, not copied)."""

    def __init__(self, ann: AnnIndex, rows: np.ndarray, n_rows: int, lock: threading.RLock, info: dict[str, Any]):
        self.ann, self.rows, self.n_rows, self._lock = ann, rows, n_rows, lock
        self.n_bits = ann.n_bits
        self.info = info
        self.path = f"faiss-{ann.name}"

    def _rows_of(self, labels: np.ndarray) -> np.ndarray:
        ok = (labels >= 0) & (labels < len(self.rows))
        return np.where(ok, self.rows[np.clip(labels, 0, max(len(self.rows) - 1, 0))] if len(self.rows) else -1, -1)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = check_codes(np.atleast_2d(queries), self.n_bits)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer; got {k!r}")
        k = int(k)
        D_out = np.full((len(queries), k), self.n_bits + 1, np.int32)
        I_out = np.full((len(queries), k), -1, np.int64)
        total = self.ann.ntotal
        if not total or not self.n_rows:
            return D_out, I_out
        want, kk = min(k, self.n_rows), min(k, total)
        while True:
            with self._lock:
                D, labels = self.ann.search(queries, kk)
            rows = self._rows_of(labels)
            # a full list with masked or newer codes in it: ask for more (a short list cannot grow)
            more = ((rows >= 0).sum(axis=1) < want) & (labels >= 0).all(axis=1)
            if not more.any() or kk >= total:
                break
            kk = min(total, 2 * kk)
        for i in range(len(queries)):
            keep = np.flatnonzero(rows[i] >= 0)[:k]
            D_out[i, : len(keep)], I_out[i, : len(keep)] = D[i, keep], rows[i, keep]
        return D_out, I_out

    def search_radius(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        queries = check_codes(np.atleast_2d(queries), self.n_bits)
        with self._lock:
            lims, D, labels = self.ann.search_radius(queries, radius)
        rows = self._rows_of(labels)
        keep = rows >= 0
        kept_before = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)  # kept entries before each position
        return kept_before[lims], D[keep], rows[keep]


class AnnSearcher:
    """A FAISS structure over the rows of one :class:`HashIndex`, kept in step with its changes.

    FAISS labels are *slots*: the n-th code ever added to the structure has label n; ``rows[slot]``
    is its row in the index now (-1 once removed). Rows only shift down on removal and grow at the
    end, so the order of slots is the order of rows, and FAISS's ties by label are ties by row."""

    def __init__(self, spec: dict[str, Any], n_bits: int, n_threads: int = 1) -> None:
        spec = spec_of(spec["name"], {k: v for k, v in spec.items() if k != "name"})
        self.name = spec["name"]
        self._params = {k: v for k, v in spec.items() if k != "name"}
        self.n_bits, self.n_threads = n_bits, n_threads
        self.ann = create_ann_index(self.name, n_bits=n_bits, n_threads=n_threads, **self._params)
        self._rows = np.zeros(0, np.int64)  # slot -> row; a buffer with headroom past n_slots
        self.n_slots = 0
        self.masked = 0  # removed codes the structure still holds (it cannot remove them)
        self.built = False
        self._lock = threading.RLock()

    @property
    def spec(self) -> dict[str, Any]:
        """What the file's header records: the name and every parameter (an automatic nlist once built)."""
        return {"name": self.name, **self.ann.params()}

    @property
    def info(self) -> dict[str, Any]:
        """How answers are found, for ``stats()`` and every answer's metadata."""
        return {**self.spec, "exact": False, "built": self.built, "masked": self.masked}

    def build(self, codes: np.ndarray) -> None:
        """Build the structure from every code of the index (train, then add), rows = slots."""
        with self._lock:
            if not len(codes):
                return
            ann = create_ann_index(self.name, n_bits=self.n_bits, n_threads=self.n_threads, **self._params)
            if ann.needs_training:
                ann.train(codes)
            ann.add(codes, np.arange(len(codes), dtype=np.int64) if ann.can_remove else None)
            self.ann, self._rows, self.n_slots, self.masked, self.built = ann, np.arange(len(codes), dtype=np.int64), len(codes), 0, True

    def add(self, codes: np.ndarray, first_row: int) -> None:
        """Codes appended to the index as rows ``first_row, first_row + 1, ...``."""
        with self._lock:
            if not self.built or not len(codes):
                return  # built from every code when first needed
            m, s = len(codes), self.n_slots
            self.ann.add(codes, np.arange(s, s + m, dtype=np.int64) if self.ann.can_remove else None)
            if s + m > len(self._rows):  # a new buffer: views of the old one stay as they were
                buf = np.empty(max(s + m, s + max(16, s // 4)), np.int64)
                buf[:s] = self._rows[:s]
                self._rows = buf
            self._rows[s : s + m] = np.arange(first_row, first_row + m)
            self.n_slots = s + m

    def remove(self, keep: np.ndarray) -> None:
        """Rows removed from the index: ``keep`` is a mask over the rows before the removal."""
        with self._lock:
            if not self.built:
                return
            old = self._rows[: self.n_slots]
            live = old >= 0
            kept = np.zeros(len(old), bool)
            kept[live] = keep[old[live]]
            rows = np.full(len(old), -1, np.int64)  # a new array: views keep the old mapping
            rows[kept] = (np.cumsum(keep) - 1)[old[kept]]
            gone = np.flatnonzero(live & ~kept)
            if self.ann.can_remove:
                self.ann.remove(gone)
            else:
                self.masked += len(gone)
            self._rows = rows

    def view(self, codes: np.ndarray) -> AnnView:
        """The searcher of a snapshot holding ``codes`` (the structure is built now if it is not yet)."""
        with self._lock:
            if not self.built:
                self.build(codes)
            return AnnView(self.ann, self._rows[: self.n_slots], len(codes), self._lock, self.info)

    def arrays(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        """What the index file stores of the structure (built now if it is not; rebuilt when masked
        codes pass :data:`REBUILD_DEAD_FRACTION`); nothing for an empty index."""
        with self._lock:
            if not self.built or self.masked > REBUILD_DEAD_FRACTION * max(self.n_slots, 1):
                self.build(codes)
            if not self.built:
                return {}
            return {"ann": self.ann.to_bytes(), "ann_rows": self._rows[: self.n_slots].copy()}

    @classmethod
    def restore(cls, spec: dict[str, Any], data: np.ndarray, rows: np.ndarray, n_rows: int, *, n_bits: int,
                n_threads: int = 1, where: str = "") -> "AnnSearcher":
        """The structure an index file stored (``arrays``), checked against the file's ``n_rows`` rows."""
        s = cls(spec, n_bits, n_threads)
        s.ann = ANN_INDEXES.get(s.name).from_bytes(data, n_bits=n_bits, n_threads=n_threads, **s._params)
        rows = np.asarray(rows, np.int64)
        live = rows[rows >= 0]
        held = len(live) if s.ann.can_remove else len(rows)  # what FAISS holds: live codes, or every slot
        if s.ann.ntotal != held or not np.array_equal(live, np.arange(n_rows)) or (rows < -1).any():
            raise IndexFormatError(f"{where}: the stored {s.name!r} structure does not fit the index's {n_rows} rows "
                                   "(rebuild it: deephash index)")
        s._rows, s.n_slots, s.built = rows, len(rows), True
        s.masked = 0 if s.ann.can_remove else int((rows < 0).sum())
        return s


def open_searcher(stored: dict[str, Any] | None, asked: dict[str, Any] | None, arrays: dict[str, np.ndarray], n_rows: int,
                  *, n_bits: int, n_threads: int = 1, where: str = "") -> tuple[AnnSearcher | None, bool]:
    """The searcher of an index file being loaded: the structure the header records (``stored``),
    or the one the caller ``asked`` for (see the module docstring). Returns it (None: exact search)
    and whether the file must be rewritten to record another structure."""
    if stored is None and asked is None:
        return None, False
    spec = dict(stored or {})
    if asked is not None:
        if spec.get("name") != asked["name"]:
            spec = dict(asked)
        else:
            spec.update({k: v for k, v in asked.items() if v is not None})
    build = ANN_INDEXES.get(spec["name"]).build_params
    same = stored is not None and stored["name"] == spec["name"] and all(stored.get(p) == spec.get(p) for p in build)
    if same and "ann" in arrays:
        return AnnSearcher.restore(spec, arrays["ann"], arrays["ann_rows"], n_rows, n_bits=n_bits, n_threads=n_threads,
                                   where=where), False
    return AnnSearcher(spec, n_bits, n_threads), not same
