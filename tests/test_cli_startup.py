"""The CLI starts fast because commands that need no model import no heavy library (issue 15 item 4).

Start-up *time* is measured by ``deephash bench startup``; this test checks the property the time
depends on, and that the benchmark runs and writes its JSON."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deephash.bench.startup_bench import HEAVY_MODULES, run_startup_bench

PROBE = """
import sys
from deephash.cli.main import cli
try:
    cli({args!r}, prog_name="deephash")
except SystemExit:
    pass
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize("args", [["--help"], ["search", "--help"], ["index", "--help"], ["train", "--help"],
                                  ["search", "missing.dhi", "q.jpg", "-k", "0"], ["serve", "--help"]])
def test_commands_that_need_no_model_import_no_heavy_library(args, tmp_path):
    code = PROBE.format(args=args, heavy=HEAVY_MODULES)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY=")]
    assert line, out.stdout + out.stderr
    assert line[0] == "HEAVY=", f"{args} imported {line[0][6:]}"


def test_the_argument_error_is_one_line_and_exits_2(tmp_path):
    (tmp_path / "q.jpg").write_bytes(b"")
    out = subprocess.run([sys.executable, "-m", "deephash.cli.main", "search", "missing.dhi", "q.jpg", "-k", "0"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_the_startup_benchmark_times_every_case_and_writes_json(tmp_path):
    lines: list[str] = []
    out = run_startup_bench(tmp_path, repeats=1, json_path=tmp_path / "s.json", say=lines.append)
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(out["rows"]))
    cases = {r["case"]: r for r in saved["rows"]}
    assert cases["deephash --help"]["exit_code"] == 0
    assert cases["deephash search … -k 0 (argument error)"]["exit_code"] == 2
    assert all(r["median_s"] > 0 for r in saved["rows"])
    assert any(ln.startswith("| deephash --help |") for ln in lines)
