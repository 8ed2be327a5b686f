"""An archive cut into shards, the encoding of one shard, and the run folder that keeps finished shards.

A shard is a run of consecutive archive positions. :func:`encode_shard` encodes one through the
project's one batch path (:meth:`deephash.model.HashModel.encode_batches`, the streaming encoder), so
whichever process runs it — this one or a cluster worker — gives the codes this process would.
A :class:`ShardStore` is the folder of one run (keyed by archive, model and shard size): each
finished shard is one ``.npz`` written atomically, so a run killed half-way resumes from the
shards already there, and a shard is either wholly present or absent (never half, never twice).
"""
from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from deephash.errors import ConfigError, DataError
from deephash.utils import atomic_path, atomic_write_json, cache_dir, sha1_of

SHARD_KEYS = ("ids", "codes", "features", "failed_ids", "failed_why", "seconds")


def plan_shards(n: int, shard_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` archive positions of each shard: ``shard_size`` images each, the last one shorter."""
    if int(shard_size) < 1:
        raise ConfigError(f"shard size must be at least 1 image; got {shard_size}")
    return [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


@dataclass
class ShardResult:
    """One encoded shard: ``codes[j]`` / ``features[j]`` belong to archive position ``ids[j]``; the
    positions in ``failed_ids`` could not be decoded, for the reasons in ``failed_why``."""

    ids: np.ndarray
    codes: np.ndarray
    features: np.ndarray
    failed_ids: np.ndarray
    failed_why: list[str]
    seconds: float = 0.0  # time spent encoding in the process that ran it
    host: str = field(default="", compare=False)
    pid: int = field(default=0, compare=False)


def encode_shard(model, root: str | os.PathLike, paths: Sequence[str], positions: Sequence[int], *,
                 batch_size: int = 64) -> ShardResult:
    """Encode the archive images ``root/paths[j]`` (archive positions ``positions[j]``) in batches
    through :meth:`HashModel.encode_batches`; unreadable images are listed, not raised."""

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"the archive folder {root} does not exist on {socket.gethostname()}: every worker must "
                        "see the archive at the same path (a shared filesystem)")
    positions = np.asarray(positions, np.int64)
    files = [root / p for p in paths]
    t0 = time.perf_counter()
    ids, codes, feats, bad, why = [], [], [], [], []
    # workers=0: decode inline; the engine already runs one worker process per core
    for pos, c, f, t in model.encode_batches(files, batch_size=batch_size, workers=0):
        if c is None:
            bad.append(positions[pos[0]])
            why.append(t)
            continue
        ids.append(positions[pos])
        codes.append(c)
        feats.append(f)
    n_bytes = (model.hasher.n_bits + 7) // 8
    return ShardResult(np.concatenate(ids) if ids else np.zeros(0, np.int64),
                       np.concatenate(codes) if codes else np.zeros((0, n_bytes), np.uint8),
                       np.concatenate(feats) if feats else np.zeros((0, model.backbone.dim), np.float32),
                       np.asarray(bad, np.int64), why, time.perf_counter() - t0, socket.gethostname(), os.getpid())


_MODELS: dict[str, object] = {}


def model_from_bytes(data: bytes, digest: str, *, threads: int | None = None):
    """A :class:`~deephash.model.HashModel` from a checkpoint's bytes (a worker need not see the
    driver's files), loaded once per process and digest."""
    if digest in _MODELS:
        return _MODELS[digest]
    from deephash.model import HashModel

    if threads:  # read by the backbone's runtime when its session is made
        os.environ["DEEPHASH_THREADS"] = str(int(threads))
    folder = Path(tempfile.gettempdir()) / "deephash-worker-models"
    path = folder / f"{digest}.pt"
    if not path.is_file():
        with atomic_path(path, suffix=".pt") as tmp:
            tmp.write_bytes(data)
    _MODELS[digest] = HashModel.load(path)
    return _MODELS[digest]


def run_key(archive, model, shard_size: int, positions: np.ndarray | None = None) -> str:
    """What a run's results depend on: the archive's files (names, sizes, mtimes), the model, the shard size,
    and which archive positions it encodes when not all (an update's new images)."""
    parts = [archive.fingerprint(), model.identity.to_dict(), model.backbone.describe(), int(shard_size)]
    if positions is not None:
        parts.append(hashlib.sha1(np.asarray(positions, np.int64).tobytes()).hexdigest())
    return sha1_of(*parts)


class ShardStore:
    """The folder of one encoding run: ``shard-00000.npz`` … and a ``run.json`` that says what it holds."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    @classmethod
    def for_run(cls, archive, model, shard_size: int, root: str | os.PathLike | None = None, *,
                positions: np.ndarray | None = None) -> "ShardStore":
        """The run folder of (archive, model, shard size, ``positions`` when not all) under ``root``
        (default: the cache's ``encode-runs``)."""
        key = run_key(archive, model, shard_size, positions)
        base = Path(root) if root is not None else cache_dir() / "encode-runs"
        store = cls(base / key[:20])
        store.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(store.folder / "run.json", {
            "archive_root": str(archive.root.resolve()), "images": len(archive) if positions is None else len(positions),
            "model": model.identity.to_dict(),
            "backbone": model.backbone.describe(), "shard_size": int(shard_size),
            "layout": "shard-NNNNN.npz: ids int64, codes uint8 (n, K/8), features float32 (n, D), failed_ids, failed_why"})
        return store

    def path(self, i: int) -> Path:
        return self.folder / f"shard-{i:05d}.npz"

    def has(self, i: int) -> bool:
        """Shard ``i`` is on disk, whole (an atomic write leaves either the whole file or none)."""
        p = self.path(i)
        if not p.is_file():
            return False
        try:
            with zipfile.ZipFile(p) as z:
                return all(f"{k}.npy" in z.namelist() for k in SHARD_KEYS)
        except (zipfile.BadZipFile, OSError):
            return False

    def write(self, i: int, r: ShardResult) -> None:
        with atomic_path(self.path(i), suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, ids=r.ids, codes=r.codes, features=r.features, failed_ids=r.failed_ids,
                         failed_why=np.asarray(r.failed_why, dtype=np.str_), seconds=np.float64(r.seconds))

    def read(self, i: int) -> ShardResult:
        try:
            with np.load(self.path(i)) as z:
                return ShardResult(z["ids"], z["codes"], z["features"], z["failed_ids"], [str(s) for s in z["failed_why"]],
                                   float(z["seconds"]))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise DataError(f"{self.path(i)}: unreadable shard ({e}); delete it and run again to redo that shard") from None


def assemble(store: ShardStore, n_shards: int, archive) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """``(codes, features, ids, failed)`` of the whole archive from its shards, in archive order."""
    parts = [store.read(i) for i in range(n_shards)]
    codes = np.concatenate([p.codes for p in parts])
    feats = np.concatenate([p.features for p in parts])
    ids = np.concatenate([p.ids for p in parts]).astype(np.int64)
    failed = [(archive.paths[int(j)], w) for p in parts for j, w in zip(p.failed_ids, p.failed_why)]
    if len(np.unique(ids)) != len(ids) or (len(ids) > 1 and np.any(np.diff(ids) <= 0)):
        raise DataError(f"{store.folder}: its shards overlap or are out of order; delete the folder and run again")
    return codes, feats, ids, failed
