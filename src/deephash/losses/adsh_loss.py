"""ADSH — Angular Deep Supervised Hashing (Zhou, Po, Yuen, Cheung, Xu, Lau, Zhao, Liu & Wong,
IEEE Access 2019), the survey's implicit-family "ADSH" (not Asymmetric Deep Supervised Hashing).

For ±1 codes the Hamming distance is a function of the angle alone (``d_H = K (1 − cos θ) / 2``), so
ADSH shapes the hash layer's outputs on the unit hypersphere: an *angular hashing loss* — a softmax
over the cosines between the L2-normalised output ``u / ‖u‖`` and unit class vectors ``w_c / ‖w_c‖``,
with an additive angular margin on the true class — pulls each class together in angle and pushes
classes apart, without pairs or triplets (similarity is preserved implicitly, through the shared
class vectors):

    ℓ_i = − Σ_c t_ic log softmax_c( s (cos θ_ic − m [t_ic > 0]) )

``s`` the scale, ``m`` the cosine margin (subtracted from the true classes' cosines), ``t_i`` the
target distribution: one-hot for single-label data; for multi-label data the labels' uniform
distribution, each true class with its margin (our reading of the paper's "dynamic softmax").
The quantisation term is angular too: ``1 − cos(u, sign u) = 1 − ‖u‖₁ / (√K ‖u‖₂)``, zero exactly
when every output has the same magnitude, i.e. when ``u`` points at a vertex of the hypercube (its
code). Loss ``mean_i ℓ_i + λ mean_i (1 − cos(u_i, sign u_i))``.

The paper's exact hyper-parameters were not re-read; defaults here: ``s = 16``, ``m = 0.3``,
``λ = 0.1``.
"""
from __future__ import annotations

import torch
from torch import nn

from deephash.errors import ConfigError


class ADSHLoss(nn.Module):
    def __init__(self, *, scale: float = 16.0, margin: float = 0.3, lam: float = 0.1) -> None:
        super().__init__()
        if scale <= 0 or not 0 <= margin < 2 or lam < 0:
            raise ConfigError(f"ADSH needs scale > 0, 0 <= margin < 2 and lam >= 0; got scale={scale}, margin={margin}, lam={lam}")
        self.scale, self.margin, self.lam = float(scale), float(margin), float(lam)

    def forward(self, u: torch.Tensor, class_vectors: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if u.ndim != 2 or class_vectors.ndim != 2 or u.shape[1] != class_vectors.shape[1] or len(u) != len(y):
            raise ConfigError(f"ADSH needs outputs (n, K), class vectors (C, K) and n labels; got {tuple(u.shape)}, "
                              f"{tuple(class_vectors.shape)} and {len(y)} labels")
        C = class_vectors.shape[0]
        if y.ndim == 1:
            t = torch.nn.functional.one_hot(y.long(), C).to(u.dtype)
        else:
            t = y.to(u.dtype)
            t = t / t.sum(1, keepdim=True).clamp_min(1.0)
        cos = nn.functional.normalize(u, dim=1) @ nn.functional.normalize(class_vectors, dim=1).T
        logits = self.scale * (cos - self.margin * (t > 0).to(u.dtype))
        angular = -(t * torch.log_softmax(logits, dim=1)).sum(1).mean()
        K = u.shape[1]
        quant = (1.0 - u.abs().sum(1) / (K ** 0.5 * u.norm(dim=1).clamp_min(1e-12))).mean()
        return angular + self.lam * quant, {"angular": float(angular.detach()), "quant": float(quant.detach())}
