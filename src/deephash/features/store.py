"""Backbone features cached per image, not per archive (issue 15 item 6).

A :class:`FeatureStore` holds the features one backbone (weights, preprocessing, decoding) gave
for any image it has seen, keyed by the image's **content** (a BLAKE2b digest of the file's
bytes): a subset, a split, a label file over the same folder, a moved or copied archive all reuse
what an earlier run computed. So that a run over a large archive need not read every file just to
find it in the cache, each entry also records the file's **stat key** (resolved path, size,
modification time): a file whose stat key is known is found without being read; any other file
is read and hashed, and found by its content if it was seen under another name.

Only features are stored: an image that failed to decode is not (the caller tries it again and
reports it under its own name; the same bad bytes may sit in many archives under many names).

On disk (one folder per store): append-only chunks, each written by one call to :meth:`add`.
A chunk is ``<name>.f32.npy`` (its features) and ``<name>.keys.npz`` (content and stat keys, one
per row), the keys file written last and atomically: a chunk without it does not exist, so an
interrupted run loses only the chunk it was writing. Several processes may add chunks at once
(chunk names are unique).
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from deephash.errors import DataError
from deephash.utils import atomic_path

_READ = 1 << 20


def content_key(path: str | os.PathLike) -> str:
    """BLAKE2b-128 of the file's bytes, hex (raises OSError when the file cannot be read)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(_READ):
            h.update(chunk)
    return h.hexdigest()


def stat_key(path: str | os.PathLike) -> str | None:
    """Digest of (resolved path, size, mtime in ns); None when the file cannot be stat'ed."""
    try:
        p = Path(path).resolve()
        st = p.stat()
    except OSError:
        return None
    return hashlib.blake2b(os.fsencode(p) + f"|{st.st_size}|{st.st_mtime_ns}".encode(), digest_size=16).hexdigest()


class FeatureStore:
    """Features of ``dim`` floats per image, keyed by content, in ``folder``."""

    def __init__(self, folder: str | os.PathLike, dim: int) -> None:
        self.folder = Path(folder)
        self.dim = int(dim)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._chunks: list[Path] = []
        self._feats: list[np.ndarray | None] = []
        self._by_content: dict[str, tuple[int, int]] = {}  # content key -> (chunk, row)
        self._by_stat: dict[str, str] = {}  # stat key -> content key
        self.reload()

    # ------------------------------------------------------------------ reading
    def reload(self) -> None:
        """Read the chunks written since the store was opened (by this or another process)."""
        known = set(self._chunks)
        for keys_file in sorted(self.folder.glob("*.keys.npz")):
            if keys_file not in known:
                self._read_chunk(keys_file)

    def _read_chunk(self, keys_file: Path) -> None:
        try:
            with np.load(keys_file, allow_pickle=False) as z:
                content, stat = z["content"], z["stat"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"feature cache chunk {keys_file} is unreadable ({e}); delete {self.folder} to rebuild it") from None
        c = len(self._chunks)
        self._chunks.append(keys_file)
        self._feats.append(None)  # memory-mapped on first use
        for r, (ck, sk) in enumerate(zip(content.tolist(), stat.tolist())):
            self._by_content.setdefault(ck, (c, r))
            if sk:
                self._by_stat[sk] = ck

    def _features_of(self, c: int) -> np.ndarray:
        if self._feats[c] is None:
            name = self._chunks[c].name[: -len(".keys.npz")]
            self._feats[c] = np.load(self.folder / f"{name}.f32.npy", mmap_mode="r")
        return self._feats[c]

    def __len__(self) -> int:
        return len(self._by_content)

    def keys_of(self, paths: Sequence[str | os.PathLike]) -> list[str | None]:
        """The content key of each file: from its stat key when known, else by reading it (None: unreadable)."""
        out: list[str | None] = []
        for p in paths:
            sk = stat_key(p)
            ck = self._by_stat.get(sk) if sk else None
            if ck is None:
                try:
                    ck = content_key(p)
                except OSError:
                    ck = None
            out.append(ck)
        return out

    def has(self, key: str | None) -> bool:
        """Whether the store holds features for this content."""
        return key is not None and key in self._by_content

    def get(self, keys: Sequence[str]) -> np.ndarray:
        """Features of ``keys`` (each held by the store), in order, as one float32 array."""
        out = np.empty((len(keys), self.dim), np.float32)
        by_chunk: dict[int, tuple[list[int], list[int]]] = {}
        for j, k in enumerate(keys):
            c, r = self._by_content[k]
            dst, src = by_chunk.setdefault(c, ([], []))
            dst.append(j)
            src.append(r)
        for c, (dst, src) in by_chunk.items():
            out[dst] = self._features_of(c)[src]
        return out

    # ------------------------------------------------------------------ writing
    def add(self, paths: Sequence[str | os.PathLike], keys: Sequence[str], features: np.ndarray) -> None:
        """Record ``features[i]`` for the i-th path, whose content key is ``keys[i]``."""
        features = np.ascontiguousarray(features, np.float32).reshape(-1, self.dim)
        if not (len(paths) == len(keys) == len(features)):
            raise ValueError(f"{len(paths)} paths, {len(keys)} keys and {len(features)} feature rows must agree")
        if not len(features):
            return
        name = f"{time.time_ns():x}-{os.getpid()}-{len(self._chunks)}"
        with atomic_path(self.folder / f"{name}.f32.npy", suffix=".npy") as tmp:
            np.save(tmp, features)
        keys_file = self.folder / f"{name}.keys.npz"
        with atomic_path(keys_file, suffix=".npz") as tmp:
            np.savez(tmp, content=np.array(list(keys), dtype="U32"),
                     stat=np.array([stat_key(p) or "" for p in paths], dtype="U32"))
        self._read_chunk(keys_file)
