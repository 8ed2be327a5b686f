"""The encode and training cost curves (``deephash bench scaling --curve encode,train``) and the encode
bench's rows, on tiny synthetic data: the JSON's structure and the consistency of its numbers (never the
timings themselves)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from deephash.backbones import create_backbone
from deephash.bench import cost_curves
from deephash.bench.cost_curves import clustered_features, linear_fit, run_encode_curve, train_curve
from deephash.bench.encode_bench import backbone_only, format_encode_table, new_encode, old_encode, spinning_copy
from deephash.cli.main import cli
from deephash.errors import ConfigError


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("efficientnet-lite0", image_size=32)


def test_linear_fit_recovers_a_line():
    f = linear_fit([10, 20, 40], [1.5 + 0.25 * n for n in (10, 20, 40)])
    assert f["fixed_s"] == pytest.approx(1.5) and f["per_item_s"] == pytest.approx(0.25)
    assert linear_fit([4], [2.0]) == {"fixed_s": 0.0, "per_item_s": 0.5}


def test_clustered_features_are_seeded_and_labelled():
    X, y = clustered_features(50, dim=16, seed=3)
    X2, y2 = clustered_features(50, dim=16, seed=3)
    assert X.shape == (50, 16) and X.dtype == np.float32 and y.shape == (50,)
    assert np.array_equal(X, X2) and np.array_equal(y, y2) and set(y) <= set(range(10))


def test_train_curve_rows_add_up():
    X, y = clustered_features(300, dim=32, seed=0)
    out = train_curve(X, y, [100, 300], ["dpsh", "dlbhc"], bits=16, train_iters=3, say=lambda *a: None)
    assert list(out) == ["dpsh", "dlbhc"]
    for m, c in out.items():
        assert [r["n"] for r in c["rows"]] == [100, 300]
        for r in c["rows"]:
            assert r["fit_s"] > 0 and r["validation_s"] >= 0 and r["iterations_s"] is not None
            # the parts add up to the fit (other_s is clipped at 0 where separately timed parts overshoot)
            assert r["other_s"] >= 0 and r["validation_s"] + r["iterations_s"] + r["other_s"] >= r["fit_s"] - 1e-9
        assert set(c["fit"]) == {"fixed_s", "per_item_s"}
    with pytest.raises(ConfigError, match="asked for 400"):
        train_curve(X, y, [400], ["dpsh"], train_iters=1, say=lambda *a: None)


def test_cli_train_curve_writes_json_table_and_plot(tmp_path):
    r = CliRunner().invoke(cli, ["bench", "scaling", "--curve", "train", "--train-n", "200,400", "--train-methods",
                                 "deep-ranking,mihash", "--train-iters", "3", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    out = json.loads((tmp_path / "train-scaling.json").read_text())
    assert out["curve"] == "train" and out["train_iters"] == 3 and out["machine"]["isa"]
    assert list(out["methods"]) == ["deep-ranking", "mihash"]
    assert [r["n"] for r in out["methods"]["mihash"]["rows"]] == [200, 400]
    assert (tmp_path / "scaling-train.png").stat().st_size > 0
    assert "| mihash (" in r.output and "n=400 s" in r.output


@pytest.mark.parametrize("args, match", [(["--curve", "speed"], "--curve must name"),
                                         (["--curve", "train", "--train-methods", "nope"], "unknown method"),
                                         (["--curve", "train", "--train-n", "0"], "positive whole numbers"),
                                         (["--curve", "encode", "--repeats", "0"], "--repeats must be")])
def test_cli_scaling_rejects_bad_options(tmp_path, args, match):
    r = CliRunner().invoke(cli, ["bench", "scaling", *args, "--out", str(tmp_path)])
    assert r.exit_code != 0 and match in r.output


def test_encode_curve_on_a_small_archive(small_cifar, tmp_path):
    """Both sets (the large one made 320x240 here), both encoders: n per row, rates = n / seconds, a fitted line."""
    out = run_encode_curve([20, 40], [2, 3], repeats=1, image_size=32, data=str(small_cifar), out_dir=tmp_path,
                           large_size=(320, 240), verbose=False)
    saved = json.loads((tmp_path / "encode-scaling.json").read_text())
    assert saved["sets"].keys() == out["sets"].keys() == {"cifar", "12mp"}
    assert saved["large_size"] == [320, 240]
    for name, ns in (("cifar", [20, 40]), ("12mp", [2, 3])):
        c = saved["sets"][name]
        assert [r["n"] for r in c["rows"]] == ns
        for r in c["rows"]:
            for e in ("old", "new"):
                assert r["images_per_s"][e] == pytest.approx(r["n"] / r["seconds"][e])
                assert r["cpu_ms_per_image"][e] >= 0
        assert set(c["fit"]) == set(c["fit_cpu"]) == {"old", "new"} and c["new_decoder_processes"] in (0, *range(1, 9))
    assert (tmp_path / "scaling-encode.png").stat().st_size > 0
    assert "| cifar | 40 |" in cost_curves.format_encode_curve(saved)


def test_encode_bench_rows_encode_every_image(small_cifar, backbone):
    paths = sorted((small_cifar / "test").rglob("*.jpg"))[:40]
    info: dict = {}
    assert new_encode(paths, backbone, info=info) == 40 and info["workers"] in (0, *range(1, 9))
    assert new_encode(paths, backbone, workers=0, info=info) == 40 and info["workers"] == 0
    old = spinning_copy(backbone)
    assert old is not backbone and old_encode(paths, old) == 40
    imgs = np.zeros((5, 32, 32, 3), np.uint8)
    assert backbone_only(imgs, backbone, batch_size=2) == 5
    assert np.allclose(old.embed(imgs), backbone.embed(imgs), atol=1e-5)  # spinning changes the timing, not the answer


def test_encode_table_ratios():
    rate = lambda v, cpu=1.0: {"median": v, "cpu_ms_per_image": cpu}  # noqa: E731
    result = {"machine": {"isa": "AVX2", "cores": 2}, "backbone": "b", "image_size": 128, "repeats": 3,
              "sets": {"cifar": {"rates": {"old": rate(100), "new": rate(150), "backbone-only": rate(200),
                                           "decode-only": rate(1000)}},
                       "12mp": {"rates": {"old": rate(2), "new": rate(8), "decode-only": rate(10)}}}}
    table = format_encode_table(result)
    assert "| new | 150.0 | 1.50 | 0.75 | 1.00 | 8.0 | 4.00 | 0.80 | 1.00 |" in table
    assert "cifar vs backbone-only" in table and "12mp vs decode-only" in table
