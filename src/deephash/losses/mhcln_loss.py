"""MHCLN's three losses (Roy et al., IGARSS 2018; methods digest section 1).

With ``v = f(g)`` in (0,1)^K for anchors ``a``, positives ``p`` and negatives ``n`` (M triplets):

- triplet: ``sum_i max(0, ||a_i - p_i||^2 - ||a_i - n_i||^2 + alpha)``
- push:    ``-(1/K) * sum_j ||v_j - 0.5 * 1||^2`` over every code in the batch (drives bits to 0/1)
- balance: ``sum_j (mean_n(v_j,n) - 0.5)^2`` over every code in the batch (as many 1s as 0s)
- total:   ``triplet + lambda1 * push + lambda2 * balance``

``variant="paper"``: the formulas above, sums over the batch, triplet on the raw sigmoid outputs.
``variant="code"`` (the authors' released code): the triplet term on L2-normalised outputs
with alpha = 0.2, and every term averaged over the batch instead of summed (per-sample balance).
"""
from __future__ import annotations

import torch
from torch import nn

from deephash.errors import ConfigError


class MHCLNLoss(nn.Module):
    def __init__(self, *, variant: str = "code", alpha: float | None = None, lambda1: float = 0.001,
                 lambda2: float = 1.0) -> None:
        super().__init__()
        if variant not in ("paper", "code"):
            raise ConfigError(f"MHCLN loss variant must be 'paper' or 'code'; got {variant!r}")
        self.variant = variant
        # the paper does not state alpha for unnormalised outputs; 1.0 (one bit of squared distance
        # between binary codes) is our choice, documented here. The code uses 0.2 on unit vectors.
        self.alpha = float(alpha if alpha is not None else (0.2 if variant == "code" else 1.0))
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if not (anchor.shape == positive.shape == negative.shape) or anchor.ndim != 2:
            raise ConfigError(f"anchor/positive/negative must share a (M, K) shape; got {tuple(anchor.shape)}, "
                              f"{tuple(positive.shape)}, {tuple(negative.shape)}")
        K = anchor.shape[1]
        reduce = torch.mean if self.variant == "code" else torch.sum
        if self.variant == "code":
            a, p, n = (nn.functional.normalize(t, dim=1) for t in (anchor, positive, negative))
        else:
            a, p, n = anchor, positive, negative
        d_ap = ((a - p) ** 2).sum(dim=1)
        d_an = ((a - n) ** 2).sum(dim=1)
        triplet = reduce(torch.clamp(d_ap - d_an + self.alpha, min=0.0))
        v = torch.cat([anchor, positive, negative], dim=0)
        push = -(1.0 / K) * reduce(((v - 0.5) ** 2).sum(dim=1))
        balance = reduce((v.mean(dim=1) - 0.5) ** 2)
        total = triplet + self.lambda1 * push + self.lambda2 * balance
        return total, {"triplet": float(triplet.detach()), "push": float(push.detach()), "balance": float(balance.detach())}
