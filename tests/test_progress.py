"""Long steps say what they do: the Trainer's progress bar (iteration, loss, validation mAP, time
left) on stderr, early stopping when validation stops improving, --iters/--epochs, and the
one-line note when an archive is unpacked."""
import math
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deephash.cli.main import cli
from deephash.cli.params import training_length
from deephash.data import open_archive
from deephash.errors import ConfigError
from deephash.hashers import create_hasher
from deephash.train.trainer import TrainerConfig


def _features(n_per_class=30, n_classes=4, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3
    y = np.repeat(np.arange(n_classes), n_per_class)
    return (centres[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


def test_the_trainer_shows_a_progress_bar_with_loss_and_validation_map(capsys):
    X, y = _features()
    h = create_hasher("dpsh", 16, n_iters=40, eval_every=20, batch_size=32, device="cpu")
    h.fit(X, y, progress=True)
    err = capsys.readouterr().err
    assert "train dpsh" in err and "40/40" in err
    assert "loss=" in err and "val_mAP=" in err
    # tqdm's time-left field: [elapsed<remaining, rate]
    assert "<" in err and ("it/s" in err or "s/it" in err)


def test_no_progress_output_unless_asked(capsys):
    X, y = _features()
    create_hasher("dpsh", 16, n_iters=20, eval_every=10, device="cpu").fit(X, y)
    assert capsys.readouterr().err == ""


def test_early_stopping_stops_when_validation_stops_improving(capsys):
    """lr = 0: the network never changes, so validation mAP never gains after its first check;
    with patience 2 training stops at the third check instead of running 400 iterations."""
    X, y = _features()
    h = create_hasher("dpsh", 16, n_iters=400, eval_every=10, patience=2, lr=0.0, device="cpu")
    h.fit(X, y, progress=True)
    hist = h.history_
    assert hist["early_stopped_at"] == 30 and hist["iters"] == 30
    assert [v["iter"] for v in hist["val"]] == [10, 20, 30]
    assert len({round(v["map"], 12) for v in hist["val"]}) == 1  # truly no change
    assert "stopped early at iteration 30" in capsys.readouterr().err


def test_gains_below_min_delta_count_against_patience():
    cfg = TrainerConfig(n_iters=10, patience=2, min_delta=0.01)
    assert cfg.min_delta == 0.01
    with pytest.raises(ConfigError, match="patience must be >= 1 and min_delta >= 0"):
        TrainerConfig(patience=0)


def test_without_labels_there_is_no_validation_and_every_iteration_runs():
    X, _ = _features()
    h = create_hasher("bihalf", 16, n_iters=25, eval_every=10, device="cpu").fit(X)
    assert h.history_["iters"] == 25 and h.history_["val"] == [] and "early_stopped_at" not in h.history_


def test_training_length_from_iters_and_epochs():
    h = create_hasher("dpsh", 16)
    batch = h.trainer_config().batch_size
    assert training_length(h, 1000, None, None) is None
    assert training_length(h, 1000, 77, None) == 77
    assert training_length(h, 1000, None, 2.0) == math.ceil(2 * 1000 / batch)
    assert training_length(create_hasher("classifier-codes", 16), 512, None, 1.0) == 2  # its own batch of 256
    with pytest.raises(ConfigError, match="lsh is not trained by iterations"):
        training_length(create_hasher("lsh", 16), 1000, 10, None)


def _class_folder(root, n=8):
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        for i in range(n):
            p = root / c / f"{i}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(p)


def test_train_iters_and_quiet_through_the_cli(tmp_path, tmp_cache):
    _class_folder(tmp_path / "arc")
    ck = tmp_path / "m.pt"
    r = CliRunner().invoke(cli, ["train", str(tmp_path / "arc"), "--method", "dpsh", "--bits", 8, "--image-size", 32,
                                 "--iters", 7, "--quiet", "--out", str(ck)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "trained dpsh (8 bits) on 16 images, 7 iterations" in r.output
    assert "train dpsh" not in r.output  # --quiet (and a redirected stderr): no bar
    from deephash.hashers import load_hasher

    assert load_hasher(ck)[1].params["n_iters"] == 7
    r = CliRunner().invoke(cli, ["train", str(tmp_path / "arc"), "--method", "dpsh", "--iters", 3, "--epochs", 1,
                                 "--out", str(ck)])
    assert r.exit_code == 2 and "give --iters or --epochs, not both" in r.output


def test_unpacking_an_archive_says_so_once(tmp_path, tmp_cache, capsys):
    _class_folder(tmp_path / "src" / "data", n=2)
    arc = tmp_path / "data.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        tf.add(tmp_path / "src" / "data", arcname="data")
    assert len(open_archive(arc)) == 4
    err = capsys.readouterr().err
    assert "unpacking data.tar.gz" in err and "unpacked data.tar.gz in" in err
    open_archive(arc)
    assert "unpacking" not in capsys.readouterr().err  # the second time it is already there
