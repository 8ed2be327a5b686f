"""``deephash bench service`` against a real ``deephash serve`` process on the demo index: every row
answered, the JSON as printed, and a non-loopback URL refused before anything is sent."""
from __future__ import annotations

import json

from click.testing import CliRunner

from deephash.cli.main import cli


def test_service_bench_measures_a_real_server(demo_index, tmp_path):
    out = tmp_path / "svc.json"
    r = CliRunner().invoke(cli, ["bench", "service", str(demo_index), "--requests", "6", "--concurrency", "1,2",
                                 "--warmup", "2", "-k", "5", "--json", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    assert j["benchmark"] == "service" and j["k"] == 5 and j["requests_per_level"] == 6
    assert j["index"]["count"] == 300 and j["index"]["bits"] == 64 and j["index"]["method"] == "itq"
    assert [(row["mode"], row["concurrency"]) for row in j["rows"]] == [("upload", 1), ("upload", 2), ("id", 1), ("id", 2)]
    for row in j["rows"]:
        assert row["ok"] == 6 and row["failed"] == 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    assert {"cpu", "cores", "isa", "kernel_isa"} <= set(j["machine"])
    assert "| by id (search only) | 2 | 6 |" in r.output


def test_service_bench_refuses_a_remote_url(demo_index):
    r = CliRunner().invoke(cli, ["bench", "service", str(demo_index), "--url", "http://example.com:8000"])
    assert r.exit_code != 0 and "loopback" in r.output
