"""Run the standalone Milvus server of the PyPI package ``milvus`` on loopback until stdin closes.

Usage: ``python tests/milvus_server.py DATA_DIR [PORT]`` with the Python that has ``milvus``
installed (it may live in its own venv: see docs/milvus-ci.sh). Prints ``READY <port>`` once
the server answers its health check, ``FAILED <reason>`` if it cannot start. Needs only the
standard library and ``milvus``, so it does not import deephash.
"""
from __future__ import annotations

import signal
import sys


def main() -> int:
    data_dir = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 19530
    try:
        from milvus import MilvusServer
    except ImportError as e:
        print(f"FAILED the milvus package is not installed for {sys.executable} ({e})", flush=True)
        return 2
    server = MilvusServer()
    server.set_base_dir(data_dir)
    server.listen_port = port
    try:
        server.start()  # blocks until the health endpoint answers
    except Exception as e:  # the package raises RuntimeError / TimeoutError
        server.stop()
        print(f"FAILED {type(e).__name__}: {e}; logs are in {data_dir}/logs", flush=True)
        return 1
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
