"""Issue 12: one documented, configurable pixel limit shared by the command line, the Python API and
the service (it was 89 MP on the command line and 40 MP in the service), refused from the header
before any pixel is decoded, so memory stays bounded by it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from deephash import api
from deephash.cli.main import cli
from deephash.data.images import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, decode_image, max_pixels_limit
from deephash.errors import ConfigError, DataError
from robust_fixtures import synth_archive, synth_ckpt  # noqa: F401  (session fixtures)
from service_helpers import bomb_png, copy_index


def test_one_default_everywhere():
    from deephash.service.config import ServiceConfig

    assert DEFAULT_MAX_PIXELS == 40_000_000
    assert ServiceConfig().max_pixels == max_pixels_limit() == DEFAULT_MAX_PIXELS


def test_the_command_line_refuses_what_the_service_refuses(tmp_path):
    """A 50 MP image: under the old command-line limit (89 MP), over the service's (40 MP)."""
    p = tmp_path / "big.png"
    p.write_bytes(bomb_png(10_000, 5_000))
    with pytest.raises(DataError, match="declares 10000x5000 pixels, more than the limit of 40000000"):
        decode_image(p)


def test_the_environment_sets_the_limit_for_cli_api_and_service(monkeypatch, synth_archive, synth_ckpt, demo_index, tmp_path):
    monkeypatch.setenv(MAX_PIXELS_ENV, "1000")  # the synthetic images are 32x32 = 1024 pixels
    img = sorted((synth_archive / "red").iterdir())[0]
    with pytest.raises(DataError, match="declares 32x32 pixels, more than the limit of 1000"):
        decode_image(img)
    r = CliRunner().invoke(cli, ["encode", str(synth_ckpt), str(img)])
    assert r.exit_code == 2 and "more than the limit of 1000" in r.output
    r = CliRunner().invoke(cli, ["search", str(demo_index), str(img)])
    assert r.exit_code == 2 and "more than the limit of 1000" in r.output
    from deephash.service import create_app

    c = TestClient(create_app(copy_index(demo_index, tmp_path / "i")))
    assert c.get("/api/stats").json()["limits"]["max_pixels"] == 1000
    r = c.post("/api/search", files={"file": ("q.png", img.read_bytes(), "image/png")})
    assert r.status_code == 400 and "more than the limit of 1000" in r.json()["detail"]
    monkeypatch.setenv(MAX_PIXELS_ENV, "1024")
    assert len(api.encode(synth_ckpt, [img]).codes) == 1
    c = TestClient(create_app(copy_index(demo_index, tmp_path / "j"), max_pixels=5000))  # --max-pixels wins
    assert c.get("/api/stats").json()["limits"]["max_pixels"] == 5000


@pytest.mark.parametrize("raw", ["lots", "0", "-5", str(2**31 + 1)])
def test_a_bad_limit_is_one_line(monkeypatch, raw):
    monkeypatch.setenv(MAX_PIXELS_ENV, raw)
    with pytest.raises(ConfigError, match=f"{MAX_PIXELS_ENV} must be a whole number of pixels between 1 and 2\\^31; got"):
        max_pixels_limit()


def test_a_limit_above_pils_own_is_honoured(tmp_path):
    """PIL refuses images over 2 x 89 MP by itself; a configured limit above that is the one in force."""
    p = tmp_path / "huge.png"
    p.write_bytes(bomb_png(20_000, 10_000))  # 200 MP declared
    with pytest.raises(DataError, match="than the limit of 100000000"):
        decode_image(p, max_pixels=100_000_000)
    with pytest.raises(DataError) as e:  # allowed by the limit: decoding then finds the data missing
        decode_image(p, max_pixels=250_000_000)
    assert "corrupt or truncated image" in str(e.value) and "than the limit" not in str(e.value)


def test_memory_stays_bounded_by_the_limit(tmp_path):
    """A PNG declaring 20000 x 20000 pixels (1.2 GB as RGB) in a few hundred bytes: refused from its
    header; the process's peak memory grows by far less than one decoded copy."""
    p = tmp_path / "bomb.png"
    p.write_bytes(bomb_png(20_000, 20_000))
    code = ("import resource, sys\n"
            "from deephash.data.images import decode_image\n"
            "from deephash.errors import DataError\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    decode_image(sys.argv[1])\nexcept DataError as e:\n    print('refused:', e)\n"
            "print('grew_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    env.pop(MAX_PIXELS_ENV, None)
    r = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=120, env=env)
    assert "refused:" in r.stdout and "more than the limit of 40000000" in r.stdout, r.stdout + r.stderr
    grew_kb = int(r.stdout.split("grew_kb")[1])
    assert grew_kb < 100_000  # < 100 MB, against 1.2 GB decoded
