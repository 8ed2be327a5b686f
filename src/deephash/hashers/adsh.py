"""ADSH — Angular Deep Supervised Hashing (Zhou et al., IEEE Access 2019), head-only.

The survey's implicit-family "ADSH" is this angular method (not Asymmetric Deep Supervised Hashing).
Frozen backbone features -> MLP head -> u; a large-margin cosine softmax between ``u / ‖u‖`` and
learned unit class vectors, plus an angular quantisation term (:class:`~deephash.losses.ADSHLoss`).
Bits: u >= 0 (the sign, whose Hamming distance is a function of the angle).
"""
from __future__ import annotations

from deephash.hashers._head import ClassHeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.adsh_loss import ADSHLoss


def _net(head, n_bits: int, n_classes: int):
    import torch
    from torch import nn

    class ADSHNet(nn.Module):
        """``forward`` gives u; ``class_vectors`` (C, K) are the training-only class directions."""

        def __init__(self) -> None:
            super().__init__()
            self.head = head
            self.class_vectors = nn.Parameter(torch.randn(n_classes, n_bits) / n_bits ** 0.5)

        def forward(self, x):
            return self.head(x)

    return ADSHNet()


@register_hasher("adsh")
class ADSH(ClassHeadHasher):
    family = "implicit (angular)"
    reference = {"map": None, "setting": "paper: CIFAR-10 and NUS-WIDE with an end-to-end CNN; its figures are not "
                 "transcribed here (paper not re-read)"}

    def __init__(self, n_bits: int = 64, *, scale: float = 16.0, margin: float = 0.3, lam: float = 0.1, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.scale, self.margin, self.lam = scale, margin, lam

    def build_network(self, in_dim):
        return _net(self.head(in_dim), self.n_bits, self.n_classes_)

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = ADSHLoss(scale=self.scale, margin=self.margin, lam=self.lam)

    def compute_loss(self, net, batch):
        return self.loss_fn_(net(batch["x"]), net.class_vectors, batch["y"])
