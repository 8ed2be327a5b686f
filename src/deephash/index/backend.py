"""The index-backend interface and ``open_index(uri)`` / ``new_index(uri, ...)``.

A backend holds packed Hamming codes with their ids, paths, labels and (optionally) float
features, and records the model that made them. They are chosen by the URI's scheme through
:data:`INDEX_BACKENDS`, never by an if-chain; :mod:`deephash.query`, the jobs API and the service
reach an index only through the methods below:

- the local :class:`~deephash.index.HashIndex` (a file + journal, exact search; any path or ``file:PATH``);
- the same file searched through a FAISS structure (``faiss-ivf:PATH?nprobe=8``, ``faiss-hnsw:PATH``,
  ``faiss-mih:PATH``; approximate; :mod:`deephash.index.faiss_backend`);
- :class:`~deephash.index.MilvusIndex` (``milvus://HOST:PORT/COLLECTION``).

Each module registers its schemes when it is imported; ``deephash.index``'s ``__init__`` imports
them all, and this module imports none (no import circle).

The index (:class:`IndexBackend`):

- ``n_bits``, ``code_kind``, ``class_names``, ``meta`` (the model's identity, ``model_identity``),
  ``has_features``, ``has_labels``, ``multi_label``, ``location`` (a display name, no secret)
- ``len(index)``; ``add(codes, *, ids, paths, labels, features) -> ids``; ``remove(ids) -> n``;
  ``new_ids(n)``: ids for new images that no other writer of the index will also take
- ``search(codes, k) -> (D int32 (nq, k), ids int64 (nq, k))`` padded with -1 (FAISS's contract);
  ``search_radius(codes, r) -> [(D, ids), ...]``
- ``persist(added, removed) -> rewritten``: make acknowledged changes durable; ``finish()``: end a
  build (write the file / seal and index the segments); ``reopen()``: after a failed write, the
  index as storage holds it; ``stats()``: backend facts for ``/api/stats``; ``close()``
- ``snapshot() -> IndexView``: what one query reads (below)

The view (:class:`IndexView`) — its *keys* name candidates (rows of a local snapshot, ids in
Milvus); ``cls`` is a class index (a label filter) or None:

- ``len(view)``, ``count(cls)``, ``has_id(id, cls)``, ``key_of(id)`` (unknown ids raise DataError)
- ``nearest(code, k, cls) -> (d, keys)``: the ``k`` nearest, by (distance, key)
- ``within(code, radius, cls) -> (d, keys)``: every candidate within ``radius``, by (distance, key)
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

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(//)?")


def register_backend(scheme: str) -> Callable[[Any], Any]:
    """Decorator: ``@register_backend("milvus")`` makes ``milvus://...`` open with that class (or object)."""

    def deco(cls: Any) -> Any:
        INDEX_BACKENDS[scheme] = cls
        return cls

    return deco


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
    """The index at ``uri``: a :class:`HashIndex` for a path (or ``file:PATH``), a :class:`MilvusIndex`
    for ``milvus://HOST:PORT/COLLECTION`` (``token=`` or ``$DEEPHASH_MILVUS_TOKEN``). A missing index raises."""
    return _backend_for(uri).open_uri(os.fspath(uri), **options)


def new_index(uri: str | os.PathLike, n_bits: int, *, class_names: Sequence[str] = (), code_kind: str = "hamming",
              meta: dict[str, Any] | None = None, feature_dim: int | None = None, labels: str | None = None,
              **options: Any) -> "IndexBackend":
    """An empty index to be built at ``uri`` (written by ``finish()``); ``feature_dim``: store float
    features of that dim; ``labels``: "single", "multi" or None; ``options``: the backend's own."""
    return _backend_for(uri).create_uri(os.fspath(uri), n_bits, class_names=list(class_names), code_kind=code_kind,
                                        meta=dict(meta or {}), feature_dim=feature_dim, labels=labels, **options)


@runtime_checkable
class IndexView(Protocol):
    """What one query reads (see the module docstring)."""

    n_bits: int
    code_kind: str
    class_names: list[str]

    def __len__(self) -> int: ...
    def count(self, cls: int | None = None) -> int: ...
    def has_id(self, image_id: int, cls: int | None = None) -> bool: ...
    def key_of(self, image_id: int) -> int: ...
    def nearest(self, code: np.ndarray, k: int, cls: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def within(self, code: np.ndarray, radius: int, cls: int | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def ids_of(self, keys: np.ndarray) -> np.ndarray: ...
    def codes_of(self, keys: np.ndarray) -> np.ndarray: ...
    def features_of(self, keys: np.ndarray) -> np.ndarray: ...
    def records_of(self, keys: np.ndarray) -> tuple[list[str], list[Any]]: ...
    def page(self, offset: int, limit: int, step: int = 1) -> np.ndarray: ...


@runtime_checkable
class IndexBackend(Protocol):
    """An index of Hamming codes (see the module docstring)."""

    n_bits: int
    code_kind: str
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
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def search_radius(self, queries: np.ndarray, radius: int) -> list[tuple[np.ndarray, np.ndarray]]: ...
    def snapshot(self) -> IndexView: ...
    def new_ids(self, n: int) -> np.ndarray: ...
    def persist(self, added=(), removed=(), *, fold_ratio: float = 0.25, fold_min_bytes: int = 0) -> bool: ...
    def finish(self) -> None: ...
    def reopen(self) -> "IndexBackend": ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...
