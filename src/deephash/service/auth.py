"""API-key checks as FastAPI dependencies: writes always need the key, reads when the operator says so.

The key is read from the ``X-API-Key`` header, ``Authorization: Bearer <key>``, or (for
``<img>`` tags, which cannot send headers) the ``key`` query parameter.
"""
from __future__ import annotations

import hmac

from fastapi import Request

from deephash.service.errors import AuthError


def _presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key is None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
    if key is None:
        key = request.query_params.get("key")
    return key


def _check(request: Request, what: str) -> None:
    expected = request.app.state.service.config.api_key
    if expected is None:
        raise AuthError(f"{what} are disabled: the server was started without an API key (deephash serve --api-key ...)", 403)
    key = _presented_key(request)
    if not key:
        raise AuthError(f"{what} need an API key: send it in the X-API-Key header", 401)
    if not hmac.compare_digest(key.encode("utf-8", "replace"), expected.encode("utf-8")):
        raise AuthError("wrong API key", 403)


def require_write_key(request: Request) -> None:
    """Dependency of every endpoint that changes the index."""
    _check(request, "writes")


def require_read_key(request: Request) -> None:
    """Dependency of read endpoints: a no-op unless the server was started with read keys required."""
    if request.app.state.service.config.read_key_required:
        _check(request, "reads")
