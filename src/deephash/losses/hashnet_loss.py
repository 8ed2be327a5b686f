"""HashNet (Cao, Long, Wang & Yu, ICCV 2017): weighted pairwise cross-entropy on ``h = tanh(βz)``.

With ``Θ_ij = α ⟨h_i, h_j⟩`` (α: the adaptive-sigmoid scale) and pairs of the mini-batch (i ≠ j),

    L = Σ_ij w_ij [ log(1 + e^{Θ_ij}) − s_ij Θ_ij ] / Σ_ij 1,
    w_ij = |S| / |S₁| for similar pairs, |S| / |S₀| for dissimilar pairs

which is the mean loss over similar pairs plus the mean loss over dissimilar pairs: the two kinds
weigh the same however imbalanced the batch is (with 10 classes only ~10% of pairs are similar).
α defaults to 10/K (our choice, so Θ stays within ±10 whatever the code length).
β, the continuation parameter, is the hasher's business (the loss sees ``h`` already squashed).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephash.errors import ConfigError
from deephash.losses.similarity import label_similarity, off_diagonal


class HashNetLoss(nn.Module):
    def __init__(self, *, alpha: float | None = None) -> None:
        super().__init__()
        if alpha is not None and alpha <= 0:
            raise ConfigError(f"HashNet alpha must be > 0 (default 10/K); got {alpha}")
        self.alpha = alpha

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if h.ndim != 2 or len(h) != len(y) or len(h) < 2:
            raise ConfigError(f"HashNet needs outputs (n >= 2, K) and n labels; got {tuple(h.shape)} and {len(y)} labels")
        a = 10.0 / h.shape[1] if self.alpha is None else float(self.alpha)
        s = label_similarity(y).to(h.dtype)
        theta = a * h @ h.T
        per_pair = F.softplus(theta) - s * theta
        mask = off_diagonal(len(h), h.device)
        sim, dis = mask & (s > 0), mask & (s == 0)
        l_sim = per_pair[sim].mean() if sim.any() else h.sum() * 0
        l_dis = per_pair[dis].mean() if dis.any() else h.sum() * 0
        total = l_sim + l_dis
        return total, {"similar": float(l_sim.detach()), "dissimilar": float(l_dis.detach())}
