"""Bounded input: a body's size (413 before it is read whole) and the time to send it (408), the time
to send headers (connection closed), and the size of one CI's attributes; on real uvicorn where the
test is about the server."""

import socket
import time

import httpx
import pytest

from tests.server import karta, running_server


def _token(url: str) -> str:
    made = karta("token", "create", "--name", "limits", "--scope", "write", database_url=url)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def _read_all(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and after how long."""
    started, data = time.monotonic(), b""
    sock.settimeout(seconds)
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, float("inf")
        if not chunk:
            return data, time.monotonic() - started
        data += chunk


@pytest.fixture
def server(database_url):
    env = {"KARTA_MAX_BODY_BYTES": "20000", "KARTA_MAX_INGEST_BODY_BYTES": "100000", "KARTA_BODY_TIMEOUT_SECONDS": "1",
           "KARTA_HEADER_TIMEOUT_SECONDS": "1",
           "KARTA_MAX_ATTRIBUTES_BYTES": "2048", "KARTA_LOAD_GRAPH_AT_STARTUP": "false"}
    with running_server(database_url, env=env) as base:
        yield base, _token(database_url)


def test_bodies_are_bounded_in_size_and_time(server):
    base, secret = server
    auth = {"Authorization": f"Bearer {secret}"}
    big = httpx.post(f"{base}/api/v1/ingest", content=b"[" + b"1," * 60_000 + b"1]", headers=auth, timeout=10)
    assert big.status_code == 413 and big.headers["content-type"] == "application/problem+json"
    assert big.json()["limit"] == 100000

    def chunks():
        for _ in range(30):
            yield b" " * 10_000

    streamed = httpx.post(f"{base}/api/v1/cis", content=chunks(), headers=auth, timeout=10)  # chunked: no length
    assert streamed.status_code == 413, streamed.text
    assert streamed.json()["detail"].startswith("The request body is larger than 20,000 bytes")  # not ingest's
    assert streamed.headers["connection"] == "close"  # the rest of an endless body is never read
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"POST /api/v1/cis HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"class\":".encode())
        answer, _ = _read_all(sock, 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within 1 s" in answer
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # the worker went on serving


def test_headers_that_never_finish_close_the_connection(server):
    base, _ = server
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and no end of headers
        answer, after = _read_all(sock, 10)
    assert answer == b"" and after < 5
    with socket.create_connection((host, int(port)), timeout=5) as silent:  # nothing at all
        _, after = _read_all(silent, 10)
    assert after < 5
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200


def test_one_cis_attributes_are_bounded(server):
    base, secret = server
    auth = {"Authorization": f"Bearer {secret}"}
    big = httpx.post(f"{base}/api/v1/cis", headers=auth, timeout=10,
                     json={"class": "service", "name": "big", "attributes": {"notes": "x" * 3000}})
    assert big.status_code == 422 and big.json()["errors"][0]["field"] == "attributes"
    ci = httpx.post(f"{base}/api/v1/cis", headers=auth, timeout=10,
                    json={"class": "service", "name": "small", "attributes": {"notes": "x" * 1000}}).json()
    grown = httpx.patch(f"{base}/api/v1/cis/{ci['id']}", headers=auth, timeout=10,
                        json={"attributes": {"more": "y" * 1500}})  # merged with what is there
    assert grown.status_code == 422 and "limit is 2,048" in grown.json()["detail"]


def test_one_ingest_item_is_bounded_like_one_cis_attributes(server):
    base, secret = server
    auth = {"Authorization": f"Bearer {secret}"}
    item = {"ref": "h", "class": "service", "name": "big", "identifiers": {"service_id": "S-1"}}
    big = httpx.post(f"{base}/api/v1/ingest", headers=auth, timeout=10, json={
        "source": "import", "run_id": "r1", "items": [item, {**item, "ref": "g", "attributes": {"notes": "x" * 3000}}]})
    assert big.status_code == 422 and big.json()["errors"][0]["field"] == "items.1"
    assert httpx.get(f"{base}/api/v1/cis", headers=auth, timeout=10).json()["items"] == []


def test_a_connection_refused_mid_body_or_idling_with_crlf_does_not_stay_open(server):
    base, secret = server
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:  # refused mid-body, body still coming
        sock.sendall(f"POST /api/v1/cis HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        deadline, answer = time.monotonic() + 15, b""
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"4000\r\n" + b" " * 0x4000 + b"\r\n")
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # closed by the server: what we want
                break
        else:
            raise AssertionError("the server kept reading an endless body")
    assert answer.startswith(b"HTTP/1.1 413")
    with socket.create_connection((host, int(port)), timeout=5) as sock:  # keep-alive, then bare CRLFs
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        with pytest.raises(OSError):
            for _ in range(20):  # a CRLF every 0.5 s: never a request, and past the deadline of 1 s
                sock.sendall(b"\r\n")
                time.sleep(0.5)
                sock.settimeout(0.01)
                try:
                    if sock.recv(1) == b"":
                        raise ConnectionResetError("closed")
                except TimeoutError:
                    pass
        assert time.monotonic() - started < 5
