"""Deep hashing with spatial pyramid pooling and power-mean transformation (the aurora paper;
seed 003, digest section 4).

End to end (:meth:`build_trunk`): the backbone's last conv maps go through spatial pyramid
pooling (max-pooling over 1x1, 2x2 and 4x4 grids, so regions at several scales reach the fully
connected layers); the head applies the power-mean transformation, a fully connected layer,
the **hash layer** (K linear units: the code is their sign) and the classification layer on
top of the hash layer. Multi-task loss: softmax cross-entropy of the classifier + the pairwise
likelihood of the hash layer (DPSH-style, same label = similar) + a small quantisation term
(:class:`~deephash.losses.DPSHLoss`, the same likelihood DPSH uses). The model classifies too: :meth:`classify`.

Head-only (cached pooled features): SPP acts on conv maps, so it is dropped -- the pooled
feature is the pyramid's 1x1 level (average- rather than max-pooled); PMT, the FC layer, the
hash layer, the classifier and the multi-task loss are all kept.

Our reading of parts the seed only names:
- PMT (Zhang & Wu, Pattern Recognition 2019) maps each non-negative input ``x`` to the pair
  ``(log(x + beta), (x + beta)^alpha - 1)`` with ``alpha = 0.5, beta = 1`` (so 0 -> 0), doubling
  the width; for signed inputs (e.g. an ONNX backbone's) we apply it to ``|x|`` and restore the sign.
- Before the pyramid a 1x1 conv (+BN, ReLU) reduces the backbone's 1280 channels to
  ``spp_channels`` (64): a 1280x21-wide pyramid (x2 after PMT) would put ~54k inputs into the
  FC layer, and a checkpoint of ~120 MB. The
  paper likewise shrinks AlexNet's parameters in its "Im-AlexNet-SP".
- Loss weights (``pair_weight`` 1, ``quantization`` 0.1) and the FC width (1024) are ours; the
  seed gives none.
"""
from __future__ import annotations

import numpy as np

from deephash.hashers._labels import ClassifierMixin
from deephash.hashers.base import register_hasher
from deephash.hashers.deep import DeepHasher
from deephash.losses.dpsh_loss import DPSHLoss


def power_mean_transform(x, alpha: float = 0.5, beta: float = 1.0):
    """``[sign(x) log(|x| + beta) - log(beta)... ]``: see the module docstring; output width 2 * input."""
    import math

    import torch

    a = x.abs().float()
    sgn = torch.sign(x.float())
    lg = torch.log(a + beta) - math.log(beta)
    pw = (a + beta) ** alpha - beta**alpha
    return torch.cat([sgn * lg, sgn * pw], dim=1)


def spp_pmt_head(in_dim: int, n_bits: int, n_classes: int, hidden: int, dropout: float, alpha: float, beta: float):
    from torch import nn

    class SPPPMTHead(nn.Module):
        """PMT -> FC (ReLU, dropout) -> hash layer u (K) -> classifier; returns (u, logits)."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Sequential(nn.Linear(2 * in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
            self.hash = nn.Linear(hidden, n_bits)
            self.classifier = nn.Linear(n_bits, n_classes)

        def forward(self, x):
            u = self.hash(self.fc(power_mean_transform(x, alpha, beta)))
            return u, self.classifier(u)

    return SPPPMTHead()


def spp_trunk(base, channels: int, levels: tuple[int, ...]):
    """Backbone conv maps -> 1x1 conv reduction -> spatial pyramid max-pooling -> flat vector."""
    import torch
    from torch import nn

    class SPPTrunk(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = base
            self.reduce = nn.Sequential(nn.Conv2d(int(base.map_channels), channels, 1, bias=False),
                                        nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
            self.levels = tuple(int(v) for v in levels)
            self.out_dim = channels * sum(v * v for v in self.levels)

        def forward(self, x):
            m = self.reduce(self.base.forward_maps(x))
            return torch.cat([nn.functional.adaptive_max_pool2d(m, v).flatten(1) for v in self.levels], dim=1).float()

    return SPPTrunk()


@register_hasher("spp-pmt")
class SPPPMT(ClassifierMixin, DeepHasher):
    family = "pairwise + classification, multi-task (seed: aurora SPP-PMT)"
    reference = {"map": 0.907, "setting": "CIFAR-10 mAP at 48 bits (paper Table 6: 0.902 / 0.904 / 0.912 / 0.907 at "
                                          "12 / 24 / 32 / 48 bits; the seed does not state the protocol)"}
    threshold = 0.0
    default_train = {"n_iters": 3000, "lr": 1e-3, "batch_size": 128, "optimizer": "adam", "weight_decay": 1e-5,
                     "eval_every": 500, "patience": 3}

    def __init__(self, n_bits: int = 64, *, hidden: int = 1024, dropout: float = 0.3, pair_weight: float = 1.0,
                 quantization: float = 0.1, pmt_alpha: float = 0.5, pmt_beta: float = 1.0,
                 spp_levels: tuple[int, ...] = (1, 2, 4), spp_channels: int = 64, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.hidden, self.dropout, self.pair_weight, self.quantization = hidden, dropout, pair_weight, quantization
        self.pmt_alpha, self.pmt_beta = pmt_alpha, pmt_beta
        self.spp_levels, self.spp_channels = tuple(spp_levels), spp_channels

    def build_network(self, in_dim: int):
        return spp_pmt_head(in_dim, self.n_bits, self.n_classes_, self.hidden, self.dropout, self.pmt_alpha, self.pmt_beta)

    def build_trunk(self, base):
        return spp_trunk(base, self.spp_channels, self.spp_levels)

    def prepare(self, X, y, rng):
        super().prepare(X, self._encode_labels(y), rng)
        self.loss_fn_ = DPSHLoss(eta=self.quantization)

    def compute_loss(self, net, batch):
        u, logits = net(batch["x"])
        ce = self.class_loss(logits, batch["y"])
        pair, logs = self.loss_fn_(u.float(), batch["y"])  # fp32 pair terms under bf16 autocast
        return ce + self.pair_weight * pair, {"ce": float(ce.detach()), **logs}

    def forward_activations(self, net, x):
        return net(x)[0]

    def rerank_features(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, np.float32)
