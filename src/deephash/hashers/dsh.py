"""DSH — Deep Supervised Hashing (Liu, Wang, Shan & Chen, CVPR 2016), head-only.

Frozen backbone features -> MLP head -> real outputs b; contrastive loss with margin 2K and the
``| |b| − 1 |`` regulariser (:class:`~deephash.losses.DSHLoss`). Bits: b >= 0.
"""
from __future__ import annotations

from deephash.hashers._head import HeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.dsh_loss import DSHLoss


@register_hasher("dsh")
class DSH(HeadHasher):
    family = "pairwise"
    reference = {"map": 0.6755, "setting": "CIFAR-10, 48 bits, mAP@all, 50,000 training / 10,000 query images, "
                 "network trained from scratch (paper: 0.6157/0.6512/0.6607/0.6755 at 12/24/36/48 bits; "
                 "the aurora paper's table, 1k-query protocol, gives 0.673-0.694 at 12-48 bits)", "checked": "paper figures recalled, not re-read; the aurora range is from methods.md"}

    def __init__(self, n_bits: int = 64, *, margin: float | None = None, alpha: float = 0.01, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.margin, self.alpha = margin, alpha

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = DSHLoss(margin=self.margin, alpha=self.alpha)

    def compute_loss(self, net, batch):
        return self.loss_fn_(net(batch["x"]), batch["y"])
