"""The session fixture ``milvus_server``: a real Milvus on 127.0.0.1 for the tests, stopped after.

Which server, in order:

1. ``DEEPHASH_MILVUS_URI`` set: that server, as it is (nothing is started or stopped).
2. The standalone server of the PyPI package ``milvus`` (2.3.x), run by ``DEEPHASH_MILVUS_PYTHON``
   (a Python in its own venv; see docs/milvus-ci.sh) or by this Python if it has ``milvus``, with
   its data in a pytest tmp folder and every port picked free on loopback
   (:func:`deephash.index.milvus_server.start_local_milvus`).
3. milvus-lite (``pymilvus`` 2.5 with ``milvus-lite``): a file in the tmp folder; BIN_FLAT only.

When none can start the tests skip, saying why; with ``DEEPHASH_MILVUS_REQUIRED=1`` (CI) they fail.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import pytest

from deephash.errors import BackendUnavailableError
from milvus_server import server_python, start_local_milvus


@dataclass
class MilvusTarget:
    uri: str
    kind: str  # "external", "standalone" or "lite"
    supports_ivf: bool


def _give_up(reason: str) -> None:
    if os.environ.get("DEEPHASH_MILVUS_REQUIRED") == "1":
        pytest.fail(f"DEEPHASH_MILVUS_REQUIRED=1 but no Milvus to test against: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory):
    if importlib.util.find_spec("pymilvus") is None:
        _give_up("pymilvus is not installed (pip install 'deephash[milvus]')")
    uri = os.environ.get("DEEPHASH_MILVUS_URI")
    if uri:
        yield MilvusTarget(uri, "external", supports_ivf=uri.startswith(("http://", "https://")))
        return
    reasons = []
    if server_python() is not None:
        try:
            srv = start_local_milvus(tmp_path_factory.mktemp("milvus") / "data",
                                     timeout=float(os.environ.get("DEEPHASH_MILVUS_START_TIMEOUT", "180")))
        except BackendUnavailableError as e:
            reasons.append(str(e))
        else:
            with srv:
                yield MilvusTarget(srv.uri, "standalone", supports_ivf=True)
            return
    else:
        reasons.append("no standalone server: set DEEPHASH_MILVUS_PYTHON to a Python with the PyPI package "
                       "'milvus' (docs/milvus-ci.sh) or install milvus==2.3.5 here")
    if importlib.util.find_spec("milvus_lite") is not None:
        yield MilvusTarget(str(tmp_path_factory.mktemp("milvus-lite") / "deephash.db"), "lite", supports_ivf=False)
        return
    reasons.append("no milvus-lite either (pymilvus 2.5 + milvus-lite 2.5.1)")
    _give_up("; ".join(reasons))


class TcpRelay:
    """A real TCP relay on 127.0.0.1 in front of the Milvus server: stopping it makes Milvus unreachable
    for whoever connects through it (the connections it carries are cut), starting it again on the same
    port brings Milvus back. No protocol is imitated: bytes are copied as they come."""

    def __init__(self, target_port: int) -> None:
        import socket

        self.target_port = target_port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._server = None
        self._conns: list = []

    def start(self) -> "TcpRelay":
        import socket
        import threading

        self._server = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: restartable at once
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()
        return self

    def _accept(self, server) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b) -> None:
        import socket

        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        import socket

        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the other thread
            except OSError:
                pass
            self._server.close()
            self._server = None
        for s in self._conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._conns = []
