"""`deephash bench query-latency` answers through the jobs API and reports every stage it timed."""
from __future__ import annotations

import json

from click.testing import CliRunner

from deephash import api
from deephash.cli.main import cli


def test_query_latency_bench_times_each_stage_of_real_queries(small_cifar, tmp_path):
    ck = tmp_path / "itq.pt"
    api.train(api.TrainConfig(archive=str(small_cifar), out=str(ck), method="itq", bits=16, split="train",
                              image_size=32, progress=False))
    api.build_index(str(small_cifar / "test"), ck, tmp_path / "i.dhi", progress=False)
    out = tmp_path / "lat.json"
    r = CliRunner().invoke(cli, ["bench", "query-latency", str(tmp_path / "i.dhi"), "--images", "4", "-k", "5",
                                 "--json", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    assert j["n_queries"] == 4 and j["n_indexed"] == 100 and j["bits"] == 16
    stages = j["stages"]
    for name in ("decode", "backbone", "hash", "search", "rerank", "whole call, Hamming", "whole call, re-rank"):
        assert stages[name]["n"] == 4, name
        assert 0 < stages[name]["median_ms"] <= stages[name]["p90_ms"] or stages[name]["median_ms"] == stages[name]["p90_ms"]
    assert "| whole call, Hamming |" in r.output
