"""DPQ-style deep product quantisation (after Klein & Wolf, CVPR 2019), supervised, head-only.

Frozen backbone features -> MLP head -> embedding z (n_bits dims) cut into M = n_bits/8
sub-vectors of 8 dims; each has a codebook of 256 codewords, learned with soft assignments and a
classifier on the soft and hard reconstructions (:class:`~deephash.losses.DPQLoss`).

**These codes are not Hamming codes.** ``encode`` gives M bytes per item, byte m = the index of
the nearest codeword in codebook m (so n_bits = 8M, the same storage as an n_bits hash code), and
the Hamming distance between two such codes means nothing. Ranking uses the asymmetric distance
(:meth:`DPQ.query_distances`): the query stays a float embedding and its distance to a database
item is ``Σ_m ‖z_m − C_m[code_m]‖²``, read from a (M, 256) table per query. deephash's
:class:`~deephash.index.HashIndex` searches Hamming codes only and cannot search these codes;
use ``query_distances`` (exhaustive, as in the evaluation) until the index grows a PQ searcher
(FAISS's ``IndexPQ`` takes exactly this layout).
"""
from __future__ import annotations

from deephash.errors import ConfigError
from deephash.hashers._quantiser import N_CODEWORDS, SUB_DIM, QuantHeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.dpq_loss import DPQLoss, soft_assign

__all__ = ["DPQ", "N_CODEWORDS", "SUB_DIM"]


@register_hasher("dpq")
class DPQ(QuantHeadHasher):
    extra_name = "classifier"
    reference = {"map": None, "setting": "paper: CIFAR-10 with end-to-end networks; figure not transcribed here "
                 "(to check against the paper's tables)"}

    def __init__(self, n_bits: int = 64, *, temperature: float = 1.0, lambda_c: float = 0.1, lambda_g: float = 0.1,
                 **kw) -> None:
        super().__init__(n_bits, **kw)
        self.temperature, self.lambda_c, self.lambda_g = temperature, lambda_c, lambda_g

    def _validate(self):
        super()._validate()
        if self.temperature <= 0:
            raise ConfigError(f"DPQ temperature must be > 0; got {self.temperature}")

    def extra_module(self):
        from torch import nn

        return nn.Linear(self.embed_dim, self.n_classes_)  # the classifier (training only)

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = DPQLoss(lambda_c=self.lambda_c, lambda_g=self.lambda_g)

    def compute_loss(self, net, batch):
        z = net(batch["x"])
        p, soft, hard, _ = soft_assign(z, net.codebooks, self.temperature)
        return self.loss_fn_(p, soft, hard, net.classifier(soft), net.classifier(hard), batch["y"])
