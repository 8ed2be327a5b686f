"""``deephash serve`` as a child process on 127.0.0.1 (a free port), for benchmarks and tests.

``ServeProcess(index, log, *serve_args).start()`` returns once ``/health`` answers 200;
``stop()`` ends it (SIGTERM, then SIGKILL). The child runs this installation's deephash.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """``deephash serve INDEX`` in a child process on 127.0.0.1 with a free port; its output goes to ``log``."""

    def __init__(self, index: str | os.PathLike, log: str | os.PathLike, *args: str) -> None:
        self.index, self.log, self.args = index, Path(log), args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> "ServeProcess":
        env = dict(os.environ)
        env.setdefault("DEEPHASH_THREADS", "1")
        src = str(Path(__file__).resolve().parents[2])  # the folder holding this deephash package
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        fh = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "deephash.cli.main", "serve", str(self.index), "--port",
                                      str(self.port), "--log-level", "warning", *self.args],
                                     stdout=fh, stderr=subprocess.STDOUT, env=env)
        fh.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"deephash serve exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"deephash serve did not answer within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)
