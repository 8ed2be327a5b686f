"""Deep Ranking's hinge and the SPP-PMT pairwise likelihood, recomputed the slow obvious way."""
import math

import numpy as np
import pytest
import torch

from deephash.errors import ConfigError
from deephash.losses import DeepRankingLoss, DPSHLoss


def slow_ranking(q, p, n, gap, squared):
    out = []
    for qi, pi, ni in zip(q, p, n):
        dp = sum((a - b) ** 2 for a, b in zip(qi, pi))
        dn = sum((a - b) ** 2 for a, b in zip(qi, ni))
        if not squared:
            dp, dn = math.sqrt(dp), math.sqrt(dn)
        out.append(max(0.0, gap + dp - dn))
    return sum(out) / len(out)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("gap", [1.0, 0.3])
def test_deep_ranking_loss_matches_slow_loop(gap, squared):
    g = torch.Generator().manual_seed(0)
    q, p, n = (torch.randn(7, 5, generator=g) * 0.6 for _ in range(3))
    loss, logs = DeepRankingLoss(gap=gap, squared=squared)(q, p, n)
    assert loss.item() == pytest.approx(slow_ranking(q.tolist(), p.tolist(), n.tolist(), gap, squared), rel=1e-5)
    assert 0.0 <= logs["active"] <= 1.0


def test_deep_ranking_loss_checks_shapes():
    with pytest.raises(ConfigError, match="share a"):
        DeepRankingLoss()(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ConfigError, match="gap must be"):
        DeepRankingLoss(gap=-1)


def slow_pairwise(u, y, eta):
    n, K = len(u), len(u[0])
    terms = []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            theta = 0.5 * sum(a * b for a, b in zip(u[i], u[j]))
            s = 1.0 if (y[i] == y[j] if not isinstance(y[i], list) else any(a and b for a, b in zip(y[i], y[j]))) else 0.0
            terms.append(math.log1p(math.exp(theta)) - s * theta)
    quant = sum(sum((x - (1.0 if x > 0 else -1.0 if x < 0 else 0.0)) ** 2 for x in row) for row in u) / n / K
    return sum(terms) / len(terms) + eta * quant


@pytest.mark.parametrize("eta", [0.0, 0.1, 1.0])
def test_pairwise_likelihood_matches_slow_loop(eta):
    g = torch.Generator().manual_seed(1)
    u = torch.randn(6, 8, generator=g) * 1.5
    y = torch.tensor([0, 1, 0, 2, 1, 1])
    loss, logs = DPSHLoss(eta=eta)(u, y)
    assert loss.item() == pytest.approx(slow_pairwise(u.tolist(), y.tolist(), eta), rel=1e-5)


def test_pairwise_likelihood_multi_hot_shares_a_label():
    g = torch.Generator().manual_seed(2)
    u = torch.randn(5, 8, generator=g)
    y = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]])
    loss, _ = DPSHLoss(eta=0.1)(u, y)
    assert loss.item() == pytest.approx(slow_pairwise(u.tolist(), [[bool(v) for v in r] for r in y.tolist()], 0.1), rel=1e-5)


def test_pairwise_likelihood_pulls_same_class_together():
    torch.manual_seed(0)
    u = (torch.randn(4, 8) * 0.1).requires_grad_(True)
    y = torch.tensor([0, 0, 1, 1])
    opt = torch.optim.SGD([u], lr=0.5)
    for _ in range(50):
        loss, _ = DPSHLoss(eta=0.0)(u, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    g = u.detach() @ u.detach().T
    assert g[0, 1] > 0 and g[2, 3] > 0 and g[0, 2] < 0 and g[1, 3] < 0
