"""DSH — Deep Supervised Hashing (Liu, Wang, Shan & Chen, CVPR 2016).

Contrastive loss on real-valued outputs ``b`` with a margin ``m`` (the paper: ``m = 2K``) and the
regulariser that pulls every output towards ±1:

    L = mean_{i<j} [ ½ s_ij ‖b_i − b_j‖² + ½ (1 − s_ij) max(m − ‖b_i − b_j‖², 0) ]
        + α · mean_i ‖ |b_i| − 1 ‖₁

(the paper sums the regulariser over the two items of every pair; over all pairs of a batch that is
the per-item mean above up to a constant factor folded into α; paper: α = 0.01).
"""
from __future__ import annotations

import torch
from torch import nn

from deephash.errors import ConfigError
from deephash.losses.similarity import label_similarity


class DSHLoss(nn.Module):
    def __init__(self, *, margin: float | None = None, alpha: float = 0.01) -> None:
        super().__init__()
        if margin is not None and margin <= 0:
            raise ConfigError(f"DSH margin must be > 0 (default 2K); got {margin}")
        self.margin, self.alpha = margin, float(alpha)

    def forward(self, b: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if b.ndim != 2 or len(b) != len(y) or len(b) < 2:
            raise ConfigError(f"DSH needs outputs (n >= 2, K) and n labels; got {tuple(b.shape)} and {len(y)} labels")
        m = 2.0 * b.shape[1] if self.margin is None else float(self.margin)
        s = label_similarity(y).to(b.dtype)
        sq = (b * b).sum(1)
        d = (sq[:, None] + sq[None, :] - 2 * b @ b.T).clamp_min(0)   # ‖b_i − b_j‖² without an (n, n, K) tensor
        iu = torch.triu_indices(len(b), len(b), offset=1, device=b.device)
        s, d = s[iu[0], iu[1]], d[iu[0], iu[1]]
        contrast = (0.5 * s * d + 0.5 * (1 - s) * torch.clamp(m - d, min=0.0)).mean()
        reg = (b.abs() - 1).abs().sum(dim=1).mean()
        total = contrast + self.alpha * reg
        return total, {"contrastive": float(contrast.detach()), "reg": float(reg.detach())}
