"""The open /metrics listener: KARTA_METRICS_LISTEN ("127.0.0.1:9464") serves the same exposition as
GET /metrics on the API port, without a token, for a Prometheus that should hold no Karta secret.

Every worker of `karta serve` tries to listen there when it starts; the first one to bind it serves
(the others find the port taken and leave it), and since counters add up across workers in
multiprocess mode (app.core.metrics) the answer is the same whichever worker holds it. When that
worker stops, uvicorn starts another, which takes the port over. `karta serve` checks that the
address can be bound before starting workers, so a mistake is an error at start, not a silence.

It answers GET /metrics and nothing else, and never reads a body. It is open to whoever reaches the
address, so what a client can hold is bounded: at most `max_connections` connections at once
(KARTA_METRICS_MAX_CONNECTIONS; one more is answered 503 and closed at once, without a thread), and a
connection that has not sent its whole request (line and headers) within `read_timeout` seconds of
connecting (KARTA_METRICS_READ_TIMEOUT_SECONDS) is closed, however it trickles its bytes. One request
per connection (HTTP/1.0). A Prometheus scrapes with one connection at a time, so the default of 8
leaves room for a few scrapers and a person with curl.
"""

import errno
import io
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from app.core.metrics import render

log = logging.getLogger("karta.metrics")
READ_TIMEOUT_SECONDS = 10
MAX_CONNECTIONS = 8
_BUSY_TEXT = b"Too many connections to /metrics here.\n"
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
         b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT))


def split_address(address: str) -> tuple[str, int]:
    """("127.0.0.1", 9464) from "127.0.0.1:9464", ("::1", 9464) from "[::1]:9464"."""
    host, _, port = address.rpartition(":")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is out of range")
    return host.strip("[]"), number


class _RequestReader(socket.SocketIO):
    """The connection's bytes, each read waiting at most until `deadline` (time.monotonic()): a socket
    timeout alone bounds one read, and a client sending a byte every few seconds would never end."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__(sock, "rb")
        self._deadline = deadline

    def readinto(self, buffer) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request was not read in time")
        self._sock.settimeout(remaining)
        return super().readinto(buffer)


class _Handler(BaseHTTPRequestHandler):
    timeout = READ_TIMEOUT_SECONDS  # on the socket: also bounds each write of the answer
    server_version = "karta-metrics"

    def setup(self) -> None:
        self.timeout = self.server.read_timeout
        super().setup()
        self.rfile.close()  # replaced by a reader that stops at the deadline
        self.rfile = io.BufferedReader(_RequestReader(self.connection, time.monotonic() + self.server.read_timeout))

    def do_GET(self) -> None:
        self.connection.settimeout(self.server.read_timeout)  # the answer's writes: not what the reads left
        if urlsplit(self.path).path != "/metrics":
            self._answer(404, b"Only /metrics is served here.\n", "text/plain; charset=utf-8")
            return
        try:
            body, content_type = render(self.server.registry, self.headers.get("Accept"))
        except Exception:  # the database or the graph failed: say so to Prometheus, keep serving
            log.exception("metrics scrape failed")
            self._answer(503, b"Karta could not read its metrics; see its log.\n", "text/plain; charset=utf-8")
            return
        self._answer(200, body, content_type)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, max_connections: int = MAX_CONNECTIONS,
                 read_timeout: float = READ_TIMEOUT_SECONDS) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.registry = registry
        self.read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        """A thread for the connection when a slot is free; otherwise 503 (fits any socket's send buffer:
        never waits on the client) and closed, from the accepting thread."""
        if not self._slots.acquire(blocking=False):
            try:
                request.setblocking(False)
                request.send(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsListener:
    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="karta-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start(address: str | None, registry: CollectorRegistry, *, max_connections: int = MAX_CONNECTIONS,
          read_timeout: float = READ_TIMEOUT_SECONDS) -> MetricsListener | None:
    """Serve /metrics on `address` from a thread of this worker; None when no address is set or another
    worker holds it."""
    if not address:
        return None
    try:
        server = _Server(split_address(address), registry, max_connections, read_timeout)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return None  # another worker of this `karta serve` serves it
        log.warning("cannot serve metrics on %s: %s", address, exc)
        return None
    log.info("serving /metrics without a token on %s", address)
    return MetricsListener(server)


def check_bindable(address: str) -> None:
    """Raise OSError (or ValueError) unless this process could listen on `address` now."""
    host, port = split_address(address)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
