"""DPSH — Deep Pairwise-Supervised Hashing (Li, Wang & Kang, IJCAI 2016), head-only.

Frozen backbone features -> MLP head -> real outputs u; pairwise likelihood with Θ = ½uᵀv plus a
quantisation term (:class:`~deephash.losses.DPSHLoss`). Bits: u >= 0.
"""
from __future__ import annotations

from deephash.hashers._head import HeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.dpsh_loss import DPSHLoss


@register_hasher("dpsh")
class DPSH(HeadHasher):
    family = "pairwise"
    reference = {"map": 0.757, "setting": "CIFAR-10, 48 bits, mAP@all, 1,000 queries (100/class), 5,000 training "
                 "images (500/class), the rest the database; end-to-end CNN-F (paper Table 1: 0.713/0.727/0.744/0.757 "
                 "at 12/24/32/48 bits)", "checked": "agrees with the aurora paper's table in methods.md"}

    # measured on CIFAR-10 / Lite0 features, 64 bits (docs/survey-methods.md): lr 1e-3 for 1,500
    # iterations 0.730 mAP@1000; lr 3e-4 for 2,500 iterations 0.759 (eta 0.5: 0.749, eta 1.0: 0.724)
    default_train = {**HeadHasher.default_train, "lr": 3e-4, "n_iters": 2500}

    def __init__(self, n_bits: int = 64, *, eta: float = 0.1, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.eta = eta

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = DPSHLoss(eta=self.eta)

    def compute_loss(self, net, batch):
        return self.loss_fn_(net(batch["x"]), batch["y"])
