"""A stopping `karta serve` answers a request sent on a kept-alive connection that was idle when the
stop began (app.core.http_protocol), instead of closing it under the client: the request a replaced
worker (app/core/recycling.py) or any restart would otherwise lose unanswered."""

import signal
import socket
import time

import pytest

from tests.server import running_server


def read_response(sock: socket.socket, deadline: float) -> bytes:
    """One response's head and body (Content-Length), or what came before the connection closed."""
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if _:
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if len(body) >= length:
                break
    return data


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_request_on_an_idle_connection_while_the_server_stops_is_answered(database_url):
    with running_server(database_url) as base:
        host, port = base.removeprefix("http://").split(":")
        request = f"GET /readyz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        with socket.create_connection((host, int(port)), timeout=1) as sock:
            sock.sendall(request)
            first = read_response(sock, time.monotonic() + 10)
            assert first.startswith(b"HTTP/1.1 200") and b"connection: close" not in first.lower()
            base.process.send_signal(signal.SIGTERM)  # the stop begins; this connection is idle
            time.sleep(0.5)  # past the server's shutdown of its connections
            sock.sendall(request)
            second = read_response(sock, time.monotonic() + 10)
        assert second.startswith(b"HTTP/1.1 200"), second
        assert b"connection: close" in second.lower()
        assert base.process.wait(timeout=15) is not None  # and it stops once that connection closed
