"""uvicorn's HTTP protocol with a deadline on a request's headers.

uvicorn closes a connection idle between requests (keep-alive timeout) but waits forever for the
headers of a request that has begun, or for the first byte of a new connection: a client trickling
header bytes holds a connection (and its file descriptor) for as long as it likes. This protocol
closes a connection whose request headers are not complete `header_timeout_seconds` after the
connection opened, or the first byte after the last response arrived. The body's deadline is app.api.limits'.

It also stops gently. uvicorn's graceful stop closes every idle kept-alive connection at once, so a
request a client sends on one at that moment is lost unanswered ("server disconnected"): any restart
(a deploy, systemd's stop) dropped it. Here an idle connection
stays open until its next request, answered with `Connection: close`, or until its keep-alive timeout
or header deadline closes it, as when nothing stops: the stop waits that long at most (5 s, or the
header deadline for a connection that has sent nothing). The listening socket is closed first, so no
new connection reaches a stopping worker.
"""

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.core.config import get_settings


class HeaderDeadlineProtocol(HttpToolsProtocol):
    _header_deadline: asyncio.TimerHandle | None = None
    _stopping = False

    def shutdown(self) -> None:
        """The server stops: a request in progress is the connection's last; an idle connection is left to
        its timers (keep-alive, header deadline) or to its next request, which is then its last."""
        self._stopping = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        # Bytes between requests (a bare CRLF, which the parser swallows without beginning a message)
        # cancel uvicorn's keep-alive timer: between requests, any byte arms the header deadline.
        if self.cycle is None or self.cycle.response_complete:
            self._arm_header_deadline()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()
        if self._stopping and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, with Connection: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(get_settings().header_timeout_seconds, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.close()
