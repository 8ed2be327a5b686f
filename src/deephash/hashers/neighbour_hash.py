"""Neighbour hashing: unsupervised deep hashing on neighbourhoods mined from the frozen features
(after SSDH, Yang et al. IJCAI 2018, and DistillHash / "deep unsupervised hashing by neighbourhood
similarity": train the codes on confident pairs found in the archive itself). Head-only; for archives
without labels — labels are never read.

Mining (once, in ``prepare``, on the training rows): features are centred, L2-normalised and reduced by
PCA to ``pca_dim`` dimensions; every item's ``k`` nearest neighbours by cosine are its *confident
positives*, and a pair is a *confident negative* when its cosine is below the ``neg_quantile`` quantile
of random pairs' cosines. Pairs in neither set are ignored (``S_ij = 0``).

Training: a mini-batch is ``batch_size/2`` random anchors plus one random neighbour of each (random
batches almost never hold a neighbour pair), the similarity of every batch pair is looked up as above
(``j`` in ``kNN(i)`` or ``i`` in ``kNN(j)`` -> +1), and :class:`~deephash.losses.NeighbourLoss` fits
``tanh`` of an MLP head to it. The head generalises the neighbourhood graph: items whose neighbours
share neighbours end up with one code, which is why the codes can beat exact kNN on the features
they were mined from. Bits: ``u − median >= 0`` with the training set's per-bit median (balanced bits).
"""
from __future__ import annotations

import numpy as np

from deephash.errors import ConfigError
from deephash.hashers._head import HeadHasher
from deephash.hashers.base import register_hasher
from deephash.losses.neighbour_loss import NeighbourLoss


def mine_neighbours(X: np.ndarray, k: int, pca_dim: int, *, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """``(Z, knn)``: the centred, L2-normalised, PCA-reduced rows ``Z`` (n, d) float32 and the indices
    ``knn`` (n, k) int64 of every row's k nearest other rows by cosine on ``Z``."""
    import torch

    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    Xt = Xt - Xt.mean(0)
    Xt = Xt / Xt.norm(dim=1, keepdim=True).clamp_min(1e-12)
    if 0 < pca_dim < Xt.shape[1]:
        _, _, V = torch.pca_lowrank(Xt, q=pca_dim, center=False, niter=3)
        Xt = Xt @ V
        Xt = Xt / Xt.norm(dim=1, keepdim=True).clamp_min(1e-12)
    k = min(k, len(Xt) - 1)
    knn = np.empty((len(Xt), k), np.int64)
    with torch.no_grad():
        for s in range(0, len(Xt), chunk):
            sim = Xt[s : s + chunk] @ Xt.T
            sim[torch.arange(sim.shape[0]), torch.arange(s, s + sim.shape[0])] = -2.0  # not its own neighbour
            knn[s : s + chunk] = sim.topk(k, dim=1).indices.numpy()
    return Xt.numpy(), knn


@register_hasher("neighbour-hash")
class NeighbourHash(HeadHasher):
    family = "unsupervised"
    supervised = False
    reference = {"map": None, "setting": "no paper figure: a method assembled here from SSDH/DistillHash-style "
                 "confident-pair mining; compare with bihalf and float kNN on the same features"}
    default_train = {**HeadHasher.default_train, "n_iters": 3000, "eval_every": 1000, "patience": 3}

    def __init__(self, n_bits: int = 64, *, k: int = 20, pca_dim: int = 256, neg_quantile: float = 0.5,
                 negative_target: float = 0.0, lambda_q: float = 0.1, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.k, self.pca_dim, self.neg_quantile = k, pca_dim, neg_quantile
        self.negative_target, self.lambda_q = negative_target, lambda_q

    def _validate(self):
        super()._validate()
        if self.k < 1 or not 0.0 < self.neg_quantile <= 1.0 or self.pca_dim < 0:
            raise ConfigError(f"neighbour-hash needs k >= 1, 0 < neg_quantile <= 1 and pca_dim >= 0; "
                              f"got k={self.k}, neg_quantile={self.neg_quantile}, pca_dim={self.pca_dim}")

    def prepare(self, X, y, rng):
        import torch

        super().prepare(X, None, rng)
        e2e = getattr(self, "e2e_", None)
        feats = X if e2e is None else e2e.descriptors(X)
        Z, knn = mine_neighbours(feats, self.k, self.pca_dim)
        self.Z_ = torch.from_numpy(Z)
        self.knn_ = torch.from_numpy(knn)
        a, b = rng.integers(0, len(Z), size=(2, min(200_000, len(Z) ** 2)))
        self.neg_threshold_ = float(np.quantile((Z[a] * Z[b]).sum(1), self.neg_quantile))
        self.loss_fn_ = NeighbourLoss(negative_target=self.negative_target, lambda_q=self.lambda_q)

    def sample_batch(self, rng, batch_size):
        import torch

        n = len(self.knn_)
        half = max(1, min(batch_size, n) // 2)
        anchors = rng.choice(n, size=half, replace=False)
        partners = self.knn_[torch.from_numpy(anchors), torch.from_numpy(rng.integers(0, self.knn_.shape[1], half))].numpy()
        idx = np.concatenate([anchors, partners])
        return {"x": self.X_train_[idx], "idx": torch.from_numpy(idx)}

    def batch_similarity(self, idx):
        """Mined similarity ``(n, n)`` in {−1, 0, +1} of the training rows ``idx`` (see the module doc)."""
        import torch

        nb = self.knn_[idx]  # (n, k)
        pos = (nb[:, None, :] == idx[None, :, None]).any(-1)
        pos = pos | pos.T
        z = self.Z_[idx]
        neg = (z @ z.T < self.neg_threshold_) & ~pos
        return pos.float() - neg.float()

    def compute_loss(self, net, batch):
        import torch

        u = net(batch["x"])
        S = self.batch_similarity(batch["idx"]).to(u.device)
        return self.loss_fn_(torch.tanh(u), S)

    def fit(self, X, y=None, **kw):
        import torch

        self.offset_ = None
        super().fit(X, None, **kw)
        self.offset_ = torch.from_numpy(np.median(self.transform(X), axis=0).astype(np.float32))
        return self

    def _drop_training_data(self):
        super()._drop_training_data()
        for a in ("Z_", "knn_"):
            if hasattr(self, a):
                delattr(self, a)

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
