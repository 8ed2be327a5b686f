"""The survey methods' losses recomputed with slow, obvious loops and compared; a smoke test per method."""
import math

import numpy as np
import pytest
import torch

from deephash.errors import ConfigError
from deephash.hashers import create_hasher, load_hasher
from deephash.index import unpack_bits
from deephash.losses import (BiHalfLoss, CSQLoss, DPQLoss, DPSHLoss, DSHLoss, DTSHLoss, GreedyHashLoss, HashNetLoss,
                             bihalf, hash_centres, label_similarity, sign_ste, soft_assign)
from loss_fixtures import rand, labels, dot

SURVEY = ["dpsh", "dsh", "hashnet", "dtsh", "csq", "greedyhash", "bihalf", "dpq"]


def softplus(x):
    return math.log1p(math.exp(x))


def sgn(x):
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


def sim(y, i, j):
    yi, yj = y[i], y[j]
    if isinstance(yi, list):
        return 1.0 if any(a and b for a, b in zip(yi, yj)) else 0.0
    return 1.0 if yi == yj else 0.0


def quant(u):
    return sum(sum((x - sgn(x)) ** 2 for x in row) for row in u) / len(u) / len(u[0])


def test_label_similarity_single_and_multi_label():
    s = label_similarity(torch.tensor([0, 1, 0]))
    assert s.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    mh = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1]])
    assert label_similarity(mh).tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    with pytest.raises(ConfigError, match="both be 1-D"):
        label_similarity(torch.tensor([0, 1]), mh)


@pytest.mark.parametrize("multi", [False, True])
def test_dpsh_loss_matches_slow_loop(multi):
    u = rand(7, 8) * 2
    y = (torch.from_numpy(np.random.default_rng(3).integers(0, 2, size=(7, 4))) if multi else labels(7))
    loss, logs = DPSHLoss(eta=0.3)(u, y)
    U, Y = u.tolist(), y.tolist()
    pair = [softplus(0.5 * dot(U[i], U[j])) - sim(Y, i, j) * 0.5 * dot(U[i], U[j])
            for i in range(7) for j in range(7) if i != j]
    ref = sum(pair) / len(pair) + 0.3 * quant(U)
    assert float(loss) == pytest.approx(ref, rel=1e-10)
    assert set(logs) == {"pair", "quant"}


@pytest.mark.parametrize("margin", [None, 5.0])
def test_dsh_loss_matches_slow_loop(margin):
    b = rand(6, 4) * 1.5
    y = labels(6)
    loss, _ = DSHLoss(margin=margin, alpha=0.05)(b, y)
    B, Y, m = b.tolist(), y.tolist(), (2 * 4 if margin is None else margin)
    terms = []
    for i in range(6):
        for j in range(i + 1, 6):
            d = sum((x - z) ** 2 for x, z in zip(B[i], B[j]))
            s = sim(Y, i, j)
            terms.append(0.5 * s * d + 0.5 * (1 - s) * max(m - d, 0.0))
    reg = sum(sum(abs(abs(x) - 1) for x in row) for row in B) / 6
    assert float(loss) == pytest.approx(sum(terms) / len(terms) + 0.05 * reg, rel=1e-10)


@pytest.mark.parametrize("alpha", [None, 0.7])
def test_hashnet_loss_matches_slow_loop(alpha):
    h = torch.tanh(rand(8, 8) * 2)
    y = labels(8)
    loss, _ = HashNetLoss(alpha=alpha)(h, y)
    H, Y, a = h.tolist(), y.tolist(), (10 / 8 if alpha is None else alpha)
    # the paper's form: sum of w_ij * l_ij over pairs / number of pairs, w = |S|/|S1| or |S|/|S0|
    pairs = [(i, j) for i in range(8) for j in range(8) if i != j]
    n1 = sum(sim(Y, i, j) for i, j in pairs)
    n0 = len(pairs) - n1
    total = 0.0
    for i, j in pairs:
        t = a * dot(H[i], H[j])
        s = sim(Y, i, j)
        w = len(pairs) / n1 if s else len(pairs) / n0
        total += w * (softplus(t) - s * t)
    assert float(loss) == pytest.approx(total / len(pairs), rel=1e-10)


@pytest.mark.parametrize("alpha", [None, 1.5])
def test_dtsh_loss_matches_slow_loop(alpha):
    u = rand(7, 8)
    y = labels(7)
    loss, logs = DTSHLoss(alpha=alpha, lam=0.2)(u, y)
    U, Y, a = u.tolist(), y.tolist(), (8 / 8 if alpha is None else alpha)
    trip = []
    for q in range(7):
        for p in range(7):
            for n in range(7):
                if p != q and sim(Y, q, p) and not sim(Y, q, n):
                    d = 0.5 * dot(U[q], U[p]) - 0.5 * dot(U[q], U[n]) - a
                    trip.append(-(d - math.log1p(math.exp(d))))   # −log σ(d)
    assert logs["n_triplets"] == len(trip) > 0
    assert float(loss) == pytest.approx(sum(trip) / len(trip) + 0.2 * quant(U), rel=1e-10)


def test_csq_loss_matches_slow_loop():
    h = torch.tanh(rand(5, 8))
    c = torch.where(rand(5, 8, seed=4) > 0, 1.0, -1.0).double()
    loss, _ = CSQLoss(lam=0.5)(h, c)
    H, C = h.tolist(), c.tolist()
    bce, q = 0.0, 0.0
    for i in range(5):
        for k in range(8):
            p, t = (H[i][k] + 1) / 2, (C[i][k] + 1) / 2
            bce += -(t * math.log(p) + (1 - t) * math.log(1 - p))
            q += (abs(H[i][k]) - 1) ** 2
    assert float(loss) == pytest.approx(bce / 40 + 0.5 * q / 40, rel=1e-9)


def test_hash_centres_are_far_apart():
    C = hash_centres(10, 64, np.random.default_rng(0))
    d = (64 - C @ C.T) / 2
    assert C.shape == (10, 64) and set(np.unique(C)) == {-1.0, 1.0}
    assert (d[~np.eye(10, dtype=bool)] == 32).all()        # Hadamard rows: exactly K/2 apart
    C = hash_centres(10, 48, np.random.default_rng(0))       # 48 is no power of two: Bernoulli
    d = (48 - C @ C.T) / 2
    assert d[~np.eye(10, dtype=bool)].min() >= 12


@pytest.mark.parametrize("multi", [False, True])
def test_greedyhash_loss_matches_slow_loop(multi):
    h = rand(6, 8)
    W = rand(3, 8, seed=2)
    logits = sign_ste(h) @ W.T
    y = torch.from_numpy(np.random.default_rng(5).integers(0, 2, size=(6, 3))) if multi else labels(6)
    loss, _ = GreedyHashLoss(alpha=0.2, p=3)(h, logits, y)
    L, H, Y = logits.tolist(), h.tolist(), y.tolist()
    cls = 0.0
    for i in range(6):
        if multi:
            for c in range(3):
                p = 1 / (1 + math.exp(-L[i][c]))
                cls -= (Y[i][c] * math.log(p) + (1 - Y[i][c]) * math.log(1 - p)) / 18
        else:
            cls += (math.log(sum(math.exp(v) for v in L[i])) - L[i][Y[i]]) / 6
    pen = sum(abs(abs(x) - 1) ** 3 for row in H for x in row) / 48
    assert float(loss) == pytest.approx(cls + 0.2 * pen, rel=1e-9)


def test_sign_ste_forward_sign_backward_identity():
    h = torch.tensor([-0.3, 0.0, 2.0], requires_grad=True)
    b = sign_ste(h)
    assert b.tolist() == [-1.0, 1.0, 1.0]
    (b * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert h.grad.tolist() == [1.0, 2.0, 3.0]


def test_bihalf_layer_halves_every_bit_and_its_gradient():
    u = rand(7, 5).requires_grad_(True)
    b = bihalf(u, 0.5)
    U, B = u.tolist(), b.tolist()
    for k in range(5):
        col = [U[i][k] for i in range(7)]
        top = sorted(range(7), key=lambda i: -col[i])[:4]        # ⌈7/2⌉ largest -> +1
        assert [B[i][k] for i in range(7)] == [1.0 if i in top else -1.0 for i in range(7)]
    g = rand(7, 5, seed=9)
    b.backward(g)
    ref = [[g.tolist()[i][k] + 0.5 * (U[i][k] - B[i][k]) for k in range(5)] for i in range(7)]
    assert np.allclose(u.grad.numpy(), ref)


def test_bihalf_loss_matches_slow_loop():
    x = rand(5, 6)
    b = torch.where(rand(5, 4, seed=3) > 0, 1.0, -1.0).double()
    loss, _ = BiHalfLoss()(x, b)
    X, B = x.tolist(), b.tolist()
    tot = 0.0
    for i in range(5):
        for j in range(5):
            cos = dot(X[i], X[j]) / math.sqrt(dot(X[i], X[i]) * dot(X[j], X[j]))
            tot += (cos - dot(B[i], B[j]) / 4) ** 2
    assert float(loss) == pytest.approx(tot / 25, rel=1e-10)


def test_dpq_loss_matches_slow_loop():
    n, M, k, d, tau = 4, 2, 5, 3, 0.7
    z, cb = rand(n, M * d), rand(M, k, d, seed=2)
    W, bias = rand(3, M * d, seed=3), rand(3, seed=4)
    y = labels(n)
    p, soft, hard, idx = soft_assign(z, cb, tau)
    loss, _ = DPQLoss(lambda_c=0.3, lambda_g=0.2)(p, soft, hard, soft @ W.T + bias, hard @ W.T + bias, y)
    Z, CB, Wl, bl, Y = z.tolist(), cb.tolist(), W.tolist(), bias.tolist(), y.tolist()
    P, S, Hd = [], [], []
    for i in range(n):
        Pi, Si, Hi = [], [], []
        for m in range(M):
            zm = Z[i][m * d:(m + 1) * d]
            dist = [sum((a - c) ** 2 for a, c in zip(zm, CB[m][j])) for j in range(k)]
            e = [math.exp(-v / tau) for v in dist]
            pm = [v / sum(e) for v in e]
            Pi.append(pm)
            Si += [sum(pm[j] * CB[m][j][t] for j in range(k)) for t in range(d)]
            Hi += CB[m][min(range(k), key=lambda j: dist[j])]
            assert idx[i, m] == min(range(k), key=lambda j: dist[j])
        P.append(Pi), S.append(Si), Hd.append(Hi)

    def ce(v, c):
        lg = [sum(w * x for w, x in zip(Wl[r], v)) + bl[r] for r in range(3)]
        return math.log(sum(math.exp(a) for a in lg)) - lg[c]

    cls = sum(ce(S[i], Y[i]) + ce(Hd[i], Y[i]) for i in range(n)) / n
    cons = sum(sum((a - b) ** 2 for a, b in zip(S[i], Hd[i])) for i in range(n)) / n / (M * d)
    item = sum(1 - sum(v * v for v in P[i][m]) for i in range(n) for m in range(M)) / (n * M)
    batch = sum(1 - sum((sum(P[i][m][j] for i in range(n)) / n) ** 2 for j in range(k)) for m in range(M)) / M
    assert float(loss) == pytest.approx(cls + 0.3 * cons + 0.2 * (item - batch), rel=1e-9)


def test_loss_input_errors():
    with pytest.raises(ConfigError, match="DPSH needs"):
        DPSHLoss()(torch.zeros(3, 8), torch.zeros(2))
    with pytest.raises(ConfigError, match="margin must be > 0"):
        DSHLoss(margin=-1)
    with pytest.raises(ConfigError, match="one \\(n, K\\) shape"):
        CSQLoss()(torch.zeros(3, 8), torch.zeros(3, 4))


# ------------------------------------------------------------------ smoke tests: a few steps each
@pytest.fixture(scope="module")
def small_blobs(blobs):
    X, y = blobs
    return X[::2], y[::2]


@pytest.mark.parametrize("name", SURVEY)
def test_survey_method_smoke(name, small_blobs, tmp_path):
    X, y = small_blobs
    h = create_hasher(name, 16, seed=0, n_iters=20, eval_every=10, batch_size=64, hidden=128)
    assert h.family and h.reference is not None and "setting" in h.reference
    h.fit(X, y) if h.supervised else h.fit(X)
    codes = h.encode(X)
    assert codes.shape == (len(X), 2) and codes.dtype == np.uint8
    if name != "dpq":
        bits = unpack_bits(codes)
        assert 0.1 < bits.mean() < 0.9 and (bits.std(0) > 0).mean() > 0.5, "bits must vary"
    else:
        assert len(np.unique(codes[:, 0])) > 1
    h2, _ = load_hasher(h.save(tmp_path / "h.pt"))
    assert np.array_equal(h2.encode(X), codes)


@pytest.mark.parametrize("name", ["dpsh", "csq", "greedyhash"])
def test_survey_methods_take_multi_hot_labels(name, small_blobs):
    X, y = small_blobs
    mh = np.zeros((len(y), 4), np.int64)
    mh[np.arange(len(y)), y % 4] = 1
    mh[np.arange(len(y)), (y // 4) % 4] = 1
    h = create_hasher(name, 16, seed=0, n_iters=10, eval_every=10, batch_size=64, hidden=64).fit(X, mh)
    assert h.encode(X).shape == (len(X), 2)


def test_dpq_ranks_by_asymmetric_distance(small_blobs):
    X, y = small_blobs
    h = create_hasher("dpq", 16, seed=0, n_iters=10, eval_every=10, batch_size=64, hidden=64).fit(X, y)
    db = h.encode(X[:20])
    dist = h.query_distances(X[20:23], db)
    z = h.transform(X[20:23])
    cb = h.net_.codebooks.detach().numpy()                    # (2, 256, 8)
    for qi in range(3):
        for j in range(20):
            ref = sum(((z[qi, m * 8:(m + 1) * 8] - cb[m, db[j, m]]) ** 2).sum() for m in range(2))
            assert dist[qi, j] == pytest.approx(ref, rel=1e-4, abs=1e-4)
    with pytest.raises(ConfigError, match="uint8 \\(n, 2\\)"):
        h.query_distances(X[:2], np.zeros((3, 4), np.uint8))


def test_pq_codes_are_refused_by_hamming_index_paths():
    from deephash.hashers.base import require_hamming_codes

    require_hamming_codes(create_hasher("csq", 16))
    with pytest.raises(ConfigError, match="not Hamming codes"):
        require_hamming_codes(create_hasher("dpq", 16))
