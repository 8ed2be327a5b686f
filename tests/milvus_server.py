"""Run the standalone Milvus server of the PyPI package ``milvus`` on loopback until stdin closes.

Usage: ``python tests/milvus_server.py DATA_DIR [PORT]`` with the Python that has ``milvus``
installed (it may live in its own venv: see docs/milvus-ci.sh). Prints ``READY <port>`` once
the server answers its health check, ``FAILED <reason>`` if it cannot start. Needs only the
standard library and ``milvus``, so it does not import deephash.

Every port is chosen free on 127.0.0.1, the embedded etcd's peer port included (the package
leaves that at etcd's fixed default 2380, so a second server on the machine would crash).
"""
from __future__ import annotations

import os
import signal
import socket
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
