"""GreedyHash (Su, Zhang, Huang & Tian, NeurIPS 2018).

The code layer applies ``sign`` in the forward pass and passes the gradient straight through in
the backward pass (:func:`sign_ste`), so the classifier on top is trained on the binary codes the
index will store. The loss is the classification loss on those codes plus a penalty pulling the
real-valued outputs ``h`` towards ±1:

    L = CE( W·sign(h) , y )  +  α · mean_{i,k} | |h_ik| − 1 |^p        (paper: p = 3)

Multi-hot labels use binary cross-entropy per label instead of the softmax cross-entropy.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephash.errors import ConfigError


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h):
        return torch.where(h >= 0, torch.ones_like(h), -torch.ones_like(h))

    @staticmethod
    def backward(ctx, g):
        return g


def sign_ste(h: torch.Tensor) -> torch.Tensor:
    """±1 (0 maps to +1, as the code's ``bit = h >= 0``) forward; identity gradient backward."""
    return _SignSTE.apply(h)


class GreedyHashLoss(nn.Module):
    def __init__(self, *, alpha: float = 0.1, p: float = 3.0) -> None:
        super().__init__()
        if alpha < 0 or p <= 0:
            raise ConfigError(f"GreedyHash needs alpha >= 0 and p > 0; got alpha={alpha}, p={p}")
        self.alpha, self.p = float(alpha), float(p)

    def forward(self, h: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``h``: real outputs (n, K); ``logits``: the classifier on ``sign_ste(h)`` (n, C); ``y``: class ids or multi-hot."""
        if h.ndim != 2 or logits.ndim != 2 or len(h) != len(logits) or len(y) != len(h):
            raise ConfigError(f"GreedyHash needs h (n, K), logits (n, C) and n labels; got {tuple(h.shape)}, "
                              f"{tuple(logits.shape)}, {len(y)}")
        cls = F.cross_entropy(logits, y.long()) if y.ndim == 1 else F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
        pen = ((h.abs() - 1).abs() ** self.p).mean()
        total = cls + self.alpha * pen
        return total, {"classification": float(cls.detach()), "penalty": float(pen.detach())}
