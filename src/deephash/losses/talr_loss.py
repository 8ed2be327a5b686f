"""TALR — Hashing as Tie-Aware Learning to Rank (He, Cakir, Bargal & Sclaroff, CVPR 2018), AP form.

Hamming distances are integers, so a ranking by them has ties; TALR optimises the *tie-aware* AP
(the expected AP over random orders within each tie, the metric deephash reports as tie-aware mAP)
through a continuous relaxation. Every item of a batch is a query against the others:

- relaxed codes ``φ = tanh(u)``, distances ``d_ij = (K − φ_i·φ_j) / 2`` in [0, K];
- counts per distance value with the triangular kernel on bin centres ``0, Δ, …, K``
  (``Δ = K / n_bins``; the default ``n_bins = K`` gives one bin per Hamming distance):
  ``c⁺_l`` neighbours and ``c_l`` all items at distance ``≈ c_l``; ``C⁺_l``, ``C_l`` their cumulative
  sums (``C_{−1} = 0``);
- the tie-aware AP in the simplified closed form of the paper's appendix (the authors' ``apr_s``):
  the precision of a neighbour in tie group ``l`` is taken at the middle of the group,

      AP_i = (1 / N⁺_i) Σ_l c⁺_l (C⁺_{l−1} + C⁺_l + 1) / (C_{l−1} + C_l + 1),

  exact for hard codes up to that mid-group approximation.

The loss is ``1 − mean AP_i`` over the queries with at least one neighbour in the batch (a query with
none has no AP; a batch without any neighbour pair gives a zero loss). Relevance: :func:`label_similarity`.
"""
from __future__ import annotations

import torch
from torch import nn

from deephash.errors import ConfigError
from deephash.losses.mihash_loss import soft_histogram
from deephash.losses.similarity import label_similarity, off_diagonal


class TALRLoss(nn.Module):
    def __init__(self, *, n_bins: int | None = None) -> None:
        super().__init__()
        if n_bins is not None and (int(n_bins) != n_bins or n_bins < 1):
            raise ConfigError(f"TALR n_bins must be a positive integer (default: one bin per Hamming distance); got {n_bins}")
        self.n_bins = None if n_bins is None else int(n_bins)

    def tie_aware_ap(self, u: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Relaxed tie-aware AP of every item against the others ``(n,)`` and which items have a neighbour."""
        n, K = u.shape
        phi = torch.tanh(u)
        d = (0.5 * (K - phi @ phi.T)).clamp(0.0, float(K))
        s = label_similarity(y).to(torch.bool)
        off = off_diagonal(n, u.device)
        pos = (s & off).to(u.dtype)
        others = off.to(u.dtype)
        c_pos = soft_histogram(d, pos, K, self.n_bins or K)         # (n, n_bins + 1)
        c_all = soft_histogram(d, others, K, self.n_bins or K)
        C_pos, C_all = c_pos.cumsum(1), c_all.cumsum(1)
        C_pos_prev = torch.nn.functional.pad(C_pos[:, :-1], (1, 0))
        C_all_prev = torch.nn.functional.pad(C_all[:, :-1], (1, 0))
        n_pos = pos.sum(1)
        ap = (c_pos * (C_pos_prev + C_pos + 1) / (C_all_prev + C_all + 1)).sum(1) / n_pos.clamp_min(1.0)
        return ap, n_pos > 0

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if u.ndim != 2 or len(u) != len(y) or len(u) < 2:
            raise ConfigError(f"TALR needs outputs (n >= 2, K) and n labels; got {tuple(u.shape)} and {len(y)} labels")
        ap, has = self.tie_aware_ap(u, y)
        if not bool(has.any()):  # no query has a neighbour in this batch: nothing to rank, no gradient
            return (u * 0.0).sum(), {"ap": float("nan")}
        m = ap[has].mean()
        return 1.0 - m, {"ap": float(m.detach())}
