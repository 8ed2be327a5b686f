"""``deephash bench service``: a bounded load benchmark of ``deephash serve`` on loopback — searches/s
and p50/p99 latency per number of concurrent clients.

A fixed number of requests per row (never open-ended), after uncounted warm-up requests; clients
and server on 127.0.0.1 only. It starts its own server on a free port
(:class:`deephash.service.process.ServeProcess`, a real ``deephash serve`` process) or measures one
given by URL, which must be loopback. Two kinds of query: ``upload`` posts a JPEG (decode, backbone,
hash, search), ``id`` searches by an indexed image's id (search only).
"""
from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

from deephash.bench.machine import machine_facts, machine_line, write_result
from deephash.errors import ConfigError

MODES = ("upload", "id")


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``xs`` (q in 0..100)."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))]


def run_level(url: str | Sequence[str], make_request: Callable[[Any, int], Any], n_requests: int,
              concurrency: int) -> dict[str, Any]:
    """``n_requests`` requests split over ``concurrency`` client threads, each with its own keep-alive connection.

    ``url`` may be several (replicas of one service): client thread ``j`` talks to ``url[j % len(url)]``.
    A request that gets no answer is counted as failed with its reason, like a non-200 answer."""
    from deephash.optional import require

    httpx = require("httpx", "deephash bench service")
    urls = [url] if isinstance(url, str) else list(url)

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(n_requests))

    def worker(j: int) -> None:
        with httpx.Client(base_url=urls[j % len(urls)], timeout=120) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = make_request(c, i)
                    why = None if r.status_code == 200 else f"{r.status_code} {r.text[:100]}"
                except httpx.HTTPError as e:
                    why = f"{type(e).__name__}: {e}"
                dt = time.perf_counter() - t0
                with lock:
                    (latencies.append(dt) if why is None else failures.append(why))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker, j) for j in range(concurrency)]:
            f.result()
    wall = time.perf_counter() - t0
    return {"concurrency": concurrency, "requests": n_requests, "ok": len(latencies), "failed": len(failures),
            "wall_s": round(wall, 3), "searches_per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 2) if latencies else None,
            "p99_ms": round(1000 * percentile(latencies, 99), 2) if latencies else None,
            "first_failures": failures[:3]}


def format_service_markdown(r: dict[str, Any]) -> str:
    ix = r["index"]
    lines = [f"deephash serve — {ix['count']} images, {ix['bits']}-bit {ix['method']} on {ix['backbone']}@{ix['image_size']}px, "
             f"k={r['k']}, {r['requests_per_level']} requests per row, loopback", machine_line(r["machine"]), "",
             "| query | concurrent clients | requests | searches/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        what = "upload (decode+backbone+hash+search)" if row["mode"] == "upload" else "by id (search only)"
        lines.append(f"| {what} | {row['concurrency']} | {row['requests']} | {row['searches_per_s']} | {row['p50_ms']} "
                     f"| {row['p99_ms']} |")
    return "\n".join(lines)


def _query_files(index: str | os.PathLike) -> list[Path]:
    """Every 10th JPEG of the indexed archive's test split (at most 500): images the index does not hold."""
    from deephash.index import HashIndex

    root = HashIndex.load(index).meta.get("archive_root")
    files = sorted((Path(root) / "test").rglob("*.jpg"))[::10][:500] if root else []
    if not files:
        raise ConfigError(f"no test images under {root}/test to upload (the archive {index} was built from); "
                          f"use --modes id")
    return files


def run_service_bench(index: str | os.PathLike, *, url: str | None = None, requests: int = 300,
                      concurrency: Sequence[int] = (1, 4, 16), modes: Sequence[str] = MODES, k: int = 10,
                      warmup: int = 20, json_path: str | os.PathLike | None = None,
                      say: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure ``deephash serve INDEX`` (started here, or the loopback server at ``url``): one row per
    mode and concurrency level. Returns (and writes to ``json_path``) the report; ``rows[i]["failed"]``
    counts non-200 answers."""
    from deephash.optional import require
    from deephash.service.process import ServeProcess

    httpx = require("httpx", "deephash bench service")
    if not 1 <= requests <= 100_000 or not concurrency or any(not 1 <= c <= 256 for c in concurrency):
        raise ConfigError(f"--requests must be 1..100000 and each --concurrency 1..256; got {requests}, {list(concurrency)}")
    if url and urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(f"--url must be a loopback address (127.0.0.1); got {url}")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ConfigError(f"--modes takes {', '.join(MODES)}; got {', '.join(modes) or 'none'}")
    payloads = [(q.name, q.read_bytes()) for q in _query_files(index)] if "upload" in modes else []
    machine = machine_facts()
    srv = None
    if url is None:
        log = Path(tempfile.mkdtemp(prefix="deephash-bench-service-")) / "server.log"
        srv = ServeProcess(index, log, "--log-level", "error").start()
        url = srv.url
    url = url.rstrip("/")
    rows: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            stats = c.get("/api/stats").json()
            ids = [x["id"] for x in c.get("/api/images", params={"limit": 1000}).json()["items"]]
        makers = {
            "upload": lambda c, i: c.post("/api/search", params={"k": k},
                                          files={"file": (*payloads[i % len(payloads)], "image/jpeg")}),
            "id": lambda c, i: c.get(f"/api/search/{ids[(i * 7919) % len(ids)]}", params={"k": k}),
        }
        for mode in modes:
            run_level(url, makers[mode], warmup, 1)  # warm-up, not counted
            for conc in concurrency:
                r = {"mode": mode, **run_level(url, makers[mode], requests, conc)}
                rows.append(r)
                say(f"  {mode:6s} c={conc:<3d} {r['searches_per_s']:8.1f}/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms")
    finally:
        if srv is not None:
            srv.stop()
    machine["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    machine["note"] = "client and server share the machine"
    report = {"benchmark": "service",
              "index": {"count": stats["count"], "bits": stats["bits"], "method": stats["method"],
                        "backbone": stats["backbone"]["name"], "image_size": stats["image_size"]},
              "k": k, "requests_per_level": requests, "warmup": warmup, "rows": rows, "machine": machine,
              "server": f"deephash serve, one uvicorn process, DEEPHASH_THREADS={os.environ.get('DEEPHASH_THREADS', 'unset')}"}
    say(format_service_markdown(report))
    write_result(json_path, report, say)
    return report
