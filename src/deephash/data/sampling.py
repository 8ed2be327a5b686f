"""Samplers over an archive's rows (queries and databases drawn evenly per class)."""
from __future__ import annotations

import numpy as np

from deephash.errors import ConfigError


def per_class_sample(labels: np.ndarray, pool: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices from ``pool`` with the same count per class (all of ``pool`` when n is None)."""
    if n is None or n >= len(pool):
        return np.sort(pool)
    keys = labels[pool] if labels.ndim == 1 else np.argmax(labels[pool], axis=1)
    classes = np.unique(keys)
    per = n // len(classes)
    if per < 1:
        raise ConfigError(f"cannot draw {n} images evenly from {len(classes)} classes")
    out = [rng.choice(pool[keys == c], size=min(per, int((keys == c).sum())), replace=False) for c in classes]
    return np.sort(np.concatenate(out))
