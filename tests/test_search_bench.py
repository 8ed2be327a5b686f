"""The search and scaling benchmarks run end to end on tiny sets and write the keys the CLI and README rely on (no timing asserted)."""
import json

import numpy as np
import pytest

from deephash.bench import scaling_bench
from deephash.bench.scaling_bench import queries_for, run_scaling_bench
from deephash.bench.search_bench import default_isas, make_codes, run_search_bench
from deephash.errors import ConfigError
from deephash.index import kernel_searcher as ks


def test_bench_writes_the_documented_json(tmp_path, monkeypatch):
    monkeypatch.delenv(ks.ISA_ENV, raising=False)
    out = run_search_bench(3000, [64, 128], 10, 20, [1, 2], True, tmp_path / "out.json", repeats=1, verbose=False,
                           sublinear=("ivf", "mih", "radius"))
    data = json.loads((tmp_path / "out.json").read_text())
    assert set(data["qps"]) >= {"deephash", "faiss_flat", "ceiling"}
    assert data["ratios"]["deephash_vs_faiss"] > 0 and data["config"]["seed"] == 0
    isas = default_isas()
    assert [(r["bits"], r["threads"], r["isa"]) for r in data["exact"]] == [
        (b, t, i) for b in (64, 128) for t in (1, 2) for i in isas]
    for r in data["exact"]:
        assert r["path"] == f"{r['isa']}/{ks.layout_for(r['isa'], r['bits'])}"
        # the ceiling is the fastest candidate pass of that instruction set
        assert r["qps"]["ceiling"] == max(r["ceiling_candidates"].values())
        assert r["qps_cpu"]["ceiling"] == max(r["ceiling_candidates_cpu"].values())
        assert r["ceiling_method"].startswith(r["isa"] + "/")
        if r["isa"] == "avx2":
            assert set(r["ceiling_candidates"]) == {"avx2/interleaved", "avx2/byte-sliced"}
        assert r["ratios"]["deephash_vs_ceiling"] == pytest.approx(r["qps"]["deephash"] / r["qps"]["ceiling"])
    names = {r["index"] for r in out["sublinear"]}
    assert {"ivf", "mih", "radius"} <= names
    assert all(0.0 <= r["recall_at_k"] <= 1.0 for r in out["sublinear"])


def test_bench_refuses_an_isa_the_cpu_lacks_or_does_not_know():
    with pytest.raises(ConfigError, match="isa must be one of avx512, avx2, scalar"):
        run_search_bench(100, 64, 1, 1, 1, True, None, isas=["sse9"], repeats=1, verbose=False, sublinear=())


def test_clustered_codes_are_seeded_and_clustered():
    a, c = make_codes(500, 64, clustered=True, seed=3)
    b, _ = make_codes(500, 64, clustered=True, seed=3)
    assert (a == b).all() and len(c) == 100
    r, _ = make_codes(10, 64, clustered=False, seed=3)
    assert r.shape == (10, 8)


def test_scaling_bench_writes_json_and_plots(tmp_path):
    out = run_scaling_bench([2_000, 5_000], [64], k=10, nlist=16, nprobes=[1, 16], repeats=1, out_dir=tmp_path,
                            verbose=False)
    data = json.loads((tmp_path / "scaling.json").read_text())
    assert [r["n"] for r in data["rows"]] == [2_000, 5_000] and data["skipped"] == []
    for r in data["rows"]:
        assert {"faiss_flat", "ivf/nprobe=1", "ivf/nprobe=16"} <= set(r["qps"])
        assert all(0.0 <= v <= 1.0 for v in r["recall"].values())
        assert r["recall"]["ivf/nprobe=16"] == 1.0  # every list probed: IVF is exact
        assert r["memory_mb"]["faiss_flat"] == pytest.approx(r["n"] * 8 / 2**20)
        x = r["index"]
        assert x["file_mb"] > r["n"] * 8 / 2**20 and x["save_s"] > 0 and x["load_s"] > 0 and x["load_peak_mb"] > 0
    assert (tmp_path / "scaling-search.png").stat().st_size > 10_000
    assert (tmp_path / "scaling-index.png").stat().st_size > 10_000
    assert "| 64 | 5,000 |" in scaling_bench.format_scaling_markdown(out)
    # --resume keeps the measured rows and adds the new N
    more = run_scaling_bench([1_000, 5_000], [64], k=10, nlist=16, nprobes=[1, 16], repeats=1, out_dir=tmp_path,
                             resume=True, index_io=False, verbose=False)
    assert [r["n"] for r in more["rows"]] == [1_000, 2_000, 5_000]
    assert more["rows"][2] == data["rows"][1] and "index" not in more["rows"][0]


def test_scaling_bench_skips_what_does_not_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(scaling_bench, "_mem_available", lambda: 10 * 2**20)  # 10 MiB free
    out = run_scaling_bench([1_000, 10**8], [128], k=5, nlist=4, nprobes=[1], repeats=1, index_io=False,
                            out_dir=tmp_path, verbose=False)
    assert [r["n"] for r in out["rows"]] == [1_000]
    (s,) = out["skipped"]
    assert s["n"] == 10**8 and "only 0.0 GiB is available" in s["reason"]


def test_query_counts_shrink_with_n_in_whole_batches():
    assert [queries_for(n) for n in (10**5, 10**6, 10**7, 10**8)] == [992, 288, 64, 64]
    assert all(queries_for(n) % 32 == 0 for n in np.logspace(3, 9, 13).astype(int))


def test_cli_bench_search_and_scaling(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from deephash.cli.main import cli

    monkeypatch.delenv(ks.ISA_ENV, raising=False)
    r = CliRunner().invoke(cli, ["bench", "search", "--n", "2000", "--bits", "64,128", "--threads", "1", "--queries", "8",
                                 "--repeats", "1", "--sublinear", "", "--isa", "scalar", "--json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "s.json").read_text())["exact"]
    assert [(x["bits"], x["isa"]) for x in rows] == [(64, ks.resolve_isa("scalar")), (128, ks.resolve_isa("scalar"))]
    assert "| 64 | 1 | " in r.output
    r = CliRunner().invoke(cli, ["bench", "scaling", "--n", "1500", "--bits", "64", "--nlist", "8", "--nprobe", "1,8",
                                 "--repeats", "1", "--no-index-io", "--out", str(tmp_path / "sc")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "sc" / "scaling.json").read_text())["rows"][0]["recall"]["ivf/nprobe=8"] == 1.0
    r = CliRunner().invoke(cli, ["bench", "search", "--bits", "64,x"])
    assert r.exit_code != 0 and "--bits expects comma-separated integers; got '64,x'" in r.output
