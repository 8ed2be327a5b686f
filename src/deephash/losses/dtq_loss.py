"""DTQ: Deep Triplet Quantization (Liu, Cao, Liu & Wang, ACM MM 2018): a triplet loss on the
embeddings plus *weak-orthogonality* additive quantisation.

With embeddings ``z`` (n, D), the additive reconstruction ``ẑ_i = Σ_m C_m[b_im]`` (M codebooks of 256
D-dimensional codewords) and every valid triplet (a, p, q) of the batch (``a ≠ p`` share a label,
``q`` shares none with ``a``), distances scaled by D:

    L = mean_{(a,p,q): ℓ>0} ℓ_apq,   ℓ_apq = max(0, α + ‖z_a − z_p‖²/D − ‖z_a − z_q‖²/D)
        + λ · mean_i ‖z_i − ẑ_i‖² / D
        + γ · Σ_{m≠m'} ‖C_m C_m'ᵀ‖²_F / (M (M−1) · 256²)

The triplet term averages over the triplets that still violate the margin (DTQ's group-hard mining
picks hard triplets per group of images; here every triplet of the mini-batch is formed and the
inactive ones are left out of the mean — "batch all", our simplification). The last term is the weak
orthogonality penalty: codewords of different codebooks are pushed towards orthogonal subspaces, so
``‖ẑ‖² ≈ Σ_m ‖C_m[b_m]‖²`` and the additive code behaves like a product code.
"""
from __future__ import annotations

import torch
from torch import nn

from deephash.errors import ConfigError
from deephash.losses.similarity import label_similarity


class DTQLoss(nn.Module):
    def __init__(self, *, margin: float = 0.5, lambda_q: float = 0.1, gamma: float = 0.1) -> None:
        super().__init__()
        if margin <= 0 or lambda_q < 0 or gamma < 0:
            raise ConfigError(f"DTQ needs margin > 0, lambda_q >= 0 and gamma >= 0; got {margin}, {lambda_q}, {gamma}")
        self.margin, self.lambda_q, self.gamma = float(margin), float(lambda_q), float(gamma)

    def forward(self, z: torch.Tensor, recon: torch.Tensor, codebooks: torch.Tensor,
                y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """``z`` (n, D), ``recon`` (n, D) additive reconstructions, ``codebooks`` (M, k, D), ``y`` labels."""
        if z.ndim != 2 or recon.shape != z.shape or len(y) != len(z) or codebooks.ndim != 3 or codebooks.shape[2] != z.shape[1]:
            raise ConfigError(f"DTQ needs z and recon (n, D), codebooks (M, k, D) and n labels; got {tuple(z.shape)}, "
                              f"{tuple(recon.shape)}, {tuple(codebooks.shape)}, {len(y)}")
        n, D = z.shape
        d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1) / D
        S = label_similarity(y) > 0
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        valid = (S & ~eye)[:, :, None] & (~S)[:, None, :]           # (a, p, q)
        ell = (self.margin + d2[:, :, None] - d2[:, None, :]).clamp_min(0)
        active = valid & (ell > 0)
        trip = ell[active].mean() if active.any() else z.sum() * 0
        quant = ((z - recon) ** 2).sum(1).mean() / D
        M, k, _ = codebooks.shape
        if M > 1:
            # ‖C_m C_m'ᵀ‖²_F = <C_mᵀC_m, C_m'ᵀC_m'>_F: D×D Gram matrices instead of the (M, M, k, k) products
            gram = torch.einsum("mkd,mke->mde", codebooks, codebooks)        # (M, D, D)
            cross = torch.einsum("mde,nde->mn", gram, gram)                  # (M, M)
            ortho = (cross.sum() - cross.diagonal().sum()) / (M * (M - 1) * k * k)
        else:
            ortho = z.sum() * 0
        total = trip + self.lambda_q * quant + self.gamma * ortho
        return total, {"triplet": float(trip.detach()), "quantisation": float(quant.detach()),
                       "orthogonality": float(ortho.detach()), "active": int(active.sum()), "valid": int(valid.sum())}
