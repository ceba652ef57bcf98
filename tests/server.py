"""Run the real `karta` command and a real uvicorn server in a subprocess, for tests about the server."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import httpx

KARTA = [sys.executable, "-m", "app.cli"]


def karta(*args: str, database_url: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "KARTA_DATABASE_URL": database_url}
    return subprocess.run([*KARTA, *args], env=env, capture_output=True, text=True, timeout=timeout)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct free ports: held bound together while they are picked (two free_port() calls
    in a row can return the same port, the first being free again once its socket closed)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class ServerUrl(str):
    """The server's base URL, with its process (a test may kill it: SIGKILL mid-delivery)."""

    process: subprocess.Popen


@contextmanager
def running_server(database_url: str, *, workers: int = 1, startup_seconds: float = 30, host: str = "127.0.0.1",
                   env: dict[str, str] | None = None, port: int | None = None):
    """`karta serve` on a free port of `host` (one of this machine's addresses; `port` when the test picked
    it, with free_ports, apart from another it uses); yields its base URL. `env` adds settings
    (KARTA_STALE_AFTER_RUNS=2)."""
    port = port or free_port(host)
    env = {**os.environ, **(env or {}), "KARTA_DATABASE_URL": database_url}
    # The server's log goes to a file (a pipe nobody reads would stall it once full) and is printed
    # when the block fails, so a 500 in a test comes with its traceback.
    log = tempfile.TemporaryFile(mode="a+")  # appending: reading it while the server writes moves no write
    process = subprocess.Popen(
        [*KARTA, "serve", "--host", host, "--port", str(port), "--workers", str(workers)],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    base = ServerUrl(f"http://{host}:{port}")
    base.process = process

    def server_log() -> str:
        log.seek(0)
        return log.read()[-20_000:]

    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"karta serve exited with {process.returncode} (its log follows)")
            try:
                if httpx.get(f"{base}/readyz", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("karta serve did not become ready in time")
            time.sleep(0.1)
        yield base
    except BaseException:
        print(f"log of karta serve on {base}:\n{server_log()}", file=sys.stderr)
        raise
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen) -> None:
    """Ask a program started by a test to stop; kill it if it has not within 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
