"""Retrieval metrics over Hamming (or any) distance matrices.

Conventions, written down once:
- ``relevance[i, j]`` is True when database item j is relevant to query i (same label, or
  at least one shared label for multi-label data).
- Ranking: ascending distance; ties are ordered by database position (a stable sort), the
  order deephash's index returns. :func:`tie_aware_map` removes that arbitrariness.
- mAP@K: AP of a query = (1 / R_K) * sum_{k <= K, rel_k} P@k, where R_K is the number of
  relevant items *found in the top K*; a query with none in its top K scores 0, and counts.
  ``topk=None`` means K = the database size ("mAP@all"); a ``topk`` larger than the database
  is clipped to it.
- Every metric is a plain mean over *all* queries (macro average); queries with no relevant
  item in the database count, with the score each metric's docstring gives them (0).

Tie-aware AP (:func:`tie_aware_map`), derived
----------------------------------------------
Hamming distances take at most ``n_bits + 1`` values, so thousands of database items share a
distance and the usual AP depends on how the sort happens to order them. Tie-aware AP is the
*expected* AP when the items inside every tie are put in uniformly random order (the
"tie-aware" evaluation of McFee & Lanckriet 2010 and Cormack & Lynam 2006; He et al. 2018 use
it for hashing). It has a closed form; we derive it here and the tests check it against
explicit enumeration of all tie orders.

Sort the database into tie groups g = 1, 2, ... by distance. Group g holds n_g items, m_g of
them relevant; N_g items and R_g relevant items come before it. A relevant item placed at
position p (1..n_g) inside its group sits at rank N_g + p, and the relevant items above it are
R_g plus those among the p - 1 group positions before it. Under a uniformly random order
inside the group, with k = n_g positions and x = m_g relevant items among them:

    P(position p holds a relevant item)                   = x / k
    E[# relevant before p in the group | p is relevant]    = (p - 1)(x - 1) / (k - 1)

(the other x - 1 relevant items are spread uniformly over the other k - 1 positions). By
linearity of expectation the group adds, to the sum of precisions at relevant ranks,

    C(N, R, k, x) = sum_{p=1..k} (x / k) * (R + 1 + (p - 1)(x - 1)/(k - 1)) / (N + p)
                  = (x / k) * [ (R + 1) h + ((x - 1)/(k - 1)) (k - (N + 1) h) ],
    h = H(N + k) - H(N)   (H = harmonic numbers; sum_{p<=k} 1/(N+p) = h and
                           sum_{p<=k} (p-1)/(N+p) = k - (N+1) h),

with the second term 0 when k = 1. With no cutoff the AP denominator (all relevant items,
R) does not depend on the order, so tie-aware AP = sum_g C(N_g, R_g, n_g, m_g) / R exactly.

**Cutoff K inside a tie.** Let b be the group that contains rank K, with k' = K - N_b of its
n_b items inside the top K. Groups before b contribute S = sum_{g<b} C(...) whatever the order.
The number X of relevant items of group b that land in the top K is hypergeometric
(n_b items, m_b relevant, k' drawn). Given X = x the denominator R_K = R_b + x is fixed, and
the x relevant items are uniformly placed among the k' positions, so the top-K part of the
group adds C(N_b, R_b, k', x). Hence the exact expectation

    tie-aware AP@K = sum_x P(X = x) * (S + C(N_b, R_b, k', x)) / (R_b + x),

a term being 0 when R_b + x = 0 (no relevant item in the top K scores 0, as above). When the
cutoff falls on a group boundary, X = m_b with probability 1 and this is the plain formula.
Note the expectation of the *ratio*, not a ratio of expectations: it is exactly the mean of
mAP@K over all tie orders, which is what "tie-aware" promises.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from deephash.errors import ConfigError

#: P@K cutoffs used when none are given (clipped to the database size).
DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 2000, 5000)

_MAX_CELLS = 4_000_000  # cells of a (queries x database) block handled at once


def relevance_matrix(query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """Bool ``(nq, ndb)``: same label (1-D int labels) or >= 1 shared label (2-D multi-hot)."""
    q, d = np.asarray(query_labels), np.asarray(db_labels)
    if q.ndim != d.ndim:
        raise ConfigError(f"query labels are {q.ndim}-D, database labels {d.ndim}-D; both must be 1-D or multi-hot 2-D")
    if q.ndim == 1:
        return q[:, None] == d[None, :]
    if q.shape[1] != d.shape[1]:
        raise ConfigError(f"multi-hot labels disagree on the class count: {q.shape[1]} vs {d.shape[1]}")
    return (q.astype(np.float32) @ d.astype(np.float32).T) > 0


def _check(dist: np.ndarray, relevance: np.ndarray) -> None:
    if dist.shape != relevance.shape:
        raise ConfigError(f"distance matrix {dist.shape} and relevance matrix {relevance.shape} differ in shape")
    if dist.ndim != 2:
        raise ConfigError(f"distance matrix must be 2-D (queries, database); got shape {dist.shape}")


def _inputs(dist: Any, relevance: Any) -> tuple[np.ndarray, np.ndarray]:
    dist, relevance = np.asarray(dist), np.asarray(relevance, dtype=bool)
    _check(dist, relevance)
    return dist, relevance


def _cutoff(topk: int | None, n: int) -> int:
    K = n if topk is None else min(int(topk), n)
    if K < 1:
        raise ConfigError(f"topk must be >= 1 (and the database non-empty); got topk={topk} for {n} database items")
    return K


def _rows_per_block(n_db: int) -> int:
    return max(1, _MAX_CELLS // max(1, n_db))


def _sortable(d: np.ndarray) -> np.ndarray:
    """Cast small non-negative integer distances to uint16, where NumPy's stable sort is a radix sort."""
    if np.issubdtype(d.dtype, np.integer) and d.size and d.min() >= 0 and d.max() < 65536:
        return d.astype(np.uint16, copy=False)
    return d


# --------------------------------------------------------------------------------------------
# Per-block kernels: each works on a block of query rows and returns one value per query.
# --------------------------------------------------------------------------------------------


def _sorted_relevance(d: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable ascending order of each row: (sorted distances, relevance in that order)."""
    order = np.argsort(_sortable(d), axis=1, kind="stable")
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(rel, order, axis=1)


def _ap_sorted(rel_sorted: np.ndarray, K: int) -> np.ndarray:
    """AP@K per row of a relevance matrix already in rank order (the usual, tie-order-dependent AP)."""
    rel = rel_sorted[:, :K]
    hits = np.cumsum(rel, axis=1, dtype=np.int64)
    found = hits[:, -1]
    prec_sum = (rel * (hits / np.arange(1, K + 1)[None, :])).sum(axis=1)
    return np.where(found > 0, prec_sum / np.maximum(found, 1), 0.0)


def _groups_from_sorted(d_sorted: np.ndarray, rel_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tie groups of rows in rank order: ``(n, m)`` float arrays ``(b, n_db)``, padded with empty groups."""
    b, n = d_sorted.shape
    new = np.ones((b, n), dtype=bool)
    new[:, 1:] = d_sorted[:, 1:] != d_sorted[:, :-1]
    gid = np.cumsum(new, axis=1) - 1 + (np.arange(b) * n)[:, None]
    size = np.bincount(gid.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
    relc = np.bincount(gid.ravel(), weights=rel_sorted.ravel(), minlength=b * n).reshape(b, n)
    return size, relc


def _groups_from_ints(d: np.ndarray, rel: np.ndarray, n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """Tie groups of integer distances in ``[0, n_values)`` by counting (no sort): ``(b, n_values)``."""
    b = d.shape[0]
    key = (d.astype(np.int64) + (np.arange(b, dtype=np.int64) * n_values)[:, None]).ravel()
    size = np.bincount(key, minlength=b * n_values).reshape(b, n_values).astype(np.float64)
    relc = np.bincount(key[rel.ravel()], minlength=b * n_values).reshape(b, n_values).astype(np.float64)
    return size, relc


def _small_int_range(d: np.ndarray) -> int | None:
    """``max + 1`` when ``d`` holds non-negative integers small enough to count, else None."""
    if np.issubdtype(d.dtype, np.integer) and d.size and d.min() >= 0:
        top = int(d.max()) + 1
        if top <= 4096:
            return top
    return None


def _groups(d: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    top = _small_int_range(d)
    if top is not None:
        return _groups_from_ints(d, rel, top)
    ds, rs = _sorted_relevance(d, rel)
    return _groups_from_sorted(ds, rs)


class _Tables:
    """Harmonic numbers and log-factorials up to ``n``, shared by the tie-aware formulas."""

    def __init__(self, n: int) -> None:
        i = np.arange(1, n + 1, dtype=np.float64)
        self.H = np.concatenate([[0.0], np.cumsum(1.0 / i)])
        self.logfact = np.concatenate([[0.0], np.cumsum(np.log(i))])

    def C(self, N: np.ndarray, R: np.ndarray, k: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Expected sum of precisions at the relevant ranks of a block of ``k`` tied ranks after ``N``
        (``R`` relevant before), holding ``x`` relevant items in uniformly random order."""
        N, R, k, x = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(N, R, k, x))
        Ni, ki = N.astype(np.int64), k.astype(np.int64)
        h = self.H[Ni + ki] - self.H[Ni]
        with np.errstate(invalid="ignore", divide="ignore"):
            second = np.where(k > 1, (x - 1) / np.where(k > 1, k - 1, 1) * (k - (N + 1) * h), 0.0)
            out = np.where(k > 0, x / np.where(k > 0, k, 1) * ((R + 1) * h + second), 0.0)
        return np.where(x > 0, out, 0.0)

    def log_comb(self, n: np.ndarray, r: np.ndarray) -> np.ndarray:
        n, r = np.asarray(n, dtype=np.int64), np.asarray(r, dtype=np.int64)
        ok = (r >= 0) & (r <= n)
        rr, nn = np.clip(r, 0, None), np.maximum(n, 0)
        val = self.logfact[nn] - self.logfact[np.clip(rr, 0, nn)] - self.logfact[np.clip(nn - rr, 0, None)]
        return np.where(ok, val, -np.inf)


def _tie_aware_ap_groups(size: np.ndarray, relc: np.ndarray, K: int, tables: _Tables) -> np.ndarray:
    """Tie-aware AP@K per row from tie groups in rank order (see the module docstring)."""
    b = size.shape[0]
    n_db = int(size[0].sum()) if b else 0
    N = np.cumsum(size, axis=1) - size
    R = np.cumsum(relc, axis=1) - relc
    contrib = tables.C(N, R, size, relc)  # per whole group
    if K >= n_db:
        total = relc.sum(axis=1)
        return np.where(total > 0, contrib.sum(axis=1) / np.maximum(total, 1), 0.0)
    end = N + size
    g = np.argmax(end >= K, axis=1)  # the group holding rank K (non-empty: end grows there)
    rows = np.arange(b)
    before = np.cumsum(contrib, axis=1) - contrib
    S = before[rows, g]
    Nb, nb, mb, Rb = N[rows, g], size[rows, g], relc[rows, g], R[rows, g]
    kp = K - Nb
    lo = np.maximum(0.0, kp - (nb - mb))
    hi = np.minimum(mb, kp)
    out = np.empty(b)
    width = int((hi - lo).max()) + 1 if b else 1
    step = max(1, _MAX_CELLS // width)
    for s in range(0, b, step):
        sl = slice(s, s + step)
        x = lo[sl, None] + np.arange(width)[None, :]
        valid = x <= hi[sl, None]
        x = np.where(valid, x, lo[sl, None])
        logp = (
            tables.log_comb(mb[sl, None], x)
            + tables.log_comb((nb - mb)[sl, None], kp[sl, None] - x)
            - tables.log_comb(nb[sl, None], kp[sl, None])
        )
        p = np.where(valid, np.exp(logp), 0.0)
        p /= p.sum(axis=1, keepdims=True)  # exact up to rounding; renormalise the rounding away
        denom = Rb[sl, None] + x
        num = S[sl, None] + tables.C(Nb[sl, None], Rb[sl, None], kp[sl, None], x)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(denom > 0, num / np.where(denom > 0, denom, 1), 0.0)
        out[sl] = (p * f).sum(axis=1)
    return out


def _expected_hits_groups(size: np.ndarray, relc: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """Expected number of relevant items in the top k under random tie order, ``(b, len(ks))``."""
    end = np.cumsum(size, axis=1)
    N = end - size
    R = np.cumsum(relc, axis=1) - relc
    out = np.empty((size.shape[0], len(ks)))
    rows = np.arange(size.shape[0])
    for j, k in enumerate(ks):
        g = np.argmax(end >= k, axis=1)
        n = size[rows, g]
        out[:, j] = R[rows, g] + (k - N[rows, g]) * relc[rows, g] / np.maximum(n, 1)
    return out


def _check_ks(ks: Sequence[int] | None, n_db: int) -> np.ndarray:
    if ks is None:
        ks = [k for k in DEFAULT_KS if k <= n_db] or [n_db]
    arr = np.asarray(list(ks), dtype=np.int64)
    if arr.ndim != 1 or len(arr) == 0 or arr.min() < 1 or arr.max() > n_db:
        raise ConfigError(f"ks must be a non-empty list of cutoffs between 1 and the database size {n_db}; got {list(ks)}")
    return arr


def _radius_counts(d: np.ndarray, rel: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    inside = d <= radius
    return inside.sum(axis=1), (inside & rel).sum(axis=1)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (an empty ball, or a query with nothing relevant)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


# --------------------------------------------------------------------------------------------
# Public metrics on a full (queries x database) distance matrix
# --------------------------------------------------------------------------------------------


def mean_average_precision(dist: np.ndarray, relevance: np.ndarray, topk: int | None = None) -> float:
    """mAP@topk (``None`` = all) over a ranking by ascending distance, ties by database position."""
    dist, relevance = _inputs(dist, relevance)
    K = _cutoff(topk, dist.shape[1])
    aps = np.zeros(dist.shape[0])
    step = _rows_per_block(dist.shape[1])
    for s in range(0, dist.shape[0], step):
        _, rs = _sorted_relevance(dist[s : s + step], relevance[s : s + step])
        aps[s : s + step] = _ap_sorted(rs, K)
    return float(aps.mean()) if len(aps) else 0.0


def tie_aware_map(dist: np.ndarray, relevance: np.ndarray, topk: int | None = None) -> float:
    """Expected mAP@topk when items at equal distance are ranked in uniformly random order.

    Exact closed form (derivation in the module docstring), including a cutoff K that falls
    inside a tie: the expectation is taken over which of the tied items make the top K. Same
    normalisation as :func:`mean_average_precision`; without ties the two agree.
    """
    dist, relevance = _inputs(dist, relevance)
    K = _cutoff(topk, dist.shape[1])
    tables = _Tables(dist.shape[1])
    aps = np.zeros(dist.shape[0])
    step = _rows_per_block(dist.shape[1])
    for s in range(0, dist.shape[0], step):
        size, relc = _groups(dist[s : s + step], relevance[s : s + step])
        aps[s : s + step] = _tie_aware_ap_groups(size, relc, K, tables)
    return float(aps.mean()) if len(aps) else 0.0


def precision_recall_at_radius(dist: np.ndarray, relevance: np.ndarray, radius: float = 2) -> tuple[float, float]:
    """Mean precision and recall of the ball ``dist <= radius`` (Hamming radius 2 by default).

    A query whose ball is empty scores precision 0 (not left out: leaving it out would reward
    codes that return nothing); a query with no relevant item in the database scores recall 0.
    """
    dist, relevance = _inputs(dist, relevance)
    if radius < 0:
        raise ConfigError(f"radius must be >= 0; got {radius}")
    p = np.zeros(dist.shape[0])
    r = np.zeros(dist.shape[0])
    step = _rows_per_block(dist.shape[1])
    for s in range(0, dist.shape[0], step):
        ball, hits = _radius_counts(dist[s : s + step], relevance[s : s + step], radius)
        p[s : s + step] = _ratio(hits, ball)
        r[s : s + step] = _ratio(hits, relevance[s : s + step].sum(axis=1))
    if not len(p):
        return 0.0, 0.0
    return float(p.mean()), float(r.mean())


def precision_at_k_curve(
    dist: np.ndarray, relevance: np.ndarray, ks: Sequence[int] | None = None, *, tie_aware: bool = False
) -> dict[str, np.ndarray]:
    """Mean precision of the top k for each k in ``ks``: ``{"k": ks, "precision": P@k}``.

    Ties are ordered by database position, or with ``tie_aware=True`` the expected P@k under a
    random order inside each tie (exact: the tied group that straddles k contributes its share
    of relevant items pro rata). ``ks=None`` uses :data:`DEFAULT_KS` up to the database size.
    """
    dist, relevance = _inputs(dist, relevance)
    ks_arr = _check_ks(ks, dist.shape[1])
    out = np.zeros((dist.shape[0], len(ks_arr)))
    step = _rows_per_block(dist.shape[1])
    for s in range(0, dist.shape[0], step):
        d, rel = dist[s : s + step], relevance[s : s + step]
        if tie_aware:
            size, relc = _groups(d, rel)
            out[s : s + step] = _expected_hits_groups(size, relc, ks_arr) / ks_arr[None, :]
        else:
            _, rs = _sorted_relevance(d, rel)
            out[s : s + step] = np.cumsum(rs, axis=1)[:, ks_arr - 1] / ks_arr[None, :]
    return {"k": ks_arr, "precision": out.mean(axis=0) if len(out) else np.zeros(len(ks_arr))}


def _check_hamming(dist: np.ndarray, n_bits: int) -> None:
    if not np.issubdtype(dist.dtype, np.integer):
        raise ConfigError(f"a curve over Hamming radii needs integer distances; got dtype {dist.dtype}")
    if dist.size and (dist.min() < 0 or dist.max() > n_bits):
        raise ConfigError(
            f"Hamming distances must lie in [0, n_bits={n_bits}]; got values in [{dist.min()}, {dist.max()}]"
        )


def pr_curve_over_radii(dist: np.ndarray, relevance: np.ndarray, n_bits: int) -> dict[str, np.ndarray]:
    """Precision and recall of the Hamming ball of radius r for r = 0..n_bits (means over queries).

    Same conventions as :func:`precision_recall_at_radius` (an empty ball scores precision 0),
    so small radii, where many balls are empty, show low precision by construction.
    Returns ``{"radius": 0..n_bits, "precision": ..., "recall": ...}``.
    """
    dist, relevance = _inputs(dist, relevance)
    _check_hamming(dist, n_bits)
    V = int(n_bits) + 1
    p = np.zeros((dist.shape[0], V))
    r = np.zeros((dist.shape[0], V))
    step = _rows_per_block(dist.shape[1])
    for s in range(0, dist.shape[0], step):
        rel = relevance[s : s + step]
        size, relc = _groups_from_ints(dist[s : s + step], rel, V)
        ball, hits = np.cumsum(size, axis=1), np.cumsum(relc, axis=1)
        p[s : s + step] = _ratio(hits, ball)
        r[s : s + step] = _ratio(hits, rel.sum(axis=1)[:, None])
    mean = (lambda a: a.mean(axis=0)) if len(p) else (lambda a: np.zeros(V))
    return {"radius": np.arange(V), "precision": mean(p), "recall": mean(r)}


# --------------------------------------------------------------------------------------------
# Everything at once, from codes or float features, in blocks of queries
# --------------------------------------------------------------------------------------------


def _resolve(protocol_or_topk: Any, exclude_self: bool | None) -> tuple[int | None, bool, dict[str, Any]]:
    """``(topk, exclude_self, protocol info)`` from a :class:`~deephash.eval.protocols.Protocol`, a
    registered protocol name, or a cutoff."""
    if isinstance(protocol_or_topk, str):
        from deephash.eval.protocols import get_protocol

        protocol_or_topk = get_protocol(protocol_or_topk)
    if protocol_or_topk is None or isinstance(protocol_or_topk, (int, np.integer)):
        topk = None if protocol_or_topk is None else int(protocol_or_topk)
        return topk, bool(exclude_self), {}
    if not hasattr(protocol_or_topk, "topk"):
        raise ConfigError(
            f"protocol_or_topk must be a Protocol, a protocol name, an int cutoff or None (all); got {type(protocol_or_topk).__name__}"
        )
    p = protocol_or_topk
    loo = bool(getattr(p, "leave_one_out", False))
    return p.topk, loo if exclude_self is None else bool(exclude_self), {"protocol": p.name, "protocol_version": p.version}


def _relevance_name(labels: np.ndarray) -> str:
    return "same label" if np.asarray(labels).ndim == 1 else "at least one shared label (multi-label)"


class _Accumulator:
    """Collects per-query values block by block and summarises them."""

    def __init__(self, nq: int, n_db: int, K: int, ks: np.ndarray, radii: int | None) -> None:
        self.K, self.ks = K, ks
        self.tables = _Tables(n_db)
        self.ap = np.zeros(nq)
        self.ap_tie = np.zeros(nq)
        self.pk = np.zeros((nq, len(ks)))
        self.pk_tie = np.zeros((nq, len(ks)))
        self.n_rel = np.zeros(nq, dtype=np.int64)
        self.radii = radii
        if radii is not None:
            self.ball = np.zeros((nq, radii + 1))
            self.hits = np.zeros((nq, radii + 1))

    def add(self, sl: slice, d: np.ndarray, rel: np.ndarray, n_values: int | None) -> None:
        ds, rs = _sorted_relevance(d, rel)
        self.ap[sl] = _ap_sorted(rs, self.K)
        self.pk[sl] = np.cumsum(rs, axis=1)[:, self.ks - 1] / self.ks[None, :]
        if n_values is not None:
            size, relc = _groups_from_ints(d, rel, n_values)
        else:
            size, relc = _groups_from_sorted(ds, rs)
        self.ap_tie[sl] = _tie_aware_ap_groups(size, relc, self.K, self.tables)
        self.pk_tie[sl] = _expected_hits_groups(size, relc, self.ks) / self.ks[None, :]
        self.n_rel[sl] = rel.sum(axis=1)
        if self.radii is not None:
            self.ball[sl] = np.cumsum(size, axis=1)[:, : self.radii + 1]
            self.hits[sl] = np.cumsum(relc, axis=1)[:, : self.radii + 1]

    def summary(self, radius: int, per_query: bool) -> dict[str, Any]:
        nq = len(self.ap)
        mean = (lambda a: float(a.mean())) if nq else (lambda a: 0.0)
        out: dict[str, Any] = {
            "map": mean(self.ap),
            "tie_aware_map": mean(self.ap_tie),
            "map_stderr": float(self.ap.std(ddof=1) / np.sqrt(nq)) if nq > 1 else 0.0,
            "queries_without_relevant": int((self.n_rel == 0).sum()),
            "p_at_k": {
                "k": self.ks.tolist(),
                "precision": (self.pk.mean(axis=0) if nq else np.zeros(len(self.ks))).tolist(),
                "precision_tie_aware": (self.pk_tie.mean(axis=0) if nq else np.zeros(len(self.ks))).tolist(),
            },
        }
        if self.radii is not None:
            p, r = _ratio(self.hits, self.ball), _ratio(self.hits, self.n_rel[:, None])
            colmean = (lambda a: a.mean(axis=0)) if nq else (lambda a: np.zeros(a.shape[1]))
            out.update(
                radius=int(radius),
                precision_at_radius=float(colmean(p)[radius]),
                recall_at_radius=float(colmean(r)[radius]),
                empty_ball_fraction=mean(self.ball[:, radius] == 0),
                pr_curve={
                    "radius": list(range(self.radii + 1)),
                    "precision": colmean(p).tolist(),
                    "recall": colmean(r).tolist(),
                },
            )
        if per_query:
            out["per_query"] = {"ap": self.ap, "tie_aware_ap": self.ap_tie, "n_relevant": self.n_rel}
        return out


def _prepare(nq: int, n_db: int, query_labels: Any, db_labels: Any, topk: int | None, exclude_self: bool, ks: Any):
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)
    if len(ql) != nq or len(dl) != n_db:
        raise ConfigError(
            f"got {nq} query codes with {len(ql)} labels and {n_db} database codes with {len(dl)} labels"
        )
    if exclude_self and nq != n_db:
        raise ConfigError(
            f"leave-one-out needs the queries to be the database itself (same rows, same order); got {nq} queries, {n_db} database items"
        )
    n_eff = n_db - 1 if exclude_self else n_db
    if n_eff < 1:
        raise ConfigError("the database is empty (leave-one-out needs at least two items)")
    return ql, dl, _cutoff(topk, n_eff), _check_ks(ks, n_eff)


def _evaluate_blocks(kind: str, n_query: int, n_db: int, distances: Callable[[slice], np.ndarray], self_distance: float,
                     query_labels, db_labels, protocol_or_topk, exclude_self, ks, *, n_bits: int | None, radius: int,
                     per_query: bool, settings: dict[str, Any]) -> dict[str, Any]:
    """What :func:`evaluate_codes` and :func:`evaluate_features` share: resolve the protocol, walk
    the queries in blocks (``distances(rows)`` -> ``(rows, n_db)``; with ``exclude_self`` each
    query's own row gets ``self_distance`` and no relevance), accumulate and summarise."""
    topk, excl, info = _resolve(protocol_or_topk, exclude_self)
    ql, dl, K, ks_arr = _prepare(n_query, n_db, query_labels, db_labels, topk, excl, ks)
    acc = _Accumulator(n_query, n_db, K, ks_arr, n_bits)
    step = _rows_per_block(n_db)
    for s in range(0, n_query, step):
        sl = slice(s, min(s + step, n_query))
        d = distances(sl)
        rel = relevance_matrix(ql[sl], dl)
        if excl:  # own row: pushed past every real distance and made irrelevant
            r = np.arange(sl.stop - sl.start)
            d[r, s + r] = self_distance
            rel[r, s + r] = False
        acc.add(sl, d, rel, None if n_bits is None else n_bits + 2)
    return {
        "kind": kind,
        **info,
        "n_query": n_query,
        "n_db": n_db - (1 if excl else 0),
        **settings,
        "topk": K,
        "topk_requested": topk,
        "relevance": _relevance_name(ql),
        "exclude_self": excl,
        "tie_rule": "map: ties by database position; tie_aware_map: expected over random order in each tie",
        **acc.summary(radius, per_query),
    }


def evaluate_codes(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    protocol_or_topk: Any = None,
    *,
    radius: int = 2,
    ks: Sequence[int] | None = None,
    exclude_self: bool | None = None,
    per_query: bool = False,
) -> dict[str, Any]:
    """All retrieval metrics for packed binary codes ranked by Hamming distance.

    ``protocol_or_topk`` is a :class:`~deephash.eval.protocols.Protocol` or its registered name
    (its cutoff, and leave-one-out when it says so) or a cutoff (``None`` = all). ``exclude_self`` (default: the
    protocol's leave-one-out flag) drops each query's own row when queries *are* the database.
    Works in blocks of queries, so 10,000 x 50,000 needs a few tens of MB. Returns a JSON-ready
    dict: ``map`` (ties by database position), ``tie_aware_map``, ``precision_at_radius`` /
    ``recall_at_radius`` / ``empty_ball_fraction`` at ``radius``, ``p_at_k`` (usual and
    tie-aware), ``pr_curve`` over radii 0..n_bits, counts, the settings and ``eval_s``.
    """
    from deephash.codes import check_codes, hamming_matrix
    from deephash.utils import Timer

    with Timer() as t:
        q, db = check_codes(query_codes), check_codes(db_codes)
        if q.shape[1] != db.shape[1]:
            raise ConfigError(f"query codes have {q.shape[1] * 8} bits, database codes {db.shape[1] * 8}")
        n_bits = q.shape[1] * 8
        if not 0 <= radius <= n_bits:
            raise ConfigError(f"radius must be between 0 and n_bits={n_bits}; got {radius}")
        out = _evaluate_blocks("codes", len(q), len(db), lambda sl: hamming_matrix(q[sl], db), n_bits + 1,
                               query_labels, db_labels, protocol_or_topk, exclude_self, ks, n_bits=n_bits,
                               radius=radius, per_query=per_query, settings={"n_bits": n_bits})
    out["eval_s"] = t.seconds
    return out


def evaluate_features(
    query_feats: np.ndarray,
    db_feats: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    protocol_or_topk: Any = None,
    *,
    metric: str = "cosine",
    ks: Sequence[int] | None = None,
    exclude_self: bool | None = None,
    per_query: bool = False,
) -> dict[str, Any]:
    """The float-feature ceiling: exact kNN by ``metric`` ('cosine' or 'euclidean').

    Same keys as :func:`evaluate_codes` except the Hamming-radius ones (no radius, no PR curve).
    """
    from deephash.utils import Timer

    if metric not in ("cosine", "euclidean"):
        raise ConfigError(f"metric must be 'cosine' or 'euclidean'; got {metric!r}")
    with Timer() as t:
        q = np.asarray(query_feats, dtype=np.float32)
        db = np.asarray(db_feats, dtype=np.float32)
        if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
            raise ConfigError(f"features must be 2-D with the same width; got {q.shape} and {db.shape}")
        if metric == "cosine":
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            db = db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-12)
        db_sq = (db.astype(np.float64) ** 2).sum(axis=1)

        def distances(sl: slice) -> np.ndarray:
            sim = (q[sl] @ db.T).astype(np.float64)
            if metric == "cosine":
                return 1.0 - sim
            # squared Euclidean: same ranking as Euclidean
            return np.maximum((q[sl].astype(np.float64) ** 2).sum(axis=1)[:, None] + db_sq[None, :] - 2 * sim, 0.0)

        out = _evaluate_blocks("features", len(q), len(db), distances, np.inf, query_labels, db_labels,
                               protocol_or_topk, exclude_self, ks, n_bits=None, radius=0, per_query=per_query,
                               settings={"metric": metric})
    out["eval_s"] = t.seconds
    return out


def evaluate_distances(
    distances: Callable[[slice], np.ndarray],
    n_query: int,
    n_db: int,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    protocol_or_topk: Any = None,
    *,
    name: str = "asymmetric",
    ks: Sequence[int] | None = None,
    exclude_self: bool | None = None,
    per_query: bool = False,
) -> dict[str, Any]:
    """Retrieval metrics for any distance: ``distances(rows)`` gives the ``(len(rows), n_db)``
    distances of the queries ``rows`` (a slice) to the whole database — e.g. a PQ / DPQ hasher's
    asymmetric ``query_distances``. Same keys as :func:`evaluate_features` (no Hamming radius)."""
    from deephash.utils import Timer

    with Timer() as t:
        out = _evaluate_blocks(
            "distances", int(n_query), int(n_db),
            lambda sl: np.asarray(distances(sl), dtype=np.float64), np.inf, query_labels, db_labels,
            protocol_or_topk, exclude_self, ks, n_bits=None, radius=0, per_query=per_query,
            settings={"distance": name})
    out["eval_s"] = t.seconds
    return out
