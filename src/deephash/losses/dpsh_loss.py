"""DPSH — Deep Pairwise-Supervised Hashing (Li, Wang & Kang, IJCAI 2016).

With real-valued outputs ``u`` and ``Θ_ij = ½ u_iᵀu_j``, the negative log-likelihood of the pairwise
labels ``s_ij`` under ``p(s_ij = 1) = σ(Θ_ij)`` plus a quantisation term:

    L = mean_{i≠j} [ log(1 + e^{Θ_ij}) − s_ij Θ_ij ]  +  η · mean_i ‖b_i − u_i‖² / K,   b = sign(u)

The paper sums over pairs of the mini-batch against every training code; we use the pairs inside
the mini-batch and averages (so η does not depend on the batch size); the quantisation term is
divided by K so that η does not depend on the code length either.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephash.errors import ConfigError
from deephash.losses.similarity import label_similarity, off_diagonal


class DPSHLoss(nn.Module):
    def __init__(self, *, eta: float = 0.1) -> None:
        super().__init__()
        if eta < 0:
            raise ConfigError(f"DPSH eta must be >= 0; got {eta}")
        self.eta = float(eta)

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if u.ndim != 2 or len(u) != len(y) or len(u) < 2:
            raise ConfigError(f"DPSH needs outputs (n >= 2, K) and n labels; got {tuple(u.shape)} and {len(y)} labels")
        s = label_similarity(y).to(u.dtype)
        theta = 0.5 * u @ u.T
        mask = off_diagonal(len(u), u.device)
        pair = (F.softplus(theta) - s * theta)[mask].mean()
        quant = ((u - torch.sign(u).detach()) ** 2).sum(dim=1).mean() / u.shape[1]
        total = pair + self.eta * quant
        return total, {"pair": float(pair.detach()), "quant": float(quant.detach())}
