"""Fixtures for the discovery tests: recorded data, the real service, and the network-namespace lab.

Tests that need the lab (root, nmap, sshd, the service binaries) are skipped
with the reason when something is missing, except when KARTA_REQUIRE_ALL=1
(CI), where a missing piece fails them instead. The lab is built once per
session and always torn down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from discovery.facts import VIRTUAL_MACHINE_TYPES
from tests.discovery.lab import Lab, missing_requirements
from tests.discovery.lab_services import missing_service_binaries, standard_hosts, start_services
from tests.server import running_server

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]


def require(missing: list[str]) -> None:
    """Skip (or, under KARTA_REQUIRE_ALL=1, fail) when the machine lacks something."""
    if not missing:
        return
    reason = "discovery lab needs: " + ", ".join(missing)
    if os.environ.get("KARTA_REQUIRE_ALL") == "1":
        pytest.fail(reason + " (KARTA_REQUIRE_ALL=1)", pytrace=False)
    pytest.skip(reason)


def lab_host_class() -> str:
    """The class the agent gives a lab host it logs into: the lab shares this machine's virtualization."""
    if shutil.which("systemd-detect-virt") is None:
        return "server"
    virt = subprocess.run(["systemd-detect-virt", "--vm"], capture_output=True, text=True).stdout.strip()
    return "virtual_machine" if virt in VIRTUAL_MACHINE_TYPES else "server"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def nmap_program() -> None:
    """python-nmap needs the nmap program even to read a recorded scan."""
    require([] if shutil.which("nmap") else ["nmap"])


@pytest.fixture
def karta_url(api, database_url):
    """A real ``karta serve`` (uvicorn) on the test's database, for the agent to push to over HTTP.

    Tokens of every scope are in ``api.secrets``; ``api`` reads back what landed (same database).
    """
    with running_server(database_url) as base:
        yield base


@pytest.fixture(scope="session")
def lab():
    """The standard lab (lab_services.standard_hosts), shared by the session."""
    require(missing_requirements() + missing_service_binaries())
    instance = Lab(standard_hosts(), setup=start_services)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def agent(lab):
    """Run ``python -m discovery.cli ...`` inside the lab's management namespace."""

    def run(*args: str, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
                    "HOME": os.environ.get("HOME", "/root"), **(env or {})}
        return lab.run([sys.executable, "-m", "discovery.cli", *args], timeout=timeout, env=full_env)

    return run
