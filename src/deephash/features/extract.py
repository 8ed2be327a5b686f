"""Batch feature extraction: reader (decode + resize, threaded) -> mapper (backbone) -> writer (chunked cache).

The cache is keyed by the backbone, its preprocessing and the exact file list (names, sizes,
mtimes). It is written in chunks, each atomically, so an interrupted extraction resumes at
the first missing chunk. Corrupt or unreadable images are skipped and listed, never fatal.
"""
from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from deephash.backbones.base import Backbone
from deephash.data.archive import ImageArchive
from deephash.data.images import load_rgb
from deephash.errors import DataError
from deephash.utils import atomic_path, atomic_write_json, cache_dir, sha1_of

CHUNK = 2048


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


def read_batch(paths: Sequence[Path], size: int, pool: ThreadPoolExecutor | None = None) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Decode and resize images; returns (uint8 NHWC of the good ones, ok mask, reasons for the bad ones)."""

    def one(p: Path):
        try:
            return load_rgb(p, size), None
        except DataError as e:
            return None, (str(p), str(e))
        except OSError as e:
            return None, (str(p), f"{p}: cannot read ({e})")

    results = list(pool.map(one, paths)) if pool else [one(p) for p in paths]
    ok = np.array([r[0] is not None for r in results], bool)
    imgs = [r[0] for r in results if r[0] is not None]
    arr = np.stack(imgs) if imgs else np.zeros((0, size, size, 3), np.uint8)
    return arr, ok, [r[1] for r in results if r[1] is not None]


def embed_images(backbone: Backbone, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    out = [backbone.embed(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, backbone.dim), np.float32)


def feature_cache_key(archive: ImageArchive, positions: np.ndarray, backbone: Backbone) -> str:
    sub = archive.subset(positions)
    return sha1_of(backbone.describe(), sub.fingerprint())


def extract_features(
    archive: ImageArchive,
    backbone: Backbone,
    positions: Sequence[int] | np.ndarray | None = None,
    *,
    batch_size: int = 64,
    use_cache: bool = True,
    progress: bool = True,
    n_readers: int = 2,
) -> FeatureSet:
    """Features for ``archive`` images at ``positions`` (default: all), cached and resumable."""
    import time

    from tqdm import tqdm

    positions = np.arange(len(archive)) if positions is None else np.asarray(positions, np.int64)
    key = feature_cache_key(archive, positions, backbone)
    folder = cache_dir() / "features" / key
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "meta.json", {"backbone": backbone.describe(), "n": int(len(positions)),
                                             "root": str(archive.root), "chunk": CHUNK})
    n_chunks = (len(positions) + CHUNK - 1) // CHUNK
    size = backbone.preprocessing.size
    t0 = time.perf_counter()
    todo = [c for c in range(n_chunks) if not (use_cache and (folder / f"chunk_{c:05d}.npz").is_file())]
    done_imgs = len(positions) - sum(min(CHUNK, len(positions) - c * CHUNK) for c in todo)
    bar = tqdm(total=len(positions), initial=done_imgs, unit="img", desc=f"features {backbone.name}@{size}px",
               disable=not progress or not todo, file=sys.stderr, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 10.0)
    with ThreadPoolExecutor(max_workers=max(1, n_readers)) as pool:
        for c in todo:
            pos = positions[c * CHUNK : (c + 1) * CHUNK]
            feats, oks, fails = [], [], []
            for s in range(0, len(pos), batch_size):
                paths = [archive.abspath(int(i)) for i in pos[s : s + batch_size]]
                imgs, ok, reasons = read_batch(paths, size, pool)
                feats.append(backbone.embed(imgs) if len(imgs) else np.zeros((0, backbone.dim), np.float32))
                oks.append(ok)
                fails.extend(reasons)
                bar.update(len(paths))
            with atomic_path(folder / f"chunk_{c:05d}.npz", suffix=".npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, features=np.concatenate(feats).astype(np.float32), ok=np.concatenate(oks),
                             failed=np.asarray(json.dumps(fails)))
    bar.close()
    feats, index, failed = [], [], []
    for c in range(n_chunks):
        with np.load(folder / f"chunk_{c:05d}.npz") as z:
            feats.append(z["features"])
            index.append(positions[c * CHUNK : (c + 1) * CHUNK][z["ok"]])
            failed.extend(json.loads(str(z["failed"])))
    fs = FeatureSet(np.concatenate(feats) if feats else np.zeros((0, backbone.dim), np.float32),
                    np.concatenate(index) if index else np.zeros(0, np.int64),
                    [(str(p), str(r)) for p, r in failed], backbone.describe(), time.perf_counter() - t0)
    return fs
