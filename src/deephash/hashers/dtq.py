"""DTQ (Liu et al., ACM MM 2018): deep triplet quantisation, supervised, head-only.

Frozen backbone features -> MLP head -> ``tanh`` embedding z (n_bits dims), quantised *additively* by
M = n_bits/8 codebooks of 256 full-width codewords (``ẑ = Σ_m C_m[b_m]``) kept weakly orthogonal; a
triplet loss on the embeddings, the quantisation error and the orthogonality penalty
(:class:`~deephash.losses.DTQLoss`) train head and codebooks together. Codes are M bytes (greedy
residual assignment + ICM), ranked by the exact asymmetric distance of the additive layout
(:class:`~deephash.hashers._quantiser.QuantHeadHasher`) — not Hamming codes.
"""
from __future__ import annotations

from deephash.errors import ConfigError
from deephash.hashers._quantiser import QuantHeadHasher, reconstruct
from deephash.hashers.base import register_hasher
from deephash.losses.dtq_loss import DTQLoss


@register_hasher("dtq")
class DTQ(QuantHeadHasher):
    additive = True
    reference = {"map": None, "setting": "paper: CIFAR-10, 1,000 queries (100/class), 5,000 training images, the rest as "
                 "database, mAP@54k, fine-tuned AlexNet; figure not transcribed here (to check against the paper's tables)"}

    def __init__(self, n_bits: int = 64, *, margin: float = 0.5, lambda_q: float = 0.1, gamma: float = 0.1,
                 **kw) -> None:
        # every triplet of the batch is formed (n³): 128 images keep a step near a second on a 2-core
        # CPU, where the Trainer's usual 256 took minutes per evaluation window
        kw["batch_size"] = kw.get("batch_size") or 128
        super().__init__(n_bits, **kw)
        self.margin, self.lambda_q, self.gamma = margin, lambda_q, gamma

    def _validate(self):
        super()._validate()
        if self.margin <= 0:
            raise ConfigError(f"DTQ margin must be > 0; got {self.margin}")

    def embed(self, net, x):
        import torch

        return torch.tanh(net(x))

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = DTQLoss(margin=self.margin, lambda_q=self.lambda_q, gamma=self.gamma)

    def compute_loss(self, net, batch):
        z = self.embed(net, batch["x"])
        recon = reconstruct(net.codebooks, self.assign(z.detach(), net.codebooks.detach()), additive=True)
        return self.loss_fn_(z, recon, net.codebooks, batch["y"])
