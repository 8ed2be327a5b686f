"""MHCLN's losses recomputed the slow obvious way and compared."""
import math

import numpy as np
import pytest
import torch

from deephash.errors import ConfigError
from deephash.losses import MHCLNLoss


def slow_mhcln(a, p, n, variant, alpha, l1, l2):
    M, K = len(a), len(a[0])

    def norm(v):
        s = math.sqrt(sum(x * x for x in v))
        return [x / s for x in v]

    trip = []
    for i in range(M):
        ai, pi, ni = (a[i], p[i], n[i]) if variant == "paper" else (norm(a[i]), norm(p[i]), norm(n[i]))
        dap = sum((x - y) ** 2 for x, y in zip(ai, pi))
        dan = sum((x - y) ** 2 for x, y in zip(ai, ni))
        trip.append(max(0.0, dap - dan + alpha))
    allv = list(a) + list(p) + list(n)
    push = [sum((x - 0.5) ** 2 for x in v) for v in allv]
    bal = [(sum(v) / K - 0.5) ** 2 for v in allv]
    red = (lambda xs: sum(xs) / len(xs)) if variant == "code" else sum
    return red(trip) + l1 * (-(1.0 / K) * red(push)) + l2 * red(bal)


@pytest.mark.parametrize("variant,alpha", [("paper", 1.0), ("code", 0.2), ("paper", 3.0)])
def test_mhcln_loss_matches_slow_loop(variant, alpha):
    rng = np.random.default_rng(1)
    a, p, n = (torch.sigmoid(torch.from_numpy(rng.normal(size=(7, 16))).double()) for _ in range(3))
    loss, logs = MHCLNLoss(variant=variant, alpha=alpha)(a, p, n)
    ref = slow_mhcln(a.tolist(), p.tolist(), n.tolist(), variant, alpha, 0.001, 1.0)
    assert float(loss) == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert set(logs) == {"triplet", "push", "balance"}


def test_mhcln_defaults_follow_the_paper_and_code():
    assert MHCLNLoss(variant="code").alpha == 0.2
    loss = MHCLNLoss()
    assert (loss.lambda1, loss.lambda2) == (0.001, 1.0)


def test_mhcln_loss_rejects_bad_input():
    with pytest.raises(ConfigError, match="variant must be 'paper' or 'code'"):
        MHCLNLoss(variant="x")
    with pytest.raises(ConfigError, match="share a"):
        MHCLNLoss()(torch.zeros(3, 8), torch.zeros(3, 8), torch.zeros(2, 8))
