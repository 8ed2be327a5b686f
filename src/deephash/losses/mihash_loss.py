"""MIHash — Hashing with Mutual Information (Cakir, He, Bargal & Sclaroff, ICCV 2017 / TPAMI 2019).

For every item ``i`` of a batch (the query), the Hamming distances to the other items form two
distributions: to its neighbours (``C = +``, sharing a label) and to its non-neighbours (``C = −``).
MIHash maximises the mutual information between the distance ``D`` and the neighbour indicator ``C``:

    I_i(D; C) = H(D) − p(+) H(D | +) − p(−) H(D | −)

so the two distance distributions separate, with no margin and no pair or triplet target. Both the
distances and the distributions are relaxed to be differentiable:

- relaxed codes ``φ = tanh(u)`` in (−1, 1), distances ``d_ij = (K − φ_i·φ_j) / 2`` in [0, K];
- the histogram over bin centres ``c_l = l Δ`` (``l = 0..L``, ``Δ = K / n_bins``) counts each
  distance with the triangular kernel ``δ(d, c_l) = max(0, 1 − |d − c_l| / Δ)`` (the kernels of the
  ``L + 1`` centres sum to one for every ``d`` in [0, K], so each pair is counted once);
- ``p(D | ±)`` are the neighbour / non-neighbour histograms normalised to sum one, ``p(+)`` the
  fraction of neighbours among the ``n − 1`` other items, ``p(D) = (h⁺ + h⁻) / (n − 1)``.

Entropies in bits (``0 log 0 = 0``). The loss is ``− mean_i I_i``; its floor is −1 (a perfect
separation with equal priors). Relevance comes from :func:`label_similarity` (multi-label: one shared
label). Paper defaults: 16 bins (the authors' code, ``opts.nbins``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from deephash.errors import ConfigError
from deephash.losses.similarity import label_similarity, off_diagonal


def soft_histogram(d: torch.Tensor, weight: torch.Tensor, n_bits: int, n_bins: int) -> torch.Tensor:
    """Per row ``i``, ``Σ_j weight_ij δ(d_ij, c_l)`` for the bin centres ``c_l = l Δ`` (``l = 0..n_bins``,
    ``Δ = n_bits / n_bins``) with the triangular kernel ``δ(d, c) = max(0, 1 − |d − c| / Δ)``: ``(n, n_bins + 1)``.

    A distance in [0, n_bits] falls between two adjacent centres and is split between them linearly
    (the kernels of all centres sum to one), so the histogram is two scatter-adds, O(n²) rather than
    O(n² · n_bins); its gradient is the kernel's."""
    pos = d / (n_bits / n_bins)
    lo = pos.detach().floor().clamp(0, n_bins - 1)
    frac = pos - lo                                   # in [0, 1]; carries the gradient
    lo = lo.long()
    out = torch.zeros(d.shape[0], n_bins + 1, dtype=d.dtype, device=d.device)
    out = out.scatter_add(1, lo, weight * (1.0 - frac))
    return out.scatter_add(1, lo + 1, weight * frac)


def entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """``−Σ p log2 p`` over the last axis, with ``0 log 0 = 0`` (and a finite gradient at 0)."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1) / math.log(2.0)


class MIHashLoss(nn.Module):
    def __init__(self, *, n_bins: int = 16) -> None:
        super().__init__()
        if int(n_bins) != n_bins or n_bins < 1:
            raise ConfigError(f"MIHash n_bins must be a positive integer; got {n_bins}")
        self.n_bins = int(n_bins)

    def forward(self, u: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict]:
        if u.ndim != 2 or len(u) != len(y) or len(u) < 3:
            raise ConfigError(f"MIHash needs outputs (n >= 3, K) and n labels; got {tuple(u.shape)} and {len(y)} labels")
        n, K = u.shape
        phi = torch.tanh(u)
        d = (0.5 * (K - phi @ phi.T)).clamp(0.0, float(K))
        s = label_similarity(y).to(torch.bool)
        pos = (s & off_diagonal(n, u.device)).to(u.dtype)
        neg = (~s).to(u.dtype)
        h_pos = soft_histogram(d, pos, K, self.n_bins)              # (n, n_bins + 1)
        h_neg = soft_histogram(d, neg, K, self.n_bins)
        p_pos = pos.sum(1) / (n - 1)
        p_d = (h_pos + h_neg) / (n - 1)
        p_d_pos = h_pos / h_pos.sum(1, keepdim=True).clamp_min(1e-12)
        p_d_neg = h_neg / h_neg.sum(1, keepdim=True).clamp_min(1e-12)
        mi = entropy_bits(p_d) - p_pos * entropy_bits(p_d_pos) - (1 - p_pos) * entropy_bits(p_d_neg)
        loss = -mi.mean()
        return loss, {"mi": float(mi.detach().mean())}
