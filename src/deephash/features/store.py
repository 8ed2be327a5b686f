"""Backbone features cached per image, not per archive (issue 15 item 6).

A :class:`FeatureStore` holds the features one backbone (weights, preprocessing, decoding) gave
for any image it has seen, keyed by the image's **content** (a BLAKE2b digest of the file's
bytes): a subset, a split, a label file over the same folder, a moved or copied archive all reuse
what an earlier run computed. So that a run over a large archive need not read every file just to
find it in the cache, each entry also records the file's **stat key** (resolved path, size,
modification time): a file whose stat key is known is found without being read; any other file
is read and hashed, and found by its content if it was seen under another name.

On disk (one folder per store): append-only chunks, each written by one call to :meth:`add`.
A chunk is ``<name>.f32.npy`` (its features), ``<name>.failed.json`` (why images failed) and
``<name>.keys.npz`` (content keys, stat keys, row into the features or -1, status), the keys file
written last and atomically: a chunk without it does not exist, so an interrupted run loses only
the chunk it was writing. Several processes may add chunks at once (chunk names are unique).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from deephash.errors import DataError
from deephash.utils import atomic_path, atomic_write_json

OK, FAILED = 0, 1
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


@dataclass
class _Entry:
    chunk: int  # position in FeatureStore._chunks
    row: int  # row of the chunk's features, -1 for a failure
    status: int


class FeatureStore:
    """Features of ``dim`` floats per image, keyed by content, in ``folder``."""

    def __init__(self, folder: str | os.PathLike, dim: int) -> None:
        self.folder = Path(folder)
        self.dim = int(dim)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._chunks: list[Path] = []
        self._feats: list[np.ndarray | None] = []
        self._failed: list[dict[str, str]] = []
        self._by_content: dict[str, _Entry] = {}
        self._by_stat: dict[str, str] = {}
        self.reload()

    # ------------------------------------------------------------------ reading
    def reload(self) -> None:
        """Read the chunks written since the store was opened (by this or another process)."""
        known = set(self._chunks)
        for keys_file in sorted(self.folder.glob("*.keys.npz")):
            if keys_file in known:
                continue
            self._read_chunk(keys_file)

    def _read_chunk(self, keys_file: Path) -> None:
        name = keys_file.name[: -len(".keys.npz")]
        try:
            with np.load(keys_file, allow_pickle=False) as z:
                content, stat, row, status = z["content"], z["stat"], z["row"], z["status"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"feature cache chunk {keys_file} is unreadable ({e}); delete {self.folder} to rebuild it") from None
        c = len(self._chunks)
        self._chunks.append(keys_file)
        self._feats.append(None)  # memory-mapped on first use
        fail_file = self.folder / f"{name}.failed.json"
        self._failed.append(json.loads(fail_file.read_text()) if fail_file.is_file() else {})
        for ck, sk, r, s in zip(content.tolist(), stat.tolist(), row.tolist(), status.tolist()):
            if ck not in self._by_content or self._by_content[ck].status != OK:
                self._by_content[ck] = _Entry(c, int(r), int(s))
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

    def status(self, key: str | None) -> int | None:
        """OK, FAILED, or None when the store has not seen this content."""
        e = self._by_content.get(key) if key else None
        return None if e is None else e.status

    def why_failed(self, key: str) -> str:
        e = self._by_content[key]
        return self._failed[e.chunk].get(key, "unreadable")

    def get(self, keys: Sequence[str]) -> np.ndarray:
        """Features of ``keys`` (each must have status OK), in order, as one float32 array."""
        out = np.empty((len(keys), self.dim), np.float32)
        by_chunk: dict[int, tuple[list[int], list[int]]] = {}
        for j, k in enumerate(keys):
            e = self._by_content[k]
            if e.status != OK:
                raise KeyError(k)
            dst, src = by_chunk.setdefault(e.chunk, ([], []))
            dst.append(j)
            src.append(e.row)
        for c, (dst, src) in by_chunk.items():
            out[dst] = self._features_of(c)[src]
        return out

    # ------------------------------------------------------------------ writing
    def add(self, paths: Iterable[str | os.PathLike], keys: Sequence[str | None], features: np.ndarray,
            ok: Sequence[bool], failed: dict[int, str] | None = None) -> None:
        """Record one batch: ``features[i]`` belongs to the i-th path with ``ok[i]``; ``failed`` maps the
        position of each failed path to why. A path without a content key (unreadable) is not stored."""
        paths = list(paths)
        failed = failed or {}
        features = np.ascontiguousarray(features, np.float32).reshape(-1, self.dim)
        content, stat, row, status = [], [], [], []
        msgs: dict[str, str] = {}
        r = 0
        for i, (p, k) in enumerate(zip(paths, keys)):
            if ok[i]:
                content.append(k), stat.append(stat_key(p) or ""), row.append(r), status.append(OK)
                r += 1
            elif k is not None:
                content.append(k), stat.append(stat_key(p) or ""), row.append(-1), status.append(FAILED)
                msgs[k] = failed.get(i, "unreadable")
        if r != len(features):
            raise ValueError(f"{len(features)} feature rows for {r} images marked ok")
        if not content:
            return
        name = f"{time.time_ns():x}-{os.getpid()}-{len(self._chunks)}"
        with atomic_path(self.folder / f"{name}.f32.npy", suffix=".npy") as tmp:
            np.save(tmp, features)
        if msgs:
            atomic_write_json(self.folder / f"{name}.failed.json", msgs)
        keys_file = self.folder / f"{name}.keys.npz"
        with atomic_path(keys_file, suffix=".npz") as tmp:
            np.savez(tmp, content=np.array(content, dtype="U32"), stat=np.array(stat, dtype="U32"),
                     row=np.array(row, np.int64), status=np.array(status, np.int8))
        self._read_chunk(keys_file)
