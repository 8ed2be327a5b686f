"""Batch feature extraction: the streaming encoder (:mod:`deephash.encoding`) -> writer (a resumable cache).

The cache is keyed by the backbone, its preprocessing and the archive's exact file list
(names, sizes, mtimes). Progress is checkpointed every ``CHUNK`` images, so an interrupted
extraction resumes where it stopped. Corrupt or unreadable images are skipped and listed.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from deephash.backbones.base import Backbone
from deephash.data.archive import ImageArchive
from deephash.encoding import DecodeSpec, StreamEncoder, decode_size_of
from deephash.errors import DataError
from deephash.utils import atomic_path, atomic_write_json, cache_dir, sha1_of

CHUNK = 1024


@dataclass
class FeatureSet:
    """Features of the images that decoded: ``features[j]`` belongs to archive position ``index[j]``."""

    features: np.ndarray
    index: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)
    backbone: dict = field(default_factory=dict)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.index)


def embed_images(backbone: Backbone, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Features of already decoded ``uint8 NHWC`` images, ``batch_size`` per backbone call."""
    out = [backbone.embed(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, backbone.dim), np.float32)


def feature_cache_key(archive: ImageArchive, backbone: Backbone, draft: bool = True) -> str:
    """Keyed by the backbone (weights, preprocessing, int8 calibration), the archive's files and how they decode."""
    return sha1_of(backbone.describe(), archive.fingerprint(), DecodeSpec(decode_size_of(backbone), draft).cache_tag())


_TODO, _OK, _FAILED = 0, 1, 2


def extract_features(
    archive: ImageArchive,
    backbone: Backbone,
    positions: Sequence[int] | np.ndarray | None = None,
    *,
    batch_size: int = 64,
    use_cache: bool = True,
    progress: bool = True,
    workers: int | None = None,
    draft: bool = True,
) -> FeatureSet:
    """Features for ``archive`` images at ``positions`` (default: all), cached per image and resumable.

    The cache for (backbone, archive) is a float32 memory-mapped matrix with one row per archive
    image plus a state vector (to do / done / failed) that is replaced atomically every
    ``CHUNK`` images: an interrupted run loses at most the images since the last checkpoint,
    and any subset of the archive reuses what earlier calls computed. ``workers`` decoder processes
    (default: one per core) and ``draft`` JPEG decoding: see :class:`deephash.encoding.StreamEncoder`.
    """
    import time

    from tqdm import tqdm

    positions = np.arange(len(archive)) if positions is None else np.asarray(positions, np.int64)
    if len(positions) and (positions.min() < 0 or positions.max() >= len(archive)):
        raise DataError(f"positions must lie in [0, {len(archive)}); got {positions.min()}..{positions.max()}")
    folder = cache_dir() / "features" / feature_cache_key(archive, backbone, draft)
    folder.mkdir(parents=True, exist_ok=True)
    n, dim = len(archive), backbone.dim
    state_path, fail_path, feat_path = folder / "state.npy", folder / "failed.json", folder / "features.f32"
    state = np.load(state_path) if (use_cache and state_path.is_file()) else np.zeros(n, np.int8)
    failed: dict[str, str] = json.loads(fail_path.read_text()) if (use_cache and fail_path.is_file()) else {}
    if not feat_path.is_file() or not use_cache or feat_path.stat().st_size != n * dim * 4:
        state[:] = _TODO
        failed = {}
        with open(feat_path, "wb") as fh:
            fh.truncate(n * dim * 4)
    atomic_write_json(folder / "meta.json", {"backbone": backbone.describe(), "n": n, "dim": dim, "draft": draft,
                                             "root": str(archive.root), "layout": "float32 row-major (n, dim)"})
    feats = np.memmap(feat_path, dtype=np.float32, mode="r+", shape=(n, dim))

    def checkpoint() -> None:
        feats.flush()
        with atomic_path(state_path, suffix=".npy") as tmp:
            np.save(tmp, state)
        atomic_write_json(fail_path, failed)

    todo = positions[state[positions] == _TODO]
    todo = np.unique(todo)
    size = decode_size_of(backbone)
    t0 = time.perf_counter()
    bar = tqdm(total=len(positions), initial=len(positions) - len(todo), unit="img",
               desc=f"features {backbone.name}@{size}px", disable=not progress or not len(todo), file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 10.0)
    since = 0
    encoder = StreamEncoder(backbone, batch_size=batch_size, workers=workers, draft=draft)
    try:
        for b in encoder.stream([archive.abspath(int(i)) for i in todo]):
            rows = todo[b.positions]
            if len(rows):
                feats[rows] = b.features
            state[rows] = _OK
            for j, why in b.failed:
                state[todo[j]] = _FAILED
                failed[archive.paths[int(todo[j])]] = why
            bar.update(b.stop - b.start)
            since += b.stop - b.start
            if since >= CHUNK:
                checkpoint()
                since = 0
    finally:
        if since:
            # keep the finished batches of an interrupted run (the state written lists only completed rows)
            checkpoint()
        bar.close()
    good = positions[state[positions] == _OK]
    out = np.asarray(feats[good])
    bad = positions[state[positions] == _FAILED]
    return FeatureSet(out, good, [(archive.paths[int(i)], failed.get(archive.paths[int(i)], "unreadable")) for i in bad],
                      backbone.describe(), time.perf_counter() - t0)
