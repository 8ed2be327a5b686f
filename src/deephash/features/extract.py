"""Batch feature extraction: the streaming encoder (:mod:`deephash.encoding`) -> writer (a resumable cache).

The cache is a :class:`~deephash.features.store.FeatureStore` per backbone (weights, preprocessing,
int8 calibration) and decoding mode, keyed **per image** by the file's content: any subset, split,
label file or moved copy of an archive reuses the features an earlier run computed. Finished
images are written every ``CHUNK`` images (and on the way out of an interrupted run), so an
interrupted extraction resumes where it stopped. Corrupt or unreadable images are skipped and listed.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from deephash.backbones.base import Backbone
from deephash.data.archive import ImageArchive
from deephash.encoding import DecodeSpec, StreamEncoder, decode_size_of
from deephash.errors import DataError
from deephash.features.store import FeatureStore
from deephash.utils import atomic_write_json, cache_dir, sha1_of

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


def feature_store_key(backbone: Backbone, draft: bool = True) -> str:
    """The store's key: the backbone (weights, preprocessing, int8 calibration) and how images decode."""
    return sha1_of(backbone.describe(), DecodeSpec(decode_size_of(backbone), draft).cache_tag())


def feature_store(backbone: Backbone, draft: bool = True) -> FeatureStore:
    """The per-image feature cache of ``backbone`` under ``$DEEPHASH_CACHE/feature-store/``."""
    folder = cache_dir() / "feature-store" / feature_store_key(backbone, draft)
    store = FeatureStore(folder, backbone.dim)
    if not (folder / "meta.json").is_file():
        atomic_write_json(folder / "meta.json", {"backbone": backbone.describe(), "dim": backbone.dim, "draft": draft,
                                                 "layout": "chunks: <name>.keys.npz + <name>.f32.npy (+ .failed.json)"})
    return store


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

    Each image is looked up in the backbone's :class:`FeatureStore` by its content (found by its
    path, size and mtime without reading it when the store has seen that file); only the images
    not there are decoded and embedded, each distinct content once, and written back every ``CHUNK``
    images. ``workers`` decoder processes (default: one per core) and ``draft`` JPEG decoding: see
    :class:`deephash.encoding.StreamEncoder`.
    """
    import time

    from tqdm import tqdm

    positions = np.arange(len(archive)) if positions is None else np.asarray(positions, np.int64)
    if len(positions) and (positions.min() < 0 or positions.max() >= len(archive)):
        raise DataError(f"positions must lie in [0, {len(archive)}); got {positions.min()}..{positions.max()}")
    t0 = time.perf_counter()
    paths = [archive.abspath(int(i)) for i in positions]
    store = feature_store(backbone, draft) if use_cache else None
    keys = store.keys_of(paths) if store is not None else [None] * len(paths)
    # what to compute: every image whose content the store has no features for. Failures are not
    # cached: a bad file is tried again (it fails fast) and reported with this archive's own name,
    # since the same bytes (an empty file, say) may sit in many archives under many names.
    todo = [j for j, k in enumerate(keys) if store is None or not store.has(k)]
    size = decode_size_of(backbone)
    bar = tqdm(total=len(positions), initial=len(positions) - len(todo), unit="img",
               desc=f"features {backbone.name}@{size}px", disable=not progress or not todo, file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 10.0)
    fresh: dict[int, np.ndarray] = {}  # without a store: position in ``positions`` -> features
    why: dict[int, str] = {}  # position in ``positions`` -> why it failed in this run
    pending: list[tuple[int, np.ndarray | None, str | None]] = []  # (j, features or None, reason)

    def flush() -> None:
        done = [(j, f) for j, f, _ in pending if f is not None and keys[j] is not None]
        pending.clear()
        if store is not None and done:
            store.add([paths[j] for j, _ in done], [keys[j] for j, _ in done], np.stack([f for _, f in done]))

    encoder = StreamEncoder(backbone, batch_size=batch_size, workers=workers, draft=draft)
    try:
        for b in encoder.stream([paths[j] for j in todo]):
            for r, t in enumerate(b.positions):
                j = todo[int(t)]
                pending.append((j, b.features[r], None))
                if store is None:
                    fresh[j] = b.features[r]
            for t, reason in b.failed:
                j = todo[int(t)]
                why[j] = reason
                pending.append((j, None, reason))
            bar.update(b.stop - b.start)
            if len(pending) >= CHUNK:
                flush()
    finally:
        flush()  # keep the finished batches of an interrupted run
        bar.close()
    good: list[int] = []
    bad: list[tuple[str, str]] = []
    for j, k in enumerate(keys):
        if (store.has(k) if store is not None else j in fresh):
            good.append(j)
        else:
            bad.append((archive.paths[int(positions[j])], why.get(j, "unreadable")))
    if store is not None:
        feats = store.get([keys[j] for j in good]) if good else np.zeros((0, backbone.dim), np.float32)
    else:
        feats = np.stack([fresh[j] for j in good]) if good else np.zeros((0, backbone.dim), np.float32)
    return FeatureSet(feats, positions[good].astype(np.int64), bad, backbone.describe(), time.perf_counter() - t0)
