"""CLI start-up time (issue 15 item 4): how long a user waits before deephash answers at all.

Every case runs ``python -c ...`` or the ``deephash`` entry point in a fresh process, ``repeats``
times, and reports the median wall time. Peers measured in the same run: the bare interpreter
(the floor no CLI can beat) and ``import torch`` / ``import onnxruntime`` (what the CLI would pay
if it imported its heavy libraries eagerly, as it once did).
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from deephash.bench.machine import write_result

# what a command that needs no model must not import (checked by tests/test_cli_startup.py too)
HEAVY_MODULES = ("torch", "onnxruntime", "faiss", "matplotlib", "fastapi", "uvicorn", "pymilvus", "ray")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from deephash.cli.main import main; sys.argv[0] = 'deephash'; main()", *args]


def startup_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    """(name, argv) of each case; ``tmp`` holds the files an argument-error case points at."""
    fake = tmp / "q.jpg"
    fake.write_bytes(b"")
    return [
        ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
        ("import deephash.cli.main", [sys.executable, "-c", "import deephash.cli.main"]),
        ("deephash --help", _cli("--help")),
        ("deephash search --help", _cli("search", "--help")),
        ("deephash search … -k 0 (argument error)", _cli("search", str(tmp / "missing.dhi"), str(fake), "-k", "0")),
        ("deephash methods", _cli("methods")),
        ("import onnxruntime (peer)", [sys.executable, "-c", "import onnxruntime"]),
        ("import torch (peer)", [sys.executable, "-c", "import torch"]),
    ]


def _time_once(argv: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    return time.perf_counter() - t0, proc.returncode


def run_startup_bench(tmp: Path, *, repeats: int = 7, json_path: str | os.PathLike | None = None,
                      say: Callable[[str], None] = print) -> dict[str, Any]:
    rows = []
    cases = startup_cases(tmp)
    for name, argv in cases:
        _time_once(argv)  # warm the page cache: the first run of a process reads the files from disk
        runs = [_time_once(argv) for _ in range(repeats)]
        times = [t for t, _ in runs]
        rows.append({"case": name, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                     "exit_code": runs[-1][1], "repeats": repeats})
    floor = rows[0]["median_s"]
    say(f"CPU cores: {os.cpu_count()}; python {sys.version.split()[0]}; median of {repeats} runs each (a fresh process per run)\n")
    say("| case | median s | min s | max s | exit | over bare python |")
    say("|---|---|---|---|---|---|")
    for r in rows:
        r["over_floor_s"] = r["median_s"] - floor
        say(f"| {r['case']} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} | {r['exit_code']} | "
            f"{r['over_floor_s']:+.3f} |")
    out = {"benchmark": "startup", "repeats": repeats, "python": sys.version.split()[0], "cores": os.cpu_count(),
           "rows": rows}
    write_result(json_path, out, say, lead="\n")
    return out
