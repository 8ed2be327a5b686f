"""Bounded load benchmark of ``deephash serve`` on loopback: searches/s and p50/p99 latency per concurrency.

A fixed number of requests per level (never open-ended), clients and server on 127.0.0.1 only.
Starts its own server on a free port (or measures one given with --url, which must be loopback).

    python bench/bench_service.py --index runs/demo/index.dhi --requests 300 --concurrency 1 4 16 \\
        --json bench/results/service.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import httpx

from deephash.bench.load import run_level
from deephash.service.process import ServeProcess as Server


def _meta(index: Path) -> dict:
    """The index's meta (read in a child so this process needs no torch)."""
    code = "import json,sys; from deephash.index import HashIndex; print(json.dumps(HashIndex.load(sys.argv[1]).meta))"
    out = subprocess.run([sys.executable, "-c", code, str(index)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def format_table(r: dict) -> str:
    ix = r["index"]
    lines = [f"deephash serve — {ix['count']} images, {ix['bits']}-bit {ix['method']} on {ix['backbone']}@{ix['image_size']}px, "
             f"k={r['k']}, {r['requests_per_level']} requests per row, loopback, {r['machine']['cpus']} shared CPU cores",
             "", "| query | concurrent clients | requests | searches/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        what = "upload (decode+backbone+hash+search)" if row["mode"] == "upload" else "by id (search only)"
        lines.append(f"| {what} | {row['concurrency']} | {row['requests']} | {row['searches_per_s']} | {row['p50_ms']} | {row['p99_ms']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, help="index to serve (started here on a free loopback port)")
    ap.add_argument("--url", help="measure an already running server instead (loopback only; needs --index for query images)")
    ap.add_argument("--requests", type=int, default=300, help="requests per concurrency level and mode")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--modes", nargs="+", choices=["upload", "id"], default=["upload", "id"],
                    help="upload: POST a CIFAR-10 test image (decode+backbone+hash+search); id: GET by indexed id")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if not 1 <= a.requests <= 100_000 or any(not 1 <= c <= 256 for c in a.concurrency):
        ap.error("--requests must be 1..100000 and each --concurrency 1..256")
    if a.url and urlparse(a.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        ap.error("--url must be a loopback address (127.0.0.1)")
    if not a.index:
        ap.error("--index is needed (to serve it, or to find the archive's test images)")

    root = Path(_meta(a.index)["archive_root"])
    queries = sorted((root / "test").rglob("*.jpg"))[::10][:500]
    payloads = [(q.name, q.read_bytes()) for q in queries]
    if "upload" in a.modes and not payloads:
        ap.error(f"no test images under {root}/test for --modes upload")
    srv = None
    if a.url:
        url = a.url.rstrip("/")
    else:
        srv = Server(a.index, Path(tempfile.mkdtemp(prefix="bench-service-")) / "server.log", "--log-level", "error").start()
        url = srv.url
    rows = []
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            stats = c.get("/api/stats").json()
            ids = [x["id"] for x in c.get("/api/images", params={"limit": 1000}).json()["items"]]
        makers = {
            "upload": lambda c, i: c.post("/api/search", params={"k": a.k},
                                          files={"file": (*payloads[i % len(payloads)], "image/jpeg")}),
            "id": lambda c, i: c.get(f"/api/search/{ids[(i * 7919) % len(ids)]}", params={"k": a.k}),
        }
        load_before = os.getloadavg()
        for mode in a.modes:
            run_level(url, makers[mode], a.warmup, 1)  # warm-up, not counted
            for conc in a.concurrency:
                r = {"mode": mode, **run_level(url, makers[mode], a.requests, conc)}
                rows.append(r)
                print(f"  {mode:6s} c={conc:<3d} {r['searches_per_s']:8.1f}/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms",
                      file=sys.stderr)
        report = {
            "index": {"count": stats["count"], "bits": stats["bits"], "method": stats["method"],
                      "backbone": stats["backbone"]["name"], "image_size": stats["image_size"]},
            "k": a.k, "requests_per_level": a.requests, "warmup": a.warmup, "rows": rows,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "loadavg_before": [round(x, 2) for x in load_before],
                        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                        "note": "client and server share the machine, and other jobs were running on it"},
            "server": f"deephash serve, one uvicorn process, DEEPHASH_THREADS={os.environ.get('DEEPHASH_THREADS', 'unset')}",
        }
    finally:
        if srv:
            srv.stop()
    print(format_table(report))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {a.json}", file=sys.stderr)
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
