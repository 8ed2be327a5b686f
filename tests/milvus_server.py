"""A local standalone Milvus (the PyPI package ``milvus``, 2.3.x) on 127.0.0.1, for tests, benchmarks and development.

From the tests (tests/milvus_fixtures.py): ``with start_local_milvus(data_dir) as srv: MilvusIndex(srv.uri, ...)``. It runs
this file as a script with a Python that has ``milvus`` installed (``DEEPHASH_MILVUS_PYTHON``,
e.g. a venv of its own: see docs/milvus-ci.sh), which prints ``READY <port>`` once the server
answers its health check or ``FAILED <reason>``, and stops the server when its stdin closes.
The script part needs only the standard library and ``milvus``: it never imports deephash.

Every port is chosen free on 127.0.0.1, the embedded etcd's peer port included (the package
leaves that at etcd's fixed default 2380, so a second server on the machine would crash).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return b"OK" in r.read()
    except OSError:
        return False


class LocalMilvus:
    """A running local server: ``uri``, ``data_dir``; ``stop()`` (or leave the ``with`` block) ends it."""

    def __init__(self, proc: "subprocess.Popen[str]", uri: str, data_dir: str) -> None:
        self.proc, self.uri, self.data_dir = proc, uri, data_dir

    def __enter__(self) -> "LocalMilvus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        p = self.proc
        if p.poll() is None:
            try:
                if p.stdin is not None:
                    p.stdin.close()  # the launcher stops the server when its stdin closes
                p.wait(timeout=30)
            except (subprocess.TimeoutExpired, OSError):
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)


def server_python() -> str | None:
    """The Python that runs the server: ``DEEPHASH_MILVUS_PYTHON``, else this one if it has ``milvus``."""
    import importlib.util

    env = os.environ.get("DEEPHASH_MILVUS_PYTHON")
    if env:
        return env
    return sys.executable if importlib.util.find_spec("milvus") is not None else None


def start_local_milvus(data_dir: str | os.PathLike, *, python: str | None = None, port: int | None = None,
                       timeout: float = 180.0) -> LocalMilvus:
    """Start a standalone server with its data in ``data_dir``; raises BackendUnavailableError saying why it could not."""
    import shutil
    import threading

    from deephash.errors import BackendUnavailableError

    python = python or server_python()
    if python is None:
        raise BackendUnavailableError("no Python with the PyPI package 'milvus' to run a local server: set "
                                      "DEEPHASH_MILVUS_PYTHON (see docs/milvus-ci.sh) or pip install 'milvus==2.3.5'")
    if not os.path.exists(python) and shutil.which(python) is None:
        raise BackendUnavailableError(f"DEEPHASH_MILVUS_PYTHON={python!r} does not exist")
    port = port or _free_port()
    env = dict(os.environ, DEEPHASH_MILVUS_START_TIMEOUT=str(timeout))
    proc = subprocess.Popen([python, os.path.abspath(__file__), str(data_dir), str(port)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []

    def _reader() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line.rstrip())

    threading.Thread(target=_reader, daemon=True).start()
    deadline = time.monotonic() + timeout + 15
    srv = LocalMilvus(proc, "", str(data_dir))
    while time.monotonic() < deadline:
        for line in list(lines):
            if line.startswith("READY"):
                srv.uri = f"http://127.0.0.1:{line.split()[1]}"
                return srv
            if line.startswith("FAILED"):
                srv.stop()
                raise BackendUnavailableError(f"the local Milvus server could not start: {line[len('FAILED '):]}")
        if proc.poll() is not None:
            time.sleep(0.5)  # let the reader catch the last lines
            if not any(x.startswith(("READY", "FAILED")) for x in lines):
                raise BackendUnavailableError(f"the Milvus launcher exited with {proc.returncode}: {' | '.join(lines[-5:])}")
        time.sleep(0.2)
    srv.stop()
    raise BackendUnavailableError(f"the local Milvus server did not start within {timeout:g} s (logs in {data_dir}/logs)")


def main() -> int:
    data_dir = os.path.abspath(sys.argv[1])
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 19530
    timeout = float(os.environ.get("DEEPHASH_MILVUS_START_TIMEOUT", "180"))
    try:
        from milvus import MilvusServer
    except ImportError as e:
        print(f"FAILED the milvus package is not installed for {sys.executable} ({e})", flush=True)
        return 2
    os.makedirs(data_dir, exist_ok=True)
    etcd_client, etcd_peer = _free_port(), _free_port()
    etcd_yaml = os.path.join(data_dir, "embed-etcd.yaml")
    with open(etcd_yaml, "w", encoding="utf-8") as fh:
        fh.write(f"name: deephash-test\n"
                 f"data-dir: {os.path.join(data_dir, 'etcd.data')}\n"
                 f"listen-client-urls: http://127.0.0.1:{etcd_client}\n"
                 f"advertise-client-urls: http://127.0.0.1:{etcd_client}\n"
                 f"listen-peer-urls: http://127.0.0.1:{etcd_peer}\n"
                 f"initial-advertise-peer-urls: http://127.0.0.1:{etcd_peer}\n"
                 f"initial-cluster: deephash-test=http://127.0.0.1:{etcd_peer}\n")
    os.environ["ETCD_CONFIG_PATH"] = etcd_yaml  # Milvus reads etcd.config.path from the environment
    server = MilvusServer(wait_for_started=False)
    server.set_base_dir(data_dir)
    server.listen_port = port
    server.config.configs["etcd_port"] = etcd_client
    try:
        server.start()
    except Exception as e:
        server.stop()
        print(f"FAILED {type(e).__name__}: {e}", flush=True)
        return 1
    deadline = time.monotonic() + timeout
    # the package's own wait keeps polling after the process died; poll the process too
    while not _healthy(server.webservice_port):
        if server.server_proc.poll() is not None:
            rc = server.server_proc.returncode
            server.stop()
            print(f"FAILED the milvus process exited with {rc}; logs are in {data_dir}/logs", flush=True)
            return 1
        if time.monotonic() > deadline:
            server.stop()
            print(f"FAILED no answer on the health port within {timeout:g} s; logs are in {data_dir}/logs", flush=True)
            return 1
        time.sleep(0.2)
    print(f"READY {server.listen_port}", flush=True)

    def _stop(*_):
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, _stop)
    try:
        sys.stdin.read()  # the parent closes our stdin (or dies) to stop us
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
