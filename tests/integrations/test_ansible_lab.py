"""`ansible -m ping` reaches discovered hosts over SSH through Karta's inventory, nothing imitated.

A lab of three hosts (tests/discovery/lab.py: network namespaces, each with its own sshd) is
discovered by the real agent (`karta discover ssh`), which pushes to a real `karta serve`; then the
real ansible-core, through the README's two-line wrapper, pings every host the inventory lists,
over SSH with the lab's key and known_hosts (strict host key checking: the inventory's ansible_host
must be the address each host key was recorded for).

Everything runs inside the lab's management namespace (the only place the lab's addresses are
reachable from), the Karta server included: it listens on that namespace's loopback, so the agent
and the inventory speak plain http to this machine only, as they allow. The database is therefore
SQLite (PostgreSQL listens on the machine's loopback, which the namespace does not share); the
inventory's SQL is tested on both in test_ansible_inventory.py. The lab's namespaces carry a tag of
their own so this lab and the discovery tests' can live in one test session.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import fresh_database, tokens_for
from tests.discovery.conftest import lab_host_class, require
from tests.discovery.lab import PREFIX, Lab, LabHost, missing_requirements
from tests.integrations.ansible_estate import plain
from tests.integrations.ansible_tools import (
    REPO,
    ansible_env,
    ansible_program,
    make_wrapper,
)
from tests.server import free_port

pytestmark = [pytest.mark.lab, pytest.mark.tools]

HOSTS = {"web-1": 31, "db-1": 32, "app-1": 33}


class InventoryLab(Lab):
    def __init__(self, hosts: list[LabHost]) -> None:
        super().__init__(hosts, lifetime=600)
        self.tag = f"{PREFIX}{os.getpid()}-ansible"
        self.mgmt = f"{self.tag}-mgmt"


@pytest.fixture(scope="module")
def lab():
    require(missing_requirements())
    instance = InventoryLab([LabHost(name, octet) for name, octet in HOSTS.items()])
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def karta_in_lab(lab, request, tmp_path_factory):
    """(base URL inside the lab, secrets): `karta serve` on the management namespace's loopback."""
    directory = tmp_path_factory.mktemp("ansible-lab")
    database_url = next(fresh_database(request, "sqlite", directory))
    secrets = tokens_for(database_url)
    port = free_port()  # free here; the namespace's loopback has nothing listening at all
    with open(directory / "serve.log", "w+") as log:
        server = subprocess.Popen(lab.command([sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1",
                                               "--port", str(port)]),
                                  cwd=REPO, env={**os.environ, "KARTA_DATABASE_URL": database_url},
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            lab.wait_for_tcp([("127.0.0.1", port)], timeout=30)
            yield f"http://127.0.0.1:{port}", secrets
        except BaseException:
            log.seek(0)
            print(log.read()[-5000:], file=sys.stderr)
            raise
        finally:
            os.killpg(server.pid, 15)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait(timeout=5)


def in_lab(lab, argv: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    result = lab.run(argv, env=env, timeout=timeout)
    assert result.returncode == 0, f"{argv[:3]} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_ansible_pings_the_discovered_hosts_through_the_inventory(lab, karta_in_lab, tmp_path):
    base, secrets = karta_in_lab
    agent_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
                 "KARTA_API_URL": base, "KARTA_TOKEN": secrets["discovery"]}
    targets = ",".join(f"10.77.0.{octet}" for octet in HOSTS.values())
    discovered = in_lab(lab, [sys.executable, "-m", "app.cli", "discover", "ssh", "--targets", targets, "--user", "root",
                              "--key", str(lab.key_path), "--known-hosts", str(lab.known_hosts),
                              "--connect-timeout", "5", "--command-timeout", "60"], agent_env)
    assert "pushed=1 request(s)" in discovered.stderr, discovered.stderr

    wrapper = make_wrapper(tmp_path)
    env = ansible_env(tmp_path, base, secrets["read"], KARTA_INVENTORY_CACHE_SECONDS="0",
                      ANSIBLE_PRIVATE_KEY_FILE=str(lab.key_path), ANSIBLE_REMOTE_USER="root",
                      ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3", ANSIBLE_HOST_KEY_CHECKING="True",
                      ANSIBLE_SSH_ARGS=f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes "
                                       "-o ControlMaster=no", ANSIBLE_TIMEOUT="20")
    listed = in_lab(lab, [ansible_program("ansible-inventory"), "-i", str(wrapper), "--list"], env)
    inventory = json.loads(listed.stdout)
    assert {name: plain(variables["ansible_host"]) for name, variables in inventory["_meta"]["hostvars"].items()} == {
        name: f"10.77.0.{octet}" for name, octet in HOSTS.items()}
    assert set(inventory[f"class_{lab_host_class()}"]["hosts"]) == set(HOSTS)

    started = time.monotonic()
    pinged = in_lab(lab, [ansible_program("ansible"), "all", "-i", str(wrapper), "-m", "ping", "-o", "-f", "3"], env)
    answered = {line.split(" | ")[0] for line in pinged.stdout.splitlines() if '"ping": "pong"' in line}
    assert answered == set(HOSTS), pinged.stdout
    assert " | SUCCESS" in pinged.stdout and time.monotonic() - started < 170
    by_name = in_lab(lab, [ansible_program("ansible"), "db-1", "-i", str(wrapper), "-m", "command", "-a", "hostname",
                           "-o"], env)
    assert by_name.stdout.startswith("db-1 | CHANGED | rc=0 | (stdout) db-1"), by_name.stdout
