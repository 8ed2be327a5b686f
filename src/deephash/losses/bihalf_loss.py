"""Bi-half (Li & van Gemert, "Deep Unsupervised Image Hashing by Maximizing Bit Entropy", AAAI 2021).

The bi-half layer (:func:`bihalf`) turns the continuous outputs ``U`` of a mini-batch into codes
``B`` that are +1 for the larger half and −1 for the smaller half of every bit over the batch
(the half-half split maximises each bit's entropy). Backward, the gradient passes straight
through with a pull of ``B`` towards ``U``: ``∂L/∂U = ∂L/∂B + γ (U − B)``.

The unsupervised loss preserves the cosine similarity of the input features in the codes:

    L = mean_{i,j} ( cos(x_i, x_j) − b_iᵀb_j / K )²
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephash.errors import ConfigError


class _BiHalf(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, gamma):
        n = u.shape[0]
        order = torch.argsort(u, dim=0, descending=True, stable=True)
        b = torch.full_like(u, -1.0)
        b.scatter_(0, order[: (n + 1) // 2], 1.0)
        ctx.save_for_backward(u, b)
        ctx.gamma = gamma
        return b

    @staticmethod
    def backward(ctx, g):
        u, b = ctx.saved_tensors
        return g + ctx.gamma * (u - b), None


def bihalf(u: torch.Tensor, gamma: float) -> torch.Tensor:
    """Bi-half codes of a batch ``u`` (n, K): per column, the ⌈n/2⌉ largest values -> +1, the rest -> −1."""
    return _BiHalf.apply(u, float(gamma))


class BiHalfLoss(nn.Module):
    def forward(self, x: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``x``: the input features (n, D); ``b``: the codes (n, K) in {−1, +1}."""
        if x.ndim != 2 or b.ndim != 2 or len(x) != len(b):
            raise ConfigError(f"bi-half loss needs features (n, D) and codes (n, K); got {tuple(x.shape)} and {tuple(b.shape)}")
        xn = F.normalize(x, dim=1)
        target = xn @ xn.T
        sim = b @ b.T / b.shape[1]
        loss = ((target - sim) ** 2).mean()
        return loss, {"similarity": float(loss.detach())}
