"""Synthetic image archives for the tests: small, real JPEG files in a CIFAR-10-like layout.

Every test that needs images runs on these, so the suite runs the same on a machine without the
CIFAR-10 archive. Each class has its own colour, texture orientation and frequency, blurred by
per-image jitter and noise: classes are separable by a frozen backbone, but not trivially (so a
learned hash still beats random projections on them).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: CIFAR-10's class names, so tests read naturally ("cat", "ship") on either archive
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def draw(cls: int, n_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``size``x``size`` RGB image (uint8) of class ``cls``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    hue = 2 * np.pi * (cls + rng.normal(0, 0.25)) / n_classes
    base = 0.5 + 0.3 * np.cos(hue + np.array([0.0, 2.1, 4.2], np.float32))
    angle = np.pi * cls / n_classes + rng.normal(0, 0.2)
    freq = 2.0 + (cls % 4) * 1.5 + rng.normal(0, 0.3)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    cy, cx, r = rng.uniform(0.25, 0.75, 2).tolist() + [rng.uniform(0.12, 0.3)]
    blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.float32) * (1.0 if cls % 2 else -1.0)
    img = base[None, None, :] + 0.18 * wave[..., None] + 0.12 * blob[..., None]
    img += rng.normal(0, 0.08, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_archive(root: str | Path, per_split: dict[str, int], *, size: int = 32, classes=CLASSES,
                 seed: int = 0, quality: int = 90) -> Path:
    """Write ``root/<split>/<class>/<i>.jpg`` with ``per_split[split]`` images per class."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, n in per_split.items():
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(draw(c, len(classes), size, rng)).save(d / f"{i:04d}.jpg", quality=quality)
    return root
