"""Central similarity (hash-centre) loss, CSQ-style (Yuan et al., CVPR 2020), written from the idea.

Every class has a hash centre ``c`` in {-1, +1}^K (rows of a Hadamard matrix, so two centres
differ in K/2 bits). For tanh hash-layer outputs ``u`` (n, K) in (-1, 1) and each row's target
centre ``c_i``:

- central: ``mean_{i,k} BCE((u_ik + 1)/2, (c_ik + 1)/2)`` -- pulls each code to its class centre,
- quantisation: ``mean_{i,k} (|u_ik| - 1)^2``, weighted by ``quantization`` (small: 1e-4 in CSQ's code).

We average (over codes and bits) rather than sum, so the weights do not depend on n or K.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from deephash.errors import ConfigError


def hadamard_centers(n_classes: int, n_bits: int, seed: int = 0) -> torch.Tensor:
    """``(n_classes, n_bits)`` float +-1 centres: rows of the Sylvester Hadamard matrix H_K and -H_K
    when K is a power of two and ``n_classes <= 2K``; otherwise i.i.d. random +-1 (fixed seed)."""
    if n_classes < 1 or n_bits < 1:
        raise ConfigError(f"need n_classes >= 1 and n_bits >= 1; got {n_classes}, {n_bits}")
    if n_bits & (n_bits - 1) == 0 and n_classes <= 2 * n_bits:
        h = torch.ones(1, 1)
        while h.shape[0] < n_bits:
            h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
        return torch.cat([h, -h], 0)[:n_classes].clone()
    g = torch.Generator().manual_seed(int(seed))
    return (torch.randint(0, 2, (n_classes, n_bits), generator=g).float() * 2 - 1)


class CentralSimilarityLoss(nn.Module):
    def __init__(self, quantization: float = 1e-4) -> None:
        super().__init__()
        if quantization < 0 or not math.isfinite(quantization):
            raise ConfigError(f"quantization must be >= 0; got {quantization}")
        self.quantization = float(quantization)

    def forward(self, u: torch.Tensor, centers: torch.Tensor):
        """``u``: (n, K) tanh outputs; ``centers``: (n, K) +-1 target centre of each row."""
        if u.shape != centers.shape or u.ndim != 2:
            raise ConfigError(f"u and centers must both be (n, K); got {tuple(u.shape)} and {tuple(centers.shape)}")
        u = u.float()
        p = ((u + 1) / 2).clamp(1e-7, 1 - 1e-7)
        t = (centers.float() + 1) / 2
        # written out: F.binary_cross_entropy refuses to run under autocast
        central = -(t * p.log() + (1 - t) * (1 - p).log()).mean()
        quant = ((u.abs() - 1) ** 2).mean()
        loss = central + self.quantization * quant
        return loss, {"central": float(central.detach()), "quant": float(quant.detach())}
