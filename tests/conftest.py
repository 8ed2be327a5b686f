"""Shared fixtures: synthetic CIFAR-10-shaped image archives (real JPEG files drawn by tests/synthetic.py),
so that every test runs on every machine, with or without the CIFAR-10 archive."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from synthetic import make_archive
from milvus_fixtures import milvus_server  # noqa: F401  (session-wide: one Milvus server for every test module)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Tests never touch the user's cache: the whole session gets a private ``DEEPHASH_CACHE``."""
    saved = os.environ.get("DEEPHASH_CACHE")
    os.environ["DEEPHASH_CACHE"] = str(tmp_path_factory.mktemp("deephash_cache"))
    os.environ.setdefault("DEEPHASH_THREADS", "1")
    yield
    if saved is None:
        os.environ.pop("DEEPHASH_CACHE", None)
    else:
        os.environ["DEEPHASH_CACHE"] = saved


@pytest.fixture(scope="session")
def cifar_full(tmp_path_factory):
    """A CIFAR-10-shaped synthetic archive big enough for the named protocols' splits:
    ``{train,test}/<class>/*.jpg``, 10 classes x (520 train + 100 test) 32 px JPEGs (6,200 images)."""
    from deephash.data import open_archive

    root = make_archive(tmp_path_factory.mktemp("synthetic_full") / "cifar10", {"train": 520, "test": 100}, seed=1)
    return open_archive(root)


@pytest.fixture(scope="session")
def small_cifar(tmp_path_factory) -> Path:
    """``root/{train,test}/<class>/*.jpg``: 30 train and 10 test synthetic 32 px images per class (400 images)."""
    return make_archive(tmp_path_factory.mktemp("cifar_small") / "cifar10", {"train": 30, "test": 10}, seed=0)


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
