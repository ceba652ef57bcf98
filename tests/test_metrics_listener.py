"""The open /metrics listener bounds what a client holds: connections past KARTA_METRICS_MAX_CONNECTIONS
get 503 at once and the listener serves again when they are gone; a request trickled byte by byte is
closed at KARTA_METRICS_READ_TIMEOUT_SECONDS from connecting, not kept alive by each byte."""

import select
import socket
import time
from contextlib import contextmanager

import httpx
from prometheus_client import CollectorRegistry, Counter

from app.core import metrics_listener
from tests.server import free_port


@contextmanager
def listening(**bounds):
    registry = CollectorRegistry()
    Counter("karta_test_scrapes", "A counter to find in the answer", registry=registry).inc()
    port = free_port()
    listener = metrics_listener.start(f"127.0.0.1:{port}", registry, **bounds)
    assert listener is not None
    try:
        yield ("127.0.0.1", port)
    finally:
        listener.stop()


def scrape(address) -> httpx.Response:
    return httpx.get(f"http://{address[0]}:{address[1]}/metrics", timeout=5, trust_env=False)


def closed_by_server(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes `sock` within `seconds` (reading nothing but the end)."""
    ready, _, _ = select.select([sock], [], [], seconds)
    if not ready:
        return False
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_a_request_is_answered():
    with listening() as address:
        response = scrape(address)
    assert response.status_code == 200 and "karta_test_scrapes_total 1.0" in response.text


def test_connections_past_the_bound_get_503_at_once_and_the_slots_come_back():
    with listening(max_connections=2, read_timeout=30) as address:
        idle = [socket.create_connection(address, timeout=5) for _ in range(2)]
        try:
            time.sleep(0.3)  # both accepted: each holds a slot, waiting for a request
            started = time.monotonic()
            with socket.create_connection(address, timeout=5) as extra:
                answer = extra.recv(4096)
            assert answer.startswith(b"HTTP/1.0 503") and answer.endswith(b"Too many connections to /metrics here.\n")
            assert time.monotonic() - started < 2  # not after the idle ones' read timeout
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 10
        while (response := scrape(address)).status_code != 200:
            assert time.monotonic() < deadline, response.text
            time.sleep(0.1)


def test_a_trickled_request_is_closed_at_the_read_deadline():
    with listening(read_timeout=1.0) as address, socket.create_connection(address, timeout=5) as sock:
        started = time.monotonic()
        closed = False
        for byte in b"GET /metrics HTTP/1.0\r\nX-Slow: " + b"a" * 200:
            try:
                sock.send(bytes([byte]))
            except OSError:
                closed = True
            if closed or closed_by_server(sock, 0.2):  # a byte every 0.2 s: each read well within 1 s
                closed = True
                break
            assert time.monotonic() - started < 10
        elapsed = time.monotonic() - started
        assert closed and 0.9 <= elapsed < 2.5, elapsed
        assert scrape(address).status_code == 200  # and it serves on
