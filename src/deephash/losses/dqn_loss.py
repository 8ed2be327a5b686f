"""DQN: Deep Quantization Network (Cao, Long, Wang, Zhu & Wen, AAAI 2016), pairwise cosine loss plus
the product-quantisation error of the embedding.

With embeddings ``z`` (n, D), label similarity ``s_ij`` ∈ {0, 1} (shared label: 1) and the hard
product-quantisation reconstruction ``ẑ_i = [C_1[b_i1], …, C_M[b_iM]]`` (each sub-vector replaced by
its nearest codeword),

    L = mean_{i≠j} (s_ij − cos(z_i, z_j))²  +  λ · mean_i ‖z_i − ẑ_i‖² / D

The first term is DQN's pairwise cosine loss: similar pairs are pulled to cosine 1, dissimilar ones to
0 (orthogonal, not opposite: ten classes cannot be pairwise opposite). The second is its product
quantisation loss; with the hard assignment its gradient moves each chosen codeword towards the
sub-vectors assigned to it (online k-means) and the embedding towards its codewords. The paper
alternates a closed-form codebook update with back-propagation; here the one Trainer optimises both
by gradient (our simplification).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephash.errors import ConfigError
from deephash.losses.similarity import label_similarity, off_diagonal


class DQNLoss(nn.Module):
    def __init__(self, *, lambda_q: float = 0.1) -> None:
        super().__init__()
        if lambda_q < 0:
            raise ConfigError(f"DQN lambda_q must be >= 0; got {lambda_q}")
        self.lambda_q = float(lambda_q)

    def forward(self, z: torch.Tensor, recon: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``z`` embeddings (n, D), ``recon`` their quantised reconstructions (n, D), ``y`` labels."""
        if z.ndim != 2 or recon.shape != z.shape or len(y) != len(z) or len(z) < 2:
            raise ConfigError(f"DQN needs embeddings and reconstructions of one (n, D) shape, n >= 2, and n labels; "
                              f"got {tuple(z.shape)}, {tuple(recon.shape)}, {len(y)}")
        u = F.normalize(z, dim=1)
        S = label_similarity(y).to(z.dtype)
        off = off_diagonal(len(z), z.device)
        pair = ((S - u @ u.T)[off] ** 2).mean()
        quant = ((z - recon) ** 2).sum(1).mean() / z.shape[1]
        total = pair + self.lambda_q * quant
        return total, {"pairwise": float(pair.detach()), "quantisation": float(quant.detach())}
