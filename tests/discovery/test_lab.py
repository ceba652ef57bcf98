"""End to end on real hosts: the agent's CLI against the network-namespace lab (no mocks).

The lab (lab_services.py: standard_hosts) has web-1 (nginx :80, a Python service
:8080 holding a Redis connection to db-1), db-1 (PostgreSQL :5432, Redis
:6379, a redis-cli on loopback), app-1 (psql holding a connection to db-1),
and four difficult hosts: evil-1 (hostile hostname and os-release, no ss, a ps that spews
2 MiB of random bytes),
flood-1 (answers 10 MB of random bytes), locked-1 (refuses our key),
stranger-1 (not in known_hosts); 10.77.0.99 has no host at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from discovery.facts import VIRTUAL_MACHINE_TYPES
from tests.discovery.conftest import REPO
from tests.discovery.lab import MGMT_ADDRESS
from tests.discovery.lab_services import UNREACHABLE
from tests.server import running_server

pytestmark = pytest.mark.lab

GOOD = ["10.77.0.11", "10.77.0.12", "10.77.0.13"]
ALL_LAB = [f"10.77.0.{n}" for n in range(11, 18)]


def host_class() -> str:
    """What a lab host is on this machine: the lab shares the machine's virtualization."""
    if shutil.which("systemd-detect-virt") is None:
        return "server"
    virt = subprocess.run(["systemd-detect-virt", "--vm"], capture_output=True, text=True).stdout.strip()
    return "virtual_machine" if virt in VIRTUAL_MACHINE_TYPES else "server"


def ssh_args(lab, *targets: str, known_hosts: Path | None = None) -> list[str]:
    return ["ssh", "--targets", ",".join(targets), "--user", "root", "--key", str(lab.key_path),
            "--known-hosts", str(known_hosts or lab.known_hosts), "--connect-timeout", "3",
            "--command-timeout", "30", "--dry-run"]


def by_ref(batch: dict) -> dict:
    return {item["ref"]: item for item in batch["items"]}


def edges(batch: dict, kind: str) -> set[tuple]:
    items = by_ref(batch)
    return {(items[r["source"]]["name"], items[r["target"]]["name"], r["attributes"].get("port"))
            for r in batch["relationships"] if r["type"] == kind}


@pytest.fixture(scope="module")
def ssh_run(lab, agent, tmp_path_factory):
    """One ssh run over every lab target plus an address where nobody answers."""
    output = tmp_path_factory.mktemp("ssh") / "batch.json"
    result = agent(*ssh_args(lab, *ALL_LAB, UNREACHABLE), "--output", str(output))
    assert result.returncode == 0, result.stderr
    batch = json.loads(result.stdout)
    assert json.loads(output.read_text()) == batch
    return result, batch


def test_scan_finds_exactly_the_lab_hosts(lab, agent):
    result = agent("scan", "--subnet", "10.77.0.0/24", "--dry-run")
    assert result.returncode == 0, result.stderr
    batch = json.loads(result.stdout)
    assert batch["source"] == "nmap" and batch["complete"] is True
    assert batch["scope"] == {"subnets": ["10.77.0.0/24"], "hosts": []}
    hosts = {(i["class"], i["name"], tuple(i["identifiers"]["ip_address"]))
             for i in batch["items"] if i["class"] != "ip_address"}
    names = {11: "web-1", 12: "db-1", 13: "app-1", 14: "evil-1", 15: "flood-1", 16: "locked-1", 17: "stranger-1"}
    assert hosts == {("server", MGMT_ADDRESS, (MGMT_ADDRESS,))} | {
        ("server", f"{name}.lab", (f"10.77.0.{n}",)) for n, name in names.items()}
    assert {i["name"] for i in batch["items"] if i["class"] == "ip_address"} == {MGMT_ADDRESS, *ALL_LAB}
    open_ports = {i["name"]: sorted(p["port"] for p in i["attributes"].get("listening", []))
                  for i in batch["items"] if i["class"] == "server"}
    assert open_ports["web-1.lab"] == [22, 80, 8080]
    assert open_ports["db-1.lab"] == [22, 5432, 6379]
    assert open_ports["app-1.lab"] == [22]
    web = next(i for i in batch["items"] if i["name"] == "web-1.lab")
    assert web["identifiers"]["mac_address"] == ["52:54:00:77:00:0b"]
    assert len([r for r in batch["relationships"] if r["type"] == "contains"]) == 8


def test_ssh_collects_hosts_applications_and_the_dependency_edges(lab, ssh_run):
    _, batch = ssh_run
    assert batch["source"] == "ssh" and batch["complete"] is True
    # every target asked for, reached or not: a host that is down must not change the scope
    assert batch["scope"] == {"subnets": [], "hosts": sorted(ALL_LAB + [UNREACHABLE])}
    cls = host_class()
    hosts = {(i["class"], i["name"]) for i in batch["items"] if i["class"] in ("server", "virtual_machine")}
    assert hosts == {(cls, "web-1"), (cls, "db-1"), (cls, "app-1"), (cls, "evil;$(touch /tmp/karta-pwned)`id`|&")}
    apps = {(i["class"], i["name"]) for i in batch["items"]
            if i["class"] in ("application", "database", "web_server", "load_balancer")}
    assert apps == {
        ("web_server", "nginx@web-1:80"),
        ("application", "orders_api@web-1:8080"),
        ("database", "postgresql@db-1:5432"),
        ("database", "redis@db-1:6379"),
        ("application", "psql@app-1"),
    }
    assert {i["name"] for i in batch["items"] if i["class"] == "ip_address"} == set(GOOD) | {"10.77.0.14"}
    assert edges(batch, "depends_on") == {
        ("orders_api@web-1:8080", "redis@db-1:6379", 6379),
        ("psql@app-1", "postgresql@db-1:5432", 5432),
    }
    assert edges(batch, "runs_on") == {
        ("nginx@web-1:80", "web-1", None), ("orders_api@web-1:8080", "web-1", None),
        ("postgresql@db-1:5432", "db-1", None), ("redis@db-1:6379", "db-1", None),
        ("psql@app-1", "app-1", None),
    }


def test_ssh_identifiers_follow_the_identification_rules(lab, ssh_run):
    _, batch = ssh_run
    items = {i["name"]: i for i in batch["items"]}
    assert items["web-1"]["identifiers"] == {
        "machine_id": lab.machine_id("web-1"), "fqdn": "web-1.lab",
        "mac_address": ["52:54:00:77:00:0b"], "ip_address": ["10.77.0.11"]}
    assert items["postgresql@db-1:5432"]["identifiers"] == {
        "instance_key": f"{lab.machine_id('db-1')}/postgresql/5432"}
    assert items["psql@app-1"]["identifiers"] == {"instance_key": f"{lab.machine_id('app-1')}/psql/0"}
    assert items["10.77.0.12"]["identifiers"] == {"address": "10.77.0.12"}
    db = items["db-1"]["attributes"]
    assert (db["os_name"], db["os_version"]) == ("ubuntu", "24.04")
    assert {(s["port"], s.get("process")) for s in db["listening"]} >= {(5432, "postgres"), (6379, "redis-server")}
    # Command lines stay on the agent: the lab's paths must not appear anywhere in the batch.
    assert str(lab.dir) not in json.dumps(batch)


def test_ssh_hostile_and_broken_hosts_are_recorded_and_the_run_goes_on(lab, ssh_run):
    result, batch = ssh_run
    summary = result.stderr.strip().splitlines()[-1]
    assert "hosts=4/8 ok" in summary
    for expected in ("10.77.0.15 error", "10.77.0.16 auth_failed", "10.77.0.17 host_key_unknown",
                     f"{UNREACHABLE} unreachable"):
        assert expected in summary
    evil = next(i for i in batch["items"] if i["identifiers"].get("ip_address") == ["10.77.0.14"])
    assert "machine_id" not in evil["identifiers"]  # "not-a-machine-id; rm -rf /" is not an identifier
    assert set(evil["attributes"]["collector_warnings"]) >= {
        "processes: output cut off", "listening: command not found: ss"}
    text = json.dumps(batch, ensure_ascii=False)
    assert not any(ord(c) < 32 for c in text if c not in "\n")
    assert "\x1b" not in text and "\ufffd" not in evil["name"]
    assert not Path("/tmp/karta-pwned").exists()


def test_trust_on_first_use_pins_the_key_then_holds_it(lab, agent, tmp_path):
    known = tmp_path / "known_hosts"
    shutil.copy(lab.known_hosts, known)
    refused = agent(*ssh_args(lab, "10.77.0.17", known_hosts=known))
    assert refused.returncode == 0 and "host_key_unknown=1" in refused.stderr
    pinned = agent(*ssh_args(lab, "10.77.0.17", known_hosts=known), "--trust-on-first-use")
    assert pinned.returncode == 0 and "hosts=1/1 ok" in pinned.stderr, pinned.stderr
    assert f"10.77.0.17 {lab.hosts['stranger-1'].host_key}" in known.read_text().splitlines()
    again = agent(*ssh_args(lab, "10.77.0.17", known_hosts=known))
    assert "hosts=1/1 ok" in again.stderr
    assert json.loads(again.stdout)["items"][0]["name"] == "stranger-1"


def test_a_changed_host_key_is_refused_even_with_trust_on_first_use(lab, agent, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(f"10.77.0.11 {lab.hosts['stranger-1'].host_key}\n")
    result = agent(*ssh_args(lab, "10.77.0.11", known_hosts=known), "--trust-on-first-use")
    assert result.returncode == 0
    assert "host_key_mismatch=1" in result.stderr
    assert json.loads(result.stdout)["items"] == []
    assert known.read_text() == f"10.77.0.11 {lab.hosts['stranger-1'].host_key}\n"


def test_local_runs_the_same_collector_inside_a_host(lab):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    result = lab.host_run("db-1", [sys.executable, "-m", "discovery.cli", "local", "--dry-run"], env=env)
    assert result.returncode == 0, result.stderr
    batch = json.loads(result.stdout)
    assert {(i["class"], i["name"]) for i in batch["items"]} == {
        (host_class(), "db-1"), ("ip_address", "10.77.0.12"),
        ("database", "postgresql@db-1:5432"), ("database", "redis@db-1:6379")}
    # redis-cli talks to 127.0.0.1: loopback chatter makes neither an edge nor a client CI.
    assert edges(batch, "depends_on") == set()


def test_run_pushes_every_scope_and_prints_one_line_per_scope(lab, tmp_path, api, database_url):
    """``run`` as cron runs it, pushing to the real service over the lab's service link (plain http to
    another address: the config says ``insecure``), with the token in a file the config names."""
    server_address, _ = lab.open_service_link()
    token = tmp_path / "discovery.token"
    token.write_text(api.secrets["discovery"] + "\n")
    token.chmod(0o600)
    config = tmp_path / "discovery.toml"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    with running_server(database_url, host=server_address) as base:
        config.write_text(f"""
api_url = "{base}"
insecure = true
token_file = "{token.name}"
user = "root"
key = "{lab.key_path}"
known_hosts = "{lab.known_hosts}"
lock_file = "{tmp_path / 'run.lock'}"
connect_timeout = 3

[[scope]]
name = "lab-scan"
type = "nmap"
subnets = ["10.77.0.8/29"]
ports = "22,80,5432"

[[scope]]
name = "lab-ssh"
type = "ssh"
targets = ["10.77.0.11-13"]
""")
        result = lab.run([sys.executable, "-m", "discovery.cli", "run", "--config", str(config)], env=env,
                         timeout=240)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and result.stderr == ""
    assert lines[0].startswith("scope=lab-scan source=nmap hosts=5 ")
    assert lines[1].startswith("scope=lab-ssh source=ssh hosts=3/3 ok ")
    assert all("pushed=1 request(s)" in line and "ingest_errors" not in line for line in lines)
    runs = api.get("/api/v1/discovery/runs").json()["items"]
    assert sorted((r["source"], r["complete"], r["batches"]) for r in runs) == [("nmap", True, 1), ("ssh", True, 1)]
    databases = api.get("/api/v1/cis", params={"class": "database"}).json()["items"]
    assert {ci["name"] for ci in databases} == {"postgresql@db-1:5432", "redis@db-1:6379"}
