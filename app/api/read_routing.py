"""Read routing per request, installed only when read replicas are configured (app/core/replicas.py).

For every request it sets the request's ReadRoute (app.core.db.READ_ROUTE):
  - reads may go to a replica in GET and HEAD requests and in the POSTs that only ask questions
    (READ_ONLY_POSTS); every other request reads and writes the primary;
  - the sequence the client must see: `X-Karta-Min-Seq: N` (a non-negative integer; anything else is a
    400), or for the web UI's pages the cookie READ_SEQ_COOKIE set by its last write;
  - a write's answer carries `X-Karta-Seq: N`, the last change sequence its units of work committed,
    and under /ui/ the same number in READ_SEQ_COOKIE, so the page the browser is sent to next shows
    the write (the cookie lives as long as a replica in rotation can be behind: after that every
    replica in rotation has the change anyway);
  - a read a replica broke (the route says so) is answered again from the primary before anything of
    the first answer left: the body received is replayed, the broken answer dropped. A streamed answer
    that breaks after its first bytes cannot be taken back; it fails as it would on the primary.
"""

import math
import re

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.responses import problem
from app.core.db import READ_ROUTE
from app.core.replicas import ReadRoute, ReplicaSet
from app.services.errors import field_error

MIN_SEQ_HEADER = "X-Karta-Min-Seq"
SEQ_HEADER = "X-Karta-Seq"
READ_SEQ_COOKIE = "karta_min_seq"
_MIN_SEQ_KEY = MIN_SEQ_HEADER.lower().encode()
_SEQ_KEY = SEQ_HEADER.lower().encode()
_SEQUENCE = re.compile(r"^[0-9]{1,18}$")
READ_ONLY_POSTS = frozenset({"/api/v1/impact", "/api/v1/blast-radius", "/api/v1/root-cause"})


class ReadRouting:
    def __init__(self, app: ASGIApp, replicas: ReplicaSet) -> None:
        self.app = app
        self.replicas = replicas
        # A replica in rotation is at most max_lag behind as of its last check.
        self.cookie_seconds = math.ceil(replicas.max_lag_seconds + replicas.check_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = dict(scope["headers"])
        sent = headers.get(_MIN_SEQ_KEY)
        min_seq = None
        if sent is not None:
            text = sent.decode("latin-1").strip()
            if not _SEQUENCE.match(text):
                await problem(400, "Bad request", f"{MIN_SEQ_HEADER} must be a change sequence number (the "
                              f"{SEQ_HEADER} of a write's answer).", slug="bad-request",
                              errors=[field_error(f"header.{MIN_SEQ_HEADER}", "not a non-negative integer")]
                              )(scope, receive, send)
                return
            min_seq = int(text)
        ui = path.startswith("/ui/")
        if ui and b"cookie" in headers:
            remembered = cookie_parser(headers[b"cookie"].decode("latin-1")).get(READ_SEQ_COOKIE, "")
            if _SEQUENCE.match(remembered):  # anything else is not ours: ignored
                min_seq = max(min_seq or 0, int(remembered))
        may_lag = method in ("GET", "HEAD") or (method == "POST" and path in READ_ONLY_POSTS)
        route = ReadRoute(self.replicas, may_lag=may_lag, min_seq=min_seq)
        received: list[Message] = []

        async def recording_receive() -> Message:
            message = await receive()
            received.append(message)
            return message

        started = False
        dropped = False

        async def routed_send(message: Message) -> None:
            nonlocal started, dropped
            if message["type"] == "http.response.start":
                if route.failed and may_lag:
                    dropped = True  # a replica broke this answer: it is answered again below
                if not dropped:
                    started = True
                    if route.committed_seq is not None:
                        message = {**message, "headers": [*message.get("headers", []),
                                                          *self._seq_headers(scope, route.committed_seq, ui)]}
            if not dropped:
                await send(message)

        token = READ_ROUTE.set(route)
        try:
            try:
                await self.app(scope, recording_receive, routed_send)
            except Exception:
                if not (route.failed and may_lag and not started):
                    raise
                dropped = True
            if not dropped:
                return
            # Once, from the primary, with the body the first attempt received.
            primary = ReadRoute(self.replicas, may_lag=False, min_seq=min_seq)
            READ_ROUTE.set(primary)
            replay = list(received)

            async def replaying_receive() -> Message:
                return replay.pop(0) if replay else await receive()

            await self.app(scope, replaying_receive, send)
        finally:
            READ_ROUTE.reset(token)

    def _seq_headers(self, scope: Scope, seq: int, ui: bool) -> list[tuple[bytes, bytes]]:
        headers = [(_SEQ_KEY, str(seq).encode())]
        if ui:
            secure = "; Secure" if scope.get("scheme") == "https" else ""
            headers.append((b"set-cookie", f"{READ_SEQ_COOKIE}={seq}; Max-Age={self.cookie_seconds}; Path=/ui/; "
                                           f"HttpOnly; SameSite=Lax{secure}".encode()))
        return headers
