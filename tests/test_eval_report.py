"""write_report writes every file, and its JSON round-trips every number and the config."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deephash.errors import ConfigError
from deephash.eval import evaluate_codes, evaluate_features, get_protocol
from deephash.eval.report import write_report
from deephash.utils import _json_default


def _results():
    rng = np.random.default_rng(0)
    ql, dl = rng.integers(0, 3, 20), rng.integers(0, 3, 200)
    protocol = get_protocol("cifar10-50k")
    out = []
    for method in ("LSH", "ITQ", "toy"):
        for bits in (8, 16):
            qc = rng.integers(0, 256, (20, bits // 8), dtype=np.uint8)
            dc = rng.integers(0, 256, (200, bits // 8), dtype=np.uint8)
            r = evaluate_codes(qc, dc, ql, dl, 100, ks=[1, 10, 100])
            r.update(method=method, bits=bits, train_s=0.5, encode_s=0.1, query_s=2e-5, model_bytes=1234, index_bytes=200 * bits // 8)
            out.append(r)
    f = evaluate_features(rng.normal(size=(20, 5)), rng.normal(size=(200, 5)), ql, dl, 100, ks=[1, 10, 100])
    f.update(method="float kNN", bits=None)
    out.append(f)
    return out, {"protocol": protocol, "dataset": "synthetic", "seed": 0}


def test_write_report_writes_all_files_and_json_round_trips(tmp_path):
    results, config = _results()
    paths = write_report(results, tmp_path / "rep", config)
    for key in ("markdown", "json", "pr_curves", "p_at_k", "map_vs_bits"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    for key in ("pr_curves", "p_at_k", "map_vs_bits"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(paths["json"].read_text())
    assert doc["format"] == "deephash-report" and doc["format_version"] == 1
    assert doc["results"] == json.loads(json.dumps(results, default=_json_default))
    assert doc["config"]["protocol"]["name"] == "cifar10-50k" and doc["config"]["seed"] == 0
    md = paths["markdown"].read_text()
    for needle in ("LSH", "ITQ", "float kNN", "tie-aware", "cifar10-50k (version 1)", "pr_curves.png",
                   "p_at_k.png", "map_vs_bits.png", "an empty ball scores", "| 8 bits | 16 bits | float |"):
        assert needle in md
    assert not list((tmp_path / "rep").glob(".*tmp*"))


def test_write_report_without_hamming_results(tmp_path):
    results, config = _results()
    paths = write_report([results[-1]], tmp_path, config)
    assert "pr_curves" not in paths and paths["p_at_k"].exists() and paths["map_vs_bits"].exists()


def test_write_report_rejects_incomplete_results(tmp_path):
    with pytest.raises(ConfigError, match="needs at least one result"):
        write_report([], tmp_path, {})
    with pytest.raises(ConfigError, match=r"result 0 lacks \['bits', 'tie_aware_map'\]"):
        write_report([{"method": "x", "map": 0.1}], tmp_path, {})
