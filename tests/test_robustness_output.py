"""Issue 12 item 8: an ``--out`` that cannot be written (index, train, encode) is one line and a
non-zero exit, found before the work that would fill it; the same for the Python API."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from deephash import api
from deephash.cli.main import cli
from deephash.errors import OutputError
from robust_fixtures import synth_archive, synth_ckpt  # noqa: F401  (session fixtures)


def _unwritable(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (an --out path, what the message says). Unwritable even for root."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    (tmp_path / "a-folder").mkdir()
    return {
        "parent is a file": (str(blocker / "out.bin"), "a part of its folder path is a file, not a folder"),
        "out is a folder": (str(tmp_path / "a-folder"), "it is a folder; give a file name"),
        "folder cannot be made": ("/proc/self/deephash-nope/out.bin", "its folder /proc/self/deephash-nope cannot be made"),
        "read-only folder": ("/proc/out.bin", "its folder /proc does not accept new files"),
    }


def _one_line_error(r, path: str, msg: str) -> None:
    assert r.exit_code == 2, r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert err == [f"error: cannot write {path}: " + err[0].split(": ", 2)[2]] and msg in err[0], r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("case", ["parent is a file", "out is a folder", "folder cannot be made", "read-only folder"])
def test_index_train_encode_refuse_an_unwritable_out_in_one_line(case, tmp_path, synth_archive, synth_ckpt):
    out, msg = _unwritable(tmp_path)[case]
    runner = CliRunner()
    r = runner.invoke(cli, ["index", str(synth_archive), "--model", str(synth_ckpt), "--out", out])
    _one_line_error(r, out, msg)
    r = runner.invoke(cli, ["train", str(synth_archive), "--method", "lsh", "--bits", "16", "--image-size", "32",
                            "--out", out, "-q"])
    _one_line_error(r, out, msg)
    img = sorted((synth_archive / "red").iterdir())[0]
    r = runner.invoke(cli, ["encode", str(synth_ckpt), str(img), "--out", out])
    _one_line_error(r, out, msg)


def test_the_api_raises_output_error_before_the_work(tmp_path, synth_archive, synth_ckpt, monkeypatch):
    out, _ = _unwritable(tmp_path)["parent is a file"]
    import deephash.features as features

    def never(*a, **k):
        raise AssertionError("features were extracted before the output was checked")

    monkeypatch.setattr(features, "extract_features", never)
    with pytest.raises(OutputError, match="cannot write"):
        api.build_index(str(synth_archive), synth_ckpt, out, progress=False)
    with pytest.raises(OutputError, match="cannot write"):
        api.train(api.TrainConfig(archive=str(synth_archive), out=out, method="lsh", bits=16, image_size=32, progress=False))
    assert isinstance(OutputError("x"), OSError)  # callers that handle I/O failures still catch it


def test_a_full_disk_while_writing_is_one_line(tmp_path, monkeypatch):
    import errno

    import numpy as np

    from deephash.utils import atomic_path

    with pytest.raises(OutputError, match=r"cannot write .*x\.npy: No space left on device"):
        with atomic_path(tmp_path / "x.npy", suffix=".npy") as tmp:
            np.save(tmp, np.zeros(3))
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not list(tmp_path.iterdir())  # no temporary file left behind
