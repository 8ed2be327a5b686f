"""Every metric against a slow, obvious pure-Python reference (loops over queries and ranks).

Tie-aware references enumerate tie orders exactly: either every permutation inside every tie
(tiny cases) or every placement of the relevant items inside each tie (each placement is
equally likely under a uniformly random order), so nothing here is random or can flake.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from deephash.errors import ConfigError
from deephash.eval.metrics import (
    evaluate_codes,
    evaluate_distances,
    evaluate_features,
    mean_average_precision,
    pr_curve_over_radii,
    precision_at_k_curve,
    precision_recall_at_radius,
    relevance_matrix,
    tie_aware_map,
)

# ---------------------------------------------------------------- references


def ref_order(d: list) -> list[int]:
    """Ascending distance, ties by database position."""
    return sorted(range(len(d)), key=lambda j: (d[j], j))


def ref_ap(rel_in_order: list, K: int) -> float:
    hits, total = 0, 0.0
    for rank, r in enumerate(rel_in_order[:K], start=1):
        if r:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def ref_map(dist, rel, topk=None) -> float:
    aps = []
    for d, r in zip(np.asarray(dist).tolist(), np.asarray(rel).tolist()):
        K = len(d) if topk is None else min(topk, len(d))
        aps.append(ref_ap([r[j] for j in ref_order(d)], K))
    return sum(aps) / len(aps)


def tie_groups(d: list) -> list[list[int]]:
    return [[j for j in range(len(d)) if d[j] == v] for v in sorted(set(d))]


def ref_tie_ap_permutations(d: list, r: list, K: int) -> float:
    """Mean AP@K over every order of the items inside every tie."""
    total, count = 0.0, 0
    for perms in itertools.product(*[itertools.permutations(g) for g in tie_groups(d)]):
        order = [j for p in perms for j in p]
        total += ref_ap([r[j] for j in order], K)
        count += 1
    return total / count


def ref_tie_ap_placements(d: list, r: list, K: int, stat=ref_ap) -> float:
    """Mean of ``stat`` over every placement of the relevant items inside each tie (all equally likely)."""
    per_group = []
    for g in tie_groups(d):
        n, m = len(g), sum(r[j] for j in g)
        per_group.append([[1 if i in pos else 0 for i in range(n)] for pos in itertools.combinations(range(n), m)])
    total, count = 0.0, 0
    for pats in itertools.product(*per_group):
        total += stat([x for p in pats for x in p], K)
        count += 1
    return total / count


def ref_tie_map(dist, rel, topk=None, enumerate_with=ref_tie_ap_placements) -> float:
    aps = []
    for d, r in zip(np.asarray(dist).tolist(), np.asarray(rel).tolist()):
        K = len(d) if topk is None else min(topk, len(d))
        aps.append(enumerate_with(d, [int(x) for x in r], K))
    return sum(aps) / len(aps)


def ref_radius(dist, rel, radius):
    ps, rs = [], []
    for d, r in zip(np.asarray(dist).tolist(), np.asarray(rel).tolist()):
        ball = [j for j in range(len(d)) if d[j] <= radius]
        hits = sum(1 for j in ball if r[j])
        ps.append(hits / len(ball) if ball else 0.0)
        rs.append(hits / sum(r) if sum(r) else 0.0)
    return sum(ps) / len(ps), sum(rs) / len(rs)


def ref_p_at_k(dist, rel, ks):
    out = []
    for k in ks:
        vals = []
        for d, r in zip(np.asarray(dist).tolist(), np.asarray(rel).tolist()):
            vals.append(sum(r[j] for j in ref_order(d)[:k]) / k)
        out.append(sum(vals) / len(vals))
    return out


def ref_p_at_k_tie(dist, rel, ks):
    out = []
    for k in ks:
        vals = []
        for d, r in zip(np.asarray(dist).tolist(), np.asarray(rel).tolist()):
            vals.append(ref_tie_ap_placements(d, [int(x) for x in r], k, stat=lambda rr, K: sum(rr[:K]) / K))
        out.append(sum(vals) / len(vals))
    return out


def ref_hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((len(a), len(b)), dtype=np.int64)
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(a[i], b[j]))
    return out


def random_case(rng, nq, ndb, n_values, p_rel=0.35):
    dist = rng.integers(0, n_values, size=(nq, ndb))
    rel = rng.random((nq, ndb)) < p_rel
    return dist, rel


# ---------------------------------------------------------------- hand-made cases


def test_hand_made_ap_values():
    # ranks 1 and 3 relevant: (1/1 + 2/3) / 2
    assert mean_average_precision([[0, 1, 2]], [[1, 0, 1]]) == pytest.approx((1 + 2 / 3) / 2)
    # cutoff 2 keeps only rank 1: AP@2 = 1 (divides by relevant items *found*)
    assert mean_average_precision([[0, 1, 2]], [[1, 0, 1]], topk=2) == pytest.approx(1.0)


def test_query_without_relevant_scores_zero_and_counts():
    dist = [[0, 1, 2], [0, 1, 2]]
    rel = [[1, 1, 1], [0, 0, 0]]
    assert mean_average_precision(dist, rel) == pytest.approx(0.5)
    assert tie_aware_map(dist, rel) == pytest.approx(0.5)
    assert precision_recall_at_radius(dist, rel, radius=0) == pytest.approx((0.5, 1 / 6))


def test_tie_hand_made():
    # two items at distance 0, the first relevant: the stable order puts it first (AP 1),
    # a random order gives 1/2 * 1 + 1/2 * 1/2 = 0.75
    assert mean_average_precision([[0, 0]], [[1, 0]]) == pytest.approx(1.0)
    assert tie_aware_map([[0, 0]], [[1, 0]]) == pytest.approx(0.75)
    # all tied and all relevant: no ambiguity
    assert tie_aware_map([[3, 3, 3]], [[1, 1, 1]]) == pytest.approx(1.0)


def test_topk_cut_inside_a_tie_hand_made():
    # rank 1 irrelevant; rank 2 is one of three tied items, one of them relevant.
    # Stable order: the relevant one (position 1) takes rank 2 -> AP@2 = (1/2) / 1 = 0.5.
    # Random tie order: it lands in the top 2 with probability 1/3 -> expected AP@2 = 1/6.
    d, r = [[0, 1, 1, 1]], [[0, 1, 0, 0]]
    assert mean_average_precision(d, r, topk=2) == pytest.approx(0.5)
    assert tie_aware_map(d, r, topk=2) == pytest.approx(1 / 6)
    # a ratio of expectations would give E[num]/E[den] = (1/3 * 1/2) / (1/3) = 1/2 -- not what we compute
    d, r = [[1, 1, 1, 1]], [[1, 1, 0, 0]]
    # K=2: X ~ hypergeometric(4, 2, 2): P(0)=1/6, P(1)=4/6, P(2)=1/6.
    # X=1: relevant at rank 1 or 2 with prob 1/2 each -> AP 1 or 1/2; X=2: AP 1.
    expected = 4 / 6 * (0.5 * 1 + 0.5 * 0.5) + 1 / 6 * 1.0
    assert tie_aware_map(d, r, topk=2) == pytest.approx(expected)
    assert ref_tie_map(d, r, 2, ref_tie_ap_permutations) == pytest.approx(expected)


def test_empty_radius_ball_scores_precision_zero():
    dist = [[3, 4, 5], [0, 4, 5]]
    rel = [[1, 1, 0], [1, 0, 0]]
    p, r = precision_recall_at_radius(dist, rel, radius=2)
    assert p == pytest.approx(0.5)  # query 0: empty ball -> 0; query 1: 1/1
    assert r == pytest.approx(0.5)  # query 0: 0/2; query 1: 1/1
    curve = pr_curve_over_radii(np.array(dist), np.array(rel), n_bits=8)
    assert curve["precision"][0] == pytest.approx(0.5)
    assert curve["recall"][-1] == pytest.approx(1.0)


def test_multi_label_relevance_shares_at_least_one_label():
    q = np.array([[1, 0, 1], [0, 0, 0]])
    db = np.array([[0, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 0]])
    rel = relevance_matrix(q, db)
    assert rel.tolist() == [[True, False, True, False], [False, False, False, False]]
    dist = np.array([[2, 0, 1, 3], [0, 1, 2, 3]])
    # query 0 ranks db1 (irrelevant), db2 (relevant), db0 (relevant): (1/2 + 2/3) / 2; query 1: none -> 0
    assert mean_average_precision(dist, rel) == pytest.approx(((1 / 2 + 2 / 3) / 2 + 0) / 2)


def test_single_label_relevance():
    assert relevance_matrix(np.array([0, 1]), np.array([1, 0, 1])).tolist() == [[False, True, False], [True, False, True]]


# ---------------------------------------------------------------- random cases against the references


@pytest.mark.parametrize("seed", range(6))
def test_map_matches_reference_random(seed):
    rng = np.random.default_rng(seed)
    dist, rel = random_case(rng, nq=7, ndb=40, n_values=6)
    for topk in (None, 1, 5, 17, 40, 100):
        assert mean_average_precision(dist, rel, topk) == pytest.approx(ref_map(dist, rel, topk), abs=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_tie_aware_matches_all_permutations_tiny(seed):
    rng = np.random.default_rng(seed)
    ndb = int(rng.integers(1, 8))
    dist, rel = random_case(rng, nq=2, ndb=ndb, n_values=3, p_rel=0.4)
    for topk in range(1, ndb + 1):
        want = ref_tie_map(dist, rel, topk, ref_tie_ap_permutations)
        assert tie_aware_map(dist, rel, topk) == pytest.approx(want, abs=1e-12)
        # the float path (sort-based grouping) gives the same answer
        assert tie_aware_map(dist * 0.5 + 0.25, rel, topk) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_tie_aware_matches_all_placements_larger_ties(seed):
    rng = np.random.default_rng(100 + seed)
    dist, rel = random_case(rng, nq=3, ndb=16, n_values=3, p_rel=0.3)
    for topk in (None, 1, 3, 7, 11, 16):
        want = ref_tie_map(dist, rel, topk)
        assert tie_aware_map(dist, rel, topk) == pytest.approx(want, abs=1e-12)


def test_tie_aware_equals_usual_without_ties():
    rng = np.random.default_rng(3)
    dist = rng.random((20, 300))
    rel = rng.random((20, 300)) < 0.1
    for topk in (None, 10, 100):
        assert tie_aware_map(dist, rel, topk) == pytest.approx(mean_average_precision(dist, rel, topk), abs=1e-12)


def test_tie_aware_is_the_mean_over_database_shuffles_large():
    """Large ties (thousands of items): the closed form stays exact to rounding; checked against
    the mean of the usual mAP over many seeded shuffles of the database (deterministic seed; the
    tolerance is 6 standard errors of that mean)."""
    rng = np.random.default_rng(7)
    dist, rel = random_case(rng, nq=3, ndb=3000, n_values=4, p_rel=0.1)
    for topk in (None, 1000):
        exact = tie_aware_map(dist, rel, topk)
        vals = []
        for _ in range(300):
            p = rng.permutation(dist.shape[1])
            vals.append(mean_average_precision(dist[:, p], rel[:, p], topk))
        vals = np.array(vals)
        assert abs(vals.mean() - exact) < 6 * vals.std(ddof=1) / math.sqrt(len(vals)) + 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_radius_matches_reference(seed):
    rng = np.random.default_rng(seed)
    dist, rel = random_case(rng, nq=9, ndb=30, n_values=9, p_rel=0.3)
    rel[0] = False  # a query with nothing relevant
    for radius in (0, 1, 2, 5, 8):
        assert precision_recall_at_radius(dist, rel, radius) == pytest.approx(ref_radius(dist, rel, radius), abs=1e-12)
    curve = pr_curve_over_radii(dist, rel, n_bits=8)
    assert curve["radius"].tolist() == list(range(9))
    for r in range(9):
        p, rc = ref_radius(dist, rel, r)
        assert curve["precision"][r] == pytest.approx(p, abs=1e-12)
        assert curve["recall"][r] == pytest.approx(rc, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_precision_at_k_matches_reference(seed):
    rng = np.random.default_rng(seed)
    dist, rel = random_case(rng, nq=4, ndb=14, n_values=3, p_rel=0.3)
    ks = [1, 2, 5, 9, 14]
    got = precision_at_k_curve(dist, rel, ks)
    assert got["k"].tolist() == ks
    np.testing.assert_allclose(got["precision"], ref_p_at_k(dist, rel, ks), atol=1e-12)
    got = precision_at_k_curve(dist, rel, ks, tie_aware=True)
    np.testing.assert_allclose(got["precision"], ref_p_at_k_tie(dist, rel, ks), atol=1e-12)
    got = precision_at_k_curve(dist * 0.1, rel, ks, tie_aware=True)  # float path
    np.testing.assert_allclose(got["precision"], ref_p_at_k_tie(dist, rel, ks), atol=1e-12)


# ---------------------------------------------------------------- evaluate_codes / evaluate_features


def _labelled_codes(rng, n, n_classes=3, n_bytes=1, multi=False):
    codes = rng.integers(0, 256, size=(n, n_bytes), dtype=np.uint8)
    if multi:
        labels = (rng.random((n, n_classes)) < 0.35).astype(np.int64)
    else:
        labels = rng.integers(0, n_classes, size=n)
    return codes, labels


@pytest.mark.parametrize("multi", [False, True])
def test_evaluate_codes_matches_references(multi):
    rng = np.random.default_rng(11 if multi else 12)
    qc, ql = _labelled_codes(rng, 6, multi=multi)
    dc, dl = _labelled_codes(rng, 13, multi=multi)
    dist = ref_hamming(qc, dc)
    rel = np.array([[bool(np.any(np.logical_and(a, b))) if multi else a == b for b in dl] for a in ql])
    res = evaluate_codes(qc, dc, ql, dl, 5, radius=2, ks=[1, 3, 13])
    assert res["map"] == pytest.approx(ref_map(dist, rel, 5), abs=1e-12)
    assert res["tie_aware_map"] == pytest.approx(ref_tie_map(dist, rel, 5), abs=1e-12)
    assert (res["precision_at_radius"], res["recall_at_radius"]) == pytest.approx(ref_radius(dist, rel, 2), abs=1e-12)
    assert res["empty_ball_fraction"] == pytest.approx(np.mean([(row <= 2).sum() == 0 for row in dist]))
    np.testing.assert_allclose(res["p_at_k"]["precision"], ref_p_at_k(dist, rel, [1, 3, 13]), atol=1e-12)
    np.testing.assert_allclose(res["p_at_k"]["precision_tie_aware"], ref_p_at_k_tie(dist, rel, [1, 3, 13]), atol=1e-12)
    for r in (0, 3, 8):
        assert (res["pr_curve"]["precision"][r], res["pr_curve"]["recall"][r]) == pytest.approx(
            ref_radius(dist, rel, r), abs=1e-12
        )
    assert res["queries_without_relevant"] == int((rel.sum(axis=1) == 0).sum())
    assert res["n_bits"] == 8 and res["topk"] == 5 and res["n_query"] == 6 and res["n_db"] == 13


def test_evaluate_codes_leave_one_out_drops_each_query_itself():
    rng = np.random.default_rng(5)
    codes, labels = _labelled_codes(rng, 12, n_bytes=1)
    res = evaluate_codes(codes, codes, labels, labels, None, exclude_self=True, ks=[1, 11])
    full = ref_hamming(codes, codes)
    aps, ties, p1 = [], [], []
    for i in range(12):
        keep = [j for j in range(12) if j != i]
        d = [int(full[i, j]) for j in keep]
        r = [int(labels[i] == labels[j]) for j in keep]
        aps.append(ref_ap([r[j] for j in ref_order(d)], 11))
        ties.append(ref_tie_ap_placements(d, r, 11))
        p1.append(r[ref_order(d)[0]])
    assert res["map"] == pytest.approx(np.mean(aps), abs=1e-12)
    assert res["tie_aware_map"] == pytest.approx(np.mean(ties), abs=1e-12)
    assert res["p_at_k"]["precision"][0] == pytest.approx(np.mean(p1))
    assert res["n_db"] == 11 and res["topk"] == 11
    with pytest.raises(ConfigError, match="leave-one-out needs the queries to be the database"):
        evaluate_codes(codes[:3], codes, labels[:3], labels, None, exclude_self=True)


def test_evaluate_codes_agrees_with_the_matrix_functions_in_blocks(monkeypatch):
    import deephash.eval.metrics as m

    monkeypatch.setattr(m, "_MAX_CELLS", 500)  # force many small blocks
    rng = np.random.default_rng(2)
    qc, ql = _labelled_codes(rng, 37, n_classes=4, n_bytes=2)
    dc, dl = _labelled_codes(rng, 210, n_classes=4, n_bytes=2)
    from deephash.codes import hamming_matrix

    dist, rel = hamming_matrix(qc, dc), relevance_matrix(ql, dl)
    res = evaluate_codes(qc, dc, ql, dl, 50)
    assert res["map"] == pytest.approx(mean_average_precision(dist, rel, 50), abs=1e-12)
    assert res["tie_aware_map"] == pytest.approx(tie_aware_map(dist, rel, 50), abs=1e-12)
    curve = pr_curve_over_radii(dist, rel, 16)
    np.testing.assert_allclose(res["pr_curve"]["precision"], curve["precision"], atol=1e-12)


def test_evaluate_features_matches_reference():
    rng = np.random.default_rng(9)
    qf, df = rng.normal(size=(5, 4)), rng.normal(size=(20, 4))
    ql, dl = rng.integers(0, 3, 5), rng.integers(0, 3, 20)
    rel = relevance_matrix(ql, dl)
    cos = [[1 - float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)) for b in df] for a in qf]
    euc = [[float(np.linalg.norm(a - b)) for b in df] for a in qf]
    res = evaluate_features(qf, df, ql, dl, 10, metric="cosine")
    assert res["map"] == pytest.approx(ref_map(cos, rel, 10), abs=1e-9)
    assert res["tie_aware_map"] == pytest.approx(res["map"], abs=1e-9)  # no ties in float distances
    res = evaluate_features(qf, df, ql, dl, None, metric="euclidean")
    assert res["map"] == pytest.approx(ref_map(euc, rel, None), abs=1e-9)
    assert "pr_curve" not in res


# ---------------------------------------------------------------- errors say what was expected


def test_errors_are_actionable():
    with pytest.raises(ConfigError, match="differ in shape"):
        mean_average_precision(np.zeros((2, 3)), np.zeros((2, 4), bool))
    with pytest.raises(ConfigError, match="topk must be >= 1"):
        tie_aware_map(np.zeros((2, 3)), np.zeros((2, 3), bool), topk=0)
    with pytest.raises(ConfigError, match="radius must be >= 0"):
        precision_recall_at_radius(np.zeros((1, 3)), np.zeros((1, 3), bool), radius=-1)
    with pytest.raises(ConfigError, match="needs integer distances"):
        pr_curve_over_radii(np.zeros((1, 3)), np.zeros((1, 3), bool), n_bits=8)
    with pytest.raises(ConfigError, match=r"must lie in \[0, n_bits=8\]"):
        pr_curve_over_radii(np.full((1, 3), 9), np.zeros((1, 3), bool), n_bits=8)
    with pytest.raises(ConfigError, match="ks must be"):
        precision_at_k_curve(np.zeros((1, 3)), np.zeros((1, 3), bool), ks=[0, 4])
    with pytest.raises(ConfigError, match="metric must be 'cosine' or 'euclidean'"):
        evaluate_features(np.zeros((1, 2)), np.zeros((2, 2)), [0], [0, 1], metric="dot")
    with pytest.raises(ConfigError, match="radius must be between 0 and n_bits=8"):
        evaluate_codes(np.zeros((1, 1), np.uint8), np.zeros((2, 1), np.uint8), [0], [0, 1], radius=9)


def test_evaluate_codes_takes_a_protocol():
    from deephash.eval.protocols import get_protocol

    rng = np.random.default_rng(4)
    codes, labels = _labelled_codes(rng, 40, n_bytes=2)
    loo = get_protocol("leave-one-out")
    res = evaluate_codes(codes, codes, labels, labels, loo)
    assert res["exclude_self"] and res["topk"] == 20 and res["n_db"] == 39
    assert (res["protocol"], res["protocol_version"]) == ("leave-one-out", 1)
    same = evaluate_codes(codes, codes, labels, labels, 20, exclude_self=True)
    assert same["map"] == res["map"] and same["tie_aware_map"] == res["tie_aware_map"]
    p54 = get_protocol("cifar10-54k")
    res = evaluate_codes(codes[:5], codes, labels[:5], labels, p54)
    assert not res["exclude_self"] and res["topk"] == 40  # mAP@54000 on a 40-item database = all
    assert evaluate_codes(codes, codes, labels, labels, "leave-one-out")["map"] == same["map"]
    with pytest.raises(ConfigError, match="protocol_or_topk must be a Protocol, a protocol name"):
        evaluate_codes(codes, codes, labels, labels, 0.5)


@pytest.mark.parametrize("topk", [None, 7])
def test_evaluate_distances_matches_the_slow_reference(topk):
    """Any distance (here integer-valued floats, so ties abound): mAP by the slow sort, ties by
    database position; the same numbers as evaluate_codes would give for those distances."""
    rng = np.random.default_rng(4)
    D = rng.integers(0, 5, (23, 40)).astype(np.float64)
    yq, yd = rng.integers(0, 3, 23), rng.integers(0, 3, 40)
    r = evaluate_distances(lambda sl: D[sl], 23, 40, yq, yd, topk, name="toy")
    K = 40 if topk is None else topk
    want = np.mean([ref_ap([yd[j] == yq[i] for j in ref_order(D[i].tolist())], K) for i in range(23)])
    assert r["map"] == pytest.approx(want) and r["kind"] == "distances" and r["distance"] == "toy"
    assert r["tie_aware_map"] == pytest.approx(tie_aware_map(D, relevance_matrix(yq, yd), topk))
    assert "precision_at_radius" not in r and r["n_db"] == 40
