"""API-key checks as FastAPI dependencies: writes always need the key, reads when the operator says so.

The key travels only in a header: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``. A key
in the URL (``?key=``, ``?api_key=``) is refused, never accepted, because URLs end up in access
logs, browser histories and proxies; the access log redacts such parameters all the same
(:class:`RedactKeyFilter`). Keys are compared in constant time (:func:`hmac.compare_digest`).
"""
from __future__ import annotations

import hmac
import logging
import re

from fastapi import Request

from deephash.service.errors import AuthError

#: query parameters that look like a credential: refused, and redacted from the access log
URL_KEY_PARAMS = ("key", "api_key", "apikey", "api-key", "token", "access_token")
_URL_KEY_RE = re.compile(r"(?i)([?&](?:" + "|".join(re.escape(p) for p in URL_KEY_PARAMS) + r")=)[^&\s\"]*")


def redact_url(url: str) -> str:
    """``/api/x?key=secret&k=3`` -> ``/api/x?key=[redacted]&k=3``."""
    return _URL_KEY_RE.sub(r"\1[redacted]", url)


class RedactKeyFilter(logging.Filter):
    """Access-log filter: any key-like query parameter in a logged request line is replaced by ``[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        return True


def install_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Add :class:`RedactKeyFilter` to the access logger once (idempotent)."""
    lg = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactKeyFilter) for f in lg.filters):
        lg.addFilter(RedactKeyFilter())


def _presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key is None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
    return key


def _check(request: Request, what: str) -> None:
    expected = request.app.state.service.config.api_key
    if any(p in request.query_params for p in URL_KEY_PARAMS):
        raise AuthError("an API key is never accepted in the URL (it would be logged): send it in the X-API-Key "
                        "header or as Authorization: Bearer <key>", 400)
    if expected is None:
        raise AuthError(f"{what} are disabled: the server was started without an API key (deephash serve --api-key ...)", 403)
    key = _presented_key(request)
    if not key:
        raise AuthError(f"{what} need an API key: send it in the X-API-Key header (or Authorization: Bearer <key>)", 401)
    # header values arrive as latin-1 text of their bytes: compare the bytes, in constant time
    if not hmac.compare_digest(key.encode("latin-1", "replace"), expected.encode("utf-8", "surrogateescape")):
        raise AuthError("wrong API key", 403)


def require_write_key(request: Request) -> None:
    """Dependency of every endpoint that changes the index."""
    _check(request, "writes")


def require_read_key(request: Request) -> None:
    """Dependency of read endpoints: a no-op unless the server was started with read keys required."""
    if request.app.state.service.config.read_key_required:
        _check(request, "reads")
