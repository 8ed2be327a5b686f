"""The end-to-end benchmarks' shared set-up: the registered protocol's split, images decoded once
(corrupt files left out and reported, an image cache reused), and the evaluation of a fine-tuned
hasher recomputed the slow obvious way."""
import shutil

import numpy as np
import pytest

from deephash.bench.finetune_bench import evaluate_finetuned, load_protocol_images, resolve_protocol
from deephash.data import open_archive
from deephash.errors import ConfigError, UnknownNameError
from deephash.eval.metrics import mean_average_precision
from deephash.eval.protocols import get_protocol


def test_aliases_name_the_registered_protocols():
    assert resolve_protocol("1k5k54k").name == "cifar10-54k" and resolve_protocol("10k50k").name == "cifar10-50k"
    assert resolve_protocol("cifar10-59k").name == "cifar10-59k"
    with pytest.raises(UnknownNameError, match="known protocols: cifar10-50k"):
        resolve_protocol("no-such-protocol")


def test_tiny_split_is_a_subset_of_the_protocols_split(cifar_full):
    d = load_protocol_images(cifar_full, "cifar10-54k", seed=3, tiny=True)
    sp = get_protocol("cifar10-54k").split(cifar_full.labels, seed=3)
    assert d.sizes() == {"query": 30, "train": 80, "database": 100} and d.topk == 54000  # = all
    for part, full in ((d.query, sp.query_idx), (d.train, sp.train_idx), (d.database, sp.db_idx)):
        assert set(d.archive_index[part]) <= set(full)
        assert np.array_equal(d.labels[part], cifar_full.labels[d.archive_index[part]])
    assert not set(d.query) & set(d.train) and not set(d.query) & set(d.database)
    assert d.images.shape[1:] == (32, 32, 3) and d.images.dtype == np.uint8


@pytest.fixture()
def broken_small(small_cifar, tmp_path):
    root = tmp_path / "cifar"
    shutil.copytree(small_cifar, root)
    bad = sorted((root / "train").rglob("*.jpg"))[0]
    bad.write_bytes(b"not a jpeg")
    return open_archive(root), bad


def test_corrupt_images_are_left_out_and_the_cache_is_reused(broken_small, tmp_path):
    arc, bad = broken_small
    d = load_protocol_images(arc, "cifar10-50k", cache=tmp_path / "imgs.npz")
    assert [p for p, _ in d.failed] == [str(bad)] and not (tmp_path / "imgs.npz").exists()  # never cache a hole
    assert d.sizes() == {"query": 100, "train": 299, "database": 299} and d.topk == 1000
    bad.unlink()
    arc = open_archive(arc.root)
    d1 = load_protocol_images(arc, "cifar10-50k", cache=tmp_path / "imgs.npz")
    assert (tmp_path / "imgs.npz").is_file() and not d1.failed
    d2 = load_protocol_images(arc, "cifar10-50k", cache=tmp_path / "imgs.npz")
    assert np.array_equal(d1.images, d2.images) and np.array_equal(d1.train, d2.train)
    sorted((arc.root / "test").rglob("*.jpg"))[0].unlink()  # the archive changed: its old cache is refused, not misread
    with pytest.raises(ConfigError, match="do not match"):
        load_protocol_images(open_archive(arc.root), "cifar10-50k", cache=tmp_path / "imgs.npz")


def test_evaluation_matches_the_slow_obvious_map(small_cifar):
    from deephash.codes import hamming_matrix, pack_bits
    from deephash.train.finetune import embed_images, fine_tune

    d = load_protocol_images(open_archive(small_cifar), "cifar10-50k")
    h = fine_tune("dlbhc", d.images[d.train], d.labels[d.train], bits=16, image_size=32, epochs=1, batch_size=64,
                  val_fraction=0.0, device="cpu")
    r = evaluate_finetuned(h, d, rerank_queries=20)
    _, aq = embed_images(h, d.images[d.query])
    _, adb = embed_images(h, d.images[d.database])
    D = hamming_matrix(pack_bits(aq >= h.threshold), pack_bits(adb >= h.threshold))
    rel = d.labels[d.query][:, None] == d.labels[d.database][None, :]
    assert r["map"] == pytest.approx(mean_average_precision(D, rel, 1000), abs=1e-6)
    assert r["n_query"] == 100 and r["map_at"] == 1000 and 0 <= r["query_accuracy"] <= 1
    assert r["coarse_to_fine"]["map_hamming"] >= 0 and r["embed_images_per_second"] > 0


def _network_methods():
    from deephash.hashers import create_hasher, list_hashers
    from deephash.hashers.deep import DeepHasher

    return [m for m in list_hashers() if isinstance(create_hasher(m, 16), DeepHasher)]


@pytest.mark.parametrize("method", _network_methods())
def test_every_network_method_fine_tunes_end_to_end_or_says_why_not(method, small_cifar, tmp_path):
    """Every registered network-trained method runs the end-to-end regime (tiny, CPU) and is
    evaluated on its protocol; an unsupervised one is refused with the reason."""
    from deephash.hashers import create_hasher
    from deephash.train.finetune import fine_tune

    d = load_protocol_images(open_archive(small_cifar), "cifar10-50k")
    imgs, y = d.images[d.train][::3], d.labels[d.train][::3]  # 100 images, 10 per class
    if not create_hasher(method, 16).supervised:
        with pytest.raises(ConfigError, match="unsupervised"):
            fine_tune(method, imgs, y, bits=16, image_size=32, epochs=1, device="cpu")
        return
    h = fine_tune(method, imgs, y, bits=16, image_size=32, epochs=1, batch_size=32, val_fraction=0.0, device="cpu")
    r = evaluate_finetuned(h, d)
    assert 0.0 < r["map"] <= 1.0 and r["distance"] == h.code_kind
    # the checkpoint alone encodes the fine-tuned descriptors identically
    from deephash.hashers import load_hasher
    from deephash.train.finetune import embed_images, save_finetuned

    desc, _ = embed_images(h, imgs[:7])
    h2, cfg = load_hasher(save_finetuned(h, tmp_path / "m.pt"))
    assert cfg.finetune["method"] == method and np.array_equal(h2.encode(desc), h.encode(desc))


def test_dpq_validates_end_to_end_by_asymmetric_distance(small_cifar, monkeypatch):
    """The Trainer's early-stopping metric ranks DPQ's validation images by its asymmetric
    distance on their embeddings (its Hamming-free ranking), not by bits of the embedding."""
    from deephash.hashers.dpq import DPQ
    from deephash.train.finetune import fine_tune

    d = load_protocol_images(open_archive(small_cifar), "cifar10-50k")
    seen = []
    real = DPQ._adc

    def spy(self, zq, codes):
        seen.append((zq.shape, codes.shape, codes.dtype))
        return real(self, zq, codes)

    monkeypatch.setattr(DPQ, "_adc", spy)
    h = fine_tune("dpq", d.images[d.train], d.labels[d.train], bits=16, image_size=32, epochs=1, batch_size=64,
                  val_fraction=0.2, device="cpu")
    assert seen and all(c[1][1] == 2 and c[2] == np.uint8 for c in seen)  # 16 bits = 2 sub-spaces of codeword ids
    assert h.report_["best_val_map"] is not None and 0 < h.report_["best_val_map"] <= 1


def test_bench_finetune_runs_each_variant_and_writes_its_json(small_cifar, tmp_path):
    """`deephash bench finetune --variants` on CPU, tiny: each variant's recipe is the options
    overridden by the variant, --param reaches its method, and every variant's JSON is written."""
    import json

    from click.testing import CliRunner

    from deephash.cli.main import cli

    out, js = tmp_path / "runs", tmp_path / "ft.json"
    variants = '[{"name": "a", "epochs": 2}, {"name": "b", "method": "csq", "scale_min": 0.5}]'
    r = CliRunner().invoke(cli, ["bench", "finetune", "--dataset", str(small_cifar), "--protocol", "10k50k",
                                 "--image-size", "32", "--epochs", "1", "--batch-size", "32", "--val-fraction", "0",
                                 "--device", "cpu", "--rerank-queries", "10", "--param", "dlbhc.label_smoothing=0.1",
                                 "--save-max-mb", "0.001", "--variants", variants, "--out", str(out), "--json", str(js)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    j = json.loads(js.read_text())
    assert j["benchmark"] == "finetune" and j["protocol"] == "cifar10-50k" and j["device"] == "cpu"
    assert j["sizes"] == {"query": 100, "train": 300, "database": 300} and j["machine"]["isa"]
    a, b = j["variants"]
    assert (a["name"], a["method"], a["recipe"]["epochs"], a["recipe"]["params"]) == ("a", "dlbhc", 2, {"label_smoothing": 0.1})
    assert (b["name"], b["method"], b["recipe"]["epochs"], b["recipe"]["scale_min"]) == ("b", "csq", 1, 0.5)
    assert b["recipe"]["params"] == {}  # --param dlbhc.* is not csq's
    assert a["recipe"]["val_fraction"] == 0 and b["recipe"]["val_fraction"] == 0
    for v in (a, b):
        assert 0 < v["map"] <= 1 and v["n_query"] == 100 and v["map_at"] == 1000
        assert v["checkpoint"] is None and not (out / f"{v['name']}.pt").exists()  # over --save-max-mb: deleted
        assert json.loads((out / f"{v['name']}.json").read_text())["map"] == v["map"]
    assert "coarse_to_fine" in a and "| b | csq | 64 | 1 |" in r.output


@pytest.mark.parametrize("variants, message", [("[{", "not valid JSON"), ('{"a": 1}', "non-empty JSON list"),
                                               ('[{"epoch": 3}]', "unknown field"),
                                               ('[{"name": "x"}, {"name": "x"}]', "two variants are named")])
def test_bench_finetune_refuses_bad_variants_before_any_work(small_cifar, variants, message):
    from click.testing import CliRunner

    from deephash.cli.main import cli

    r = CliRunner().invoke(cli, ["bench", "finetune", "--dataset", str(small_cifar), "--variants", variants])
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output
