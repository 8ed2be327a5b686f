"""Synthetic fixtures of the robustness tests (issue 12): a small image-folder archive drawn on the
fly and an ITQ checkpoint fitted on its 32 px backbone features — no dataset needed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def draw_image(path: Path, seed: int, size: int = 32, fmt: str | None = None) -> Path:
    """A small RGB image of coloured noise around a seed-dependent hue."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    px = np.clip(base + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(px).save(path, format=fmt)
    return path


def make_archive(root: Path, per_class: int = 6) -> Path:
    """``root/{red,blue}/NN.png``: a two-class folder archive."""
    for c, name in enumerate(("blue", "red")):
        for i in range(per_class):
            draw_image(root / name / f"{i:02d}.png", seed=100 * c + i)
    return root


@pytest.fixture(scope="session")
def synth_archive(tmp_path_factory) -> Path:
    return make_archive(tmp_path_factory.mktemp("synth") / "archive", per_class=12)


@pytest.fixture(scope="session")
def synth_ckpt(synth_archive, tmp_path_factory) -> Path:
    """A 16-bit ITQ checkpoint on 32 px EfficientNet-Lite0 features of ``synth_archive``."""
    from deephash.backbones import create_backbone
    from deephash.data import open_archive
    from deephash.features import extract_features
    from deephash.hashers import create_hasher

    out = tmp_path_factory.mktemp("synth_model")
    bb = create_backbone("efficientnet-lite0", image_size=32)
    fs = extract_features(open_archive(synth_archive), bb, progress=False)
    h = create_hasher("itq", 16, seed=0)
    h.fit(fs.features)
    return h.save(out / "itq-16.pt", backbone=bb.name, preprocessing=bb.preprocessing.to_dict())
