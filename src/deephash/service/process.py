"""``deephash serve`` as a real child process on 127.0.0.1, on a free port: what the service load
benchmark measures and what the service tests talk to (no in-process stand-in)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from deephash.errors import ServeError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


class ServeProcess:
    """``deephash serve INDEX [ARGS...]`` in a child process on 127.0.0.1 with a free port; its output
    goes to ``log``. ``start()`` returns once ``/health`` answers 200; ``stop()`` terminates it.

    The child runs this interpreter with this copy of deephash first on ``PYTHONPATH``, and
    ``DEEPHASH_THREADS=1`` unless the environment sets it."""

    def __init__(self, index: str | os.PathLike, log: str | os.PathLike, *args: str) -> None:
        self.index, self.log, self.args = str(index), Path(log), args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def start(self, timeout: float = 180) -> "ServeProcess":
        env = dict(os.environ)
        env.setdefault("DEEPHASH_THREADS", "1")
        here = str(Path(__file__).resolve().parents[2])  # the folder that holds this deephash package
        env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "deephash.cli.main", "serve", self.index, "--port",
                                          str(self.port), "--log-level", "warning", *self.args],
                                         stdout=fh, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServeError(f"deephash serve exited with {self.proc.returncode}:\n{self._log_tail()}")
            if _healthy(self.url):
                return self
            time.sleep(0.3)
        self.stop()
        raise ServeError(f"deephash serve did not answer within {timeout:g} s:\n{self._log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def client(self, **kw: Any):
        """An ``httpx.Client`` on the server's URL."""
        from deephash.optional import require

        return require("httpx", "a client of deephash serve").Client(base_url=self.url, timeout=60, **kw)

    def __enter__(self) -> "ServeProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
