"""Pairwise loss on mined neighbourhoods (unsupervised; after SSDH, Yang et al. IJCAI 2018, and the
"deep unsupervised hashing by neighbourhood similarity" line of work).

The similarity of a pair is not a label but is *mined* from the frozen features: ``S_ij = +1`` for
confident neighbours, ``−1`` for confidently dissimilar pairs and ``0`` (ignored) for the rest. With
``h = tanh(u)`` the relaxed codes (n, K),

    L = mean_{S_ij=+1} (h_iᵀh_j / K − 1)² + mean_{S_ij=−1} (h_iᵀh_j / K − ν)²  + λ_q · mean (|h| − 1)²

ν (the target inner product of dissimilar pairs, default 0: orthogonal codes, i.e. K/2 bits apart) keeps
the negatives from being pushed to the opposite corner; the two means weigh neighbours and non-neighbours
equally however few neighbours a batch holds; the last term pulls ``h`` to the binary corners.
"""
from __future__ import annotations

import torch
from torch import nn

from deephash.errors import ConfigError


class NeighbourLoss(nn.Module):
    def __init__(self, *, negative_target: float = 0.0, lambda_q: float = 0.1) -> None:
        super().__init__()
        if not -1.0 <= negative_target < 1.0 or lambda_q < 0:
            raise ConfigError(f"neighbour loss needs -1 <= negative_target < 1 and lambda_q >= 0; "
                              f"got {negative_target}, {lambda_q}")
        self.negative_target, self.lambda_q = float(negative_target), float(lambda_q)

    def forward(self, h: torch.Tensor, S: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``h``: relaxed codes (n, K) in [−1, 1]; ``S``: mined similarity (n, n) in {−1, 0, +1}."""
        if h.ndim != 2 or S.shape != (len(h), len(h)):
            raise ConfigError(f"neighbour loss needs codes (n, K) and similarity (n, n); got {tuple(h.shape)} and {tuple(S.shape)}")
        ip = h @ h.T / h.shape[1]
        off = ~torch.eye(len(h), dtype=torch.bool, device=h.device)
        pos, neg = off & (S > 0), off & (S < 0)
        l_pos = ((ip[pos] - 1.0) ** 2).mean() if pos.any() else h.sum() * 0
        l_neg = ((ip[neg] - self.negative_target) ** 2).mean() if neg.any() else h.sum() * 0
        quant = ((h.abs() - 1.0) ** 2).mean()
        total = l_pos + l_neg + self.lambda_q * quant
        return total, {"neighbours": float(l_pos.detach()), "non_neighbours": float(l_neg.detach()),
                       "quantisation": float(quant.detach()), "n_pos": int(pos.sum()), "n_neg": int(neg.sum())}
