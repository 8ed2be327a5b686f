"""DQN, DTQ and neighbour-hash: losses recomputed with slow, obvious loops; the quantisers' codes and
asymmetric distances checked against brute force."""
import itertools
import math

import numpy as np
import pytest
import torch

from deephash.errors import ConfigError
from deephash.hashers import create_hasher, load_hasher
from deephash.hashers._quantiser import additive_assign, reconstruct
from deephash.losses.dqn_loss import DQNLoss
from deephash.losses.dtq_loss import DTQLoss
from deephash.losses.neighbour_loss import NeighbourContrastiveLoss
from loss_fixtures import rand, labels, dot


def sqd(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b))


def test_dqn_loss_matches_slow_loop():
    n, D = 6, 4
    z, r, y = rand(n, D), rand(n, D, seed=3), labels(n)
    loss, _ = DQNLoss(lambda_q=0.3)(z, r, y)
    Z, R, Y = z.tolist(), r.tolist(), y.tolist()
    pair = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                cos = dot(Z[i], Z[j]) / math.sqrt(dot(Z[i], Z[i]) * dot(Z[j], Z[j]))
                pair += ((1.0 if Y[i] == Y[j] else 0.0) - cos) ** 2
    q = sum(sqd(Z[i], R[i]) for i in range(n)) / n / D
    assert float(loss) == pytest.approx(pair / (n * (n - 1)) + 0.3 * q, rel=1e-10)


def test_dtq_loss_matches_slow_loop():
    n, D, M, k = 7, 3, 3, 4
    z, r, cb, y = rand(n, D), rand(n, D, seed=2), rand(M, k, D, seed=5), labels(n)
    loss, logs = DTQLoss(margin=0.8, lambda_q=0.3, gamma=0.2)(z, r, cb, y)
    Z, R, C, Y = z.tolist(), r.tolist(), cb.tolist(), y.tolist()
    terms = []
    for a, p, q in itertools.product(range(n), repeat=3):
        if a != p and Y[a] == Y[p] and Y[a] != Y[q]:
            ell = max(0.0, 0.8 + sqd(Z[a], Z[p]) / D - sqd(Z[a], Z[q]) / D)
            if ell > 0:
                terms.append(ell)
    trip = sum(terms) / len(terms)
    quant = sum(sqd(Z[i], R[i]) for i in range(n)) / n / D
    ortho = sum(dot(C[m][a], C[m2][b]) ** 2 for m in range(M) for m2 in range(M) if m != m2
                for a in range(k) for b in range(k)) / (M * (M - 1) * k * k)
    assert logs["active"] == len(terms)
    assert float(loss) == pytest.approx(trip + 0.3 * quant + 0.2 * ortho, rel=1e-10)


def test_neighbour_contrastive_loss_matches_slow_loop():
    n, K, tau = 4, 5, 0.3
    ha, hp = torch.tanh(rand(n, K)), torch.tanh(rand(n, K, seed=4))
    loss, _ = NeighbourContrastiveLoss(temperature=tau, lambda_q=0.2)(ha, hp)
    H = ha.tolist() + hp.tolist()
    N = 2 * n

    def cos(a, b):
        return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))

    nce = 0.0
    for i in range(N):
        p = (i + n) % N
        denom = sum(math.exp(cos(H[i], H[j]) / tau) for j in range(N) if j != i)
        nce += -cos(H[i], H[p]) / tau + math.log(denom)
    q = sum((abs(x) - 1) ** 2 for row in H for x in row) / (N * K)
    assert float(loss) == pytest.approx(nce / N + 0.2 * q, rel=1e-6)
    with pytest.raises(ConfigError, match="two \\(n, K\\) code batches"):
        NeighbourContrastiveLoss()(ha, hp[:2])


def test_additive_assignment_is_never_worse_than_greedy_and_locally_optimal():
    M, k, D = 3, 5, 3
    cb, z = rand(M, k, D, seed=7).float(), rand(30, D, seed=8).float()
    idx = additive_assign(z, cb, icm_passes=10)
    err = ((z - reconstruct(cb, idx, True)) ** 2).sum(1)
    greedy = additive_assign(z, cb, icm_passes=0)
    err0 = ((z - reconstruct(cb, greedy, True)) ** 2).sum(1)
    best = torch.stack([((z - cb[0, a] - cb[1, b] - cb[2, c]) ** 2).sum(1)
                        for a in range(k) for b in range(k) for c in range(k)], 1).min(1).values
    assert torch.all(err <= err0 + 1e-5) and torch.all(err >= best - 1e-5)
    # greedy picks codebook 0's word first from the whole residual, as a slow loop does
    for i in range(len(z)):
        assert int(greedy[i, 0]) == min(range(k), key=lambda a: float(((z[i] - cb[0, a]) ** 2).sum()))
    # ICM's fixed point: no single codebook's word can be changed for a smaller error
    for i in range(len(z)):
        for m in range(M):
            for a in range(k):
                alt = idx[i].clone()
                alt[m] = a
                assert float(((z[i] - reconstruct(cb, alt[None], True)[0]) ** 2).sum()) >= float(err[i]) - 1e-5


@pytest.fixture(scope="module")
def small(blobs):
    X, y = blobs
    return X[::2], y[::2]


@pytest.mark.parametrize("name", ["dqn", "dtq"])
def test_quantisers_rank_by_asymmetric_distance(name, small, tmp_path):
    X, y = small
    h = create_hasher(name, 16, seed=0, n_iters=20, eval_every=10, batch_size=64, hidden=64).fit(X, y)
    assert h.code_kind == "pq" and h.family == "quantization"
    db = h.encode(X[:20])
    assert db.shape == (20, 2) and db.dtype == np.uint8 and len(np.unique(h.encode(X)[:, 0])) > 1
    dist = h.query_distances(X[20:23], db)
    z = h.transform(X[20:23])
    cb = h.net_.codebooks.detach().numpy()
    for qi in range(3):
        for j in range(20):
            if name == "dtq":   # additive: the sum of one codeword per codebook
                ref = ((z[qi] - cb[0, db[j, 0]] - cb[1, db[j, 1]]) ** 2).sum()
            else:               # product: one codeword per 8-dim sub-vector
                ref = sum(((z[qi, m * 8:(m + 1) * 8] - cb[m, db[j, m]]) ** 2).sum() for m in range(2))
            assert dist[qi, j] == pytest.approx(ref, rel=1e-4, abs=1e-4)
    with pytest.raises(ConfigError, match="uint8 \\(n, 2\\)"):
        h.query_distances(X[:2], np.zeros((3, 4), np.uint8))
    h2, _ = load_hasher(h.save(tmp_path / "h.pt"))
    assert np.array_equal(h2.encode(X), h.encode(X))
    with pytest.raises(ConfigError, match="multiple of 8"):
        create_hasher(name, 12).fit(X, y)


def test_dtq_codes_match_exhaustive_search_of_pairs(small):
    X, y = small
    h = create_hasher("dtq", 16, seed=0, n_iters=5, eval_every=5, batch_size=32, hidden=32).fit(X, y)
    z = torch.from_numpy(h.transform(X[:5]))
    cb = h.net_.codebooks.detach().float()
    codes = torch.from_numpy(h.encode(X[:5]).astype(np.int64))
    err = ((z - reconstruct(cb, codes, True)) ** 2).sum(1)
    full = ((z[:, None, None, :] - cb[0][None, :, None, :] - cb[1][None, None, :, :]) ** 2).sum(-1).flatten(1).min(1).values
    assert torch.all(err >= full - 1e-5) and torch.all(err <= full * 1.5 + 1e-3)


def test_neighbour_hash_never_reads_labels_and_pairs_neighbours(small):
    X, y = small
    h = create_hasher("neighbour-hash", 16, seed=0, n_iters=30, batch_size=64, hidden=64, k=5)
    assert not h.supervised
    h.fit(X)
    codes = h.encode(X)
    assert codes.shape == (len(X), 2)
    # the learned codes keep the clusters of the features: same-blob pairs are closer in Hamming distance
    from deephash.index import hamming_matrix

    D = hamming_matrix(codes, codes)
    same = y[:, None] == y[None, :]
    assert D[same].mean() < D[~same].mean()
