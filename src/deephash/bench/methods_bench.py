"""The method comparison: every registered hasher at several code lengths on one set of precomputed
features, under a named retrieval protocol, beside the float-feature kNN ceiling and each paper's figure.

Each method is trained *head-only* (on the features) on the protocol's training split, encodes the
database, and ranks every query with ``hasher.query_distances`` — Hamming distance for binary hashers,
asymmetric distances for quantisation methods — so any registered method runs here unchanged,
supervised or not. Ranking ties are ordered by database position (a stable sort), as in
:mod:`deephash.eval.metrics`; mAP@K uses the same definition (AP divides by the relevant items found in
the top K). Rows are written to the JSON after every method, so an interrupted run keeps what finished
(``resume=True`` picks it up).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from deephash import __version__
from deephash.bench.machine import machine_facts
from deephash.errors import ConfigError
from deephash.eval.metrics import relevance_matrix
from deephash.index.backend import index_type_for
from deephash.utils import Timer, atomic_write_bytes, atomic_write_json

PROTOCOL_NAMES = ("cifar10-50k", "cifar10-54k", "demo")
CEILING = "float-knn"
_QUERY_CHUNK = 256


# --------------------------------------------------------------------------------------------- protocols
# The splits come from the named, versioned protocols of deephash.eval.protocols; "demo" is the
# demo's own setting (n_query test images, equal per class, against the training split).
@dataclass
class _Split:
    name: str
    query: np.ndarray
    database: np.ndarray
    train: np.ndarray
    map_at: int | None  # None: mAP over the whole ranking
    description: dict[str, Any] = field(default_factory=dict)


def _per_class(labels: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    out = []
    for c in np.unique(labels[pool]):
        members = pool[labels[pool] == c]
        if len(members) < per_class:
            raise ConfigError(f"class {c} has {len(members)} images in the pool; the protocol needs {per_class}")
        out.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(out))


def _subsample(split: _Split, part: str, n: int | None, labels: np.ndarray, n_classes: int, seed: int) -> None:
    """Keep ``n`` of the split's ``part`` ('query' or 'train'), equally per class (seeded); noted in its description."""
    rows = getattr(split, part)
    if n is None or n >= len(rows):
        return
    per = n // n_classes
    what = {"query": ("queries", "query"), "train": ("training images", "training")}[part]
    if per < 1:
        raise ConfigError(f"cannot draw {n} {what[0]} evenly from {n_classes} classes")
    setattr(split, part, _per_class(labels, rows, per, np.random.default_rng(seed)))
    split.description[what[1]] += f"; subsampled to {len(getattr(split, part))} ({per} per class, seed {seed})"


def _protocol_split(name: str, labels: np.ndarray, splits: np.ndarray | None, *, seed: int,
                    n_query: int | None, n_train: int | None = None) -> _Split:
    """The query / database / training indices of a named protocol."""
    from deephash.eval.protocols import get_protocol

    rng = np.random.default_rng(seed)
    n_classes = len(np.unique(labels))
    if name == "demo":
        if splits is None:
            raise ConfigError("protocol 'demo' needs the 'train'/'test' split of every image")
        splits = np.asarray(splits).astype(str)
        test, trainval = np.flatnonzero(splits == "test"), np.flatnonzero(splits == "train")
        per = (n_query or 1000) // n_classes
        query = _per_class(labels, test, per, rng)
        desc = {"query": f"{len(query)} test images, {per} per class (seed {seed})",
                "database": f"the training split ({len(trainval)} images)",
                "training": "the training split (= the database)"}
        split = _Split(name, query, trainval, trainval, 1000, desc)
    else:
        p = get_protocol(name)
        sp = p.split(labels, splits, seed)
        sizes = sp.sizes()
        split = _Split(name, sp.query_idx, sp.db_idx, sp.train_idx, p.topk,
                       {"protocol": f"{p.name} v{p.version}: {p.description}", "query": f"{sizes['query']} images",
                        "training": f"{sizes['train']} images", "database": f"{sizes['database']} images"})
    for part, n, part_seed in (("query", n_query, seed + 1), ("train", n_train, seed + 3)):
        _subsample(split, part, n, labels, n_classes, part_seed)
    # ties are broken by database position, so the database must not be in class order (CIFAR-10 files are):
    # a seeded permutation makes the tie order random instead of biased for or against a class
    split.database = np.random.default_rng(seed + 2).permutation(split.database)
    split.description["database"] += f"; in a random order (seed {seed + 2})"
    split.description.update(relevance="same label",
                             map=f"mAP@{split.map_at}" if split.map_at else "mAP over the whole database",
                             ties="equal distances ordered by database position (stable sort over the shuffled database)",
                             ap_normalisation="AP divides by the relevant items found in the top K; a query with none scores 0")
    return split


# --------------------------------------------------------------------------------------------- ranking
def _rank_all(distances: Callable[[np.ndarray], np.ndarray], n_query: int, yq: np.ndarray, ydb: np.ndarray,
              topk: int | None) -> tuple[float, float, float]:
    """(mAP, tie-aware mAP, seconds spent in ``distances``) over all queries, a chunk at a time,
    with the definitions of :mod:`deephash.eval.metrics`."""
    from deephash.eval.metrics import mean_average_precision, tie_aware_map

    total = tie_total = spent = 0.0
    for s in range(0, n_query, _QUERY_CHUNK):
        sl = slice(s, min(n_query, s + _QUERY_CHUNK))
        t0 = time.perf_counter()
        D = distances(sl)
        spent += time.perf_counter() - t0
        rel = relevance_matrix(yq[sl], ydb)
        n = sl.stop - sl.start
        total += n * mean_average_precision(D, rel, topk)
        tie_total += n * tie_aware_map(D, rel, topk)
    return (total / n_query, tie_total / n_query, spent) if n_query else (0.0, 0.0, spent)


def _cosine_ceiling(fq: np.ndarray, fd: np.ndarray) -> Callable[[slice], np.ndarray]:
    dn = fd / np.maximum(np.linalg.norm(fd, axis=1, keepdims=True), 1e-12)

    def dist(sl: slice) -> np.ndarray:
        q = fq[sl]
        return -((q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)) @ dn.T)

    return dist


# --------------------------------------------------------------------------------------------- the bench
def _extra_measures(h: Any, Xq: np.ndarray, Xd: np.ndarray, yq: np.ndarray, yd: np.ndarray, db_codes: np.ndarray,
                    rerank_queries: int) -> dict[str, Any]:
    """The query accuracy of a method that classifies; with ``rerank_queries``, coarse-to-fine vs
    Hamming mAP@1000 on the first that many queries of a method with ``rerank_features``."""
    out: dict[str, Any] = {}
    if hasattr(h, "classify"):
        out["query_accuracy"] = float((np.asarray(h.classify(Xq)) == yq).mean())
    if rerank_queries > 0 and hasattr(h, "rerank_features"):  # DLBHC, Deep Ranking, SPP-PMT: Hamming codes
        from deephash.eval.retrieval import coarse_to_fine_evaluation

        n = min(rerank_queries, len(Xq))
        out["coarse_to_fine"] = coarse_to_fine_evaluation(h.encode(Xq[:n]), h.rerank_features(Xq[:n]), db_codes,
                                                          h.rerank_features(Xd), yq[:n], yd, k=1000)
    return out


def _reference_text(ref: dict | None) -> str:
    if not ref:
        return "—"
    v = ref.get("map")
    return (f"{v:.3f}" if isinstance(v, (int, float)) else "—") + (f" ({ref['setting']})" if ref.get("setting") else "")


def run_methods_bench(features: np.ndarray, labels: np.ndarray, splits: np.ndarray | None, *,
                      methods: Sequence[str] | None = None, bits: Iterable[int] = (16, 32, 48, 64),
                      protocol: str = "cifar10-50k", n_query: int | None = None, n_train: int | None = None,
                      seed: int = 0, json_path: str | Path | None = None, md_path: str | Path | None = None,
                      method_params: dict[str, dict[str, Any]] | None = None, resume: bool = False,
                      rerank_queries: int = 0, progress: bool = False) -> dict[str, Any]:
    """Train every method (default: all registered) at every code length on the protocol's training
    split, rank the queries against the database and report mAP, timings and the paper's figure.

    ``features`` (n, d) float, ``labels`` (n,) int, ``splits`` (n,) 'train'/'test' (unused by
    cifar10-54k). ``n_query`` / ``n_train`` subsample the protocol's queries / training images (equal
    per class). ``rerank_queries`` > 0 adds DLBHC's coarse-to-fine search (Hamming pool re-ranked by
    the method's float features, mAP@1000) on the first that many queries, for methods that have
    ``rerank_features``; a method that classifies gets its query accuracy.
    ``method_params`` maps a method name to constructor overrides (e.g. ``{"mhcln": {"n_iters": 3000}}``).
    Returns (and writes to ``json_path``) ``{"protocol", "results": [{"method", "bits", "map", "train_s",
    "encode_s", "query_s", ...}], ...}``; ``md_path`` gets the Markdown table."""
    from deephash.hashers import create_hasher, list_hashers

    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if progress else (lambda *a: None)
    X = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    y = np.asarray(labels)
    if X.ndim != 2 or len(X) != len(y):
        raise ConfigError(f"features must be (n, dim) with one label per row; got {X.shape} and {len(y)} labels")
    if y.ndim != 1:
        raise ConfigError("run_methods_bench's protocols are single-label: labels must be 1-D")
    bits = [int(b) for b in bits]
    methods = list(list_hashers() if methods is None else methods)
    known = set(list_hashers())
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; known: {', '.join(sorted(known))}")
    method_params = dict(method_params or {})
    split = _protocol_split(protocol, y, splits, seed=seed, n_query=n_query, n_train=n_train)
    Xq, Xd, Xt = X[split.query], X[split.database], X[split.train]
    yq, yd, yt = y[split.query], y[split.database], y[split.train]
    K = split.map_at
    report: dict[str, Any] = {
        "protocol": split.name,
        "protocol_detail": {**split.description, "n_query": int(len(Xq)), "n_database": int(len(Xd)),
                            "n_train": int(len(Xt)), "map_at": K},
        "metric": f"mAP@{K}" if K else "mAP@all",
        "seed": seed,
        "feature_dim": int(X.shape[1]),
        "bits": bits,
        "methods": methods,
        "method_params": method_params,
        "rerank_queries": rerank_queries,
        "deephash_version": __version__,
        "machine": machine_facts(),
        "results": [],
    }
    done: dict[tuple[str, Any], dict] = {}
    planned = {(m, b) for b in bits for m in methods} | {(CEILING, None)}
    if resume and json_path is not None and Path(json_path).is_file():
        import json

        old = json.loads(Path(json_path).read_text())
        same = (old.get("protocol") == split.name and old.get("seed") == seed
                and old.get("protocol_detail", {}).get("n_query") == len(Xq)
                and old.get("protocol_detail", {}).get("n_train") == len(Xt))
        if same:
            done = {(r["method"], r["bits"]): r for r in old.get("results", []) if "error" not in r}
            say(f"resuming: {len(done)} finished rows in {json_path}")
            # rows of methods / code lengths this call does not run are kept as they are
            # (and the ceiling row, which does not change, so an interrupted resume never loses it)
            report["results"] += [r for k, r in done.items() if k not in planned or k == (CEILING, None)]

    def flush() -> None:
        if json_path is not None:
            atomic_write_json(json_path, report)
        if md_path is not None:
            atomic_write_bytes(md_path, (format_methods_markdown(report) + "\n").encode())

    say(f"methods bench: protocol {split.name}: {len(Xq)} queries, {len(Xd)} database, {len(Xt)} training; "
        f"{report['metric']}; methods {methods}; bits {bits}")
    for b in bits:
        for name in methods:
            if (name, b) in done:
                report["results"].append(done[(name, b)])
                continue
            row: dict[str, Any] = {"method": name, "bits": b}
            try:
                params = {"seed": seed, **method_params.get(name, {})}
                h = create_hasher(name, b, **params)
                row.update(family=h.family, supervised=bool(h.supervised), distance=index_type_for(h).metric,
                           reference=h.reference, params=h.get_params())
                with Timer() as t:
                    h.fit(Xt, yt) if h.supervised else h.fit(Xt)
                row["train_s"] = t.seconds
                with Timer() as t:
                    db_codes = h.encode(Xd)
                row["encode_s"] = t.seconds
                m, tm, q_s = _rank_all(lambda sl: h.query_distances(Xq[sl], db_codes), len(Xq), yq, yd, K)
                row.update(map=m, tie_aware_map=tm, query_s=q_s, query_ms=1000 * q_s / max(1, len(Xq)),
                           code_bytes=int(db_codes.shape[1]))
                row.update(_extra_measures(h, Xq, Xd, yq, yd, db_codes, rerank_queries))
                say(f"  {name:>18s} {b:3d} bits: {report['metric']} {m:.4f}  train {row['train_s']:.1f} s  "
                    f"encode {row['encode_s']:.1f} s  query {q_s:.1f} s")
            except Exception as e:  # one failing method must not lose the others' rows
                row["error"] = f"{type(e).__name__}: {e}"
                say(f"  {name:>18s} {b:3d} bits: FAILED {row['error']}")
            report["results"].append(row)
            flush()

    if (CEILING, None) not in done:
        m, tm, q_s = _rank_all(_cosine_ceiling(Xq, Xd), len(Xq), yq, yd, K)
        report["results"].append({"method": CEILING, "bits": None, "family": "ceiling (not a hasher)",
                                  "supervised": False, "distance": "cosine on float32 features",
                                  "map": m, "tie_aware_map": tm, "train_s": 0.0, "encode_s": 0.0, "query_s": q_s,
                                  "query_ms": 1000 * q_s / max(1, len(Xq)), "code_bytes": 4 * int(X.shape[1]),
                                  "reference": None})
        say(f"  {CEILING:>18s}          : {report['metric']} {m:.4f}  query {q_s:.1f} s")
    flush()
    return report


def format_methods_markdown(report: dict[str, Any]) -> str:
    """A Markdown table of a :func:`run_methods_bench` report (one row per method and code length)."""
    d = report["protocol_detail"]
    lines = [f"**Protocol {report['protocol']}** — queries: {d['query']}; database: {d['database']}; "
             f"training: {d['training']}; {d['map']}; relevance: {d['relevance']}; ties: {d['ties']}; "
             f"seed {report['seed']}; features {report['feature_dim']}-d.", "",
             f"| method | bits | {report['metric']} | train s | encode s | query s (all) | distance | family | "
             f"paper's figure (its protocol) |",
             "|---|---:|---:|---:|---:|---:|---|---|---|"]
    rows = sorted(report["results"], key=lambda r: (r["bits"] is None, r["bits"] or 0, r["method"]))
    for r in rows:
        bits = "—" if r["bits"] is None else str(r["bits"])
        if "error" in r:
            lines.append(f"| {r['method']} | {bits} | failed: {r['error'][:120]} | | | | | | |")
            continue
        lines.append(f"| {r['method']} | {bits} | {r['map']:.4f} | {r['train_s']:.1f} | {r['encode_s']:.2f} | "
                     f"{r['query_s']:.1f} | {r.get('distance', '')} | {r.get('family', '')} | "
                     f"{_reference_text(r.get('reference'))} |")
    c2f = [r for r in rows if "coarse_to_fine" in r]
    if c2f:
        n = c2f[0]["coarse_to_fine"]["n_query"]
        lines += ["", f"Coarse-to-fine on the first {n} queries (Hamming pool re-ranked by the method's float features):", "",
                  "| method | bits | query accuracy | Hamming mAP@1000 | coarse-to-fine mAP@1000 | mean pool / radius |",
                  "|---|---:|---:|---:|---:|---|"]
        for r in c2f:
            c, acc = r["coarse_to_fine"], r.get("query_accuracy")
            lines.append(f"| {r['method']} | {r['bits']} | {'–' if acc is None else f'{acc:.3f}'} | {c['map_hamming']:.4f} "
                         f"| {c['map_coarse_to_fine']:.4f} | {c['pool_size_mean']:,.0f} / {c['radius_mean']:.1f} |")
    return "\n".join(lines)
