"""/metrics of a real `karta serve --workers 2` (uvicorn): counters of both workers add up, the open
listener (KARTA_METRICS_LISTEN) serves the same without a token, and each start's multiprocess
directory is removed when the server stops."""

import os
import socket
import subprocess

import httpx
import pytest

from app.core.db import make_engine
from tests.conftest import create_tokens, new_id
from tests.integrations.metrics_text import samples, value
from tests.server import KARTA, free_port, free_ports, running_server

REQUESTS = "karta_http_request_duration_seconds_count"
TEMPLATE = "/api/v1/cis/{ci_id}"
MAX_REQUESTS = 400


def _tokens(database_url: str) -> dict[str, str]:
    engine = make_engine(database_url)
    try:
        return create_tokens(engine)
    finally:
        engine.dispose()


def _metrics_dirs(tmp: str) -> list[str]:
    return sorted(name for name in os.listdir(tmp) if name.startswith("karta-metrics-"))


def _pids_observing(tmp: str) -> set[str]:
    """The workers that wrote a histogram (prometheus-client names each file after its process)."""
    (directory,) = _metrics_dirs(tmp)
    return {name.split("_")[-1].removesuffix(".db") for name in os.listdir(os.path.join(tmp, directory))
            if name.startswith("histogram_")}


def test_two_workers_counters_add_up_and_the_open_listener(database_url, tmp_path):
    secrets = _tokens(database_url)
    tmp = str(tmp_path / "tmp")
    os.mkdir(tmp)
    listen_port, api_port = free_ports(2)  # apart: two free_port() calls in a row can return one port
    env = {"TMPDIR": tmp, "KARTA_METRICS_LISTEN": f"127.0.0.1:{listen_port}", "KARTA_METRICS_CACHE_SECONDS": "0"}
    read = {"Authorization": f"Bearer {secrets['read']}"}
    with running_server(database_url, workers=2, env=env, port=api_port) as base:
        assert len(_metrics_dirs(tmp)) == 1
        sent = 0
        # New connections until both workers have answered some (the kernel hands connections out).
        while sent < MAX_REQUESTS and (sent < 40 or len(_pids_observing(tmp)) < 2):
            with httpx.Client(base_url=base, headers=read, trust_env=False, timeout=10) as client:
                assert client.get(f"/api/v1/cis/{new_id()}").status_code == 404
            sent += 1
        assert len(_pids_observing(tmp)) == 2, f"one worker answered all {sent} requests"
        open_url = f"http://127.0.0.1:{listen_port}/metrics"
        for _ in range(6):  # each scrape may land on either worker; every one sees the sum
            with httpx.Client(trust_env=False, timeout=10) as client:
                api = client.get(f"{base}/metrics", headers=read)
                assert api.status_code == 200, api.text
                assert value(samples(api.text), REQUESTS, method="GET", route=TEMPLATE, status="404") == sent
                opened = client.get(open_url)
                assert opened.status_code == 200
                assert value(samples(opened.text), REQUESTS, method="GET", route=TEMPLATE, status="404") == sent
        with httpx.Client(trust_env=False, timeout=10) as client:
            assert client.get(f"{base}/metrics").status_code == 401  # the API port still wants a token
            assert client.get(f"http://127.0.0.1:{listen_port}/other").status_code == 404
            # The tokens made above are in the change feed: the listener reads the database too.
            assert value(samples(client.get(open_url).text), "karta_change_feed_head_sequence") == 4
    assert _metrics_dirs(tmp) == []


def test_serve_refuses_a_metrics_address_it_cannot_listen_on(database_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = subprocess.run([*KARTA, "serve", "--port", str(free_port())], capture_output=True, text=True,
                                check=False, timeout=60, env={**os.environ, "KARTA_DATABASE_URL": database_url,
                                                              "KARTA_METRICS_LISTEN": address})
    assert result.returncode == 1
    assert f"KARTA_METRICS_LISTEN={address} cannot be listened on" in result.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_malformed_metrics_address_is_refused_at_start(database_url):
    result = subprocess.run([*KARTA, "serve", "--port", str(free_port())], capture_output=True, text=True, timeout=60,
                            check=False, env={**os.environ, "KARTA_DATABASE_URL": database_url, "KARTA_METRICS_LISTEN": "9464"})
    assert result.returncode != 0
    assert "metrics_listen" in result.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_one_worker_stopped_by_sigterm_removes_its_directory(database_url, tmp_path):
    # uvicorn alone re-raises SIGTERM after its graceful stop (a plain process would die there).
    tmp = str(tmp_path)
    with running_server(database_url, env={"TMPDIR": tmp}):
        assert len(_metrics_dirs(tmp)) == 1
    assert _metrics_dirs(tmp) == []
