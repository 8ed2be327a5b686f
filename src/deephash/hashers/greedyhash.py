"""GreedyHash (Su, Zhang, Huang & Tian, NeurIPS 2018), supervised, head-only.

Frozen backbone features -> MLP head -> h; ``sign(h)`` in the forward pass with the gradient
passed straight through, a linear classifier on the codes, and a ``| |h| − 1 |³`` penalty
(:class:`~deephash.losses.GreedyHashLoss`). Bits: h >= 0.
"""
from __future__ import annotations

from deephash.hashers._head import ClassHeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.greedyhash_loss import GreedyHashLoss, sign_ste


def _net(head, n_bits: int, n_classes: int):
    from torch import nn

    class GreedyHashNet(nn.Module):
        """``forward`` gives h; ``classifier`` maps codes to class scores (training only)."""

        def __init__(self) -> None:
            super().__init__()
            self.head = head
            self.classifier = nn.Linear(n_bits, n_classes, bias=False)

        def forward(self, x):
            return self.head(x)

    return GreedyHashNet()


@register_hasher("greedyhash")
class GreedyHash(ClassHeadHasher):
    family = "classification / hash centres"
    reference = {"map": None, "setting": "CIFAR-10 figures in the paper use end-to-end VGG16 and the 1k-query "
                 "protocols; not transcribed here (to check against the paper's Table 2)"}

    def __init__(self, n_bits: int = 64, *, alpha: float = 0.1, p: float = 3.0, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.alpha, self.p = alpha, p

    def build_network(self, in_dim):
        return _net(self.head(in_dim), self.n_bits, self.n_classes_)

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = GreedyHashLoss(alpha=self.alpha, p=self.p)

    def compute_loss(self, net, batch):
        h = net(batch["x"])
        return self.loss_fn_(h, net.classifier(sign_ste(h)), batch["y"])
