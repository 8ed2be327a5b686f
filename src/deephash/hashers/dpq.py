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

import numpy as np

from deephash.errors import ConfigError
from deephash.hashers._head import ClassHeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.dpq_loss import DPQLoss, soft_assign, subspace_distances

N_CODEWORDS = 256
SUB_DIM = 8


def _net(head, n_sub: int, n_classes: int):
    import torch
    from torch import nn

    class DPQNet(nn.Module):
        """``forward`` gives the embedding; ``codebooks`` (M, 256, 8); ``classifier`` (training only)."""

        def __init__(self) -> None:
            super().__init__()
            self.head = head
            self.codebooks = nn.Parameter(torch.randn(n_sub, N_CODEWORDS, SUB_DIM) * 0.1)
            self.classifier = nn.Linear(n_sub * SUB_DIM, n_classes)

        def forward(self, x):
            return self.head(x)

    return DPQNet()


@register_hasher("dpq")
class DPQ(ClassHeadHasher):
    family = "quantization"
    code_kind = "pq"  # M bytes of codeword indices, ranked by asymmetric distance — not Hamming codes
    reference = {"map": None, "setting": "paper: CIFAR-10 with end-to-end networks; figure not transcribed here "
                 "(to check against the paper's tables)"}

    def __init__(self, n_bits: int = 64, *, temperature: float = 1.0, lambda_c: float = 0.1, lambda_g: float = 0.1,
                 **kw) -> None:
        super().__init__(n_bits, **kw)
        self.temperature, self.lambda_c, self.lambda_g = temperature, lambda_c, lambda_g

    @property
    def n_sub(self) -> int:
        return self.n_bits // 8

    def _validate(self):
        super()._validate()
        if self.temperature <= 0:
            raise ConfigError(f"DPQ temperature must be > 0; got {self.temperature}")

    def build_network(self, in_dim):
        return _net(self.head(in_dim, self.n_sub * SUB_DIM), self.n_sub, self.n_classes_)

    def prepare(self, X, y, rng):
        import torch

        super().prepare(X, y, rng)
        self.loss_fn_ = DPQLoss(lambda_c=self.lambda_c, lambda_g=self.lambda_g)
        # codewords start at the sub-vectors of random training embeddings
        with torch.no_grad():
            self.net_.eval()
            idx = rng.choice(len(self.X_train_), size=min(len(self.X_train_), N_CODEWORDS), replace=False)
            z = self.net_(self.X_train_[idx]).reshape(len(idx), self.n_sub, SUB_DIM)
            cb = self.net_.codebooks.data
            for m in range(self.n_sub):
                rows = rng.choice(len(idx), size=N_CODEWORDS, replace=len(idx) < N_CODEWORDS)
                cb[m] = z[rows, m] + 0.01 * torch.randn(N_CODEWORDS, SUB_DIM)

    def compute_loss(self, net, batch):
        z = net(batch["x"])
        p, soft, hard, _ = soft_assign(z, net.codebooks, self.temperature)
        return self.loss_fn_(p, soft, hard, net.classifier(soft), net.classifier(hard), batch["y"])

    # ---------------------------------------------------------------- codes and distances
    def encode(self, X: np.ndarray) -> np.ndarray:
        """``uint8 (n, M)``: per sub-space, the index of the nearest codeword (not Hamming bits)."""
        return self._codes_of(self.transform(X))

    def _codes_of(self, z: np.ndarray) -> np.ndarray:
        """Nearest codeword per sub-space of embeddings ``z`` (n, M·SUB_DIM)."""
        import torch

        z = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
        out = []
        with torch.no_grad():
            cb = self.net_.codebooks.detach().float().cpu()
            for s in range(0, len(z), 4096):
                out.append(subspace_distances(z[s : s + 4096], cb).argmin(-1).numpy().astype(np.uint8))
        return np.concatenate(out) if out else np.zeros((0, self.n_sub), np.uint8)

    def _adc(self, zq: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
        import torch

        z = torch.from_numpy(np.ascontiguousarray(zq, dtype=np.float32))
        with torch.no_grad():
            table = subspace_distances(z, self.net_.codebooks.detach().float().cpu()).numpy()  # (nq, M, 256)
        dist = np.zeros((len(z), len(db_codes)), np.float32)
        for m in range(self.n_sub):
            dist += table[:, m, :][:, db_codes[:, m]]
        return dist

    def validation_distances(self, Xv, Xdb):
        """End to end, the training inputs are images: their embeddings through the whole network,
        then the same asymmetric distances as :meth:`query_distances` (not Hamming)."""
        e2e = getattr(self, "e2e_", None)
        if e2e is None:
            return super().validation_distances(Xv, Xdb)
        return self._adc(e2e.activations(self, Xv), self._codes_of(e2e.activations(self, Xdb)))

    def query_distances(self, X_query: np.ndarray, db_codes: np.ndarray) -> np.ndarray:
        """Asymmetric distances ``float32 (nq, ndb)``: ``Σ_m ‖z_m(query) − C_m[code_m]‖²``."""
        db_codes = np.asarray(db_codes)
        if db_codes.dtype != np.uint8 or db_codes.ndim != 2 or db_codes.shape[1] != self.n_sub:
            raise ConfigError(f"DPQ database codes must be uint8 (n, {self.n_sub}); got {db_codes.dtype} {db_codes.shape}")
        return self._adc(self.transform(X_query), db_codes)
