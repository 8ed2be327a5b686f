"""Deep Ranking's hinge loss on triplets (Wang et al., CVPR 2014; methods digest section 3).

``l = max(0, g + D(f(q), f(p+)) - D(f(q), f(p-)))`` with ``D`` the Euclidean distance and gap
``g = 1`` (the digest and the seed's code; the paper writes D as a squared distance:
``squared=True``). The loss of a batch is the mean over its triplets. (The seed's Keras code
averages ``g + D+ - D-`` over the batch *before* the hinge, which lets easy triplets cancel
hard ones; we apply the hinge per triplet, as the formula says.)
"""
from __future__ import annotations

import torch
from torch import nn

from deephash.errors import ConfigError


class DeepRankingLoss(nn.Module):
    def __init__(self, *, gap: float = 1.0, squared: bool = False) -> None:
        super().__init__()
        if gap < 0:
            raise ConfigError(f"gap must be >= 0; got {gap}")
        self.gap, self.squared = float(gap), squared

    def forward(self, query: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if not (query.shape == positive.shape == negative.shape) or query.ndim != 2:
            raise ConfigError(f"query/positive/negative must share a (M, D) shape; got {tuple(query.shape)}, "
                              f"{tuple(positive.shape)}, {tuple(negative.shape)}")
        d_pos = ((query - positive) ** 2).sum(dim=1)
        d_neg = ((query - negative) ** 2).sum(dim=1)
        if not self.squared:
            # the epsilon keeps the gradient of sqrt finite when two embeddings coincide
            d_pos, d_neg = torch.sqrt(d_pos + 1e-12), torch.sqrt(d_neg + 1e-12)
        hinge = torch.clamp(self.gap + d_pos - d_neg, min=0.0)
        loss = hinge.mean()
        return loss, {"active": float((hinge.detach() > 0).float().mean()), "d_pos": float(d_pos.detach().mean()),
                      "d_neg": float(d_neg.detach().mean())}
