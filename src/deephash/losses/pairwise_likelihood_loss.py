"""Pairwise likelihood loss on hash-layer outputs (DPSH-style; the aurora SPP-PMT paper's
hash-layer loss, methods digest section 4).

For real-valued hash-layer outputs ``u`` (n, K) and pair similarities ``s_ij`` (same label,
or at least one shared label), with ``theta_ij = 1/2 u_i . u_j``:

- likelihood: ``mean_{i != j} [ log(1 + exp(theta_ij)) - s_ij * theta_ij ]``
  (the negative log-likelihood of ``p(s_ij | u) = sigmoid(theta_ij)^s (1 - sigmoid(theta_ij))^(1-s)``),
- quantisation: ``mean_i ||u_i - sign(u_i)||^2 / K``, weighted by ``quantization``.

DPSH sums over all pairs; we average over the ordered pairs of the mini-batch (and the
quantisation term over codes and bits), so the weights do not depend on the batch size or K.
"""
from __future__ import annotations

import torch
from torch import nn

from deephash.errors import ConfigError


def pair_similarity(y: torch.Tensor) -> torch.Tensor:
    """``(n, n)`` float 0/1: same label for 1-D int labels, a shared label for multi-hot."""
    if y.ndim == 1:
        return (y[:, None] == y[None, :]).float()
    yf = y.float()
    return ((yf @ yf.T) > 0).float()


class PairwiseLikelihoodLoss(nn.Module):
    def __init__(self, *, quantization: float = 0.1) -> None:
        super().__init__()
        if quantization < 0:
            raise ConfigError(f"quantization weight must be >= 0; got {quantization}")
        self.quantization = float(quantization)

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if u.ndim != 2 or len(u) != len(y):
            raise ConfigError(f"need hash outputs (n, K) and n labels; got {tuple(u.shape)} and {len(y)} labels")
        n, K = u.shape
        u = u.float()
        s = pair_similarity(y)
        theta = 0.5 * (u @ u.T)
        off = ~torch.eye(n, dtype=torch.bool, device=u.device)
        nll = (nn.functional.softplus(theta) - s * theta)[off].mean() if n > 1 else u.sum() * 0.0
        quant = ((u - torch.sign(u).detach()) ** 2).sum(dim=1).mean() / K
        total = nll + self.quantization * quant
        return total, {"pairwise": float(nll.detach()), "quantization": float(quant.detach())}
