"""Bi-half (Li & van Gemert, AAAI 2021): unsupervised, head-only — for archives without labels.

Frozen backbone features -> MLP head -> U; in training the bi-half layer codes every bit +1 for
the larger half of the batch and −1 for the rest (maximum bit entropy), gradients pass straight
through with a pull ``γ(U − B)`` (:func:`~deephash.losses.bihalf`), and the loss keeps the cosine
similarities of the (training-mean-centred) features in the codes (:class:`~deephash.losses.BiHalfLoss`).
γ is divided by the batch size; 0.01 measured best of {0, 0.01, 0.1·linear head} on CIFAR-10
(0.58 / 0.28 / 0.54 mAP@1000 at 64 bits; larger values let the pull swamp the loss's gradient and
the codes stay close to their random start). At encoding time the half-half split of a batch is replaced by the training set's per-bit median:
bit = U − median >= 0, so every bit is balanced on the training data.
"""
from __future__ import annotations

import numpy as np

from deephash.hashers._head import HeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.bihalf_loss import BiHalfLoss, bihalf


@register_hasher("bihalf")
class BiHalf(HeadHasher):
    family = "unsupervised"
    supervised = False
    reference = {"map": None, "setting": "paper: CIFAR-10 with VGG16 features, 1k-query protocol, mAP@1000; "
                 "figure not transcribed here (to check against the paper's tables)"}
    default_train = {**HeadHasher.default_train, "n_iters": 800}

    def __init__(self, n_bits: int = 64, *, gamma: float = 0.01, centre: bool = True, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.gamma, self.centre = gamma, centre

    def prepare(self, X, y, rng):
        super().prepare(X, None, rng)
        self.feat_mean_ = self.X_train_.mean(0) if self.centre else self.X_train_.new_zeros(X.shape[1])
        self.loss_fn_ = BiHalfLoss()

    def compute_loss(self, net, batch):
        x = batch["x"]
        b = bihalf(net(x), self.gamma / len(x))
        return self.loss_fn_(x - self.feat_mean_.to(x.device), b)

    def fit(self, X, y=None, **kw):
        import torch

        self.offset_ = None
        super().fit(X, None, **kw)
        self.offset_ = torch.from_numpy(np.median(self.transform(X), axis=0).astype(np.float32))
        return self

    def forward_activations(self, net, x):
        u = net(x)
        off = getattr(self, "offset_", None)
        return u if off is None else u - off.to(u.device)

    def extra_state(self):
        import torch

        off = getattr(self, "offset_", None)
        return {"offset": off if off is not None else torch.zeros(self.n_bits)}

    def load_extra_state(self, state):
        import torch

        if "offset" in state:
            self.offset_ = torch.as_tensor(np.asarray(state["offset"]), dtype=torch.float32)
