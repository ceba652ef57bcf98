"""The open /metrics listener: KARTA_METRICS_LISTEN ("127.0.0.1:9464") serves the same exposition as
GET /metrics on the API port, without a token, for a Prometheus that should hold no Karta secret.

Every worker of `karta serve` tries to listen there when it starts; the first one to bind it serves
(the others find the port taken and leave it), and since counters add up across workers in
multiprocess mode (app.core.metrics) the answer is the same whichever worker holds it. When that
worker stops, uvicorn starts another, which takes the port over. `karta serve` checks that the
address can be bound before starting workers, so a mistake is an error at start, not a silence.

It answers GET /metrics and nothing else, and never reads a body; a connection that does not send its
request within READ_TIMEOUT_SECONDS is closed.
"""

import errno
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from app.core.metrics import render

log = logging.getLogger("karta.metrics")
READ_TIMEOUT_SECONDS = 10


def split_address(address: str) -> tuple[str, int]:
    """("127.0.0.1", 9464) from "127.0.0.1:9464", ("::1", 9464) from "[::1]:9464"."""
    host, _, port = address.rpartition(":")
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} is out of range")
    return host.strip("[]"), number


class _Handler(BaseHTTPRequestHandler):
    timeout = READ_TIMEOUT_SECONDS  # on the socket: a silent client is dropped, never waited on
    server_version = "karta-metrics"

    def do_GET(self) -> None:
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

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.registry = registry
        super().__init__(address, _Handler)


class MetricsListener:
    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="karta-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start(address: str | None, registry: CollectorRegistry) -> MetricsListener | None:
    """Serve /metrics on `address` from a thread of this worker; None when no address is set or another
    worker holds it."""
    if not address:
        return None
    try:
        server = _Server(split_address(address), registry)
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
