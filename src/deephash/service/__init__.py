"""The HTTP service: ``create_app(index_path)`` for ASGI servers, ``deephash serve`` on the command line.

FastAPI is an optional extra (``pip install deephash[serve]``), so it is imported only when
``create_app`` is first used, not when the CLI starts.
"""
from __future__ import annotations

from typing import Any

from deephash.service.config import ServiceConfig

__all__ = ["create_app", "ServiceConfig"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from deephash.optional import available, require

        require("fastapi", "the deephash service")  # the service's extra: one line saying how to install it
        if not available("python_multipart"):  # python-multipart's name since 0.0.13; "multipart" before
            require("multipart", "the deephash service")
        from deephash.service.app import create_app

        return create_app
    raise AttributeError(f"module 'deephash.service' has no attribute {name!r}")
