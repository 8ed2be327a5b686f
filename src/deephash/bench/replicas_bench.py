"""``deephash bench replicas``, part (c): service replicas on one Milvus under a bounded loopback load.

One archive, one model, two indexes of it — a local file and a Milvus collection — then, one
setup after the other, real ``deephash serve`` processes on 127.0.0.1: the local-file service
(one process), one replica on Milvus, two replicas on the same Milvus. Each setup gets the same
load (:func:`deephash.bench.service_bench.run_level`: a fixed number of requests over a fixed number of
client threads, split evenly over its replicas), per query mode: ``id`` (``GET /api/search/{id}``,
the search alone) and ``upload`` (``POST /api/search`` with an archive image: decode, backbone,
hash, search). Reported per row: searches/s, p50/p99 latency, errors, and whether the setup's
hits for a sample of ids are those of the local-file service.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deephash.bench.machine import write_result
from deephash.errors import ConfigError, DeepHashError
from deephash.optional import require

#: setup name -> (which index it serves, replicas)
SETUPS: dict[str, tuple[str, int]] = {"local file, 1 process": ("file", 1), "Milvus, 1 replica": ("milvus", 1),
                                      "Milvus, 2 replicas": ("milvus", 2)}


def _drop(uri: str) -> None:
    from deephash.index.backend import open_index

    try:
        open_index(uri).drop()
    except DeepHashError:  # no such collection
        pass


def start_all(servers: list) -> None:
    """Start every :class:`~deephash.service.process.ServeProcess` at once (each start is mostly waiting
    for the model to load); if one fails, stop them all and raise its error."""
    errors: list[BaseException] = []

    def go(s) -> None:
        try:
            s.start()
        except BaseException as e:  # noqa: BLE001  (re-raised below)
            errors.append(e)

    threads = [threading.Thread(target=go, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for s in servers:
            s.stop()
        raise errors[0]


def _hits(url: str, ids: list[int], k: int) -> list[list[tuple[int, int]]]:
    httpx = require("httpx", "deephash bench replicas")
    with httpx.Client(base_url=url, timeout=60) as c:
        return [[(h["id"], h["hamming"]) for h in c.get(f"/api/search/{i}", params={"k": k}).json()["results"]]
                for i in ids]


def run_replicas_bench(milvus_uri: str, *, dataset: str = "cifar10", n_images: int = 10_000, model: str | None = None,
                       image_size: int = 128, requests: int = 300, concurrency: int = 4,
                       modes: tuple[str, ...] = ("id", "upload"),
                       k: int = 10, warmup: int = 10, seed: int = 0, json_path: str | None = None,
                       say: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the two indexes of ``n_images`` of ``dataset`` and measure every setup of :data:`SETUPS`."""
    from deephash import api
    from deephash.bench.machine import machine_facts
    from deephash.bench.ray_bench import _fit_model
    from deephash.bench.service_bench import run_level
    from deephash.data import load_dataset
    from deephash.service.process import ServeProcess

    bad = [m for m in modes if m not in ("id", "upload")]
    if bad or not modes:
        raise ConfigError(f"modes are id and upload; got {', '.join(modes) or 'none'}")
    if requests < 1 or concurrency < 1 or n_images < 1:
        raise ConfigError(f"requests, concurrency and n_images must be at least 1; got {requests}, {concurrency}, {n_images}")
    machine = machine_facts()
    full = load_dataset(dataset)
    archive = full.subset(np.unique(np.linspace(0, len(full) - 1, min(n_images, len(full))).astype(np.int64)))
    with tempfile.TemporaryDirectory(prefix="deephash-replicas-bench-") as tmp:
        tmp = Path(tmp)
        ckpt = Path(model) if model else _fit_model(archive, image_size, tmp, seed)
        t0 = time.perf_counter()
        built = api.build_index(archive, ckpt, tmp / "index.dhi", progress=False)
        build_file_s = time.perf_counter() - t0
        _drop(milvus_uri)
        t0 = time.perf_counter()
        api.build_index(archive, ckpt, milvus_uri, progress=False)  # the features come from the cache now
        build_milvus_s = time.perf_counter() - t0
        ids = [int(i) for i in built.index.ids]
        files = [archive.abspath(int(i)) for i in ids[:: max(1, len(ids) // 200)]]
        payloads = [(Path(f).name, Path(f).read_bytes()) for f in files]
        makers = {
            "id": lambda c, i: c.get(f"/api/search/{ids[(i * 7919) % len(ids)]}", params={"k": k}),
            "upload": lambda c, i: c.post("/api/search", params={"k": k},
                                          files={"file": (*payloads[i % len(payloads)], "image/jpeg")}),
        }
        sample = ids[:: max(1, len(ids) // 10)][:10]
        target = {"file": str(tmp / "index.dhi"), "milvus": milvus_uri}
        rows, reference = [], None
        load_before = os.getloadavg()
        try:
            for name, (backend, replicas) in SETUPS.items():
                servers = [ServeProcess(target[backend], tmp / f"{backend}-{j}.log") for j in range(replicas)]
                start_all(servers)
                try:
                    urls = [s.url for s in servers]
                    answers = [_hits(u, sample, k) for u in urls]
                    reference = reference or answers[0]
                    for mode in modes:
                        for u in urls:
                            run_level(u, makers[mode], warmup, 1)  # warm-up, not counted
                        r = run_level(urls, makers[mode], requests, concurrency)
                        rows.append({"setup": name, "backend": backend, "replicas": replicas, "mode": mode, **r,
                                     "hits_as_local_file": all(a == reference for a in answers)})
                        say(f"  {name:24s} {mode:6s} {r['searches_per_s']:8.1f}/s  p50 {r['p50_ms']} ms  "
                            f"p99 {r['p99_ms']} ms  errors {r['failed']}")
                finally:
                    for s in servers:
                        s.stop()
        finally:
            _drop(milvus_uri)
    out = {"benchmark": "replicas-c", "dataset": dataset, "images": len(archive), "indexed": len(ids),
           "model": str(model) if model else f"itq-64 fitted on 1,000 of the images (seed {seed})",
           "image_size": image_size, "k": k, "requests_per_row": requests, "concurrency": concurrency,
           "warmup_per_replica": warmup, "build_file_s": round(build_file_s, 2), "build_milvus_s": round(build_milvus_s, 2),
           "consistency_level": "Strong (the service's reads)", "machine": machine,
           "load_average_before": [round(x, 2) for x in load_before],
           "load_average_after": [round(x, 2) for x in os.getloadavg()],
           "note": "clients, replicas and the Milvus server share this machine's cores (loopback only)", "rows": rows}
    say(format_replicas_markdown(out))
    write_result(json_path, out, say)
    return out


def format_replicas_markdown(r: dict[str, Any]) -> str:
    from deephash.bench.machine import machine_line

    lines = [f"{r['indexed']:,} images ({r['dataset']}, {r['image_size']} px), k={r['k']}, {r['requests_per_row']} requests "
             f"per row over {r['concurrency']} client threads, loopback; load average {r['load_average_before'][0]} "
             f"before, {r['load_average_after'][0]} after", machine_line(r["machine"]), "",
             "| service | query | searches/s | p50 ms | p99 ms | errors | hits as local file |",
             "|---|---|---:|---:|---:|---:|---|"]
    what = {"id": "by id (search only)", "upload": "upload (decode+backbone+hash+search)"}
    for row in r["rows"]:
        lines.append(f"| {row['setup']} | {what[row['mode']]} | {row['searches_per_s']} | {row['p50_ms']} | {row['p99_ms']} | "
                     f"{row['failed']} | {'yes' if row['hits_as_local_file'] else 'NO'} |")
    return "\n".join(lines)
