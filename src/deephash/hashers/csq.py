"""CSQ — Central Similarity Quantization (Yuan et al., CVPR 2020), head-only.

Each class gets a hash centre (Hadamard rows when K is a power of two and there are at most 2K
classes, Bernoulli codes otherwise; see :func:`~deephash.losses.csq_loss.hash_centres`); the head's
``h = tanh(z)`` is pulled to its class centre by binary cross-entropy plus a quantisation term
(:class:`~deephash.losses.CSQLoss`). Multi-label items aim at the sign of the sum of their
labels' centres (+1 on ties). Bits: z >= 0.
"""
from __future__ import annotations

import numpy as np

from deephash.hashers._head import ClassHeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.csq_loss import CSQLoss, hash_centres


@register_hasher("csq")
class CSQ(ClassHeadHasher):
    family = "classification / hash centres"
    reference = {"map": None, "setting": "the paper reports no CIFAR-10 figure (ImageNet-100 mAP@1000 "
                 "0.851/0.865/0.873 at 16/32/64 bits; NUS-WIDE, MS-COCO)", "checked": "recalled, not re-read"}

    def __init__(self, n_bits: int = 64, *, lam: float = 1e-4, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.lam = lam

    def prepare(self, X, y, rng):
        import torch

        super().prepare(X, y, rng)
        self.centres_ = torch.from_numpy(hash_centres(self.n_classes_, self.n_bits, np.random.default_rng(self.seed)))
        self.loss_fn_ = CSQLoss(lam=self.lam)

    def targets(self, y):
        """Each item's centre: its class's, or for multi-hot labels the sign of the sum (+1 on ties)."""
        import torch

        if y.ndim == 1:
            return self.centres_[y]
        s = y.float() @ self.centres_
        return torch.where(s >= 0, 1.0, -1.0)

    def compute_loss(self, net, batch):
        import torch

        return self.loss_fn_(torch.tanh(net(batch["x"])), self.targets(batch["y"]))
