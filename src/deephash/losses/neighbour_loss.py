"""Contrastive loss on mined neighbours (unsupervised; after CIBHash, Qiu et al. IJCAI 2021, whose two
augmented views of an image become here an item and one of its nearest neighbours in the frozen
feature space, as in nearest-neighbour contrastive learning).

A batch holds n anchors and, for each, one *positive*: a neighbour mined from the features (and, with
feature-space augmentation, a perturbed copy of each). With ``h`` the relaxed codes (2n, K) in
[−1, 1] — anchors first, then their positives, so the partner of row i is row ``(i + n) mod 2n`` —
and ``c_ij = cos(h_i, h_j) / τ``:

    L = mean_i [ −c_{i,p(i)} + log Σ_{j≠i} exp(c_ij) ]  +  λ_q · mean (|h| − 1)²

(NT-Xent / InfoNCE over all 2n rows: every other row of the batch is a negative). The cosine of two
binary codes is 1 − 2·Hamming/K, so the first term ranks a neighbour's code above the rest of the batch
by Hamming distance; the second pulls ``h`` to the binary corners.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephash.errors import ConfigError


class NeighbourContrastiveLoss(nn.Module):
    def __init__(self, *, temperature: float = 0.3, lambda_q: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0 or lambda_q < 0:
            raise ConfigError(f"neighbour contrastive loss needs temperature > 0 and lambda_q >= 0; "
                              f"got {temperature}, {lambda_q}")
        self.temperature, self.lambda_q = float(temperature), float(lambda_q)

    def forward(self, h_anchor: torch.Tensor, h_positive: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``h_anchor``, ``h_positive``: relaxed codes (n, K) in [−1, 1]; row i of each is a positive pair."""
        if h_anchor.ndim != 2 or h_anchor.shape != h_positive.shape or len(h_anchor) < 2:
            raise ConfigError(f"neighbour contrastive loss needs two (n, K) code batches of one shape, n >= 2; "
                              f"got {tuple(h_anchor.shape)} and {tuple(h_positive.shape)}")
        n = len(h_anchor)
        h = torch.cat([h_anchor, h_positive])
        z = F.normalize(h, dim=1)
        logits = (z @ z.T / self.temperature).float()
        logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=h.device), float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(h.device)
        contrast = F.cross_entropy(logits, target)
        quant = ((h.abs() - 1.0) ** 2).mean()
        total = contrast + self.lambda_q * quant
        return total, {"contrastive": float(contrast.detach()), "quantisation": float(quant.detach())}
