"""TALR — Hashing as Tie-Aware Learning to Rank (He, Cakir, Bargal & Sclaroff, CVPR 2018), head-only.

Frozen backbone features -> MLP head -> u; the loss is one minus the relaxed *tie-aware* AP of every
batch item ranked against the others by relaxed Hamming distance (:class:`~deephash.losses.TALRLoss`)
— the method optimises the tie-aware mAP that deephash reports. Bits: u >= 0.
"""
from __future__ import annotations

from deephash.hashers._head import HeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.talr_loss import TALRLoss


@register_hasher("talr")
class TALR(HeadHasher):
    family = "implicit (tie-aware ranking)"
    reference = {"map": None, "setting": "paper: CIFAR-10 settings 1 (5,000 training images) and 2 (59,000), "
                 "tie-aware mAP, VGG-F fine-tuned end to end; its figures are not transcribed here (to check "
                 "against the paper's Table 2)"}

    def __init__(self, n_bits: int = 64, *, n_bins: int | None = None, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.n_bins = n_bins

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = TALRLoss(n_bins=self.n_bins)

    def compute_loss(self, net, batch):
        return self.loss_fn_(net(batch["x"]), batch["y"])
