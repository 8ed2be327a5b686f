"""Issue 12 item 6: a damaged or foreign checkpoint is refused with one clear line (never a
traceback), and a checksum of its payload, written on save and checked on load, catches a flipped
byte in the weights; checkpoints written before the checksum still load."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deephash.cli.main import cli
from deephash.errors import IndexFormatError
from deephash.hashers import create_hasher, load_hasher
from deephash.model import HashModel


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    X = np.random.default_rng(0).normal(size=(300, 32)).astype(np.float32)
    h = create_hasher("itq", 16, seed=0)
    h.fit(X)
    return h.save(tmp_path_factory.mktemp("ck") / "itq.pt", backbone="efficientnet-lite0", preprocessing={"size": 32})


def _probe() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(50, 32)).astype(np.float32)


def _bad_files(tmp: Path, good: bytes) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the message must say)."""
    cases = {
        "empty": (b"", "the file is empty (0 bytes)"),
        "text": (b"epochs: 10\nlr: 0.1\n", "it is a text file"),
        "random": (np.random.default_rng(5).bytes(4096), "it starts with bytes"),
        "passwd": (Path("/etc/passwd").read_bytes(), "it is a text file"),
        "truncated": (good[: len(good) // 2], "truncated or damaged"),
        "zip-of-something-else": (None, "not a deephash checkpoint"),
    }
    out = {}
    for name, (data, msg) in cases.items():
        p = tmp / f"{name}.pt"
        if data is None:
            import torch

            torch.save({"weights": torch.zeros(3)}, p)
        else:
            p.write_bytes(data)
        out[name] = (p, msg)
    return out


def test_each_kind_of_bad_file_gets_its_one_line_message(ckpt, tmp_path):
    for name, (p, msg) in _bad_files(tmp_path, ckpt.read_bytes()).items():
        with pytest.raises(IndexFormatError) as e:
            HashModel.load(p)
        assert msg in str(e.value), (name, str(e.value))
        assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_the_cli_prints_one_line_and_exits_2_for_each(ckpt, tmp_path):
    img = tmp_path / "q.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    runner = CliRunner()
    for name, (p, msg) in _bad_files(tmp_path, ckpt.read_bytes()).items():
        r = runner.invoke(cli, ["encode", str(p), str(img)])
        assert r.exit_code == 2, (name, r.output)
        assert r.output.startswith("error: ") and msg in r.output and len(r.output.strip().splitlines()) == 1
        assert r.exception is None or isinstance(r.exception, SystemExit)


def test_a_missing_checkpoint_or_a_folder_is_named_as_such(tmp_path):
    with pytest.raises(IndexFormatError, match="does not exist"):
        HashModel.load(tmp_path / "nope.pt")
    with pytest.raises(IndexFormatError, match="is not a file"):
        HashModel.load(tmp_path)


def test_every_single_byte_flip_is_refused_or_harmless(ckpt, tmp_path):
    """Flip each byte of a checkpoint in turn: either one IndexFormatError line, or the loaded hasher
    is exactly the saved one (a flip in zip metadata that does not touch the payload)."""
    good = ckpt.read_bytes()
    ref = load_hasher(ckpt)[0].encode(_probe())
    ref_t = load_hasher(ckpt)[0].transform(_probe())
    p = tmp_path / "flip.pt"
    refused = loaded = 0
    for off in range(len(good)):
        b = bytearray(good)
        b[off] ^= 0xFF
        p.write_bytes(bytes(b))
        try:
            h, _ = load_hasher(p)
        except IndexFormatError as e:
            assert "\n" not in str(e)
            refused += 1
            continue
        assert np.array_equal(h.encode(_probe()), ref) and np.array_equal(h.transform(_probe()), ref_t), off
        loaded += 1
    assert refused > len(good) // 2 and loaded + refused == len(good)


def _rewrite(src: Path, dst: Path, edit) -> None:
    import torch

    blob = torch.load(src, map_location="cpu", weights_only=True)
    edit(blob)
    torch.save(blob, dst)


def test_changed_weights_fail_the_payload_checksum(ckpt, tmp_path):
    """A well-formed zip whose weights changed after saving (the CRCs rewritten with them): the
    payload checksum is what catches it."""
    def nudge(blob):
        k = next(k for k, v in blob["state"].items() if hasattr(v, "numel") and v.numel() > 1)
        blob["state"][k].view(-1)[0] += 1e-3

    bad = tmp_path / "nudged.pt"
    _rewrite(ckpt, bad, nudge)
    with pytest.raises(IndexFormatError, match="do not match the checksum written with them"):
        load_hasher(bad)
    other = tmp_path / "relabelled.pt"
    _rewrite(ckpt, other, lambda b: b["config"].update(n_bits=32))
    with pytest.raises(IndexFormatError, match="do not match the checksum"):
        load_hasher(other)


def test_checkpoints_without_a_checksum_still_load(ckpt, tmp_path):
    old = tmp_path / "old.pt"
    _rewrite(ckpt, old, lambda b: b.pop("checksum"))
    h, _ = load_hasher(old)
    assert np.array_equal(h.encode(_probe()), load_hasher(ckpt)[0].encode(_probe()))


@pytest.mark.parametrize("edit,msg", [
    (lambda b: b.pop("state"), "lacks its config or state"),
    (lambda b: b.update(config=[1, 2]), "lacks its config or state"),
    (lambda b: b.update(version=99), "newer than this deephash reads"),
    (lambda b: (b.pop("checksum"), b["config"].update(bogus=1)), "config is not one deephash wrote"),
    (lambda b: (b.pop("checksum"), b["state"].clear()), "state does not fit a itq hasher"),
])
def test_structurally_wrong_checkpoints_are_one_line(ckpt, tmp_path, edit, msg):
    p = tmp_path / "odd.pt"
    _rewrite(ckpt, p, edit)
    with pytest.raises(IndexFormatError, match=msg):
        load_hasher(p)


def test_the_checksum_is_written_and_is_a_sha256_of_the_payload(ckpt):
    import torch

    from deephash.hashers.checkpoint import payload_digest

    blob = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert blob["checksum"].startswith("sha256:") and len(blob["checksum"]) == 7 + 64
    assert payload_digest(blob["config"], blob["state"]) == blob["checksum"]
    assert os.path.getsize(ckpt) > 0
