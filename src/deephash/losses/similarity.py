"""Label similarity for pairwise and triplet losses: the one place that says what "similar" means."""
from __future__ import annotations

import torch

from deephash.errors import ConfigError


def label_similarity(y1: torch.Tensor, y2: torch.Tensor | None = None) -> torch.Tensor:
    """Float ``(n1, n2)`` matrix: 1.0 where two items share a label, else 0.0.

    1-D integer labels: same class. 2-D multi-hot labels: at least one shared label (the usual
    NUS-WIDE / MS-COCO convention, as in :func:`deephash.eval.metrics.relevance_matrix`)."""
    y2 = y1 if y2 is None else y2
    if y1.ndim != y2.ndim or y1.ndim not in (1, 2):
        raise ConfigError(f"labels must both be 1-D class ids or both 2-D multi-hot; got {y1.ndim}-D and {y2.ndim}-D")
    if y1.ndim == 1:
        return (y1[:, None] == y2[None, :]).float()
    return ((y1.float() @ y2.float().T) > 0).float()


def off_diagonal(n: int, device=None) -> torch.Tensor:
    """Bool ``(n, n)`` mask without the diagonal (an item is not its own pair)."""
    return ~torch.eye(n, dtype=torch.bool, device=device)
