"""Inputs shared by the loss tests that recompute a loss with slow, obvious loops."""
from __future__ import annotations

import numpy as np
import torch


def rand(*shape, seed=0):
    """Seeded standard-normal float64 tensor (float64 so the loop and the vectorised loss agree closely)."""
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape)).double()


def labels(n, c=3, seed=1):
    """Seeded class ids in [0, c)."""
    return torch.from_numpy(np.random.default_rng(seed).integers(0, c, size=n))


def dot(a, b):
    """Inner product of two sequences, one element at a time."""
    return sum(x * y for x, y in zip(a, b))
