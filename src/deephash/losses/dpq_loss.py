"""DPQ-style supervised product quantisation (after Klein & Wolf, "End-to-End Supervised Product
Quantization for Image Search and Retrieval", CVPR 2019).

An embedding ``z`` is cut into M sub-vectors; sub-vector m is assigned to the 256 codewords of
codebook m softly, ``p_mk = softmax_k(−‖z_m − C_mk‖² / τ)``, giving a soft reconstruction
``s_m = Σ_k p_mk C_mk`` and a hard one ``h_m = C_m,argmax_k p_mk`` (the code stores argmax).
A classifier sees both; the loss is

    L = CE(W s, y) + CE(W h, y) + λ_c · mean_i ‖s_i − h_i‖² / D
        + λ_g · ( mean_{i,m} (1 − Σ_k p_imk²)  −  mean_m (1 − Σ_k p̄_mk²) )

the last term is DPQ's Gini-impurity pair: each item's assignment should be confident (low
impurity), while the batch as a whole should spread over the codewords (high impurity of the
batch-mean assignment p̄). DPQ's joint central loss is replaced by the plain soft-hard
consistency term (our simplification). :func:`soft_assign` computes p, s and h.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from deephash.errors import ConfigError


def subspace_distances(z: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(n, M, k)`` from the M sub-vectors of ``z`` (n, M·d) to ``codebooks`` (M, k, d)."""
    M, k, d = codebooks.shape
    zs = z.reshape(len(z), M, d)
    return ((zs * zs).sum(-1, keepdim=True) - 2 * torch.einsum("nmd,mkd->nmk", zs, codebooks)
            + (codebooks * codebooks).sum(-1)[None]).clamp_min(0)


def soft_assign(z: torch.Tensor, codebooks: torch.Tensor, temperature: float):
    """``(p (n, M, k), soft (n, M·d), hard (n, M·d), idx (n, M))`` for embeddings ``z``."""
    M, k, d = codebooks.shape
    dist = subspace_distances(z, codebooks)
    p = torch.softmax(-dist / temperature, dim=-1)
    soft = torch.einsum("nmk,mkd->nmd", p, codebooks).reshape(len(z), M * d)
    idx = dist.argmin(-1)
    hard = codebooks[torch.arange(M, device=z.device)[None, :], idx].reshape(len(z), M * d)
    return p, soft, hard, idx


class DPQLoss(nn.Module):
    def __init__(self, *, lambda_c: float = 0.1, lambda_g: float = 0.1) -> None:
        super().__init__()
        if lambda_c < 0 or lambda_g < 0:
            raise ConfigError(f"DPQ loss weights must be >= 0; got lambda_c={lambda_c}, lambda_g={lambda_g}")
        self.lambda_c, self.lambda_g = float(lambda_c), float(lambda_g)

    def forward(self, p: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor, logits_soft: torch.Tensor,
                logits_hard: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if p.ndim != 3 or soft.shape != hard.shape or len(y) != len(p):
            raise ConfigError(f"DPQ needs p (n, M, k), soft and hard (n, D) and n labels; got {tuple(p.shape)}, "
                              f"{tuple(soft.shape)}, {tuple(hard.shape)}, {len(y)}")

        def ce(logits):
            return F.cross_entropy(logits, y.long()) if y.ndim == 1 else F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))

        cls_soft, cls_hard = ce(logits_soft), ce(logits_hard)
        consist = ((soft - hard) ** 2).sum(1).mean() / soft.shape[1]
        item_gini = (1 - (p ** 2).sum(-1)).mean()
        batch_gini = (1 - (p.mean(0) ** 2).sum(-1)).mean()
        total = cls_soft + cls_hard + self.lambda_c * consist + self.lambda_g * (item_gini - batch_gini)
        return total, {"cls_soft": float(cls_soft.detach()), "cls_hard": float(cls_hard.detach()),
                       "consistency": float(consist.detach()), "item_gini": float(item_gini.detach()),
                       "batch_gini": float(batch_gini.detach())}
