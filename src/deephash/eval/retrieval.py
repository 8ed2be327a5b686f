"""Retrieval evaluation beyond a plain distance matrix: Hamming mAP on a device (large
protocols), and DLBHC's coarse-to-fine search against plain Hamming ranking.

Both follow :mod:`deephash.eval.metrics`' conventions: ascending distance, ties by database
position (stable sort), AP normalised by the relevant items found in the returned list; a
query with none scores 0.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from deephash.errors import ConfigError


def _ap_of_lists(rel_lists: list[np.ndarray]) -> np.ndarray:
    aps = np.zeros(len(rel_lists))
    for i, rel in enumerate(rel_lists):
        rel = np.asarray(rel, bool)
        if rel.any():
            hits = np.cumsum(rel)
            aps[i] = float((hits[rel] / (np.flatnonzero(rel) + 1)).sum() / hits[-1])
    return aps


def hamming_map(q_codes: np.ndarray, db_codes: np.ndarray, yq: np.ndarray, ydb: np.ndarray, topk: int | None = None,
                *, device: str = "auto", chunk: int = 256) -> float:
    """mAP@topk (None = all) of Hamming ranking of packed codes, computed with torch on ``device``.

    Same numbers as ``mean_average_precision(hamming_matrix(q, d), relevance_matrix(yq, ydb), topk)``,
    without materialising the (nq, ndb) matrices: 10k x 50k runs in seconds on a GPU."""
    import torch

    from deephash.codes import unpack_bits
    from deephash.devices import pick_device

    dev = pick_device(device)
    yq, ydb = np.asarray(yq), np.asarray(ydb)
    if yq.ndim != 1 or ydb.ndim != 1:
        raise ConfigError("hamming_map takes single-label (1-D) labels; use eval.metrics for multi-hot")
    n = len(db_codes)
    K = n if topk is None else min(int(topk), n)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32  # +-1 dot products are exact in fp16 up to 2048 bits
    Q = torch.from_numpy(unpack_bits(q_codes).astype(np.float32) * 2 - 1).to(dev, dtype)
    D = torch.from_numpy(unpack_bits(db_codes).astype(np.float32) * 2 - 1).to(dev, dtype)
    yq_t, ydb_t = torch.from_numpy(yq).to(dev), torch.from_numpy(ydb).to(dev)
    ranks = torch.arange(1, K + 1, device=dev, dtype=torch.float64)
    total = 0.0
    for s in range(0, len(Q), chunk):
        # Hamming = (bits - dot) / 2; rank by -dot, stable so ties keep database order
        dot = (Q[s : s + chunk] @ D.T).float()
        order = torch.sort(-dot, dim=1, stable=True).indices[:, :K]
        rel = (ydb_t[order] == yq_t[s : s + chunk, None]).double()
        hits = rel.cumsum(dim=1)
        found = hits[:, -1]
        ap = torch.where(found > 0, (hits / ranks * rel).sum(dim=1) / found.clamp(min=1), torch.zeros_like(found))
        total += float(ap.sum())
    return total / max(1, len(Q))


def coarse_to_fine_evaluation(q_codes: np.ndarray, q_features: np.ndarray, db_codes: np.ndarray,
                              db_features: np.ndarray, yq: np.ndarray, ydb: np.ndarray, *, k: int = 1000,
                              radius: int = 2, min_pool: int | None = None, max_pool: int = 5000,
                              searcher: str | None = None) -> dict[str, Any]:
    """DLBHC's coarse-to-fine search vs plain Hamming ranking, as mAP@k, with pool statistics.

    Coarse: every database code within Hamming ``radius`` of the query's; the radius grows by
    one until the pool holds ``min_pool`` candidates (default ``k``, so both rankings return k
    items), capped at ``max_pool``. Fine: the pool ranked by Euclidean distance of the float
    features (``hasher.rerank_features``: F7 for DLBHC, the float embedding for Deep Ranking).
    Returns ``map_hamming``, ``map_coarse_to_fine``, the mean/median/max pool size and radius."""
    from deephash.eval.metrics import mean_average_precision, relevance_matrix
    from deephash.index import HashIndex
    from deephash.codes import hamming_matrix

    if searcher is None:
        from deephash.optional import available

        searcher = "faiss-flat" if available("faiss") else "numpy"
    n_bits = q_codes.shape[1] * 8
    min_pool = k if min_pool is None else min_pool
    idx = HashIndex(n_bits, searcher=searcher, feature_dtype="float32")
    idx.add(db_codes, labels=ydb, features=np.asarray(db_features, np.float32))
    res = idx.search_rerank(q_codes, np.asarray(q_features, np.float32), k, radius=radius, min_pool=min(min_pool, max_pool),
                            max_pool=max_pool)
    yq, ydb = np.asarray(yq), np.asarray(ydb)
    rel_lists = []
    for qi, r in enumerate(res):
        lab = ydb[r.ids]  # auto ids are row positions
        rel_lists.append(lab == yq[qi] if ydb.ndim == 1 else (lab.astype(bool) & yq[qi].astype(bool)).any(axis=1))
    ap_fine = _ap_of_lists(rel_lists)
    if ydb.ndim == 1:
        map_ham = hamming_map(q_codes, db_codes, yq, ydb, k)
    else:
        map_ham = mean_average_precision(hamming_matrix(q_codes, db_codes), relevance_matrix(yq, ydb), k)
    pools = np.array([r.pool_size for r in res])
    radii = np.array([r.radius for r in res])
    return {
        "k": k, "n_query": len(q_codes), "n_database": len(db_codes), "map_hamming": float(map_ham),
        "map_coarse_to_fine": float(ap_fine.mean()) if len(ap_fine) else 0.0,
        "pool_size_mean": float(pools.mean()), "pool_size_median": float(np.median(pools)), "pool_size_max": int(pools.max()),
        "radius_mean": float(radii.mean()), "radius_median": float(np.median(radii)), "radius_max": int(radii.max()),
        "settings": {"start_radius": radius, "min_pool": min_pool, "max_pool": max_pool},
    }
