"""MHCLN — Metric and Hash-Code Learning Network (Roy et al., IGARSS 2018; seed 000).

Frozen pretrained CNN features -> ``D -> 1024 -> 512 -> K`` (LeakyReLU 0.2, sigmoid), trained
with triplet + push-to-binary + bit-balance losses (lambda1 = 0.001, lambda2 = 1), M = 30
triplets a batch, Adam lr 1e-4 (beta1 0.5, beta2 0.9) as in the authors' code. Bits: v >= 0.5.
``loss_variant="code"`` (default) or ``"paper"``. Measured on CIFAR-10 (64 bits, EfficientNet-Lite0
128 px features, 10,000 training images, 3,000 iterations, 1,000 test queries vs the 50,000 training
images): mAP@1000 0.6475 (code) vs 0.6468 (paper), tie-aware 0.670 vs 0.656 — the code's variant
is the default for its better-separated codes (fewer ties) at the same plain mAP.
"""
from __future__ import annotations

import numpy as np

from deephash.hashers.base import register_hasher
from deephash.hashers.deep import DeepHasher
from deephash.losses.mhcln_loss import MHCLNLoss
from deephash.train.sampling import TripletSampler


def mhcln_network(in_dim: int, n_bits: int):
    from torch import nn

    return nn.Sequential(nn.Linear(in_dim, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 512), nn.LeakyReLU(0.2),
                         nn.Linear(512, n_bits), nn.Sigmoid())


@register_hasher("mhcln")
class MHCLN(DeepHasher):
    family = "triplet (seed: MHCLN)"
    reference = {"map": None, "setting": "paper reports UC Merced / AID mAP@20 only (no CIFAR-10 figure)"}
    # official code: 10k iterations of 30 triplets, Adam(1e-4, 0.5, 0.9)
    default_train = {"n_iters": 10000, "lr": 1e-4, "batch_size": 30, "betas": (0.5, 0.9), "eval_every": 1000,
                     "patience": 3}

    def __init__(self, n_bits: int = 64, *, loss_variant: str = "code", alpha: float | None = None,
                 lambda1: float = 0.001, lambda2: float = 1.0, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.loss_variant, self.alpha, self.lambda1, self.lambda2 = loss_variant, alpha, lambda1, lambda2

    def build_network(self, in_dim: int):
        return mhcln_network(in_dim, self.n_bits)

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = MHCLNLoss(variant=self.loss_variant, alpha=self.alpha, lambda1=self.lambda1, lambda2=self.lambda2)
        self.sampler_ = TripletSampler(np.asarray(y), rng)

    def sampler_rng_restore(self, rng):
        self.sampler_.rng = rng

    def sample_batch(self, rng, batch_size):
        import torch

        a, p, n = self.sampler_.sample(batch_size)
        return {"x": self.X_train_[torch.from_numpy(np.concatenate([a, p, n]))], "m": batch_size}

    def compute_loss(self, net, batch):
        v = net(batch["x"])
        m = batch["m"]
        return self.loss_fn_(v[:m], v[m : 2 * m], v[2 * m :])
