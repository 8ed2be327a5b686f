"""DQN (Cao et al., AAAI 2016): deep quantisation network, supervised, head-only.

Frozen backbone features -> MLP head -> ``tanh`` embedding z (n_bits dims), cut into M = n_bits/8
sub-vectors of 8 dims quantised by M codebooks of 256 codewords (product quantisation); the pairwise
cosine loss plus the quantisation error (:class:`~deephash.losses.DQNLoss`) trains head and codebooks
together. Codes are M bytes (the nearest codeword per sub-space), ranked by asymmetric distance like
DPQ's (:class:`~deephash.hashers._quantiser.QuantHeadHasher`) — not Hamming codes.
"""
from __future__ import annotations

from deephash.hashers._quantiser import QuantHeadHasher, reconstruct
from deephash.hashers.base import register_hasher
from deephash.losses.dqn_loss import DQNLoss


@register_hasher("dqn")
class DQN(QuantHeadHasher):
    reference = {"map": None, "setting": "paper: CIFAR-10, 1,000 queries (100/class), 5,000 training images, the rest as "
                 "database, mAP@54k, fine-tuned AlexNet; figure not transcribed here (to check against the paper's tables)"}

    def __init__(self, n_bits: int = 64, *, lambda_q: float = 0.1, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.lambda_q = lambda_q

    def embed(self, net, x):
        import torch

        return torch.tanh(net(x))

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = DQNLoss(lambda_q=self.lambda_q)

    def compute_loss(self, net, batch):
        z = self.embed(net, batch["x"])
        recon = reconstruct(net.codebooks, self.assign(z.detach(), net.codebooks.detach()), additive=False)
        return self.loss_fn_(z, recon, batch["y"])
