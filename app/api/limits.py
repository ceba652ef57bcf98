"""Bounds on what a client may send: the size of a request body and the time it may take to send it.

Without them a client could make a worker buffer an endless body, or hold it waiting for a body that
never finishes arriving. Every endpoint but ingest takes small bodies (FastAPI parses them on the event
loop, before authentication), ingest a discovery batch. A body announced (Content-Length) or streamed
past its endpoint's limit is
answered 413 before it is read whole; a body not received within `body_timeout_seconds` of the
request's start is answered 408. Both as problem+json. The headers' own deadline is enforced by the
HTTP protocol (app/core/http_protocol.py), before a request reaches the application.
"""

import time

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.responses import problem


# Refused before its body was read whole: the rest of it must not be read (uvicorn would read and drop
# an endless body to keep the connection), so the connection closes after the answer.
CLOSE = {"Connection": "close"}


def _too_large(limit: int) -> str:
    return (f"The request body is larger than {limit:,} bytes, the limit for this endpoint "
            "(KARTA_MAX_BODY_BYTES; KARTA_MAX_INGEST_BODY_BYTES for /api/v1/ingest).")


class BoundedBody:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_seconds: float,
                 larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds
        self.larger = larger or {}  # paths that take bigger bodies (a discovery batch)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.larger.get(scope["path"], self.max_bytes)
        announced = dict(scope["headers"]).get(b"content-length")
        if announced is not None:
            try:
                length = int(announced)
            except ValueError:
                length = -1
            if length < 0:
                await problem(400, "Bad request", "Content-Length is not a number.", slug="bad-request",
                              instance=scope["path"], headers=CLOSE)(scope, receive, send)
                return
            if length > max_bytes:
                await problem(413, "Payload too large", _too_large(max_bytes), slug="payload-too-large",
                              instance=scope["path"], limit=max_bytes, headers=CLOSE)(scope, receive, send)
                return
        deadline = time.monotonic() + self.timeout_seconds
        received = 0
        complete = False

        async def bounded_receive() -> Message:
            nonlocal received, complete
            if complete:  # after the body: waiting for a disconnect is not bounded by the body's deadline
                return await receive()
            try:
                with anyio.fail_after(max(deadline - time.monotonic(), 0)):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, f"The request body did not arrive within {self.timeout_seconds:g} s "
                                         "(KARTA_BODY_TIMEOUT_SECONDS).", headers=CLOSE) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise HTTPException(413, _too_large(max_bytes), headers=CLOSE)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, bounded_receive, send)
