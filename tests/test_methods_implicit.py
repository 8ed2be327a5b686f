"""The survey's implicit family (MIHash, TALR, ADSH) and KSH: each loss / objective recomputed with a
slow, obvious loop and compared; the relaxations checked against the exact quantities they relax."""
import math

import numpy as np
import pytest
import torch

from deephash.errors import ConfigError
from deephash.eval.metrics import mean_average_precision, relevance_matrix, tie_aware_map
from deephash.hashers import create_hasher
from deephash.index import hamming_matrix
from deephash.losses import ADSHLoss, MIHashLoss, TALRLoss
from loss_fixtures import rand, labels


def multi_hot(n, c=4, seed=3):
    y = np.random.default_rng(seed).integers(0, 2, size=(n, c))
    y[y.sum(1) == 0, 0] = 1
    return torch.from_numpy(y)


def sim(Y, i, j):
    yi, yj = Y[i], Y[j]
    if isinstance(yi, list):
        return any(a and b for a, b in zip(yi, yj))
    return yi == yj


def relaxed_distance(U, i, j):
    K = len(U[i])
    return 0.5 * (K - sum(math.tanh(a) * math.tanh(b) for a, b in zip(U[i], U[j])))


def pulse(d, centre, width):
    return max(0.0, 1.0 - abs(d - centre) / width)


def entropy(p):
    return -sum(x * math.log2(x) for x in p if x > 0)


# --------------------------------------------------------------------------------------------- MIHash
@pytest.mark.parametrize("multi", [False, True])
def test_mihash_loss_matches_slow_loop(multi):
    n, K, bins = 9, 8, 4
    u = rand(n, K) * 1.5
    y = multi_hot(n) if multi else labels(n)
    loss, logs = MIHashLoss(n_bins=bins)(u, y)
    U, Y = u.tolist(), y.tolist()
    width = K / bins
    centres = [l * width for l in range(bins + 1)]
    mis = []
    for i in range(n):
        hp = [0.0] * len(centres)
        hn = [0.0] * len(centres)
        n_pos = 0
        for j in range(n):
            if j == i:
                continue
            d = relaxed_distance(U, i, j)
            for l, c in enumerate(centres):
                if sim(Y, i, j):
                    hp[l] += pulse(d, c, width)
                else:
                    hn[l] += pulse(d, c, width)
            n_pos += bool(sim(Y, i, j))
        p_pos = n_pos / (n - 1)
        p_d = [(a + b) / (n - 1) for a, b in zip(hp, hn)]
        cond_pos = [a / sum(hp) for a in hp] if sum(hp) > 0 else [0.0] * len(hp)
        cond_neg = [b / sum(hn) for b in hn] if sum(hn) > 0 else [0.0] * len(hn)
        mis.append(entropy(p_d) - p_pos * entropy(cond_pos) - (1 - p_pos) * entropy(cond_neg))
    assert float(loss) == pytest.approx(-sum(mis) / n, rel=1e-10)
    assert logs["mi"] == pytest.approx(sum(mis) / n, rel=1e-10)


def test_mihash_is_one_bit_for_perfectly_separated_codes():
    # two classes of equal size, codes ±(1,...,1) saturated: neighbours at distance 0, the others at K
    y = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    u = torch.where(y[:, None] == 0, 30.0, -30.0).double().expand(7, 8).clone()
    loss, _ = MIHashLoss(n_bins=8)(u, y)
    # item of the class of 3: p(+) = 2/6; the distance is then a deterministic function of C: I = H(C)
    h = lambda p: -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    assert float(loss) == pytest.approx(-(3 * h(2 / 6) + 4 * h(3 / 6)) / 7, abs=1e-9)


def test_mihash_gradients_are_the_derivative():
    u = rand(6, 4).requires_grad_(True)
    y = labels(6)
    assert torch.autograd.gradcheck(lambda v: MIHashLoss(n_bins=5)(v, y)[0], (u,), eps=1e-6, atol=1e-5)


def test_mihash_rejects_bad_input():
    with pytest.raises(ConfigError, match="n_bins must be a positive integer; got 0"):
        MIHashLoss(n_bins=0)
    with pytest.raises(ConfigError, match="n >= 3"):
        MIHashLoss()(rand(2, 4), labels(2))


# --------------------------------------------------------------------------------------------- TALR
@pytest.mark.parametrize("multi,bins", [(False, None), (True, None), (False, 3)])
def test_talr_loss_matches_slow_loop(multi, bins):
    n, K = 8, 6
    u = rand(n, K) * 1.2
    y = multi_hot(n) if multi else labels(n)
    loss, logs = TALRLoss(n_bins=bins)(u, y)
    U, Y = u.tolist(), y.tolist()
    nb = bins or K
    width = K / nb
    centres = [l * width for l in range(nb + 1)]
    aps = []
    for i in range(n):
        cp = [0.0] * len(centres)
        ca = [0.0] * len(centres)
        for j in range(n):
            if j == i:
                continue
            d = relaxed_distance(U, i, j)
            for l, c in enumerate(centres):
                ca[l] += pulse(d, c, width)
                if sim(Y, i, j):
                    cp[l] += pulse(d, c, width)
        n_pos = sum(1 for j in range(n) if j != i and sim(Y, i, j))
        if n_pos == 0:
            continue
        ap, Cp_prev, Ca_prev = 0.0, 0.0, 0.0
        for l in range(len(centres)):
            Cp, Ca = Cp_prev + cp[l], Ca_prev + ca[l]
            ap += cp[l] * (Cp_prev + Cp + 1) / (Ca_prev + Ca + 1)
            Cp_prev, Ca_prev = Cp, Ca
        aps.append(ap / n_pos)
    assert aps, "the fixture must have queries with neighbours"
    assert float(loss) == pytest.approx(1 - sum(aps) / len(aps), rel=1e-10)
    assert logs["ap"] == pytest.approx(sum(aps) / len(aps), rel=1e-10)


def test_talr_on_hard_codes_is_close_to_the_exact_tie_aware_ap():
    # saturated outputs: the relaxed distances are the Hamming distances; the relaxation differs from
    # the exact tie-aware AP only by taking a tie group's precision at its middle
    rng = np.random.default_rng(5)
    n, K = 60, 8
    y = rng.integers(0, 4, size=n)
    centres = rng.choice([-1.0, 1.0], size=(4, K))
    flips = rng.random((n, K)) < 0.2
    codes = np.where(flips, -centres[y], centres[y])
    ap_relaxed, _ = TALRLoss().tie_aware_ap(torch.from_numpy(codes * 40.0), torch.from_numpy(y))
    bits = (codes > 0).astype(np.uint8)
    D = hamming_matrix(np.packbits(bits, axis=1), np.packbits(bits, axis=1)).astype(np.float64)
    exact = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        exact.append(tie_aware_map(D[i : i + 1, others], relevance_matrix(y[i : i + 1], y[others])))
    assert float(ap_relaxed.mean()) == pytest.approx(float(np.mean(exact)), abs=0.02)


def test_talr_gradients_and_degenerate_batches():
    u = rand(6, 4).requires_grad_(True)
    y = labels(6, c=2)
    assert torch.autograd.gradcheck(lambda v: TALRLoss()(v, y)[0], (u,), eps=1e-6, atol=1e-5)
    loss, logs = TALRLoss()(rand(3, 4), torch.tensor([0, 1, 2]))   # nobody has a neighbour
    assert float(loss) == 0.0 and math.isnan(logs["ap"])
    with pytest.raises(ConfigError, match="TALR n_bins must be a positive integer"):
        TALRLoss(n_bins=-2)


# --------------------------------------------------------------------------------------------- ADSH
@pytest.mark.parametrize("multi", [False, True])
def test_adsh_loss_matches_slow_loop(multi):
    n, K, C = 6, 8, 4
    u, w = rand(n, K), rand(C, K, seed=7)
    y = multi_hot(n, C) if multi else labels(n, C)
    s, m, lam = 5.0, 0.3, 0.2
    loss, logs = ADSHLoss(scale=s, margin=m, lam=lam)(u, w, y)
    U, W, Y = u.tolist(), w.tolist(), y.tolist()
    norm = lambda v: math.sqrt(sum(x * x for x in v))
    total_ang = total_q = 0.0
    for i in range(n):
        if multi:
            t = [float(v) / sum(Y[i]) for v in Y[i]]
        else:
            t = [1.0 if c == Y[i] else 0.0 for c in range(C)]
        logits = []
        for c in range(C):
            cos = sum(a * b for a, b in zip(U[i], W[c])) / (norm(U[i]) * norm(W[c]))
            logits.append(s * (cos - (m if t[c] > 0 else 0.0)))
        lse = math.log(sum(math.exp(z) for z in logits))
        total_ang += -sum(t[c] * (logits[c] - lse) for c in range(C))
        code = [1.0 if x > 0 else -1.0 for x in U[i]]
        total_q += 1 - sum(a * b for a, b in zip(U[i], code)) / (norm(U[i]) * math.sqrt(K))
    assert float(loss) == pytest.approx(total_ang / n + lam * total_q / n, rel=1e-10)
    assert logs["quant"] == pytest.approx(total_q / n, rel=1e-10)


def test_adsh_quantisation_term_vanishes_on_hypercube_vertices():
    u = torch.tensor([[2.0, -2.0, 2.0, 2.0], [0.5, 0.5, -0.5, -0.5]]).double()
    _, logs = ADSHLoss()(u, rand(2, 4), torch.tensor([0, 1]))
    assert logs["quant"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="ADSH needs scale > 0"):
        ADSHLoss(scale=0)


# --------------------------------------------------------------------------------------------- trained
@pytest.mark.parametrize("name", ["mihash", "talr", "adsh"])
def test_implicit_methods_learn_the_classes(name, blobs):
    X, y = blobs
    rel = relevance_matrix(y, y)
    scores = {}
    for m in ("lsh", name):
        h = create_hasher(m, 32, seed=0, **({} if m == "lsh" else {"n_iters": 200, "eval_every": 100}))
        h.fit(X, y)
        c = h.encode(X)
        scores[m] = mean_average_precision(hamming_matrix(c, c), rel, 100)
    assert scores[name] > scores["lsh"] + 0.05, scores


# --------------------------------------------------------------------------------------------- KSH
def test_ksh_objective_recomputed_slowly(blobs):
    X, y = blobs
    X, y = X[::3], y[::3]                           # 200 points, all of them labelled
    r = 8
    h = create_hasher("ksh", r, n_anchors=40, n_labelled=1000, n_iter=30, seed=2).fit(X, y)
    H = np.where(h.kernel_features(X) @ h.projection_ >= 0, 1.0, -1.0)
    assert np.array_equal(H > 0, np.unpackbits(h.encode(X), axis=1).astype(bool))
    for k in range(r):                               # Q after k + 1 bits: sum over pairs of (h_i·h_j − r S_ij)²
        total = 0.0
        for i in range(len(X)):
            for j in range(len(X)):
                s = 1.0 if y[i] == y[j] else -1.0
                total += (sum(H[i, t] * H[j, t] for t in range(k + 1)) - r * s) ** 2
        assert h.objective_[k] == pytest.approx(total, rel=1e-12)
    # every bit lowers Q here, and 8 bits beat the best of 200 random one-code-per-class codebooks
    # (0.84 r² l²; no bits: Q = ‖r S‖² = r² l²)
    assert np.all(np.diff(h.objective_) < 0), h.objective_
    assert h.objective_[-1] < 0.8 * (r ** 2) * len(X) ** 2


def KSHpair(y):
    return np.array([[1.0 if a == b else -1.0 for b in y] for a in y])


def test_ksh_spectral_initialisation_and_descent():
    rng = np.random.default_rng(0)
    l, m = 80, 12
    Kl = rng.normal(size=(l, m))
    y = rng.integers(0, 3, size=l)
    S = KSHpair(y)
    h = create_hasher("ksh", 8, n_iter=50)
    R = 8 * S
    # the spectral step's direction maximises aᵀ K̄ᵀ R K̄ a on aᵀ K̄ᵀ K̄ a = l: check against random directions
    G = Kl.T @ Kl
    M = Kl.T @ R @ Kl
    w, V = np.linalg.eigh(np.linalg.solve(np.linalg.cholesky(G), M) @ np.linalg.inv(np.linalg.cholesky(G)).T)
    a0 = np.linalg.inv(np.linalg.cholesky(G)).T @ V[:, -1]
    a0 *= np.sqrt(l / (a0 @ G @ a0))
    best_random = max((lambda a: (a @ M @ a) * l / (a @ G @ a))(rng.normal(size=m)) for _ in range(200))
    assert a0 @ M @ a0 >= best_random - 1e-6
    # the smoothed descent lowers the smoothed objective −φ(K̄a)ᵀ R φ(K̄a) from that start
    f = lambda a: -np.tanh(0.5 * Kl @ a) @ R @ np.tanh(0.5 * Kl @ a)
    a1 = h._smoothed_descent(Kl, R, a0)
    assert f(a1) < f(a0)
    # and the greedy fit keeps, per bit, the better discrete score of the two
    A, obj = h._greedy_bits(Kl, S)
    h1 = np.where(Kl @ A[:, 0] >= 0, 1.0, -1.0)
    h_init = np.where(Kl @ a0 >= 0, 1.0, -1.0)
    assert h1 @ R @ h1 >= h_init @ R @ h_init - 1e-9
    assert obj[0] == pytest.approx(float(((R - np.outer(h1, h1)) ** 2).sum()))


def test_ksh_codes_separate_classes_and_check_params(blobs):
    X, y = blobs
    rel = relevance_matrix(y, y)
    scores = {}
    for name in ("lsh", "ksh"):
        h = create_hasher(name, 16, seed=0).fit(X, y)
        c = h.encode(X)
        scores[name] = mean_average_precision(hamming_matrix(c, c), rel, 100)
    assert scores["ksh"] > scores["lsh"] + 0.05, scores
    with pytest.raises(ConfigError, match="ksh n_anchors must be an integer >= 2; got 1"):
        create_hasher("ksh", 16, n_anchors=1).fit(X, y)
    with pytest.raises(ConfigError, match="needs labels"):
        create_hasher("ksh", 16).fit(X)


def test_methods_listing_names_the_implicit_family():
    from click.testing import CliRunner

    from deephash.cli.main import cli

    r = CliRunner().invoke(cli, ["methods", "--long"])
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line for line in r.output.splitlines()}
    for name, family in (("mihash", "implicit (mutual information)"), ("talr", "implicit (tie-aware ranking)"),
                         ("adsh", "implicit (angular)"), ("ksh", "baseline (supervised, kernel)")):
        assert rows[name].split()[1] == "supervised" and rows[name].endswith(family), rows[name]
    plain = CliRunner().invoke(cli, ["methods"]).output.splitlines()
    assert {"mihash", "talr", "adsh", "ksh"} <= set(plain)
