"""Running ``deephash serve`` as a real process on loopback for the service tests."""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

KEY = "test-key-0123456"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_index(index: Path, dst: Path) -> Path:
    """Copy an index and the checkpoint it names (a relative path) into ``dst``."""
    from deephash.index import HashIndex

    dst.mkdir(parents=True, exist_ok=True)
    model = HashIndex.load(index).meta["model"]
    shutil.copyfile(index, dst / index.name)
    shutil.copyfile(index.parent / model, dst / model)
    return dst / index.name


def png_bytes(w: int = 48, h: int = 48, seed: int = 0) -> bytes:
    import numpy as np
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(w: int, h: int) -> bytes:
    """A valid-looking PNG that declares ``w x h`` pixels but holds almost no data."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


class Server:
    """``deephash serve INDEX`` in a child process on 127.0.0.1 with a free port."""

    def __init__(self, index: Path, log: Path, *args: str) -> None:
        self.index, self.log, self.args = index, log, args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> "Server":
        env = dict(os.environ)
        env.setdefault("DEEPHASH_THREADS", "1")
        src = str(Path(__file__).resolve().parents[1] / "src")
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
