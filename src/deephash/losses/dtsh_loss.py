"""DTSH — Deep Supervised Hashing with Triplet Labels (Wang, Shi & Kitani, ACCV 2016).

With real-valued outputs ``u`` and ``Θ_ij = ½ u_iᵀu_j``, the negative log-likelihood of every
triplet (q, p, n) of the mini-batch — p shares a label with q (p ≠ q), n shares none — under
``p(q closer to p than to n) = σ(Θ_qp − Θ_qn − α)``, plus a quantisation term:

    L = mean_triplets log(1 + e^{Θ_qn − Θ_qp + α})  +  λ · mean_i ‖b_i − u_i‖² / K,   b = sign(u)

For ±1 codes ``Θ_qp − Θ_qn`` is ``d_H(q, n) − d_H(q, p)``, so α is a margin in bits.
The paper mines all triplets of the mini-batch, as we do; averages instead of sums keep λ
independent of the batch size, and the quantisation term is divided by K.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephash.errors import ConfigError
from deephash.losses.similarity import label_similarity, off_diagonal


class DTSHLoss(nn.Module):
    def __init__(self, *, alpha: float | None = None, lam: float = 0.1) -> None:
        super().__init__()
        if lam < 0:
            raise ConfigError(f"DTSH lambda must be >= 0; got {lam}")
        self.alpha, self.lam = alpha, float(lam)

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if u.ndim != 2 or len(u) != len(y) or len(u) < 3:
            raise ConfigError(f"DTSH needs outputs (n >= 3, K) and n labels; got {tuple(u.shape)} and {len(y)} labels")
        K = u.shape[1]
        a = K / 8.0 if self.alpha is None else float(self.alpha)
        s = label_similarity(y)
        theta = 0.5 * u @ u.T
        pos = (s > 0) & off_diagonal(len(u), u.device)          # (q, p)
        neg = s == 0                                              # (q, n)
        valid = pos[:, :, None] & neg[:, None, :]                 # (q, p, n)
        if valid.any():
            margin = theta[:, None, :] - theta[:, :, None] + a    # Θ_qn − Θ_qp + α at [q, p, n]
            triplet = F.softplus(margin[valid]).mean()
        else:
            triplet = u.sum() * 0
        quant = ((u - torch.sign(u).detach()) ** 2).sum(dim=1).mean() / K
        total = triplet + self.lam * quant
        return total, {"triplet": float(triplet.detach()), "quant": float(quant.detach()),
                       "n_triplets": int(valid.sum())}
