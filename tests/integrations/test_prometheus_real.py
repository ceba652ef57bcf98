"""The real Prometheus (Debian's prometheus 2.42) against a real `karta serve`: its http_sd job reads
Karta's targets with their labels, and its Karta job scrapes /metrics with a token.

The configuration is the one the README shows (read from it), plus relabelling that this test alone
needs: the discovered address is kept as `instance` and every scrape goes to Karta's own open metrics
listener on 127.0.0.1, because the estate's addresses are not on this machine and tests send nothing
off it.
"""

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import missing_requirement, tokens_for
from tests.integrations.estate import expected_targets, ingest_estate
from tests.server import free_port, free_ports, running_server, stop

PROMETHEUS = "/usr/bin/prometheus"
WAIT_SECONDS = 60
pytestmark = pytest.mark.tools


class _Api:
    """Enough of tests.conftest.Api to ingest the estate through the real server."""

    def __init__(self, base: str, secret: str) -> None:
        self.client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, trust_env=False,
                                   timeout=30)

    def post(self, url, **kwargs):
        return self.client.post(url, **kwargs)


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_prometheus_yml() -> str:
    """The prometheus.yml the README's Prometheus section tells operators to paste."""
    section = README.read_text().split("### Prometheus:", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def prometheus_config(karta: str, token_file: str, listener: str) -> dict:
    """The README's configuration pointed at this test's Karta, refreshed every second, plus the
    relabelling this test alone needs (module docstring)."""
    text = (readme_prometheus_yml().replace("https://karta.example.com", f"http://{karta}")
            .replace("karta.example.com:443", karta).replace("scheme: https", "scheme: http")
            .replace("/etc/prometheus/karta-token", token_file).replace("refresh_interval: 5m", "refresh_interval: 1s"))
    assert "example.com" not in text and "/etc/prometheus" not in text, text  # every placeholder replaced
    config = yaml.safe_load(text)
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    (node,) = [job for job in config["scrape_configs"] if job["job_name"] == "node"]
    node["relabel_configs"] = [{"source_labels": ["__address__"], "target_label": "instance"},
                               {"target_label": "__address__", "replacement": listener}]
    return config


def _wait_for(what: str, check, deadline: float):
    """Ask `check` until it answers (True, result); it answers (False, what it saw) meanwhile."""
    last = None
    while time.monotonic() < deadline:
        try:
            done, last = check()
            if done:
                return last
        except (httpx.TransportError, ValueError) as exc:
            # Not listening yet, or (ValueError: JSONDecodeError) answering 503 in plain text while its
            # TSDB is still starting ("Service Unavailable"), which a loaded machine makes long.
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never showed {what}; last seen: {last!r}")


@contextmanager
def running_prometheus(config: Path, workdir: Path) -> Iterator[httpx.Client]:
    """Prometheus on a free port of 127.0.0.1 with `config`, its data and log in `workdir`; a client of its API."""
    web = f"127.0.0.1:{free_port()}"
    with open(workdir / "prometheus.log", "w") as log:
        process = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                                    f"--web.listen-address={web}"], stdout=log, stderr=subprocess.STDOUT)
        try:
            with httpx.Client(base_url=f"http://{web}", trust_env=False, timeout=5) as client:
                yield client
        except BaseException:
            print((workdir / "prometheus.log").read_text()[-5000:])
            raise
        finally:
            stop(process)


def test_prometheus_discovers_targets_from_karta_and_scrapes_it(database_url, tmp_path):
    if not os.access(PROMETHEUS, os.X_OK):
        missing_requirement(f"{PROMETHEUS} (Debian package prometheus) is not installed")
    secrets = tokens_for(database_url)
    token_file = tmp_path / "karta-token"
    token_file.write_text(secrets["read"])
    token_file.chmod(0o600)
    listen_port, api_port = free_ports(2)  # apart: two free_port() calls in a row can return one port
    listener = f"127.0.0.1:{listen_port}"
    with running_server(database_url, env={"KARTA_METRICS_LISTEN": listener}, port=api_port) as base:
        refs = ingest_estate(_Api(base, secrets["discovery"]))
        karta = base.removeprefix("http://")
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(karta, str(token_file), listener)))
        with running_prometheus(config, tmp_path) as client:
            deadline = time.monotonic() + WAIT_SECONDS
            # Prometheus drops labels whose value is empty, and adds job and instance.
            expected = {frozenset({**{k: v for k, v in group["labels"].items() if v}, "job": "node",
                                   "instance": group["targets"][0]}.items()) for group in expected_targets(refs)}

            def discovered():
                targets = client.get("/api/v1/targets", params={"state": "active"}).json()["data"]["activeTargets"]
                node = [t for t in targets if t["scrapePool"] == "node"]
                labels = {frozenset(t["labels"].items()) for t in node}
                return labels == expected and all(t["health"] == "up" for t in node), node

            # `instance` is the address Karta gave (the relabelling above copied it before moving the scrape).
            _wait_for("the http_sd targets with their labels, up", discovered, deadline)

            def query(promql, expected):
                result = client.get("/api/v1/query", params={"query": promql}).json()["data"]["result"]
                found = {frozenset(r["metric"].items()): r["value"][1] for r in result}
                return found == expected, found

            # Waited for until it holds (a first scrape may fail while the worker starts: up 0).
            _wait_for("up{job=karta} 1", lambda: query('up{job="karta"}', {
                frozenset({"__name__": "up", "job": "karta", "instance": karta}.items()): "1"}), deadline)
            _wait_for("karta_cis of the servers", lambda: query('karta_cis{job="karta",class="server"}', {
                frozenset({"__name__": "karta_cis", "job": "karta", "instance": karta, "class": "server"}.items()):
                    "3"}), deadline)  # web-1, db-1, bare (vm-7 is a virtual_machine)
