"""Shared fixtures: a small real CIFAR-10 archive (a few hundred images) copied from the shared data."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests never touch the user's cache, except for the read-only CIFAR-10 unpack (shared across sessions)."""
    os.environ.setdefault("DEEPHASH_THREADS", "1")
    yield


@pytest.fixture(scope="session")
def cifar_full():
    from deephash.data import load_cifar10

    try:
        return load_cifar10()
    except Exception as e:  # pragma: no cover - only where the shared data is absent
        pytest.skip(f"CIFAR-10 archive not available: {e}")


@pytest.fixture(scope="session")
def small_cifar(cifar_full, tmp_path_factory) -> Path:
    """``root/{train,test}/<class>/*.jpg``: 30 train and 10 test images per class (400 images)."""
    root = tmp_path_factory.mktemp("cifar_small") / "cifar10"
    counts = {"train": 30, "test": 10}
    seen: dict[tuple[str, int], int] = {}
    for i, (p, lab, sp) in enumerate(zip(cifar_full.paths, cifar_full.labels, cifar_full.splits)):
        key = (sp, int(lab))
        if seen.get(key, 0) >= counts[sp]:
            continue
        seen[key] = seen.get(key, 0) + 1
        dst = root / p
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cifar_full.root / p, dst)
    return root


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch):
    """A private DEEPHASH_CACHE for tests that check caching behaviour."""
    d = tmp_path / "cache"
    monkeypatch.setenv("DEEPHASH_CACHE", str(d))
    return d


@pytest.fixture(scope="session")
def blobs():
    """Clustered float features (10 classes) standing in for backbone features in fast hasher tests."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 64)).astype(np.float32) * 2
    y = np.repeat(np.arange(10), 60)
    X = centres[y] + rng.normal(size=(len(y), 64)).astype(np.float32) * 1.5
    return X.astype(np.float32), y


@pytest.fixture(scope="session")
def demo_index(small_cifar, tmp_path_factory) -> Path:
    """A real index over the small archive's 300 training images (64-bit ITQ on 32 px features), beside its checkpoint.

    ITQ rather than MHCLN: it fits in a second, where MHCLN's training takes minutes on a busy
    machine, and the service treats every method alike."""
    from deephash.backbones import create_backbone
    from deephash.data import open_archive
    from deephash.features import extract_features
    from deephash.hashers import create_hasher
    from deephash.api import build_index

    out = tmp_path_factory.mktemp("demo_index")
    archive = open_archive(small_cifar, split="train")
    bb = create_backbone("efficientnet-lite0", image_size=32)
    fs = extract_features(archive, bb, progress=False)
    h = create_hasher("itq", 64, seed=0)
    h.fit(fs.features)
    ckpt = h.save(out / "itq-64.pt", backbone=bb.name, preprocessing=bb.preprocessing.to_dict())
    build_index(archive, ckpt, out / "index.dhi", progress=False)
    return out / "index.dhi"
