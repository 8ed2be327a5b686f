"""``deephash bench faiss-upkeep``: what keeping a FAISS structure inside an index file costs, per
structure, through the backend itself (``faiss-ivf:FILE``, ... :mod:`deephash.index.faiss_backend`).

For each structure, on ``n`` class-clustered codes (one thread):

- ``finish_s``: build it and write the index file (``new_index(...).finish()``); ``load_s``: open
  the file (the stored structure read back, not built again);
- ``qps`` and tie-aware ``recall`` at k of ``queries`` held-out codes through the backend, default parameters;
- the structure's own upkeep (:class:`~deephash.index.ann_search.AnnSearcher`, what the index does
  on top of its arrays): ``build_s`` (IVF: k-means, then assign; HNSW: link every code; MIH: hash
  tables) — what every load would cost if the file did not store it; ``add_s``: ``changes`` codes
  taken in (IVF assigns them to its lists, HNSW links them); ``remove_s``: ``changes`` rows taken
  out (IVF: FAISS's ``remove_ids``; HNSW, MIH: masked), against ``rebuild_s``: building the
  structure again from the codes left, the alternative.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from deephash.bench.machine import write_result


def run_faiss_upkeep_bench(n: int, *, bits: int = 64, structures: Sequence[str] = ("ivf", "hnsw", "mih"),
                           changes: int = 1000, k: int = 10, n_queries: int = 200, seed: int = 0,
                           json_path: str | os.PathLike | None = None,
                           say: Callable[[str], None] = print) -> dict[str, Any]:
    from deephash.bench.scale_bench import clustered_codes, recall_with_ties
    from deephash.codes import hamming_matrix
    from deephash.index import new_index, open_index
    from deephash.index.ann_search import AnnSearcher
    from deephash.bench.machine import machine_facts, machine_line
    from deephash.optional import require

    machine = machine_facts()
    faiss_build = require("faiss", "deephash bench faiss-upkeep").get_compile_options()

    codes = clustered_codes(n + changes + n_queries, bits, n_centres=max(16, n // 1000), flip=0.08, seed=seed)
    db, extra, queries = codes[:n], codes[n : n + changes], codes[n + changes :]
    kth = np.sort(hamming_matrix(queries, db), axis=1)[:, k - 1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in structures:
            path = Path(tmp) / f"{name}.dhi"
            uri = f"faiss-{name}:{path}"
            t = time.perf_counter()
            ix = new_index(uri, bits)
            ix.add(db)
            ix.finish()
            finish_s = time.perf_counter() - t
            spec = ix.search_info
            t = time.perf_counter()
            ix = open_index(uri)
            load_s = time.perf_counter() - t
            t = time.perf_counter()
            D, I = ix.search(queries, k)
            search_s = time.perf_counter() - t
            recall = recall_with_ties(kth, db, queries, I, lambda ids: ids)
            # the structure's own upkeep, on a searcher like the one inside the index
            ann = AnnSearcher({"name": name}, bits)
            t = time.perf_counter()
            ann.build(db)
            build_s = time.perf_counter() - t
            t = time.perf_counter()
            ann.add(extra, n)
            add_s = time.perf_counter() - t
            keep = np.ones(n + changes, bool)
            keep[np.random.default_rng(seed).choice(n + changes, changes, replace=False)] = False
            t = time.perf_counter()
            ann.remove(keep)
            remove_s = time.perf_counter() - t
            t = time.perf_counter()
            AnnSearcher({"name": name}, bits).build(np.concatenate([db, extra])[keep])
            rebuild_s = time.perf_counter() - t
            params = {p: v for p, v in spec.items() if p not in ("name", "exact", "built", "masked")}
            rows.append({"structure": name, "params": params, "n": n, "bits": bits, "build_s": round(build_s, 3),
                         "finish_s": round(finish_s, 3), "file_mb": round(path.stat().st_size / 2**20, 1),
                         "load_s": round(load_s, 3), "add_s": round(add_s, 4), "remove_s": round(remove_s, 4),
                         "rebuild_s": round(rebuild_s, 3), "how_removed": "remove_ids" if ann.ann.can_remove else "masked",
                         "qps": round(len(queries) / search_s, 1), "recall": round(recall, 4)})
    out = {"bench": "faiss-upkeep", "n": n, "bits": bits, "changes": changes, "k": k, "queries": n_queries, "seed": seed,
           "threads": 1, "machine": machine, "faiss_build": faiss_build, "rows": rows}
    say(f"FAISS structures in an index file: n={n:,} {bits}-bit clustered codes, {changes:,} added / removed, "
        f"recall@{k} of {n_queries} queries, 1 thread; FAISS built with {faiss_build}")
    say(machine_line(machine))
    say("| structure | params | build s | finish s | file MB | load s | add s | remove s (how) | rebuild s | q/s | recall |")
    say("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        p = ", ".join(f"{a}={b}" for a, b in r["params"].items())
        say(f"| {r['structure']} | {p} | {r['build_s']} | {r['finish_s']} | {r['file_mb']} | {r['load_s']} | {r['add_s']} | "
            f"{r['remove_s']} ({r['how_removed']}) | {r['rebuild_s']} | {r['qps']:,} | {r['recall']} |")
    write_result(json_path, out, say)
    return out
