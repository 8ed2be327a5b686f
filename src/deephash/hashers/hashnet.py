"""HashNet (Cao, Long, Wang & Yu, ICCV 2017), head-only.

Frozen backbone features -> MLP head -> z; ``h = tanh(βz)`` with β raised during training
(continuation: ``β = (1 + γ·t)^½`` at iteration t, so tanh approaches sign), and the weighted
pairwise cross-entropy (:class:`~deephash.losses.HashNetLoss`). Bits: z >= 0 (β does not change them).
"""
from __future__ import annotations

from deephash.hashers._head import HeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.hashnet_loss import HashNetLoss


@register_hasher("hashnet")
class HashNet(HeadHasher):
    family = "pairwise"
    reference = {"map": None, "setting": "the paper reports no CIFAR-10 figure (ImageNet-100 mAP@1000 0.5059/0.6306/"
                 "0.6633/0.6835 at 16/32/48/64 bits; NUS-WIDE, MS-COCO)", "checked": "recalled, not re-read"}

    def __init__(self, n_bits: int = 64, *, alpha: float | None = None, beta_gamma: float = 0.005, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.alpha, self.beta_gamma = alpha, beta_gamma

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = HashNetLoss(alpha=self.alpha)
        self.beta_ = 1.0

    def after_step(self, net, it):
        self.beta_ = (1.0 + self.beta_gamma * (it + 1)) ** 0.5

    def compute_loss(self, net, batch):
        import torch

        loss, logs = self.loss_fn_(torch.tanh(self.beta_ * net(batch["x"])), batch["y"])
        return loss, {**logs, "beta": self.beta_}

    def extra_state(self):
        return {"beta": float(getattr(self, "beta_", 1.0))}

    def load_extra_state(self, state):
        if "beta" in state:
            self.beta_ = float(state["beta"])
