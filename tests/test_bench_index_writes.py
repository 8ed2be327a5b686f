"""``deephash bench index-writes`` on tiny indexes: every row measured, the JSON as printed, the
machine recorded; the index file really holds the codes and features it claims."""
from __future__ import annotations

import json

from click.testing import CliRunner

from deephash.cli.main import cli


def test_index_writes_bench_writes_one_row_per_size(tmp_path):
    out = tmp_path / "iw.json"
    r = CliRunner().invoke(cli, ["bench", "index-writes", "--n", "300,700", "--dim", "16", "--repeats", "3",
                                 "--dir", str(tmp_path), "--json", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    assert j["benchmark"] == "index-writes" and j["dim"] == 16 and j["repeats"] == 3
    assert [row["n"] for row in j["rows"]] == [300, 700]
    for row in j["rows"]:
        # the file holds at least the codes (8 B) and float16 features (2 B x dim) of every image
        assert row["index_mb"] * 2**20 >= row["n"] * (8 + 2 * 16)
        assert row["journal_bytes_per_change"] > 0
        assert row["rewrite_over_add"] == row["rewrite_ms"] / row["journal_add_ms"]
        assert min(row[k] for k in ("journal_add_ms", "journal_remove_ms", "rewrite_ms", "in_memory_add_ms",
                                    "in_memory_remove_ms")) > 0
    assert {"cpu", "cores", "isa", "kernel_isa"} <= set(j["machine"])
    assert "| 700 |" in r.output and not list(tmp_path.glob("deephash-index-writes-*"))  # the files are cleaned up


def test_index_writes_bench_refuses_a_bad_size():
    r = CliRunner().invoke(cli, ["bench", "index-writes", "--n", "0"])
    assert r.exit_code != 0 and "must be positive" in r.output
