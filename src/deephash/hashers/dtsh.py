"""DTSH — Deep Supervised Hashing with Triplet Labels (Wang, Shi & Kitani, ACCV 2016), head-only.

Frozen backbone features -> MLP head -> real outputs u; the triplet likelihood with inner products
over every triplet of the mini-batch plus a quantisation term (:class:`~deephash.losses.DTSHLoss`).
Bits: u >= 0. Batches are smaller than the pairwise methods' (the triplet count grows as n³).
"""
from __future__ import annotations

from deephash.hashers._head import HeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.dtsh_loss import DTSHLoss


@register_hasher("dtsh")
class DTSH(HeadHasher):
    family = "triplet"
    reference = {"map": 0.774, "setting": "CIFAR-10, 48 bits, mAP@all, 1,000 queries / 5,000 training images, "
                 "end-to-end CNN-F (paper: 0.710/0.750/0.765/0.774 at 12/24/32/48 bits; 0.915-0.926 with "
                 "50,000 training / 10,000 query images)", "checked": "recalled, not re-read"}
    default_train = {**HeadHasher.default_train, "batch_size": 128}

    def __init__(self, n_bits: int = 64, *, alpha: float | None = None, lam: float = 0.1, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.alpha, self.lam = alpha, lam

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = DTSHLoss(alpha=self.alpha, lam=self.lam)

    def compute_loss(self, net, batch):
        return self.loss_fn_(net(batch["x"]), batch["y"])
