"""One query against an open index — the single search path of the CLI, the service, the Python API
and evaluation.

``search(index, query, k, radius=None, label=None, rerank=None, exclude_self=False) -> Hits``

How a query is answered (Hamming codes):

1. **Candidates.** Every indexed image; with ``label`` only those of that class; with ``radius``
   only those within that Hamming distance.
2. **Order.** By Hamming distance. Within a tie, by the Euclidean distance between the query's
   float features and the stored ones when the index stores features (so an indexed image comes
   first, its exact duplicates next), by id otherwise.
3. **Re-rank** (``rerank``: DLBHC's coarse-to-fine search; :class:`Rerank` holds its pool rule).
   The pool is every candidate within Hamming radius ``start_radius`` (2), the radius growing by
   one until the pool holds ``min_pool`` (100) candidates or reaches the code length (or the
   given ``radius``); a pool over ``max_pool`` (5,000) keeps the ``max_pool`` nearest by Hamming
   distance (ties by insertion order). The pool is then ranked by the float-feature distance
   (ties by Hamming distance, then id).
4. ``exclude_self`` drops the query's own image ("more like this"): the indexed image the query
   names (``Query.self_id``: a search by id, or a query file that lies in the indexed archive),
   else a hit at Hamming distance 0 whose stored features equal the query's.
5. ``k`` is capped at the number of candidates the index holds (:attr:`Hits.k_capped_at` says so).

The index is read through the view of :mod:`deephash.index.backend` (``nearest``, ``within``,
``features_of``, ...), so the same code answers on a local file and on Milvus.

The view's ``metric`` picks the ranking (:data:`RANKINGS`). Quantisation indexes (PQ / DPQ codes:
:class:`deephash.index.PQIndex`, ``metric`` "asymmetric") are ranked by the model's asymmetric
distance from the query's float features (``Query.distances``; :func:`asymmetric_topk`, the one
implementation, in the view's ``nearest``); ties by id. Radius and re-rank are Hamming notions:
the view refuses a radius, and re-rank is refused here.

:func:`answer_json` gives the one JSON shape of an answer (and of a hit) that ``deephash search
--json``, the HTTP API and :func:`deephash.api.search` return.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from deephash.names import display_path  # file names are bytes: shown with \xNN escapes

from deephash.errors import ConfigError
from deephash.codes import check_codes, hamming_matrix
from deephash.utils import Timer

#: the answer stages reported in ``timings_ms`` (None for a stage that did not run)
STAGES = ("decode", "backbone", "hash", "search", "rerank")


@dataclass
class Rerank:
    """DLBHC coarse-to-fine pool rule (see the module docstring)."""

    start_radius: int = 2
    min_pool: int = 100
    max_pool: int = 5000

    def __post_init__(self) -> None:
        if self.start_radius < 0:
            raise ConfigError(f"start_radius must be >= 0; got {self.start_radius}")
        if not 1 <= self.min_pool <= self.max_pool:
            raise ConfigError(f"need 1 <= min_pool <= max_pool; got min_pool={self.min_pool}, max_pool={self.max_pool}")


@dataclass
class Query:
    """One query: its packed code (1, K/8), its float features (1, D) when known, and what it is.

    ``self_id``: the indexed image this query is, when known (a search by id, or a query file
    inside the indexed archive); ``distances``: the model's distance from this query's float
    features to a block of codes (``codes -> (1, n)``), what a view of ``metric`` "asymmetric" (a
    quantisation index) ranks by; ``timings``: seconds of
    the stages that made it (decode, backbone, hash)."""

    code: np.ndarray
    feature: np.ndarray | None = None
    self_id: int | None = None
    distances: Callable[[np.ndarray], np.ndarray] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        self.code = np.atleast_2d(np.asarray(self.code, np.uint8))
        if self.feature is not None:
            self.feature = np.atleast_2d(np.asarray(self.feature, np.float32))

    @classmethod
    def of_id(cls, index, image_id: int) -> "Query":
        """The indexed image ``image_id`` as a query (its stored code and features)."""
        snap = _snapshot(index)
        key = np.asarray([snap.key_of(int(image_id))], np.int64)  # unknown ids raise DataError
        feat = snap.features_of(key) if snap.has_features else None
        return cls(snap.codes_of(key), feat, self_id=int(image_id), name=f"id {image_id}")


@dataclass
class Hits:
    """The answer to one query, best first. ``rows`` are the keys of the hits in the view the query
    ran on (``snapshot``): rows of a local snapshot, ids in Milvus."""

    ids: np.ndarray
    rows: np.ndarray
    hamming: np.ndarray | None  # None for a quantisation index
    distance: np.ndarray | None  # asymmetric distance (quantisation index) or None
    feature_distance: np.ndarray | None  # Euclidean float-feature distance when features ordered the hits
    ranked_by: str  # "hamming", "hamming, then features", "features (re-rank)", "asymmetric"
    k: int  # as asked
    k_capped_at: int | None  # the index size when k was larger, else None
    timings: dict[str, float]
    pool_size: int | None = None
    pool_radius: int | None = None
    snapshot: Any = None

    def __len__(self) -> int:
        return len(self.ids)


def _snapshot(index):
    """The view a query reads: ``index.snapshot()``, or ``index`` when it is a view already."""
    return index if hasattr(index, "nearest") else index.snapshot()


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer; got {k!r}")
    return int(k)


def label_rows(labels: np.ndarray | None, class_index: int) -> np.ndarray:
    """Rows that carry the class ``class_index`` (single-label: equal; multi-label: that column set)."""
    if labels is None:
        raise ConfigError("this index stores no labels, so results cannot be filtered by label")
    mask = labels == class_index if labels.ndim == 1 else labels[:, class_index] > 0
    return np.flatnonzero(mask)


def class_index_of(class_names: Sequence[str], label: str | int) -> int:
    """A class name (or index) -> its index in the index's class list; unknown names raise."""
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if not 0 <= label < max(len(class_names), label + 1):
            raise ConfigError(f"label: class index {label} out of range")
        return int(label)
    if label in class_names:
        return list(class_names).index(label)
    raise ConfigError(f"label: unknown class {label!r}; this index knows {', '.join(class_names)}")


def _feature_distances(snap, keys: np.ndarray, feature: np.ndarray) -> np.ndarray:
    diff = snap.features_of(keys) - feature.reshape(1, -1)
    return np.sqrt(np.einsum("ij,ij->i", diff, diff))


def asymmetric_topk(distances: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest ``distances``, by (distance, id): the one asymmetric top-k."""
    kk = min(k, len(distances))
    if kk == 0:
        return np.zeros(0, np.int64)
    v = np.partition(distances, kk - 1)[kk - 1]
    sel = np.flatnonzero(distances <= v)  # every tie at the k-th value, so ids decide among them
    o = sel[np.lexsort((ids[sel], distances[sel]))]
    return o[:kk]


def search(index, query: Query, k: int, radius: int | None = None, label: str | int | None = None,
           rerank: Rerank | bool | None = None, exclude_self: bool = False, *, class_names: Sequence[str] | None = None) -> Hits:
    """Answer one query (see the module docstring for the rules). ``index`` is any backend of
    :mod:`deephash.index.backend` (a :class:`HashIndex`, a :class:`PQIndex`, a :class:`MilvusIndex`) or a
    view of one (its ``snapshot()``); ``label`` a class name (or index) of that index."""
    k = _check_k(k)
    snap = _snapshot(index)
    names = class_names if class_names is not None else snap.class_names
    rr = Rerank() if rerank is True else (rerank or None)
    cls = None
    if label is not None:
        if not snap.has_labels:
            raise ConfigError("this index stores no labels, so results cannot be filtered by label")
        cls = class_index_of(names, label)
    return RANKINGS[snap.metric](snap, query, k, radius, cls, rr, exclude_self, dict(query.timings))


def _search_hamming(snap, query: Query, k: int, radius: int | None, cls: int | None, rr: Rerank | None,
                    exclude_self: bool, timings: dict[str, float]) -> Hits:
    """Steps 1-5 of the module docstring on a view of Hamming codes."""
    n_bits = snap.n_bits
    code = check_codes(query.code, n_bits)
    if code.shape[0] != 1:
        raise ConfigError(f"search takes one query; got {code.shape[0]} codes (use search_many)")
    if radius is not None and not (isinstance(radius, (int, np.integer)) and 0 <= radius <= n_bits):
        raise ConfigError(f"radius must be between 0 and {n_bits} (the code length); got {radius!r}")
    use_feats = snap.has_features and query.feature is not None
    if use_feats and query.feature.shape[1] != snap.feature_dim:
        raise ConfigError(f"query features have dim {query.feature.shape[1]}; the index stores dim {snap.feature_dim}")
    if rr is not None and not use_feats:
        raise ConfigError("re-ranking needs float features: this index stores none (build it with --features)"
                          if not snap.has_features else "re-ranking needs the query's float features")
    self_id = query.self_id if exclude_self else None
    with Timer() as t:
        n_cand = snap.count(cls)
        if radius is not None:
            d, keys = snap.within(code, int(radius), cls)
        elif rr is not None:
            d, keys = snap.nearest(code, rr.max_pool + (self_id is not None), cls)
        else:
            want = min(k + (1 if exclude_self else 0), n_cand)
            d, keys = snap.nearest(code, want, cls) if want else (np.zeros(0, np.int32), np.zeros(0, np.int64))
            if len(d) == want and want:  # the tie at the k-th place may hold more: take all of it
                d, keys = snap.within(code, int(d[-1]), cls)
        ids = snap.ids_of(keys)
        if self_id is not None:
            keep = ids != self_id
            keys, d, ids = keys[keep], d[keep], ids[keep]
            n_cand -= int(snap.has_id(self_id, cls))
    timings["search"] = t.seconds
    k_capped_at = n_cand if k > n_cand else None
    k = min(k, max(n_cand, 0))
    fd = None
    pool_size = pool_radius = None
    if rr is None:
        with Timer() as t:
            kk = k + (1 if exclude_self and self_id is None else 0)  # room for dropping the query image itself
            if len(d) > kk and kk > 0:  # only the ties at the k-th distance can still move
                cut = d <= d[kk - 1]
                keys, d, ids = keys[cut], d[cut], ids[cut]
            if use_feats:
                fd = _feature_distances(snap, keys, query.feature)
                o = np.lexsort((ids, fd, d))
            else:
                o = np.lexsort((ids, d))
            o = _drop_identical_self(o, d, fd, query, exclude_self and self_id is None)[:k]
        timings["search"] += t.seconds
        ranked_by = "hamming, then feature distance" if use_feats else "hamming, then id"
    else:
        with Timer() as t:
            rad = rr.start_radius if radius is None else min(rr.start_radius, radius)
            cap = n_bits if radius is None else radius
            need = min(rr.min_pool, len(d))
            while rad < cap and int((d <= rad).sum()) < need:
                rad += 1
            sel = np.flatnonzero(d <= rad)[: rr.max_pool]  # d is ordered by (distance, key)
            keys, d, ids = keys[sel], d[sel], ids[sel]
            fd = _feature_distances(snap, keys, query.feature)
            o = np.lexsort((ids, d, fd))
            o = _drop_identical_self(o, d, fd, query, exclude_self and self_id is None)[:k]
            pool_size, pool_radius = int(len(sel)), int(rad)
        timings["rerank"] = t.seconds
        ranked_by = "feature distance (re-rank of a Hamming pool)"
    return Hits(ids[o], keys[o], d[o], None, None if fd is None else fd[o], ranked_by, int(k if k_capped_at is None else k_capped_at),
                k_capped_at, timings, pool_size, pool_radius, snap)


def _drop_identical_self(o: np.ndarray, d: np.ndarray, fd: np.ndarray | None, query: Query, on: bool) -> np.ndarray:
    """Without a known ``self_id``: drop the first hit when it is the query image itself (Hamming 0,
    stored features equal to the query's up to float16 rounding)."""
    if not on or not len(o) or fd is None or d[o[0]] != 0:
        return o
    scale = float(np.linalg.norm(query.feature)) if query.feature is not None else 1.0
    return o[1:] if fd[o[0]] <= 2e-3 * max(scale, 1e-6) else o


#: why re-rank does not apply to an asymmetric ranking (one line, shown as it is)
ASYMMETRIC_RERANK_REFUSAL = ("re-rank orders a Hamming pool by float-feature distance, and this index holds PQ codes "
                             "ranked by asymmetric distance from the query's float features already: search without re-rank")


def _search_asymmetric(snap, query: Query, k: int, radius: int | None, cls: int | None, rr: Rerank | None,
                       exclude_self: bool, timings: dict[str, float]) -> Hits:
    """A view of quantisation codes: the ``k`` nearest by the model's asymmetric distance (the view's
    ``nearest``), ties by id; ``exclude_self`` drops ``Query.self_id``."""
    if rr is not None:
        raise ConfigError(ASYMMETRIC_RERANK_REFUSAL)
    if query.distances is None:
        raise ConfigError("this index ranks by asymmetric distance from the query's float features, which this query "
                          "lacks (an indexed image of an index that stores no features, or a Query built without "
                          "deephash.api.make_query): search with the image itself")
    self_id = query.self_id if exclude_self else None
    with Timer() as t:
        n_cand = snap.count(cls) - (int(snap.has_id(self_id, cls)) if self_id is not None else 0)
        if radius is not None:
            d, keys = snap.within(query.distances, radius, cls)
        else:
            d, keys = snap.nearest(query.distances, k + (self_id is not None), cls)
        ids = snap.ids_of(keys)
        if self_id is not None:
            keep = ids != self_id
            d, keys, ids = d[keep], keys[keep], ids[keep]
        d, keys, ids = d[:k], keys[:k], ids[:k]
    timings["search"] = t.seconds
    capped = n_cand if k > n_cand else None
    return Hits(ids, keys, None, d, None, "asymmetric", k if capped is None else capped, capped, timings, snapshot=snap)


#: a view's ``metric`` -> how a query is answered on it
RANKINGS: dict[str, Callable[..., Hits]] = {"hamming": _search_hamming, "asymmetric": _search_asymmetric}


def search_many(index, queries: Sequence[Query], k: int, **kw: Any) -> list[Hits]:
    """:func:`search` for each query, on one snapshot of the index."""
    snap = _snapshot(index)
    return [search(snap, q, k, **kw) for q in queries]


# ----------------------------------------------------------------------------- the one JSON shape
def label_name(class_names: Sequence[str], label: Any) -> Any:
    """A stored label -> class name(s); -1 (or no class) means unlabelled and gives None."""
    if label is None:
        return None
    if isinstance(label, list):
        return [class_names[j] if j < len(class_names) else j for j in label] or None
    if label < 0:
        return None
    return class_names[label] if label < len(class_names) else label


def hit_json(hits: Hits, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """The hits as JSON objects: rank, id, hamming, distance, feature_distance, label, path and the
    service's URLs of the image (the same keys everywhere; null where a value does not apply)."""
    paths, labels = hits.snapshot.records_of(hits.rows) if len(hits) else ([], [])
    out = []
    for i, id_ in enumerate(hits.ids):
        id_ = int(id_)
        out.append({
            "rank": i + 1, "id": id_,
            "hamming": None if hits.hamming is None else int(hits.hamming[i]),
            "distance": None if hits.distance is None else float(hits.distance[i]),
            "feature_distance": None if hits.feature_distance is None else round(float(hits.feature_distance[i]), 6),
            "label": label_name(class_names, labels[i]),
            "path": display_path(paths[i]),
            "thumb_url": f"/api/images/{id_}/thumb", "original_url": f"/api/images/{id_}/original",
        })
    return out


def answer_json(hits: Hits, query: Query, class_names: Sequence[str], **params: Any) -> dict[str, Any]:
    """One answer: hits, count, the parameters, per-stage ms, the query's code, the re-rank pool,
    the cap on k, how the index searched (``search``: ``{"name": "ivf", "nprobe": 8, ..., "exact":
    false}`` for a FAISS structure, whose answers may miss neighbours; null where the backend does
    not say). ``deephash search --json``, the HTTP API and :func:`deephash.api.search` give this."""
    t_ms = {s: (round(hits.timings[s] * 1000, 3) if s in hits.timings else None) for s in STAGES}
    t_ms["total"] = round(sum(v for v in t_ms.values() if v is not None), 3)
    results = hit_json(hits, class_names)
    return {"results": results, "count": len(results), "params": params, "timings_ms": t_ms,
            "code": query.code[0].tobytes().hex(), "ranked_by": hits.ranked_by,
            "rerank_pool": None if hits.pool_size is None else {"size": hits.pool_size, "radius": hits.pool_radius},
            "k_capped_at": hits.k_capped_at, "search": getattr(hits.snapshot, "search_info", None)}


def format_timings(t_ms: dict[str, Any]) -> str:
    """``decode 0.9 ms, backbone 4.4 ms, ... (total 7.2 ms)`` from an answer's ``timings_ms``."""
    parts = [f"{s} {t_ms[s]:.1f} ms" for s in STAGES if t_ms.get(s) is not None]
    return ", ".join(parts) + f" (total {t_ms.get('total', 0):.1f} ms)"


def format_table(answer: dict[str, Any]) -> str:
    """The answer as a text table; with re-rank both the Hamming distance and the float distance
    it was ranked by, in that order."""
    res = answer["results"]
    asym = bool(res) and res[0]["distance"] is not None
    rr = answer.get("rerank_pool") is not None
    feat = bool(res) and res[0]["feature_distance"] is not None
    head = f"{'rank':>4}  {'id':>7}  "
    if asym:
        head += f"{'distance':>9}  "
    else:
        head += f"{'hamming':>7}  " + (f"{'float dist':>10}  " if feat else "")
    lines = [head + f"{'label':<12} path"]
    for r in res:
        row = f"{r['rank']:>4}  {r['id']:>7}  "
        if asym:
            row += f"{r['distance']:>9.4g}  "
        else:
            row += f"{r['hamming']:>7}  " + (f"{r['feature_distance']:>10.4f}  " if feat else "")
        lines.append(row + f"{str(r['label']):<12} {r['path']}")
    notes = [f"ranked by {answer['ranked_by']}"]
    if rr:
        notes.append(f"re-rank pool {answer['rerank_pool']['size']} within Hamming radius {answer['rerank_pool']['radius']}")
    if answer.get("k_capped_at") is not None:
        notes.append(f"k capped at {answer['k_capped_at']} (the images the index holds)")
    how = answer.get("search") or {}
    if how.get("exact") is False:
        params = ", ".join(f"{k}={v}" for k, v in how.items() if k not in ("name", "exact", "built", "masked"))
        notes.append(f"approximate: FAISS {how['name']} ({params}) may miss neighbours")
    return "\n".join(lines + ["  " + "; ".join(notes)])
