"""``deephash bench faiss-upkeep`` on a small database: every structure measured through the backend,
IVF removing from FAISS and the others masking, recall the tie-aware count of the scale bench."""
from __future__ import annotations

import json

from click.testing import CliRunner

from deephash.cli.main import cli


def test_faiss_upkeep_bench_rows_and_json(tmp_path):
    out = tmp_path / "u.json"
    r = CliRunner().invoke(cli, ["bench", "faiss-upkeep", "--n", "3000", "--bits", "32", "--changes", "100",
                                 "--queries", "20", "--json", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    rows = {row["structure"]: row for row in res["rows"]}
    assert sorted(rows) == ["hnsw", "ivf", "mih"] and res["n"] == 3000 and res["machine"]["isa"] and res["faiss_build"]
    assert rows["ivf"]["how_removed"] == "remove_ids" and rows["hnsw"]["how_removed"] == "masked"
    assert rows["ivf"]["params"] == {"nlist": 76, "nprobe": 8}  # 3,000 codes: 4 sqrt(n) ~ 219 -> 256, at most n / 39 = 76
    assert all(0 < row["recall"] <= 1 and row["file_mb"] > 0 for row in rows.values())
    assert "| ivf | nlist=76, nprobe=8 |" in r.output
