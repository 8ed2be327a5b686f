"""mAP against a brute-force implementation on small random cases."""
import numpy as np
import pytest

from deephash.eval.metrics import mean_average_precision, relevance_matrix


def brute_map(dist, rel, topk=None):
    aps = []
    for d, r in zip(dist, rel):
        order = sorted(range(len(d)), key=lambda j: (d[j], j))
        if topk is not None:
            order = order[:topk]
        hits, s = 0, 0.0
        for rank, j in enumerate(order, 1):
            if r[j]:
                hits += 1
                s += hits / rank
        aps.append(s / hits if hits else 0.0)
    return sum(aps) / len(aps)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("topk", [None, 1, 7, 30])
def test_map_matches_brute_force(seed, topk):
    rng = np.random.default_rng(seed)
    dist = rng.integers(0, 6, size=(9, 40))  # many ties
    rel = rng.random((9, 40)) < 0.3
    rel[0] = False  # a query with no relevant item scores 0 and counts
    assert mean_average_precision(dist, rel, topk) == pytest.approx(brute_map(dist, rel, topk))


def test_relevance_multilabel_shares_one_label():
    q = np.array([[1, 0, 1], [0, 1, 0]])
    d = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    assert relevance_matrix(q, d).tolist() == [[True, True, True, False], [False, True, False, False]]
