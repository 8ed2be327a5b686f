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
from deephash.index.milvus_server import server_python, start_local_milvus


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
