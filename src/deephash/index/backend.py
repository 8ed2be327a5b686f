"""The index-backend interface and ``open_index(uri)`` / ``new_index(uri, ...)``.

A backend holds codes with their ids, paths, labels and (optionally) float features, and records
the model that made them. The local file (+ journal; any path or ``file:PATH``) is a
:class:`~deephash.index.HashIndex` for packed Hamming codes or a :class:`~deephash.index.PQIndex`
for quantisation codes (PQ / DPQ / DQN / DTQ: ranked by asymmetric distance), as the file's
``code_kind`` (or, for a new index, the model's) names (:func:`~deephash.index.local_index_type`);
:class:`~deephash.index.MilvusIndex` (``milvus://HOST:PORT/COLLECTION``) holds Hamming codes only.
Backends are chosen by the URI's scheme through :data:`INDEX_BACKENDS`, index types by their code
kind, never by an if-chain; :mod:`deephash.query`, the jobs API and the service reach an index only
through the methods below, and what differs between index types is a method or property of the
type (``metric``, ``nearest``, ``within``), not a branch of theirs. The same Hamming file can be
searched through a FAISS structure (``faiss-ivf:PATH?nprobe=8``, ``faiss-hnsw:PATH``,
``faiss-mih:PATH``; approximate; :mod:`deephash.index.faiss_backend`).

Each backend and index type registers itself when its module is imported; ``deephash.index``'s
``__init__`` imports them all (any import of ``deephash.index.*`` runs it first), and this module
imports none of them (no import circle).

The index (:class:`IndexBackend`):

- ``n_bits``, ``code_kind`` (the header field: what the stored bytes are), ``metric`` ("hamming" or
  "asymmetric": how it ranks), ``class_names``, ``meta`` (the model's identity, ``model_identity``),
  ``has_features``, ``has_labels``, ``multi_label``, ``location`` (a display name, no secret)
- ``len(index)``; ``add(codes, *, ids, paths, labels, features) -> ids``; ``remove(ids) -> n``;
  ``new_ids(n)``: ids for new images that no other writer of the index will also take
- ``search(queries, k) -> (D (nq, k), ids int64 (nq, k))`` padded with -1 (FAISS's contract): the
  queries are packed codes (Hamming; D int32), or for a PQ index the model's distance function
  ``codes -> (nq, n)`` (D float32, padded with inf); ``search_radius(codes, r) -> [(D, ids), ...]``
  (Hamming only: a PQ index refuses)
- ``persist(added, removed) -> rewritten``: make acknowledged changes durable; ``finish()``: end a
  build (write the file / seal and index the segments); ``reopen()``: after a failed write, the
  index as storage holds it; ``stats()``: backend facts for ``/api/stats``; ``close()``
- ``snapshot() -> IndexView``: what one query reads (below)

The view (:class:`IndexView`) — its *keys* name candidates (rows of a local snapshot, ids in
Milvus); ``cls`` is a class index (a label filter) or None; ``q`` is what the view ranks by, as
its ``metric`` says: a packed code (1, n_bits/8) ("hamming") or the query's distance function
``codes -> (1, n)`` ("asymmetric"):

- ``metric``: which ranking of :mod:`deephash.query` answers on it
- ``len(view)``, ``count(cls)``, ``has_id(id, cls)``, ``key_of(id)`` (unknown ids raise DataError)
- ``nearest(q, k, cls) -> (d, keys)``: the ``k`` nearest, by (distance, key) (asymmetric: by (distance, id))
- ``within(q, radius, cls) -> (d, keys)``: every candidate within Hamming ``radius``, by (distance,
  key); an asymmetric view refuses
- ``ids_of(keys)``, ``codes_of(keys)``, ``features_of(keys)`` (float32), ``records_of(keys) ->
  (paths, labels)`` (a label: an int, -1 for none, or a list of classes for multi-label)
- ``page(offset, limit, step) -> keys``: a page of the browsing order
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from deephash.errors import ConfigError

#: scheme -> backend: a class or object with ``open_uri(uri, **options)``, ``create_uri(uri, ...)``
#: and, for a backend whose index is a local file, ``local_path(uri) -> Path``
INDEX_BACKENDS: dict[str, Any] = {}
#: code kind -> the local index class that holds such codes (filled by :func:`register_local_index`)
LOCAL_INDEX_TYPES: dict[str, type] = {}

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(//)?")


def register_backend(scheme: str) -> Callable[[Any], Any]:
    """Decorator: ``@register_backend("milvus")`` makes ``milvus://...`` open with that class (or object)."""

    def deco(cls: Any) -> Any:
        INDEX_BACKENDS[scheme] = cls
        return cls

    return deco


def register_local_index(cls: type) -> type:
    """Class decorator: index files whose header names ``cls.code_kind`` load as ``cls``."""
    LOCAL_INDEX_TYPES[cls.code_kind] = cls
    return cls


def local_index_type(code_kind: str) -> type:
    """The local index class for ``code_kind`` ("hamming": :class:`HashIndex`, "pq": ``PQIndex``)."""
    if code_kind not in LOCAL_INDEX_TYPES:
        raise ConfigError(f"code_kind must be one of {list(LOCAL_INDEX_TYPES)}; got {code_kind!r}")
    return LOCAL_INDEX_TYPES[code_kind]


def scheme_of(uri: str | os.PathLike) -> str:
    """``milvus://h:p/c`` -> "milvus"; ``faiss-ivf:x.dhi?nprobe=8`` -> "faiss-ivf" (a registered
    ``SCHEME:`` prefix); ``file:x.dhi`` and any other path -> "file"."""
    s = os.fspath(uri)
    m = _SCHEME.match(s)
    if m and (m.group(2) or m.group(1).lower() in INDEX_BACKENDS):
        return m.group(1).lower()
    return "file"


def _backend_for(uri: str | os.PathLike) -> Any:
    s = scheme_of(uri)
    if s not in INDEX_BACKENDS:
        raise ConfigError(f"unknown index location scheme {s!r} in {os.fspath(uri)!r}; expected a file path or one of "
                          + ", ".join(getattr(INDEX_BACKENDS[k], "uri_form", f"{k}://")
                                      for k in sorted(INDEX_BACKENDS) if k != "file"))
    return INDEX_BACKENDS[s]


def local_path(uri: str | os.PathLike) -> Path | None:
    """The file a URI's index lives in (``faiss-ivf:runs/a.dhi?nprobe=8`` -> ``runs/a.dhi``); None for a
    server index."""
    backend = _backend_for(uri)
    return backend.local_path(os.fspath(uri)) if hasattr(backend, "local_path") else None


def is_remote(uri: str | os.PathLike) -> bool:
    """Whether ``uri`` names a server-side index (not a local file)."""
    return local_path(uri) is None


def open_index(uri: str | os.PathLike, **options: Any) -> "IndexBackend":
    """The index at ``uri``: for a path (or ``file:PATH``) a :class:`HashIndex` or a :class:`PQIndex`, as the
    file's ``code_kind`` says; a :class:`MilvusIndex` for ``milvus://HOST:PORT/COLLECTION`` (``token=`` or
    ``$DEEPHASH_MILVUS_TOKEN``). A missing index raises."""
    return _backend_for(uri).open_uri(os.fspath(uri), **options)


def new_index(uri: str | os.PathLike, n_bits: int, *, class_names: Sequence[str] = (), code_kind: str = "hamming",
              meta: dict[str, Any] | None = None, feature_dim: int | None = None, labels: str | None = None,
              **options: Any) -> "IndexBackend":
    """An empty index to be built at ``uri`` (written by ``finish()``) for codes of ``code_kind`` (a
    hasher's: "hamming" or "pq", which a local file holds as a :class:`PQIndex`); ``feature_dim``: store
    float features of that dim; ``labels``: "single", "multi" or None; ``options``: the backend's own."""
    return _backend_for(uri).create_uri(os.fspath(uri), n_bits, class_names=list(class_names), code_kind=code_kind,
                                        meta=dict(meta or {}), feature_dim=feature_dim, labels=labels, **options)


def index_type_for(hasher: Any) -> type:
    """The local index class that holds ``hasher``'s codes: :class:`HashIndex` for Hamming codes,
    :class:`PQIndex` for quantisation codes (its ``metric`` says how it ranks)."""
    return local_index_type(hasher.code_kind)


def require_model_codes(index: "IndexBackend", hasher: Any, where: str) -> None:
    """Refuse a model whose codes ``index`` does not hold (another length, or another kind of code)."""
    if hasher.n_bits != index.n_bits or hasher.code_kind != index.code_kind:
        raise ConfigError(f"the model makes {hasher.n_bits}-bit {hasher.code_kind!r} codes but {where} holds "
                          f"{index.n_bits}-bit {index.code_kind!r} codes: pass the model the index was built with (--model)")


@runtime_checkable
class IndexView(Protocol):
    """What one query reads (see the module docstring)."""

    n_bits: int
    metric: str
    class_names: list[str]

    def __len__(self) -> int: ...
    def count(self, cls: int | None = None) -> int: ...
    def has_id(self, image_id: int, cls: int | None = None) -> bool: ...
    def key_of(self, image_id: int) -> int: ...
    def nearest(self, q: Any, k: int, cls: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def within(self, q: Any, radius: int, cls: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def ids_of(self, keys: np.ndarray) -> np.ndarray: ...
    def codes_of(self, keys: np.ndarray) -> np.ndarray: ...
    def features_of(self, keys: np.ndarray) -> np.ndarray: ...
    def records_of(self, keys: np.ndarray) -> tuple[list[str], list[Any]]: ...
    def page(self, offset: int, limit: int, step: int = 1) -> np.ndarray: ...


@runtime_checkable
class IndexBackend(Protocol):
    """An index of codes (see the module docstring)."""

    n_bits: int
    code_kind: str
    metric: str
    class_names: list[str]
    meta: dict[str, Any]

    @property
    def has_features(self) -> bool: ...
    @property
    def has_labels(self) -> bool: ...
    @property
    def multi_label(self) -> bool: ...
    @property
    def location(self) -> str: ...
    def __len__(self) -> int: ...
    def add(self, codes: np.ndarray, *, ids=None, paths=None, labels=None, features=None) -> np.ndarray: ...
    def remove(self, ids) -> int: ...
    def search(self, queries: Any, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def search_radius(self, queries: np.ndarray, radius: int) -> list[tuple[np.ndarray, np.ndarray]]: ...
    def snapshot(self) -> IndexView: ...
    def new_ids(self, n: int) -> np.ndarray: ...
    def persist(self, added=(), removed=(), *, fold_ratio: float = 0.25, fold_min_bytes: int = 0) -> bool: ...
    def finish(self) -> None: ...
    def reopen(self) -> "IndexBackend": ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...
