"""MIHash — Hashing with Mutual Information (Cakir, He, Bargal & Sclaroff, TPAMI 2019), head-only.

Frozen backbone features -> MLP head -> u; the loss maximises, for every item of the batch, the
mutual information between the relaxed Hamming distance to the other items and whether they are
neighbours (:class:`~deephash.losses.MIHashLoss`, differentiable histograms). Bits: u >= 0.
"""
from __future__ import annotations

from deephash.hashers._head import HeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.mihash_loss import MIHashLoss


@register_hasher("mihash")
class MIHash(HeadHasher):
    family = "implicit (mutual information)"
    reference = {"map": None, "setting": "paper: CIFAR-10 'setting 1' (1,000 queries, 5,000 training images, the rest "
                 "the database, mAP@all) and 'setting 2' (59,000 training images), VGG-F fine-tuned end to end; its "
                 "figures could not be read from this offline machine, so none is stated"}

    def __init__(self, n_bits: int = 64, *, n_bins: int = 16, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.n_bins = n_bins

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = MIHashLoss(n_bins=self.n_bins)

    def compute_loss(self, net, batch):
        return self.loss_fn_(net(batch["x"]), batch["y"])
