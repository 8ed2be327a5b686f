"""Deep Ranking (Wang et al., CVPR 2014; seed 002, digest section 3).

Triplets ``(q, p+, p-)``: every image of a class is a query, other images of its class its
positives (at most ``pos_cap`` per query), the negative from another class
(:class:`~deephash.train.sampling.RankingTripletSampler`). One network, not three copies: a
batch holds the queries, positives and negatives one after another and the ranking layer
splits the embeddings back into triplets. Loss: ``max(0, g + D(q, p+) - D(q, p-))``, D
Euclidean, gap ``g = 1`` (:class:`~deephash.losses.DeepRankingLoss`).

The multiscale network (end to end, :meth:`build_trunk`): the deep branch (the backbone's
pooled features) and two shallow branches that see the image down-sampled 4:1 and 8:1
(conv 8x8 stride 4, 96 channels + max-pool), each L2-normalised, concatenated; the head is a
linear layer and a final L2 normalisation. The result is a float embedding; deephash gives
it ``n_bits`` dimensions and takes its signs as the code (threshold 0), and keeps the float
embedding for re-ranking (:meth:`rerank_features`).

Head-only (cached pooled features): the shallow branches act on pixels, so they are dropped;
the head L2-normalises the deep-branch feature, then linear + L2 normalisation as above.

Our choices where the paper leaves room: the embedding has ``n_bits`` dimensions (the paper's
is 4096-d and unbinarised); shallow branches end in an adaptive 4x4 max-pool, so their size
does not depend on the input resolution; ``batch_size`` counts images (3 per triplet).
"""
from __future__ import annotations

import numpy as np

from deephash.hashers.base import register_hasher
from deephash.hashers.deep import DeepHasher
from deephash.losses.deep_ranking_loss import DeepRankingLoss
from deephash.train.sampling import RankingTripletSampler

SHALLOW_CHANNELS = 96
SHALLOW_GRID = 4


def ranking_head(in_dim: int, n_bits: int):
    """L2-normalise -> linear -> L2-normalise (the ranking embedding, n_bits-d)."""
    from torch import nn

    class RankingHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(in_dim, n_bits)

        def forward(self, x):
            x = nn.functional.normalize(x.float(), dim=1)
            return nn.functional.normalize(self.linear(x), dim=1)

    return RankingHead()


def multiscale_trunk(base):
    """Deep branch (``base``'s pooled features) + shallow branches on 4:1 and 8:1 down-sampled images."""
    import torch
    from torch import nn

    def shallow():
        return nn.Sequential(nn.Conv2d(3, SHALLOW_CHANNELS, 8, stride=4, padding=2), nn.ReLU(inplace=True),
                             nn.AdaptiveMaxPool2d(SHALLOW_GRID), nn.Flatten())

    class MultiscaleTrunk(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.deep = base
            self.shallow4, self.shallow8 = shallow(), shallow()
            self.out_dim = int(base.out_dim) + 2 * SHALLOW_CHANNELS * SHALLOW_GRID**2

        def forward(self, x):
            f = nn.functional
            d = f.normalize(self.deep(x).float(), dim=1)
            s4 = f.normalize(self.shallow4(f.avg_pool2d(x, 4)).float(), dim=1)
            s8 = f.normalize(self.shallow8(f.avg_pool2d(x, 8)).float(), dim=1)
            return torch.cat([d, s4, s8], dim=1)

    return MultiscaleTrunk()


@register_hasher("deep-ranking")
class DeepRanking(DeepHasher):
    family = "triplet / ranking (seed: Deep Ranking)"
    reference = {"map": None, "setting": "paper reports triplet precision on its own fine-grained ImageNet triplets "
                                         "(no CIFAR-10 mAP)"}
    threshold = 0.0
    supervised = True
    default_train = {"n_iters": 3000, "lr": 1e-3, "batch_size": 96, "optimizer": "adam", "weight_decay": 1e-5,
                     "eval_every": 500, "patience": 3}

    def __init__(self, n_bits: int = 64, *, gap: float = 1.0, pos_cap: int = 4, **kw) -> None:
        super().__init__(n_bits, **kw)
        self.gap, self.pos_cap = gap, pos_cap

    def build_network(self, in_dim: int):
        return ranking_head(in_dim, self.n_bits)

    def build_trunk(self, base):
        return multiscale_trunk(base)

    def prepare(self, X, y, rng):
        super().prepare(X, y, rng)
        self.loss_fn_ = DeepRankingLoss(gap=self.gap)
        self.sampler_ = RankingTripletSampler(np.asarray(y), rng, pos_cap=self.pos_cap)

    def sampler_rng_restore(self, rng):
        self.sampler_.rng = rng

    def sample_batch(self, rng, batch_size):
        import torch

        m = max(1, batch_size // 3)
        q, p, n = self.sampler_.sample(m)
        return {"x": self.X_train_[torch.from_numpy(np.concatenate([q, p, n]))], "m": m}

    def compute_loss(self, net, batch):
        e = net(batch["x"]).float()
        m = batch["m"]
        return self.loss_fn_(e[:m], e[m : 2 * m], e[2 * m :])

    def rerank_features(self, X: np.ndarray) -> np.ndarray:
        """The float embedding (the code's pre-binarisation values) re-ranks the Hamming pool."""
        return self.transform(X)
