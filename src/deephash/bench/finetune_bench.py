"""``deephash bench finetune``: end-to-end fine-tuning under a named protocol — one run, or several
variants back to back in one process (images decoded once, cuDNN autotuning paid once) — each
evaluated on the protocol's split (mAP at the protocol's cutoff, query accuracy, embedding speed,
optionally DLBHC's coarse-to-fine search). Each variant's JSON and checkpoint are written to the
output folder as soon as it ends, so a run cut off keeps the finished variants.

The parts: a named protocol's split of an archive with its images decoded once
(:func:`load_protocol_images`), the evaluation of a fine-tuned hasher on that split
(:func:`evaluate_finetuned`), and the runner (:func:`run_finetune_bench`).

The split is the registered protocol's (:func:`deephash.eval.protocols.get_protocol`), so an
end-to-end figure and a head-only figure under the same protocol name use the same rule.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from deephash.bench.machine import machine_facts, machine_line
from deephash.errors import ConfigError
from deephash.utils import atomic_write_json

#: the short names the first GPU runs used (docs/finetune.md), mapped to the registered protocols
PROTOCOL_ALIASES = {"10k50k": "cifar10-50k", "1k5k54k": "cifar10-54k"}


def resolve_protocol(name: str):
    """The registered protocol for ``name`` (a registered name or one of :data:`PROTOCOL_ALIASES`)."""
    from deephash.eval.protocols import get_protocol

    return get_protocol(PROTOCOL_ALIASES.get(name, name))


@dataclass
class ProtocolImages:
    """A protocol's split of an archive with the images it needs decoded (uint8 NHWC).

    ``query``, ``train`` and ``database`` are row positions into ``images`` / ``labels``;
    ``archive_index[row]`` is the row's position in the archive. Files that failed to decode
    are left out of every part and listed in ``failed`` as ``(path, reason)``."""

    protocol: str
    topk: int | None
    images: np.ndarray
    labels: np.ndarray
    archive_index: np.ndarray
    query: np.ndarray
    train: np.ndarray
    database: np.ndarray
    failed: list = field(default_factory=list)
    seconds: float = 0.0

    def sizes(self) -> dict[str, int]:
        return {"query": len(self.query), "train": len(self.train), "database": len(self.database)}


def _few_per_class(idx: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    return np.sort(np.concatenate([idx[labels[idx] == c][:n] for c in np.unique(labels[idx])]))


def load_protocol_images(archive, protocol: str, *, seed: int = 0, tiny: bool = False, workers: int | None = None,
                         cache: str | Path | None = None, store_size: int = 32) -> ProtocolImages:
    """Split ``archive`` (an :class:`~deephash.data.ImageArchive` with 'train'/'test' splits) by
    ``protocol`` and decode the images of the split at ``store_size`` px.

    ``tiny`` keeps 3 queries, 8 training and 10 database images per class (a CPU check of a
    whole script). ``cache``: an ``.npz`` of every decoded image of the archive, written on the
    first full run and read on later ones (decoding 60,000 JPEGs is the slow part of a sweep)."""
    from deephash.train.finetune import archive_images

    t0 = time.perf_counter()
    p = resolve_protocol(protocol)
    labels = np.asarray(archive.labels)
    sp = p.split_archive(archive, seed)
    q, tr, db = sp.query_idx, sp.train_idx, sp.db_idx
    if tiny:
        q, tr, db = _few_per_class(q, labels, 3), _few_per_class(tr, labels, 8), _few_per_class(db, labels, 10)
    need = np.unique(np.concatenate([q, tr, db]))
    cache = Path(cache) if cache is not None and not tiny else None
    if cache is not None and cache.is_file():
        z = np.load(cache)
        if len(z["labels"]) != len(labels) or not np.array_equal(z["labels"], labels):
            raise ConfigError(f"image cache {cache} holds {len(z['labels'])} images whose labels do not match the "
                              f"archive's {len(labels)}; delete it or pass another --cache")
        imgs, y, kept, failed = z["imgs"][need], labels[need], need, []
    else:
        imgs, y, kept, failed = archive_images(archive, need, store_size=store_size, workers=workers)
        if cache is not None and len(need) == len(labels) and not failed:
            from deephash.utils import atomic_path

            with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, imgs=imgs, labels=y)
    row = {int(i): r for r, i in enumerate(kept)}

    def rows(ix: np.ndarray) -> np.ndarray:
        return np.array([row[int(i)] for i in ix if int(i) in row], dtype=np.int64)

    out = ProtocolImages(protocol=p.name, topk=p.topk, images=imgs, labels=np.asarray(y), archive_index=np.asarray(kept),
                         query=rows(q), train=rows(tr), database=rows(db), failed=list(failed),
                         seconds=time.perf_counter() - t0)
    s = out.sizes()
    print(f"{p.name}: {s['query']} queries, {s['train']} training, {s['database']} database images ready in "
          f"{out.seconds:.1f} s ({len(failed)} failed to decode)", file=sys.stderr, flush=True)
    return out


def _hamming_map(h, dq, cq, cdb, yq, ydb, topk) -> dict[str, float]:
    from deephash.eval.retrieval import hamming_map

    return {"map": hamming_map(cq, cdb, yq, ydb, topk), "bit_mean": float(np.unpackbits(cdb, axis=1)[:, : h.n_bits].mean())}


def _asymmetric_map(h, dq, cq, cdb, yq, ydb, topk) -> dict[str, float]:
    """Quantisation codes: asymmetric distances, a chunk of queries at a time."""
    from deephash.eval.metrics import evaluate_distances

    return {"map": evaluate_distances(lambda sl: h.query_distances(dq[sl], cdb), len(yq), len(ydb), yq, ydb, topk)["map"]}


#: the metric of the index type that holds the hasher's codes -> its mAP (and code statistics)
_MAP_BY_METRIC = {"hamming": _hamming_map, "asymmetric": _asymmetric_map}


def evaluate_finetuned(h, data: ProtocolImages, *, batch: int = 1024, rerank_queries: int = 0,
                       seed: int = 0) -> dict[str, Any]:
    """mAP (the protocol's cutoff) of a fine-tuned hasher on its protocol split — Hamming ranking,
    or asymmetric distance for quantisation codes — with the query classification accuracy where
    the method classifies, embedding speed and, with ``rerank_queries`` > 0, DLBHC's
    coarse-to-fine search (Hamming pool, re-ranked by the deep features) on that many random queries."""
    from deephash.eval.retrieval import coarse_to_fine_evaluation
    from deephash.index.backend import index_type_for
    from deephash.train.finetune import embed_images

    te = time.perf_counter()
    dq, _ = embed_images(h, data.images[data.query], batch=batch)
    ddb, _ = embed_images(h, data.images[data.database], batch=batch)
    t_embed = time.perf_counter() - te
    cq, cdb = h.encode(dq), h.encode(ddb)
    yq, ydb = data.labels[data.query], data.labels[data.database]
    tm = time.perf_counter()
    res: dict[str, Any] = {"protocol": data.protocol, "map_at": data.topk or "all", **{f"n_{k}": v for k, v in data.sizes().items()}}
    res.update(_MAP_BY_METRIC[index_type_for(h).metric](h, dq, cq, cdb, yq, ydb, data.topk))
    res["distance"] = h.code_kind
    res["map_seconds"] = time.perf_counter() - tm
    res["query_accuracy"] = float((h.classify(dq) == yq).mean()) if hasattr(h, "classify") else None
    res["embed_seconds"] = t_embed
    res["embed_images_per_second"] = (len(yq) + len(ydb)) / t_embed
    if rerank_queries > 0 and hasattr(h, "rerank_features"):  # DLBHC, Deep Ranking, SPP-PMT: Hamming codes
        sel = np.random.default_rng(seed).choice(len(yq), min(rerank_queries, len(yq)), replace=False)
        t0 = time.perf_counter()
        c2f = coarse_to_fine_evaluation(cq[sel], h.rerank_features(dq[sel]), cdb, h.rerank_features(ddb), yq[sel], ydb,
                                        k=data.topk or 1000)
        c2f["seconds"] = time.perf_counter() - t0
        res["coarse_to_fine"] = c2f
    return res



# --------------------------------------------------------------------------------------------- the runner
def parse_variants(text: str | None) -> list[dict[str, Any]]:
    """``--variants``: a JSON list of dicts, each :class:`~deephash.train.finetune.FinetuneConfig` fields
    (``params`` for the method's own) plus an optional ``name``."""
    if text is None:
        return [{}]
    try:
        vs = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--variants is not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(vs, list) or not vs or not all(isinstance(v, dict) for v in vs):
        raise ConfigError('--variants expects a non-empty JSON list of objects, e.g. \'[{"name": "a", "epochs": 40}]\'')
    return vs


def _device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def _resolve_variants(variants: Sequence[dict[str, Any]], defaults: dict[str, Any], protocol: str,
                      method_params: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, FinetuneConfig fields) of every variant: ``defaults`` overridden by the variant; the
    ``--param`` values of its method under the variant's own ``params``."""
    from deephash.train.finetune import FinetuneConfig

    known = {f.name for f in fields(FinetuneConfig)}
    out: list[tuple[str, dict[str, Any]]] = []
    for v in variants:
        v = dict(v)
        name = v.pop("name", None)
        unknown = sorted(set(v) - known)
        if unknown:
            raise ConfigError(f"variant {name or v}: unknown field(s) {unknown}; known: {', '.join(sorted(known))}")
        cfg = {**defaults, **v}
        cfg["params"] = {**method_params.get(cfg["method"], {}), **dict(v.get("params") or {})}
        name = name or f"{cfg['method']}-{protocol}-{cfg['bits']}"
        if name in {n for n, _ in out}:
            raise ConfigError(f"two variants are named {name!r}: give each a distinct \"name\"")
        out.append((name, cfg))
    return out


def format_finetune_markdown(report: dict[str, Any]) -> str:
    lines = [f"end-to-end fine-tuning, protocol {report['protocol']} (mAP@{report['map_at']}), device {report['device']}",
             machine_line(report["machine"]), "",
             "| variant | method | bits | epochs | mAP | query accuracy | coarse-to-fine mAP@1000 | s/epoch | train img/s "
             "| encode img/s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["variants"]:
        acc = "–" if r["query_accuracy"] is None else f"{r['query_accuracy']:.3f}"
        c2f = r.get("coarse_to_fine", {}).get("map_coarse_to_fine")
        lines.append(f"| {r['name']} | {r['method']} | {r['recipe']['bits']} | {r['recipe']['epochs']} | {r['map']:.4f} "
                     f"| {acc} | {'–' if c2f is None else f'{c2f:.4f}'} | {r['train']['seconds_per_epoch']:.2f} "
                     f"| {r['train']['images_per_second']:.0f} | {r['embed_images_per_second']:.0f} |")
    return "\n".join(lines)


def run_finetune_bench(archive, protocol: str = "cifar10-54k", *, variants: Sequence[dict[str, Any]] = ({},),
                       defaults: dict[str, Any] | None = None, method_params: dict[str, dict[str, Any]] | None = None,
                       out_dir: str | Path = "runs/finetune", rerank_queries: int = 0, save_max_mb: float = 16.0,
                       seed: int = 0, tiny: bool = False, workers: int | None = None, cache: str | Path | None = None,
                       json_path: str | Path | None = None, progress: bool = True,
                       say: Callable[[str], None] = print) -> dict[str, Any]:
    """Fine-tune every variant on ``protocol``'s training images of ``archive`` and evaluate it.

    ``defaults``: :class:`~deephash.train.finetune.FinetuneConfig` fields every variant starts from
    (``method``, ``bits``, ``epochs``...); a variant overrides them. ``method_params``: per-method
    ``params`` (``--param``). Writes ``OUT/NAME.json`` and ``OUT/NAME.pt`` (deleted when over
    ``save_max_mb``) per variant, and the whole report to ``json_path`` after every variant."""
    import torch

    from deephash.train.finetune import FinetuneConfig, fine_tune, save_finetuned

    base = {"method": "dlbhc", "bits": 64, "seed": seed, **(defaults or {})}
    p = resolve_protocol(protocol)
    planned = _resolve_variants(variants, base, p.name, method_params or {})
    for _, cfg in planned:
        FinetuneConfig(**cfg)  # every recipe checked before hours of training
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_protocol_images(archive, protocol, seed=seed, tiny=tiny, workers=workers, cache=cache)
    report: dict[str, Any] = {"benchmark": "finetune", "protocol": data.protocol, "map_at": data.topk or "all",
                              "sizes": data.sizes(), "tiny": tiny, "seed": seed, "device": _device_name(),
                              "torch": torch.__version__, "machine": machine_facts(), "data_seconds": data.seconds,
                              "failed_to_decode": len(data.failed), "variants": []}
    for name, cfg in planned:
        t0 = time.perf_counter()
        method = cfg.pop("method")
        h = fine_tune(method, data.images[data.train], data.labels[data.train], progress=progress, **cfg)
        rep = h.report_
        res = {"name": name, "method": method, "recipe": h.finetune_,
               **evaluate_finetuned(h, data, rerank_queries=rerank_queries, seed=seed),
               "train": rep, "loss_log": h.history_.get("loss", [])[-8:]}
        ck = save_finetuned(h, out / f"{name}.pt")
        res["checkpoint_mb"] = ck.stat().st_size / 2**20
        res["checkpoint"] = ck.name if res["checkpoint_mb"] <= save_max_mb else None
        if res["checkpoint"] is None:
            ck.unlink()
        res["variant_seconds"] = time.perf_counter() - t0
        atomic_write_json(out / f"{name}.json", res)
        report["variants"].append(res)
        if json_path is not None:
            atomic_write_json(json_path, report)
        say(f"{name}: mAP {res['map']:.4f}, {rep['seconds_per_epoch']:.2f} s/epoch, {res['variant_seconds']:.0f} s")
        del h
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    say(format_finetune_markdown(report))
    if json_path is not None:
        say(f"wrote {json_path}")
    return report
