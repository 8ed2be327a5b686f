"""CSQ's central similarity loss recomputed the slow obvious way; the hasher on tiny features."""
import math

import numpy as np
import pytest
import torch

from deephash.errors import ConfigError
from deephash.hashers import create_hasher
from deephash.losses import CentralSimilarityLoss, hadamard_centers


def slow_csq(u, c, lam):
    n, k = len(u), len(u[0])
    bce = quant = 0.0
    for i in range(n):
        for j in range(k):
            p = min(max((u[i][j] + 1) / 2, 1e-7), 1 - 1e-7)
            t = (c[i][j] + 1) / 2
            bce += -(t * math.log(p) + (1 - t) * math.log(1 - p))
            quant += (abs(u[i][j]) - 1) ** 2
    return bce / (n * k) + lam * quant / (n * k)


@pytest.mark.parametrize("lam", [0.0, 1e-4, 0.5])
def test_central_similarity_loss_matches_slow_loop(lam):
    rng = np.random.default_rng(3)
    u = torch.tanh(torch.from_numpy(rng.normal(size=(6, 16))))
    c = torch.from_numpy(rng.choice([-1.0, 1.0], size=(6, 16)))
    loss, logs = CentralSimilarityLoss(lam)(u, c)
    assert float(loss) == pytest.approx(slow_csq(u.tolist(), c.tolist(), lam), rel=1e-5)
    assert set(logs) == {"central", "quant"}


def test_hadamard_centres_are_half_apart():
    c = hadamard_centers(10, 64)
    assert c.shape == (10, 64) and set(c.unique().tolist()) == {-1.0, 1.0}
    d = (c[:, None, :] != c[None, :, :]).sum(-1)
    assert (d[~torch.eye(10, dtype=bool)] == 32).all()
    r = hadamard_centers(5, 12)  # not a power of two: random +-1
    assert r.shape == (5, 12) and set(r.unique().tolist()) <= {-1.0, 1.0}
    with pytest.raises(ConfigError):
        CentralSimilarityLoss(-1.0)
    with pytest.raises(ConfigError):
        CentralSimilarityLoss()(torch.zeros(2, 4), torch.zeros(3, 4))


def test_csq_learns_separable_classes_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 40)
    X = (rng.normal(size=(160, 8)) + np.eye(4, 8)[y] * 4).astype(np.float32)
    h = create_hasher("csq", 16, n_iters=200, lr=1e-2, device="cpu").fit(X, y)
    assert (h.classify(X) == y).mean() > 0.95
    codes = h.encode(X)
    from deephash.hashers import load_hasher

    h.save(tmp_path / "csq.pt")
    h2 = load_hasher(tmp_path / "csq.pt")[0]
    assert np.array_equal(h2.encode(X), codes)
