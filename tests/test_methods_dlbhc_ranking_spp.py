"""The seed methods' distinctive parts: DLBHC's classifier and coarse-to-fine search, Deep Ranking's
triplet sampling and multiscale network, SPP-PMT's pyramid, PMT and classifier."""
import numpy as np
import pytest
import torch

from deephash.errors import ConfigError
from deephash.eval.metrics import mean_average_precision, relevance_matrix
from deephash.eval.retrieval import coarse_to_fine_evaluation, hamming_map
from deephash.hashers import create_hasher, load_hasher
from deephash.index import hamming_matrix, pack_bits
from deephash.train.sampling import RankingTripletSampler

FAST = {"n_iters": 200, "eval_every": 100}


@pytest.fixture(scope="module")
def fitted(blobs):
    X, y = blobs
    return {name: create_hasher(name, 32, seed=0, **FAST).fit(X, y) for name in ("dlbhc", "spp-pmt", "deep-ranking")}


@pytest.mark.parametrize("name", ["dlbhc", "spp-pmt"])
def test_classify_predicts_the_labels(fitted, blobs, name, tmp_path):
    X, y = blobs
    h = fitted[name]
    acc = (h.classify(X) == y).mean()
    assert acc > 0.8, acc
    h2, _ = load_hasher(h.save(tmp_path / "h.pt"))
    assert np.array_equal(h2.classify(X), h.classify(X))


def test_classify_keeps_the_original_label_values(blobs):
    X, y = blobs
    h = create_hasher("dlbhc", 16, seed=0, n_iters=100, eval_every=50).fit(X, y * 10 + 3)
    assert set(np.unique(h.classify(X))) <= set(np.unique(y * 10 + 3))


def test_dlbhc_is_latent_sigmoid_between_features_and_classifier(fitted):
    net = fitted["dlbhc"].net_
    assert tuple(net.latent.weight.shape) == (32, 64) and tuple(net.classifier.weight.shape) == (10, 32)
    h, logits = net(torch.randn(3, 64))
    assert ((h > 0) & (h < 1)).all() and logits.shape == (3, 10)
    assert fitted["dlbhc"].threshold == 0.5


def test_deep_ranking_embedding_is_unit_norm_and_signs_are_the_code(fitted, blobs):
    X, _ = blobs
    h = fitted["deep-ranking"]
    e = h.transform(X)
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert np.array_equal(h.encode(X), pack_bits(e >= 0))
    assert np.array_equal(h.rerank_features(X), e)


def test_ranking_sampler_follows_the_seed():
    y = np.repeat(np.arange(3), 5)
    s = RankingTripletSampler(y, np.random.default_rng(0), pos_cap=2)
    q, p, n = s.sample(30)  # exactly one epoch: 15 queries x 2 positives
    assert (y[q] == y[p]).all() and (q != p).all() and (y[n] != y[q]).all()
    pairs = set(zip(q.tolist(), p.tolist()))
    assert len(pairs) == 30  # every (query, positive) pair once per epoch
    assert sorted(np.bincount(q).tolist()) == [2] * 15  # every image is a query, pos_cap positives each
    with pytest.raises(ConfigError, match="single-label"):
        RankingTripletSampler(np.eye(3), np.random.default_rng(0))


def test_multiscale_trunk_and_spp_trunk_shapes():
    from torch import nn

    class Base(nn.Module):  # a stand-in backbone: conv maps and their pool
        out_dim = map_channels = 16

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, stride=8, padding=1)

        def forward_maps(self, x):
            return torch.relu(self.conv(x))

        def forward(self, x):
            return self.forward_maps(x).mean(dim=(2, 3))

    x = torch.randn(2, 3, 64, 64)
    dr = create_hasher("deep-ranking", 16)
    t = dr.build_trunk(Base())
    d = t(x)
    assert d.shape == (2, t.out_dim) and t.out_dim == 16 + 2 * 96 * 16
    parts = torch.split(d, [16, 96 * 16, 96 * 16], dim=1)
    assert all(torch.allclose(p.norm(dim=1), torch.ones(2), atol=1e-5) for p in parts)  # each branch L2-normalised
    sp = create_hasher("spp-pmt", 16, spp_channels=8)
    t = sp.build_trunk(Base())
    assert t(x).shape == (2, 8 * (1 + 4 + 16))


def test_power_mean_transform():
    from deephash.hashers.spp_pmt import power_mean_transform

    x = torch.tensor([[0.0, 3.0, -3.0]])
    y = power_mean_transform(x)
    assert y.shape == (1, 6)
    assert torch.allclose(y, torch.tensor([[0.0, np.log(4.0), -np.log(4.0), 0.0, 1.0, -1.0]], dtype=torch.float32))


def test_hamming_map_matches_metrics():
    rng = np.random.default_rng(0)
    q, d = pack_bits(rng.random((40, 16)) > 0.5), pack_bits(rng.random((300, 16)) > 0.5)
    yq, yd = rng.integers(0, 4, 40), rng.integers(0, 4, 300)
    rel = relevance_matrix(yq, yd)
    for k in (None, 50):
        ref = mean_average_precision(hamming_matrix(q, d), rel, k)
        assert hamming_map(q, d, yq, yd, k, device="cpu") == pytest.approx(ref, abs=1e-9)


def test_coarse_to_fine_evaluation_reports_pool_and_radius(fitted, blobs):
    X, y = blobs
    h = fitted["dlbhc"]
    c = h.encode(X)
    r = coarse_to_fine_evaluation(c[:50], h.rerank_features(X[:50]), c[50:], h.rerank_features(X[50:]), y[:50], y[50:],
                                  k=100, searcher="numpy")
    assert r["map_hamming"] == pytest.approx(mean_average_precision(hamming_matrix(c[:50], c[50:]),
                                                                    relevance_matrix(y[:50], y[50:]), 100))
    assert r["pool_size_mean"] >= 100 and r["radius_mean"] >= 2 and 0 < r["map_coarse_to_fine"] <= 1
    # clustered features: re-ranking the pool by Euclidean distance cannot be much worse than Hamming
    assert r["map_coarse_to_fine"] > r["map_hamming"] - 0.05
