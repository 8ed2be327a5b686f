"""A bounded loopback load on one or several ``deephash serve`` processes: searches/s, p50/p99 latency, errors.

A fixed number of requests (never open-ended) split over ``concurrency`` client threads, each with
its own connection; client thread ``j`` talks to ``urls[j % len(urls)]``, so several replicas share
the load evenly. A request that fails (a non-200 answer, or no answer) is counted and named, not raised.
"""
from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile of ``xs`` (q in 0..100)."""
    s = sorted(xs)
    i = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[i]


def run_level(urls: str | Sequence[str], make_request: Callable[[Any, int], Any], n_requests: int,
              concurrency: int) -> dict[str, Any]:
    """``n_requests`` calls of ``make_request(client, i)`` (an ``httpx.Client`` on one of ``urls``) over
    ``concurrency`` threads; the figures of the successful ones and the first failures."""
    import httpx

    urls = [urls] if isinstance(urls, str) else list(urls)
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
