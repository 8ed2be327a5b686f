"""CSQ — Central Similarity Quantization (Yuan et al., CVPR 2020).

Every class has a hash centre ``c ∈ {−1, 1}^K`` (rows of a Hadamard matrix, or random Bernoulli
codes when no Hadamard matrix of order K exists or there are more than 2K classes; a multi-label
item's centre is the sign of the sum of its labels' centres). With ``h = tanh(z)``:

    L = mean_{i,k} BCE( (h_ik + 1)/2, (c_ik + 1)/2 )  +  λ · mean_{i,k} (|h_ik| − 1)²

:func:`hash_centres` builds the centres.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deephash.errors import ConfigError


def hadamard(n: int) -> np.ndarray | None:
    """Sylvester's Hadamard matrix of order n (a power of two), else None."""
    if n < 1 or n & (n - 1):
        return None
    H = np.ones((1, 1), dtype=np.int8)
    while len(H) < n:
        H = np.block([[H, H], [H, -H]])
    return H


def hash_centres(n_classes: int, n_bits: int, rng: np.random.Generator, *, min_distance: float | None = None,
                 tries: int = 200) -> np.ndarray:
    """``(n_classes, n_bits)`` centres in {−1, +1}: Hadamard rows (and their negations) when they
    suffice, otherwise Bernoulli(½) codes redrawn until every pair is at least ``min_distance``
    bits apart (default K/4, the best draw kept otherwise). Hadamard rows are K/2 apart."""
    H = hadamard(n_bits)
    if H is not None and n_classes <= 2 * n_bits:
        return np.concatenate([H, -H])[:n_classes].astype(np.float32)
    want = n_bits / 4 if min_distance is None else min_distance
    best, best_d = None, -1.0
    for _ in range(tries):
        C = rng.choice(np.array([-1.0, 1.0], np.float32), size=(n_classes, n_bits))
        d = (n_bits - C @ C.T) / 2
        np.fill_diagonal(d, n_bits)
        if d.min() > best_d:
            best, best_d = C, d.min()
        if best_d >= want:
            break
    return best


class CSQLoss(nn.Module):
    def __init__(self, *, lam: float = 1e-4) -> None:
        super().__init__()
        if lam < 0:
            raise ConfigError(f"CSQ lambda must be >= 0; got {lam}")
        self.lam = float(lam)

    def forward(self, h: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``h``: tanh outputs (n, K); ``centres``: each item's target centre (n, K) in {−1, +1}."""
        if h.shape != centres.shape or h.ndim != 2:
            raise ConfigError(f"CSQ needs outputs and target centres of one (n, K) shape; got {tuple(h.shape)} and {tuple(centres.shape)}")
        p = ((h + 1) / 2).clamp(1e-6, 1 - 1e-6)
        t = (centres + 1) / 2
        central = -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
        quant = ((h.abs() - 1) ** 2).mean()
        total = central + self.lam * quant
        return total, {"central": float(central.detach()), "quant": float(quant.detach())}
