"""A pure-ASGI request-body limit: a body over the limit is refused with 413 before it is all buffered."""
from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from deephash.service.errors import BodyTooLarge

Scope = dict[str, Any]
Message = dict[str, Any]


class BodySizeLimit:
    """Refuse request bodies over ``limit`` bytes.

    A declared ``Content-Length`` over the limit is answered at once (after draining up to
    ``drain_cap`` bytes, so an ordinary client reads the 413 instead of a reset connection);
    a chunked body is counted as it arrives and cut off with the same 413.
    """

    def __init__(self, app: Callable, limit: int, *, drain_cap: int | None = None) -> None:
        self.app = app
        self.limit = int(limit)
        self.drain_cap = int(drain_cap if drain_cap is not None else 4 * limit)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = None
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    declared = None
        if declared is not None and declared > self.limit:
            await self._drain(receive, declared)
            await self._refuse(send, declared)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return msg

        await self.app(scope, counted, send)

    async def _drain(self, receive: Callable[[], Awaitable[Message]], declared: int) -> None:
        if declared > self.drain_cap:
            return  # too big to be worth reading: answer now, the server closes the connection
        got = 0
        while got < declared:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            got += len(msg.get("body", b""))
            if not msg.get("more_body", False):
                return

    async def _refuse(self, send: Callable, declared: int) -> None:
        body = json.dumps({"detail": f"request body is {declared} bytes, more than the limit of {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
