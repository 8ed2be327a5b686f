"""Service errors and the handlers that turn every failure into a JSON ``{"detail": message}`` answer.

A request the service cannot honour is a 4xx whose message says what was wrong; only a bug
reaches the catch-all handler, which logs the traceback and answers a bare 500.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deephash.errors import (BackboneUnavailableError, BackendError, BackendUnavailableError, DeepHashError, IndexFormatError,
                             OutputError)

log = logging.getLogger("deephash.service")


class ServiceError(DeepHashError):
    """A request the service refuses; ``status`` is the HTTP status it answers with."""

    status = 400


class NotFoundError(ServiceError):
    status = 404


class UploadTooLargeError(ServiceError):
    status = 413


class AuthError(ServiceError):
    """No API key where one is needed (401) or a wrong one (403)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class PersistError(ServiceError):
    """The index could not be written; the write was rolled back and not acknowledged."""

    status = 503


class BodyTooLarge(StarletteHTTPException):
    """Raised from inside body reading (see :mod:`deephash.service.limits`); FastAPI passes HTTPExceptions through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


def status_of(e: DeepHashError) -> int:
    """HTTP status of a deliberate deephash error: server-side faults are 5xx, the rest 400."""
    if isinstance(e, ServiceError):
        return e.status
    if isinstance(e, BackendUnavailableError):  # the index's server does not answer: try again later
        return 503
    if isinstance(e, BackendError):  # the index's server refused or failed the operation
        return 502
    if isinstance(e, (IndexFormatError, BackboneUnavailableError)):
        return 500
    if isinstance(e, OutputError):  # the server's disk, not the request
        return 503
    return 400


def _loc(err: dict) -> str:
    parts = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body", "header", "form")]
    return ".".join(parts) or "request"


def validation_message(exc: RequestValidationError) -> str:
    """One line per bad field: ``k: Input should be less than or equal to 1000 (got '5000')``."""
    msgs = []
    for err in exc.errors():
        m = f"{_loc(err)}: {err.get('msg', 'invalid value')}"
        if "input" in err and err["input"] is not None and not isinstance(err["input"], (dict, bytes)):
            m += f" (got {str(err['input'])[:60]!r})"
        msgs.append(m)
    return "; ".join(msgs)


def install_error_handlers(app: FastAPI) -> None:
    """Map DeepHashError, validation and HTTP errors to ``{"detail": ...}``; count and log real bugs."""

    @app.exception_handler(DeepHashError)
    async def _deephash(request: Request, exc: DeepHashError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("server-side failure on %s %s: %s", request.method, request.url.path, exc)
        headers = {"WWW-Authenticate": "X-API-Key"} if status == 401 else None
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path} (see /docs)"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        state = getattr(request.app.state, "service", None)
        if state is not None:
            state.internal_errors += 1
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error (logged on the server)"}, status_code=500)
