"""HashIndex: packed binary codes with their ids, paths, labels and optional float features.

It searches exactly by Hamming distance (a pluggable :mod:`deephash.index.search` backend),
re-ranks a Hamming candidate pool with float features (DLBHC's coarse-to-fine search), grows
and shrinks without retraining, and persists to one file with a magic tag and a format
version (see :func:`save` for the layout).

Changes made after a save can be appended to ``<index>.journal`` (:meth:`HashIndex.log_added`,
:meth:`HashIndex.log_removed`; :mod:`deephash.index.journal`) instead of rewriting the file;
:meth:`HashIndex.load` replays them and :meth:`HashIndex.save` folds them in.

The file's ``code_kind`` names the index type that holds its codes (:data:`deephash.index.backend.LOCAL_INDEX_TYPES`):
"hamming", this class; "pq" (PQ / DPQ codeword indices, the same arrays and file),
:class:`deephash.index.pq_index.PQIndex`, which ranks by asymmetric distance. :meth:`HashIndex.load`
and ``new_index(path, code_kind=...)`` give the type the file or the model names.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from deephash.names import display_path, name_bytes, names_from_nul_bytes, names_to_nul_bytes
from deephash.errors import ConfigError, DataError, IndexFormatError
from deephash.index.ann_search import AnnSearcher, open_searcher
from deephash.index.backend import local_index_type, register_backend, register_local_index
from deephash.index.journal import Journal
from deephash.codes import check_codes, check_n_bits
from deephash.index.search import SEARCHERS, ExactSearcher
from deephash.utils import atomic_path

MAGIC = b"DHASHIDX"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sIIQ")  # magic, version, flags, header length
_TRAILER = b"DHEND\x00\x00\x00"
#: paths of images added through the service (kept in ``<index>.uploads/``, not in the archive)
UPLOAD_PREFIX = "@uploads/"
#: what the stored bytes are: packed bits (Hamming) or quantisation codeword indices (asymmetric distance)
CODE_KINDS = ("hamming", "pq")
#: how the paths array stores names: their file-system bytes (os.fsencode) separated by NUL; files
#: without the header field store newline-separated UTF-8
PATH_ENCODING = "fsbytes-nul"


def _read_head(fh, path: Path, size: int) -> dict[str, Any]:
    """Check the preamble of an open index file and return its JSON header (``fh`` then stands at
    the first array); every way it can be wrong is an :class:`IndexFormatError` naming the file."""
    if size < _PREAMBLE.size:
        raise IndexFormatError(f"{path}: file is {size} bytes, too short to be a deephash index")
    magic, version, _flags, hlen = _PREAMBLE.unpack(fh.read(_PREAMBLE.size))
    if magic != MAGIC:
        raise IndexFormatError(f"{path}: not a deephash index (expected magic {MAGIC!r}, found {magic!r})")
    if version > FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: index format version {version} was written by a newer deephash; this one reads up to {FORMAT_VERSION}"
        )
    if hlen > size - _PREAMBLE.size:
        raise IndexFormatError(f"{path}: index file is truncated: its header alone would need {hlen} bytes")
    try:
        return json.loads(fh.read(hlen).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexFormatError(f"{path}: index header is corrupt ({e})") from None


def _check_paths(paths: Sequence[str]) -> None:
    """Every name must be storable as file-name bytes: no NUL (the separator; Linux forbids it too)
    and no lone surrogate other than those ``os.fsdecode`` makes of undecodable bytes."""
    for p in paths:
        if "\0" in p:
            raise ConfigError(f"image paths may not contain NUL characters; got {display_path(p)!r}")
        try:
            name_bytes(p)
        except UnicodeEncodeError:
            raise ConfigError(f"image path {p.encode('utf-8', 'backslashreplace').decode()!r} is not a file name "
                              "(it holds a lone surrogate that no file-name byte decodes to)") from None


def _decode_paths(raw: bytes, header: dict[str, Any], path: Path) -> list[str]:
    """The paths array of a file: NUL-separated file-name bytes (``path_encoding`` "fsbytes-nul"), or in
    files written before it, newline-separated UTF-8."""
    if not header["n_paths"]:
        return []
    if header.get("path_encoding") == PATH_ENCODING:
        return names_from_nul_bytes(raw)
    try:
        return raw.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise IndexFormatError(f"{path}: the paths array is not UTF-8 ({e})") from None


#: what each stored array must be: allowed dtypes and number of dimensions (labels: single-label
#: int64 class numbers, or multi-hot uint8 rows)
_ARRAY_SPECS = {
    "codes": ({"|u1"}, (2,)), "ids": ({"<i8"}, (1,)), "paths": ({"|u1"}, (1,)),
    "labels": ({"<i8", "|u1"}, (1, 2)), "features": ({"<f2", "<f4"}, (2,)),
    # the FAISS search structure the header's "search" names (deephash.index.faiss_backend): serialized,
    # and the row of each of its labels
    "ann": ({"|u1"}, (1,)), "ann_rows": ({"<i8"}, (1,)),
}
#: arrays with their own length (not one row per image)
_UNROWED_ARRAYS = ("paths", "ann", "ann_rows")
_REQUIRED_ARRAYS = ("codes", "ids", "paths")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_header(header: Any, path: Path, body_bytes: int) -> list[dict[str, Any]]:
    """Validate an index header against its schema before anything is allocated: field types and
    ranges, every array's dtype, shape and byte size, and the sizes against the file's; returns the
    array specs. ``body_bytes``: the bytes the file holds between the header and the end marker."""
    def bad(why: str) -> IndexFormatError:
        return IndexFormatError(f"{path}: index header is not valid: {why}")

    if not isinstance(header, dict):
        raise bad(f"expected a JSON object, found {type(header).__name__}")
    for key, check, what in (
        ("n_bits", lambda v: _is_int(v) and 8 <= v <= 1024 and v % 8 == 0, "a multiple of 8 between 8 and 1024"),
        ("n", lambda v: _is_int(v) and v >= 0, "a count >= 0"),
        ("n_paths", lambda v: _is_int(v) and v >= 0, "a count >= 0"),
        ("arrays", lambda v: isinstance(v, list), "a list of array descriptions"),
    ):
        if key not in header:
            raise bad(f"field {key!r} is missing")
        if not check(header[key]):
            raise bad(f"field {key!r} must be {what}; found {header[key]!r:.80}")
    for key, check, what in (
        ("next_id", lambda v: _is_int(v) and v >= 0, "an id >= 0"),
        ("searcher", lambda v: isinstance(v, str), "a searcher name"),
        ("feature_dtype", lambda v: v in ("float16", "float32"), "'float16' or 'float32'"),
        ("code_kind", lambda v: v in CODE_KINDS, f"one of {list(CODE_KINDS)}"),
        ("class_names", lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v), "a list of strings"),
        ("meta", lambda v: isinstance(v, dict), "a JSON object"),
        ("token", lambda v: isinstance(v, str) and len(v) == 32 and all(c in "0123456789abcdef" for c in v), "32 hex digits"),
        ("path_encoding", lambda v: v == PATH_ENCODING, repr(PATH_ENCODING)),
        ("search", lambda v: isinstance(v, dict) and isinstance(v.get("name"), str), "a search structure (name, parameters)"),
    ):
        if key in header and header[key] is not None and not check(header[key]):
            raise bad(f"field {key!r} must be {what}; found {header[key]!r:.80}")
    n, total, seen = header["n"], 0, set()
    for s in header["arrays"]:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str):
            raise bad(f"every array description must be an object with a name; found {s!r:.80}")
        name = s["name"]
        if name not in _ARRAY_SPECS:
            raise bad(f"unknown array {name!r:.40} (expected {', '.join(_ARRAY_SPECS)})")
        if name in seen:
            raise bad(f"array {name!r} is described twice")
        seen.add(name)
        dtypes, ndims = _ARRAY_SPECS[name]
        if not isinstance(s.get("dtype"), str) or s["dtype"] not in dtypes:
            raise bad(f"array {name!r} must have dtype {' or '.join(sorted(dtypes))}; found {s.get('dtype')!r:.40}")
        shape = s.get("shape")
        if not isinstance(shape, list) or len(shape) not in ndims or not all(_is_int(d) and d >= 0 for d in shape):
            raise bad(f"array {name!r} must have a shape of {' or '.join(map(str, ndims))} sizes >= 0; found {shape!r:.80}")
        if not (_is_int(s.get("nbytes")) and _is_int(s.get("crc32"))):
            raise bad(f"array {name!r} lacks its byte size or checksum")
        nbytes = int(np.prod(shape, dtype=object)) * np.dtype(s["dtype"]).itemsize
        if nbytes != s["nbytes"]:
            raise bad(f"array {name!r} of shape {shape} and dtype {s['dtype']} needs {nbytes} bytes; the header says {s['nbytes']}")
        if name not in _UNROWED_ARRAYS and shape[0] != n:
            raise bad(f"array {name!r} has {shape[0]} rows; the index holds n={n}")
        total += nbytes
        if total > body_bytes:  # before any allocation: sizes are bounded by the file's size
            raise IndexFormatError(f"{path}: index file is truncated or its header lies: the arrays need more than the "
                                   f"{body_bytes} bytes the file holds")
    missing = [a for a in _REQUIRED_ARRAYS if a not in seen]
    if missing:
        raise bad(f"array(s) {', '.join(missing)} missing")
    specs = {s["name"]: s for s in header["arrays"]}
    width = specs["codes"]["shape"][1]
    if width * 8 != header["n_bits"]:
        raise bad(f"codes have {width * 8} bits per row; the header says n_bits={header['n_bits']}")
    fdt = {"float16": "<f2", "float32": "<f4"}[header.get("feature_dtype") or "float16"]
    if "features" in specs and specs["features"]["dtype"] != fdt:
        raise bad(f"features are {specs['features']['dtype']}; the header says feature_dtype={header.get('feature_dtype')}")
    if "labels" in specs:
        lab = specs["labels"]
        if (lab["dtype"] == "<i8") != (len(lab["shape"]) == 1):
            raise bad("labels must be int64 class numbers (n,) or uint8 multi-hot rows (n, classes)")
    return header["arrays"]


def header_token(header: dict[str, Any]) -> str:
    """The digest of a header without its token (what :meth:`HashIndex.save` writes as the token)."""
    body = {k: v for k, v in header.items() if k != "token"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def _check_token(header: dict[str, Any], path: Path) -> None:
    """The header's token is a digest of the rest of it: a changed byte in the header (a class name,
    the model's identity, a size) is corruption, refused, not a silently different index."""
    if header.get("token") and header_token(header) != header["token"]:
        raise IndexFormatError(f"{path}: index header is corrupt: it does not match the digest written with it "
                               "(restore the file from a copy or rebuild it with deephash index)")


def _check_arrays(header: dict[str, Any], arrays: dict[str, np.ndarray], paths: list[str], path: Path) -> None:
    """The arrays against each other and the header: one path per row, unique ids >= 0 below
    next_id, labels within the class names."""
    def bad(why: str) -> IndexFormatError:
        return IndexFormatError(f"{path}: index arrays are inconsistent: {why}")

    n, ids = header["n"], arrays["ids"]
    if len(paths) != n or header["n_paths"] != n:
        raise bad(f"{len(paths)} paths (header n_paths={header['n_paths']}) for n={n} images")
    if n:
        if ids.min() < 0:
            raise bad(f"negative id {int(ids.min())}")
        sorted_ids = np.sort(ids)  # a sort finds repeats several times faster than np.unique's hash table
        if (sorted_ids[1:] == sorted_ids[:-1]).any():
            raise bad("ids are not unique")
        nxt = header.get("next_id")
        if nxt is not None and nxt <= int(ids.max()):
            raise bad(f"next_id={nxt} is not above the largest id {int(ids.max())} (new ids would collide)")
    labels, names = arrays.get("labels"), header.get("class_names") or []
    if labels is not None and n:
        if labels.ndim == 1:
            lo, hi = int(labels.min()), int(labels.max())
            if lo < -1 or (names and hi >= len(names)):
                raise bad(f"labels range over [{lo}, {hi}]; expected -1 (none) up to {len(names) - 1} "
                          f"({len(names)} class names)" if names else f"labels go down to {lo}; expected >= -1")
        else:
            if names and labels.shape[1] != len(names):
                raise bad(f"multi-hot labels have {labels.shape[1]} columns for {len(names)} class names")
            if labels.max() > 1:
                raise bad("multi-hot labels hold values other than 0 and 1")


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of an index file (sizes, arrays, token, meta) without reading its arrays."""
    with open(path, "rb") as fh:
        return _read_head(fh, Path(path), os.fstat(fh.fileno()).st_size)


def file_token(path: str | os.PathLike) -> str | None:
    """The token the index file at ``path`` holds now (what its journal must name)."""
    return read_header(path).get("token")


def _append_rows(buf: np.ndarray | None, n: int, rows: np.ndarray) -> np.ndarray:
    """``buf[:n]`` followed by ``rows``, in ``buf`` itself while it has room, else in a new buffer
    with a quarter of headroom: adding one image costs O(1) amortised, not a copy of the index.
    Rows past ``n`` are never visible through earlier views, so snapshots stay valid."""
    need = n + len(rows)
    if buf is None or need > len(buf) or buf.shape[1:] != rows.shape[1:] or buf.dtype != rows.dtype:
        new = np.empty((max(need, n + max(16, n // 4)), *rows.shape[1:]), dtype=rows.dtype)
        if buf is not None and n:
            new[:n] = buf[:n]
        buf = new
    buf[n:need] = rows
    return buf


def _row_view(name: str):
    """A property exposing ``self._buf[name][:self._n]`` (None when the index does not store it);
    setting it replaces the buffer (its length sets the size when ``name`` is 'codes')."""

    def get(self):
        b = self._buf[name]
        return None if b is None else b[: self._n]

    def set_(self, value):
        self._buf[name] = None if value is None else np.asarray(value)
        if name == "codes":
            self._n = len(self._buf[name])

    return property(get, set_)


#: result arrays larger than this are refused (FAISS's contract pads to k: k = 10^9 would allocate 12 GB)
MAX_RESULT_BYTES = 1 << 30


def check_result_size(nq: int, k: int, n: int) -> None:
    """Refuse a k whose padded (nq, k) result arrays would not fit; :func:`deephash.query.search` caps k instead."""
    if k > n and nq * k * 12 > MAX_RESULT_BYTES:
        raise ConfigError(f"k={k} would need {nq * k * 12 / 2**30:.1f} GiB of padded results but the index holds {n} "
                          f"images: ask for at most {n} (deephash.query.search and the CLI cap k at the index size)")


def _pad_to(D: np.ndarray, I: np.ndarray, k: int, fill) -> tuple[np.ndarray, np.ndarray]:
    """``(D, I)`` widened to ``k`` columns, padded with ``fill`` / -1 like FAISS."""
    if D.shape[1] >= k:
        return D, I
    D2 = np.full((len(D), k), fill, D.dtype)
    I2 = np.full((len(I), k), -1, np.int64)
    D2[:, : D.shape[1]], I2[:, : I.shape[1]] = D, I
    return D2, I2


@dataclass
class RerankResult:
    """Coarse-to-fine answer for one query: ids, Euclidean feature distances, Hamming distances."""

    ids: np.ndarray
    distances: np.ndarray
    hamming: np.ndarray
    radius: int
    pool_size: int


@dataclass
class IndexSnapshot:
    """The arrays of an index taken together under its lock, with the searcher built over them.

    Mutations replace arrays (or append past ``len(ids)``), never edit rows in place, so a
    snapshot stays consistent while the index changes; row ``r`` is the same image in every array."""

    #: how :func:`deephash.query.search` ranks this view: by Hamming distance between packed codes
    metric: ClassVar[str] = "hamming"
    n_bits: int
    codes: np.ndarray
    ids: np.ndarray
    labels: np.ndarray | None
    features: np.ndarray | None
    paths: list[str]
    searcher: Any
    class_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def topk_rows(self, code: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Hamming distances and rows of the ``k`` nearest codes to one query, by (distance, row)."""
        if not len(self.ids) or k < 1:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        D, rows = self.searcher.search(code, min(int(k), len(self.ids)))
        keep = rows[0] >= 0
        return D[0][keep].astype(np.int32), rows[0][keep].astype(np.int64)

    def radius_rows(self, code: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """Hamming distances and rows of every code within ``radius`` of one query, by (distance, row)."""
        if not len(self.ids):
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        if hasattr(self.searcher, "search_radius"):  # the kernel's exact radius scan
            _, D, rows = self.searcher.search_radius(code, int(radius))
            return D.astype(np.int32), rows.astype(np.int64)
        from deephash.codes import hamming_matrix

        d = hamming_matrix(code, self.codes)[0]
        hit = np.flatnonzero(d <= radius)
        o = hit[np.lexsort((hit, d[hit]))]
        return d[o].astype(np.int32), o.astype(np.int64)

    # ------------------------------------------------------------------ the view of deephash.index.backend
    # keys are rows of this snapshot; ``cls`` a class index (a label filter) or None

    @property
    def has_features(self) -> bool:
        return self.features is not None

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def feature_dim(self) -> int | None:
        return None if self.features is None else int(self.features.shape[1])

    @property
    def search_info(self) -> dict[str, Any]:
        """How this view answers: a FAISS structure's name and parameters (``"exact": false``), or exact."""
        return getattr(self.searcher, "info", None) or {"name": "exact", "exact": True}


    def _class_rows(self, cls: int) -> np.ndarray:
        from deephash.query import label_rows

        return label_rows(self.labels, cls)

    def count(self, cls: int | None = None) -> int:
        return len(self) if cls is None else len(self._class_rows(cls))

    def has_id(self, image_id: int, cls: int | None = None) -> bool:
        ids = self.ids if cls is None else self.ids[self._class_rows(cls)]
        return bool(np.any(ids == int(image_id)))

    def key_of(self, image_id: int) -> int:
        rows = np.flatnonzero(self.ids == int(image_id))
        if not len(rows):
            raise DataError(f"unknown image id {image_id}; the index holds {len(self)} images")
        return int(rows[0])

    def _class_distances(self, code: np.ndarray, cls: int) -> tuple[np.ndarray, np.ndarray]:
        from deephash.codes import hamming_matrix

        rows = self._class_rows(cls)
        d = hamming_matrix(code, self.codes[rows])[0].astype(np.int32) if len(rows) else np.zeros(0, np.int32)
        o = np.lexsort((rows, d))
        return d[o], rows[o].astype(np.int64)

    def nearest(self, code: np.ndarray, k: int, cls: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows (of class ``cls``), by (Hamming distance, row)."""
        if cls is None:
            return self.topk_rows(code, k)
        d, rows = self._class_distances(code, cls)
        return d[:k], rows[:k]

    def within(self, code: np.ndarray, radius: int, cls: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every row (of class ``cls``) within Hamming ``radius``, by (distance, row)."""
        if cls is None:
            return self.radius_rows(code, radius)
        d, rows = self._class_distances(code, cls)
        keep = d <= radius
        return d[keep], rows[keep]

    def ids_of(self, keys: np.ndarray) -> np.ndarray:
        return self.ids[np.asarray(keys, np.int64)]

    def codes_of(self, keys: np.ndarray) -> np.ndarray:
        return self.codes[np.asarray(keys, np.int64)].copy()

    def features_of(self, keys: np.ndarray) -> np.ndarray:
        if self.features is None:
            raise ConfigError("this index stores no float features")
        return self.features[np.asarray(keys, np.int64)].astype(np.float32)

    def records_of(self, keys: np.ndarray) -> tuple[list[str], list[Any]]:
        """Paths and stored labels (an int, -1 for none; a list of classes when multi-label; None without labels)."""
        keys = [int(r) for r in np.asarray(keys, np.int64)]
        if self.labels is None:
            labels: list[Any] = [None] * len(keys)
        elif self.labels.ndim == 1:
            labels = [int(self.labels[r]) for r in keys]
        else:
            labels = [[int(j) for j in np.flatnonzero(self.labels[r])] for r in keys]
        return [self.paths[r] for r in keys], labels

    def page(self, offset: int, limit: int, step: int = 1) -> np.ndarray:
        """Rows of one page of the browsing order (insertion order), every ``step``-th from ``offset``."""
        return np.asarray(range(offset, len(self), step)[:limit], np.int64)


@register_backend("file")
@register_local_index
class HashIndex:
    """An on-disk-persistable index of packed binary codes (the local backend of
    :mod:`deephash.index.backend`: a path or ``file:PATH``).

    ``search(codes, k) -> (D int32 (nq, k), ids int64 (nq, k))``, padded with -1 like FAISS;
    ties in Hamming distance are ordered by insertion (which is id order for auto ids).
    """

    #: what the stored bytes are (the file header's ``code_kind``): packed bits
    code_kind: ClassVar[str] = "hamming"
    #: how it ranks (its view's ``metric``): Hamming distance between packed codes
    metric: ClassVar[str] = "hamming"

    def __init__(
        self,
        n_bits: int,
        *,
        searcher: str | None = None,
        n_threads: int = 1,
        meta: dict[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        feature_dtype: str = "float16",
        search: dict[str, Any] | None = None,
    ) -> None:
        """``search``: a FAISS structure to search through (``{"name": "ivf", "nprobe": 8}``;
        :mod:`deephash.index.faiss_backend`), None: exact search with ``searcher``."""
        self.n_bits = check_n_bits(n_bits)
        if feature_dtype not in ("float16", "float32"):
            raise ConfigError(f"feature_dtype must be 'float16' or 'float32'; got {feature_dtype!r}")
        if searcher is None:  # the C kernel when it is built, else FAISS (with a one-time warning)
            from deephash.index.kernel_searcher import default_searcher_name

            searcher = default_searcher_name()
        self.searcher_name = searcher
        self.n_threads = int(n_threads)
        self.meta: dict[str, Any] = dict(meta or {})
        self.class_names: list[str] = list(class_names or [])
        self.feature_dtype = feature_dtype
        # per-row arrays live in buffers with spare room (see _append_rows); the public
        # attributes codes / ids / labels / features are views of their first _n rows
        self._buf: dict[str, np.ndarray | None] = {"codes": None, "ids": None, "labels": None, "features": None}
        self._n = 0
        self.codes = np.zeros((0, self.n_bits // 8), np.uint8)
        self.ids = np.zeros((0,), np.int64)
        self.paths: list[str] = []
        self._next_id = 0
        self._lock = threading.RLock()
        self._searcher: ExactSearcher | None = None
        self._row_of: dict[int, int] | None = None
        self._journal = None  # bound to the file this index was last saved to or loaded from
        self._target: Path | None = None  # where finish() writes a new index (new_index)
        self._header_changed = False  # class names grew: the file must be rewritten (persist)
        self._path_map: dict[str, int] | None = None  # path -> id, built by ids_of_paths
        if search is not None and self.metric != "hamming":
            raise ConfigError(f"a FAISS search structure ({search.get('name')}) searches Hamming codes; this index holds {self.code_kind!r} codes")
        self._ann = None if search is None else AnnSearcher(search, self.n_bits, self.n_threads)

    codes = _row_view("codes")
    ids = _row_view("ids")
    labels = _row_view("labels")
    features = _row_view("features")

    # ------------------------------------------------------------------ size and lookup
    def __len__(self) -> int:
        return int(self._n)

    @property
    def has_features(self) -> bool:
        return self.features is not None

    @property
    def has_labels(self) -> bool:
        return self.labels is not None

    @property
    def multi_label(self) -> bool:
        return self.labels is not None and self.labels.ndim == 2

    @property
    def location(self) -> str:
        """The file this index was last saved to or loaded from (or will be written to)."""
        p = self._journal.index_path if self._journal is not None else self._target
        return str(p) if p is not None else "(in memory)"

    # ------------------------------------------------------------------ the backend interface (deephash.index.backend)
    @classmethod
    def open_uri(cls, uri: str, **options: Any) -> "HashIndex":
        """The index file at ``uri`` (a path or ``file:PATH``); ``options`` (``searcher``, ``n_threads``) go to :meth:`load`."""
        other = sorted(set(options) - {"searcher", "n_threads", "search"})
        if other:
            raise ConfigError(f"option(s) {', '.join(other)} apply to server indexes (milvus://...), not to the file {uri}")
        return cls.load(uri[len("file:"):] if uri.startswith("file:") else uri, **options)

    @classmethod
    def create_uri(cls, uri: str, n_bits: int, *, class_names: Sequence[str] = (), code_kind: str = "hamming",
                   meta: dict[str, Any] | None = None, feature_dim: int | None = None, labels: str | None = None,
                   **options: Any) -> "HashIndex":
        """An empty index that :meth:`finish` writes to ``uri`` (features float16 and labels as the first
        ``add`` gives them; ``options``: ``searcher``, ``n_threads``)."""
        other = sorted(set(options) - {"searcher", "n_threads", "search"})
        if other:
            raise ConfigError(f"option(s) {', '.join(other)} apply to server indexes (milvus://...), not to the file {uri}")
        # the type that holds the model's codes: this class, or PQIndex for code_kind "pq"
        ix = local_index_type(code_kind)(n_bits, class_names=class_names, meta=meta, **options)
        ix._target = Path(uri[len("file:"):] if uri.startswith("file:") else uri)
        return ix

    def finish(self) -> None:
        """Write a built index to the file it was created for."""
        if self._target is None:
            raise ConfigError("this index was not made by new_index(path): save it with save(path)")
        self.save(self._target)

    def persist(self, added: Sequence[int] | np.ndarray = (), removed: Sequence[int] | np.ndarray = (), *,
                fold_ratio: float = 0.25, fold_min_bytes: int = 0) -> bool:
        """Make changes already applied in memory durable: appended (fsync'ed) to the journal of the
        bound file, which is folded into a rewritten file once it passes ``max(fold_min_bytes,
        fold_ratio x the file)``. Returns whether the file was rewritten. A failed fold loses nothing
        (the journal holds the changes): it is logged and retried at the next call."""
        import logging

        both = set(map(int, added)) & set(map(int, removed))  # added, then removed again: nothing to record
        added = [int(i) for i in added if int(i) not in both]
        removed = [int(i) for i in removed if int(i) not in both]
        with self._lock:
            if added:
                self.log_added(added)
            if removed:
                self.log_removed(removed)
            if not (self._header_changed or self.journal_outgrown(fold_ratio, fold_min_bytes)):
                return False
            try:
                self.save(self._journal.index_path)
            except Exception as e:  # the changes are already durable in the journal
                logging.getLogger("deephash.index").error("could not rewrite %s to fold in its journal (%s: %s); will retry",
                                                          self._journal.index_path, type(e).__name__, e)
                return False
            return True

    def id_paths(self) -> tuple[np.ndarray, list[str]]:
        """Every stored id with its path."""
        with self._lock:
            return self.ids.copy(), list(self.paths)

    def ids_of_paths(self, paths: Sequence[str]) -> dict[str, int]:
        """``path -> id`` for those of ``paths`` the index holds (a map built once per change)."""
        with self._lock:
            if self._path_map is None:
                self._path_map = {p: int(i) for i, p in zip(self.ids, self.paths)}
            m = self._path_map
        return {p: m[p] for p in paths if p in m}

    def add_class_names(self, names: Sequence[str]) -> None:
        """Append new class names; they live in the file's header, so the next :meth:`persist` rewrites it."""
        with self._lock:
            new = [n for n in names if n not in self.class_names]
            if new:
                self.class_names.extend(new)
                self._header_changed = True

    def new_ids(self, n: int) -> np.ndarray:
        """The next ``n`` ids (one process writes a local index: the service holds its write lock)."""
        with self._lock:
            return np.arange(self._next_id, self._next_id + int(n), dtype=np.int64)

    def default_uploads_dir(self) -> Path:
        """Where the service keeps uploaded images: ``<index file>.uploads`` beside the file."""
        p = Path(self.location).resolve()
        return p.with_name(p.name + ".uploads")

    @classmethod
    def local_path(cls, uri: str) -> Path:
        """The file a ``file:PATH`` (or plain path) URI names."""
        return Path(uri[len("file:"):] if uri.startswith("file:") else uri)

    @property
    def search_info(self) -> dict[str, Any]:
        """How searches are answered: the FAISS structure and its parameters (``"exact": false``), or exact."""
        return self._ann.info if self._ann is not None else {"name": "exact", "searcher": self.searcher_name, "exact": True}

    def reopen(self) -> "HashIndex":
        """The index as its file (and journal) hold it: what to use after a failed write."""
        return type(self).load(self._bound_journal().index_path, searcher=self.searcher_name, n_threads=self.n_threads,
                               search=None if self._ann is None else self._ann.spec)

    def stats(self) -> dict[str, Any]:
        """Backend facts for ``/api/stats``: per-class counts, uploads, searcher, file, journal."""
        with self._lock:
            labels, paths = self.labels, list(self.paths)
        per_class = None
        if labels is not None and labels.ndim == 1 and self.class_names:
            counts = np.bincount(labels[labels >= 0], minlength=len(self.class_names))
            per_class = {n: int(c) for n, c in zip(self.class_names, counts)}
        backend = "file" if self._ann is None else f"faiss-{self._ann.name}"  # the scheme it answers as
        return {"backend": backend, "per_class": per_class, "uploaded": int(sum(p.startswith(UPLOAD_PREFIX) for p in paths)),
                "searcher": self.searcher_name, "index_file": Path(self.location).name, "journal_bytes": self.journal_bytes,
                "search": self.search_info}

    def close(self) -> None:
        """Nothing is held open between calls (the file is read whole at load)."""

    def rows_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row positions of ``ids``; raises :class:`DataError` naming the unknown ids."""
        with self._lock:
            if self._row_of is None:
                self._row_of = {int(i): r for r, i in enumerate(self.ids)}
            rows, missing = [], []
            for i in np.asarray(ids, dtype=np.int64).ravel():
                r = self._row_of.get(int(i))
                (missing if r is None else rows).append(int(i) if r is None else r)
            if missing:
                raise DataError(f"unknown image id(s) {missing[:10]}; the index holds {len(self)} images")
            return np.asarray(rows, dtype=np.int64)

    def label_of_row(self, row: int) -> Any:
        if self.labels is None:
            return None
        lab = self.labels[row]
        if self.labels.ndim == 1:
            return int(lab)
        return [int(j) for j in np.flatnonzero(lab)]

    # ------------------------------------------------------------------ mutation
    def add(
        self,
        codes: np.ndarray,
        *,
        ids: Sequence[int] | np.ndarray | None = None,
        paths: Sequence[str] | None = None,
        labels: np.ndarray | None = None,
        features: np.ndarray | None = None,
    ) -> np.ndarray:
        """Append codes (and their metadata); returns the ids given to them."""
        codes = check_codes(codes, self.n_bits)
        n = len(codes)
        with self._lock:
            if ids is None:
                new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            else:
                new_ids = np.asarray(ids, dtype=np.int64).ravel()
                if len(new_ids) != n:
                    raise ConfigError(f"got {n} codes but {len(new_ids)} ids")
                if len(np.unique(new_ids)) != n or np.isin(new_ids, self.ids).any():
                    raise ConfigError("ids must be unique and not already in the index")
                if (new_ids < 0).any():
                    raise ConfigError("ids must be non-negative (-1 marks padding in results)")
            if paths is None:
                paths = [""] * n
            paths = [os.fsdecode(p) if isinstance(p, bytes) else str(p) for p in paths]
            if len(paths) != n:
                raise ConfigError(f"got {n} codes but {len(paths)} paths")
            _check_paths(paths)
            if len(self) and (labels is None) != (self.labels is None):
                raise ConfigError("this index " + ("stores" if self.labels is not None else "does not store") + " labels; pass them consistently")
            if len(self) and (features is None) != (self.features is None):
                raise ConfigError("this index " + ("stores" if self.features is not None else "does not store") + " float features; pass them consistently")
            if labels is not None:
                labels = np.asarray(labels)
                if len(labels) != n:
                    raise ConfigError(f"got {n} codes but {len(labels)} labels")
                labels = labels.astype(np.int64) if labels.ndim == 1 else labels.astype(np.uint8)
                if self.labels is not None and len(self) and self.labels.shape[1:] != labels.shape[1:]:
                    raise ConfigError(f"labels have shape {labels.shape[1:]} per image; the index holds {self.labels.shape[1:]}")
            if features is not None:
                features = np.asarray(features, dtype=self.feature_dtype)
                if features.ndim != 2 or len(features) != n:
                    raise ConfigError(f"features must be (n={n}, dim); got shape {features.shape}")
                if self.features is not None and len(self) and self.features.shape[1] != features.shape[1]:
                    raise ConfigError(f"features have dim {features.shape[1]}; the index holds dim {self.features.shape[1]}")
            # every check passed: append (an empty index takes the new rows' shapes)
            m = self._n
            for name, rows in (("codes", codes), ("ids", new_ids), ("labels", labels), ("features", features)):
                if rows is not None:
                    self._buf[name] = _append_rows(self._buf[name] if m else None, m, rows)
                elif not m:  # labels / features not given to an empty index: it stores none
                    self._buf[name] = None
            self._n = m + n
            self.paths.extend(paths)
            self._next_id = max(self._next_id, int(new_ids.max()) + 1 if n else self._next_id)
            self._searcher = None
            if self._ann is not None:  # the FAISS structure takes the new rows
                self._ann.add(codes, m)
            self._path_map = None
            if self._row_of is not None:  # extend the id -> row map instead of rebuilding it
                self._row_of.update((int(i), m + r) for r, i in enumerate(new_ids))
            return new_ids

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove images by id (unknown ids raise); returns how many were removed."""
        with self._lock:
            rows = self.rows_of(ids)
            keep = np.ones(len(self), bool)
            keep[rows] = False
            # new arrays (never edited in place: a snapshot taken before stays as it was)
            kept = {name: None if b is None else b[: self._n][keep] for name, b in self._buf.items()}
            self._buf, self._n = kept, int(keep.sum())
            self.paths = [p for p, k in zip(self.paths, keep) if k]
            if self._ann is not None:
                self._ann.remove(keep)
            self._invalidate()
            return int((~keep).sum())

    def _invalidate(self) -> None:
        self._searcher = None
        self._row_of = None
        self._path_map = None

    def snapshot(self) -> IndexSnapshot:
        """A consistent view of the index for one query (see :class:`IndexSnapshot`)."""
        with self._lock:
            return IndexSnapshot(self.n_bits, self.codes, self.ids, self.labels, self.features, self.paths,
                                 self._get_searcher(), list(self.class_names))

    def _get_searcher(self) -> ExactSearcher:
        with self._lock:
            if self._ann is not None:  # the FAISS structure's view of these rows (built if it is not yet)
                return self._ann.view(self.codes)
            if self._searcher is None:
                s = SEARCHERS.create(self.searcher_name, n_bits=self.n_bits, n_threads=self.n_threads)
                s.reset(self.codes)
                self._searcher = s
            return self._searcher

    @property
    def search_path(self) -> str:
        """The code path exact Hamming search runs on: ``"<isa>/<layout>"`` for deephash's C kernel
        (e.g. ``"avx2/byte-sliced"``; ``DEEPHASH_ISA`` forces one), else the searcher's name."""
        return getattr(self._get_searcher(), "path", self.searcher_name)

    # ------------------------------------------------------------------ search
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact Hamming k-NN: ``(D int32 (nq, k), ids int64 (nq, k))`` padded with -1."""
        queries = check_codes(np.atleast_2d(queries), self.n_bits)
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            check_result_size(len(queries), int(k), len(self))
        with self._lock:
            searcher = self._get_searcher()
            ids = self.ids
        D, rows = searcher.search(queries, k)
        out = np.where(rows >= 0, ids[np.clip(rows, 0, max(len(ids) - 1, 0))] if len(ids) else -1, -1)
        return D, out.astype(np.int64)

    def search_radius(self, queries: np.ndarray, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """All codes within Hamming distance ``radius`` of each query, sorted by (distance, row)."""
        from deephash.codes import hamming_matrix

        queries = check_codes(np.atleast_2d(queries), self.n_bits)
        if radius < 0:
            raise ConfigError(f"radius must be >= 0; got {radius}")
        with self._lock:
            codes, ids = self.codes, self.ids
            searcher = self._get_searcher()
        if hasattr(searcher, "search_radius"):  # the kernel's exact radius scan
            lims, D, rows = searcher.search_radius(queries, int(radius))
            return [(D[lims[i]:lims[i + 1]], ids[rows[lims[i]:lims[i + 1]]]) for i in range(len(queries))]
        out = []
        for s in range(0, len(queries), 64):
            dist = hamming_matrix(queries[s : s + 64], codes)
            for row in dist:
                hit = np.flatnonzero(row <= radius)
                o = hit[np.lexsort((hit, row[hit]))]
                out.append((row[o].astype(np.int32), ids[o]))
        return out

    def search_rerank(
        self,
        queries: np.ndarray,
        query_features: np.ndarray,
        k: int,
        *,
        radius: int = 2,
        min_pool: int = 100,
        max_pool: int = 5000,
    ) -> list[RerankResult]:
        """DLBHC coarse-to-fine search for a batch of queries, through :func:`deephash.query.search`
        (its pool rule: the Hamming radius starts at ``radius`` and grows by one until the pool holds
        ``min_pool`` candidates; at most ``max_pool``; ranked by Euclidean feature distance)."""
        from deephash.query import Query, Rerank, search

        if self.features is None:
            raise ConfigError("this index stores no float features; build it with features to re-rank")
        queries = check_codes(np.atleast_2d(queries), self.n_bits)
        qf = np.atleast_2d(np.asarray(query_features, dtype=np.float32))
        if qf.shape != (len(queries), self.features.shape[1]):
            raise ConfigError(f"query features must have shape ({len(queries)}, {self.features.shape[1]}); got {qf.shape}")
        rule = Rerank(start_radius=radius, min_pool=min_pool, max_pool=max_pool)
        snap = self.snapshot()
        out = []
        for qi in range(len(queries)):
            h = search(snap, Query(queries[qi : qi + 1], qf[qi : qi + 1]), k, rerank=rule)
            out.append(RerankResult(h.ids, h.feature_distance, h.hamming, h.pool_radius, h.pool_size))
        return out

    # ------------------------------------------------------------------ persistence
    def _bound_journal(self):
        if self._journal is None:
            raise ConfigError("this index was never saved to or loaded from a file: save it once before journaling changes")
        return self._journal

    def log_added(self, ids: Sequence[int] | np.ndarray) -> None:
        """Append the images ``ids`` (already added) to the journal of the file this index was last
        saved to or loaded from: durable when this returns, without rewriting the index file."""
        with self._lock:
            self._bound_journal().append_add(self, ids)

    def log_removed(self, ids: Sequence[int] | np.ndarray) -> None:
        """Append a removal of ``ids`` (already removed) to the journal; see :meth:`log_added`."""
        with self._lock:
            self._bound_journal().append_remove(ids)

    @property
    def journal_bytes(self) -> int:
        """Size of the journal of the bound file (0 when there is none)."""
        return 0 if self._journal is None else self._journal.nbytes

    def journal_outgrown(self, ratio: float, min_bytes: int = 0) -> bool:
        """Whether the journal exceeds ``max(min_bytes, ratio x the bound index file's size)``: the
        point at which rewriting the file (``save``, which folds the journal in) pays."""
        if self._journal is None or not self._journal.index_path.exists():
            return False
        return self.journal_bytes > max(min_bytes, ratio * self._journal.index_path.stat().st_size)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index atomically to ``path``.

        Layout (little-endian): ``b"DHASHIDX"``, uint32 format version, uint32 flags, uint64
        header length, a UTF-8 JSON header (sizes, dtypes, shapes, CRC32 of every array, the
        model's config, the token a journal names), the raw arrays one after
        another, and ``b"DHEND\\0\\0\\0"``. A journal beside ``path`` is folded in, so it is deleted.
        """
        with self._lock:
            if self._journal is not None and Path(path).resolve() == self._journal.index_path.resolve():
                self._journal.refuse_if_damaged()  # never fold away intact records behind a damaged one
                self._journal.check_unchanged()  # never fold away another writer's changes
            arrays: dict[str, np.ndarray] = {"codes": self.codes, "ids": self.ids}
            # file names are bytes on Linux: stored as they are (os.fsencode), NUL-separated
            arrays["paths"] = np.frombuffer(names_to_nul_bytes(self.paths), dtype=np.uint8)
            if self.labels is not None:
                arrays["labels"] = self.labels
            if self.features is not None:
                arrays["features"] = self.features
            if self._ann is not None:  # the FAISS structure (built now if it is not yet)
                arrays.update(self._ann.arrays(self.codes))
            specs, offset = [], 0
            for name, a in arrays.items():
                a = np.ascontiguousarray(a)
                arrays[name] = a
                specs.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset,
                              "nbytes": int(a.nbytes), "crc32": zlib.crc32(a.tobytes()) & 0xFFFFFFFF})
                offset += a.nbytes
            header = {
                "n_bits": self.n_bits, "n": len(self), "next_id": self._next_id, "searcher": self.searcher_name,
                "feature_dtype": self.feature_dtype, "code_kind": self.code_kind, "class_names": self.class_names, "meta": self.meta,
                "n_paths": len(self.paths), "path_encoding": PATH_ENCODING, "arrays": specs,
            }
            if self._ann is not None:
                header["search"] = self._ann.spec
            # the token a journal names: a digest of the header (sizes and CRC32 of every array), so
            # equal content saves to equal bytes, and a changed index gets another token
            header["token"] = header_token(header)
            hbytes = json.dumps(header).encode("utf-8")
            path = Path(path)
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                fh.write(_PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(hbytes)))
                fh.write(hbytes)
                for name in arrays:
                    fh.write(arrays[name].tobytes())
                fh.write(_TRAILER)
            self._journal = Journal(path, bytes.fromhex(header["token"]), file_token)
            self._journal.discard()
            self._header_changed = False
            return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, searcher: str | None = None, n_threads: int = 1,
             search: dict[str, Any] | None = None) -> "HashIndex":
        """Read an index written by :meth:`save`; refuses files it does not understand. ``search``: a
        FAISS structure to search through instead of the one the file records (see
        :mod:`deephash.index.faiss_backend`)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"index file {str(path)!r} does not exist")
        # streamed: every array is read straight into its own buffer (peak memory = the index once)
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            header = _read_head(fh, path, size)
            _check_header(header, path, size - fh.tell() - len(_TRAILER))
            _check_token(header, path)
            expected = fh.tell() + sum(s["nbytes"] for s in header["arrays"]) + len(_TRAILER)
            if size != expected:
                raise IndexFormatError(f"{path}: index file is truncated or padded: expected {expected} bytes, found {size}")
            arrays = {}
            for s in header["arrays"]:  # written one after another, in header order
                a = np.empty(s["shape"], dtype=np.dtype(s["dtype"]))
                view = memoryview(a.reshape(-1).view(np.uint8)) if a.size else memoryview(b"")
                if a.size and (fh.readinto(view) != s["nbytes"]):
                    raise IndexFormatError(f"{path}: array {s['name']!r} is cut short")
                if zlib.crc32(view) & 0xFFFFFFFF != s["crc32"]:
                    raise IndexFormatError(f"{path}: array {s['name']!r} fails its checksum (the file is corrupt)")
                arrays[s["name"]] = a
            if fh.read(len(_TRAILER)) != _TRAILER:
                raise IndexFormatError(f"{path}: index file is truncated or padded: its end marker is missing")
        paths = _decode_paths(arrays["paths"].tobytes(), header, path)
        _check_arrays(header, arrays, paths, path)
        # the type the header's code_kind names (a HashIndex, or a PQIndex); another kind than cls's is refused
        kind = local_index_type(header.get("code_kind") or "hamming")
        if not issubclass(kind, cls):
            raise ConfigError(f"{path} holds {kind.code_kind!r} codes, not the {cls.code_kind!r} codes of {cls.__name__}: "
                              "open it with deephash.index.open_index (or HashIndex.load)")
        idx = kind(header["n_bits"], searcher=searcher or header.get("searcher") or "faiss-flat", n_threads=n_threads,
                   meta=header.get("meta"), class_names=header.get("class_names"),
                   feature_dtype=header.get("feature_dtype") or "float16")
        idx.codes, idx.ids = arrays["codes"], arrays["ids"]  # codes first: its length sets the size
        idx.paths = paths
        idx.labels = arrays.get("labels")
        idx.features = arrays.get("features")
        nxt = header.get("next_id")
        idx._next_id = int(nxt) if nxt is not None else (int(idx.ids.max()) + 1 if len(idx.ids) else 0)
        # the FAISS structure, before the journal's records are replayed through add / remove
        idx._ann, idx._header_changed = open_searcher(header.get("search"), search, arrays, len(idx), n_bits=idx.n_bits,
                                                      n_threads=n_threads, where=str(path))
        if idx._ann is not None and idx.code_kind != "hamming":
            raise ConfigError(f"{path} holds {idx.code_kind!r} codes: a FAISS structure ({idx._ann.name}) searches Hamming codes")
        if header.get("token"):  # files from before the journal have none, and so no journal
            idx._journal = Journal(path, bytes.fromhex(header["token"]), file_token)
            try:
                idx._journal.replay(idx)
            except (ConfigError, DataError) as e:
                raise IndexFormatError(f"{idx._journal.path}: the journal does not fit {path} ({e})") from None
        return idx
