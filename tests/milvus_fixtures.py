"""Start a real Milvus on 127.0.0.1 for the tests, and stop it after.

Which server, in order:

1. ``DEEPHASH_MILVUS_URI`` set: use that server as it is (nothing is started or stopped).
2. The standalone server of the PyPI package ``milvus`` (2.3.x), run by ``DEEPHASH_MILVUS_PYTHON``
   (a Python in its own venv; see docs/milvus-ci.sh) or by this Python if it has ``milvus``,
   with its data in a pytest tmp folder and a free loopback port.
3. milvus-lite (``pymilvus`` 2.5 with ``milvus-lite``): a file in the tmp folder; BIN_FLAT only.

When none can start the tests skip, saying why; with ``DEEPHASH_MILVUS_REQUIRED=1`` (CI) they fail.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

LAUNCHER = Path(__file__).with_name("milvus_server.py")
START_TIMEOUT_S = float(os.environ.get("DEEPHASH_MILVUS_START_TIMEOUT", "180"))


@dataclass
class MilvusTarget:
    uri: str
    kind: str  # "external", "standalone" or "lite"
    supports_ivf: bool


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_python() -> str | None:
    env = os.environ.get("DEEPHASH_MILVUS_PYTHON")
    if env:
        return env
    if importlib.util.find_spec("milvus") is not None:
        return sys.executable
    return None


def _start_standalone(python: str, data_dir: Path) -> tuple[subprocess.Popen | None, str]:
    """Start the launcher; returns (process, uri) or (None, reason it failed)."""
    if not Path(python).exists() and shutil.which(python) is None:
        return None, f"DEEPHASH_MILVUS_PYTHON={python!r} does not exist"
    port = _free_port()
    proc = subprocess.Popen([python, str(LAUNCHER), str(data_dir), str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []

    def _reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())

    threading.Thread(target=_reader, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in lines:
            if line.startswith("READY"):
                return proc, f"http://127.0.0.1:{line.split()[1]}"
            if line.startswith("FAILED"):
                _stop(proc)
                return None, line[len("FAILED "):]
        if proc.poll() is not None and not any(x.startswith(("READY", "FAILED")) for x in lines):
            return None, f"the launcher exited with {proc.returncode}: {' | '.join(lines[-5:])}"
        time.sleep(0.2)
    _stop(proc)
    return None, f"the server did not answer within {START_TIMEOUT_S:g} s (logs in {data_dir}/logs)"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            assert proc.stdin is not None
            proc.stdin.close()  # the launcher stops the server when its stdin closes
            proc.wait(timeout=30)
        except (subprocess.TimeoutExpired, OSError):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _lite_available() -> str | None:
    """None if milvus-lite can be used by this Python's pymilvus, else why not."""
    if importlib.util.find_spec("pymilvus") is None:
        return "pymilvus is not installed"
    if importlib.util.find_spec("milvus_lite") is None:
        return "milvus-lite is not installed"
    return None


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory):
    if importlib.util.find_spec("pymilvus") is None:
        reason = "pymilvus is not installed (pip install 'deephash[milvus]')"
        if os.environ.get("DEEPHASH_MILVUS_REQUIRED") == "1":
            pytest.fail(f"DEEPHASH_MILVUS_REQUIRED=1 but {reason}")
        pytest.skip(reason)
    uri = os.environ.get("DEEPHASH_MILVUS_URI")
    if uri:
        yield MilvusTarget(uri, "external", supports_ivf=uri.startswith(("http://", "https://")))
        return
    reasons = []
    python = _server_python()
    if python:
        proc, got = _start_standalone(python, tmp_path_factory.mktemp("milvus") / "data")
        if proc is not None:
            try:
                yield MilvusTarget(got, "standalone", supports_ivf=True)
            finally:
                _stop(proc)
            return
        reasons.append(f"the standalone Milvus server could not start: {got}")
    else:
        reasons.append("no standalone server: set DEEPHASH_MILVUS_PYTHON to a Python with the PyPI package "
                       "'milvus' (docs/milvus-ci.sh) or install it here")
    why_not_lite = _lite_available()
    if why_not_lite is None:
        yield MilvusTarget(str(tmp_path_factory.mktemp("milvus-lite") / "deephash.db"), "lite", supports_ivf=False)
        return
    reasons.append(f"no milvus-lite: {why_not_lite}")
    reason = "; ".join(reasons)
    if os.environ.get("DEEPHASH_MILVUS_REQUIRED") == "1":
        pytest.fail(f"DEEPHASH_MILVUS_REQUIRED=1 but no Milvus could start: {reason}")
    pytest.skip(reason)
