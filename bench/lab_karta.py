"""A real Karta for the discovery benchmarks: `karta serve` on the lab's service link, a real token.

The agent runs inside the lab's management namespace (tests/discovery/lab.py), which reaches nothing
but the lab and, once ``open_service_link`` is called, one veth address of this machine. The server
binds that address (a point-to-point link on this machine, never anything outside it), on a fresh
SQLite file (default: the shared PostgreSQL is left to the tests) or a PostgreSQL database made for
the run (bench/common.py). The database is migrated and the token made with the real `karta`
command, as an operator would. Nothing here may touch another engineer's lab: ``refuse_lab_clash``
checks the names and the service-link address block before a lab is built.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import fresh_database
from tests.discovery.lab import PREFIX, Lab
from tests.server import running_server

KARTA = Path(sys.executable).with_name("karta")  # the console script cron calls
SERVICE_BLOCKS = 16320  # lab.py picks the service link's /30 by pid modulo this


def refuse_lab_clash() -> None:
    """Labs are tagged with their owner's pid, and their service /30 by pid modulo 16,320: make sure
    no other live lab has this process's tag or block (another engineer may be running the lab tests)."""
    listing = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True, timeout=30).stdout
    mine = os.getpid()
    for owner in sorted({int(m) for m in re.findall(rf"^{PREFIX}(\d+)-", listing, re.MULTILINE)}):
        if owner == mine or owner % SERVICE_BLOCKS == mine % SERVICE_BLOCKS:
            raise SystemExit(f"lab {PREFIX}{owner} would clash with this run's lab (pid {mine}); run again")


def agent_env(**extra: str) -> dict[str, str]:
    """What a crontab gives the agent: PATH, HOME, this checkout's code, the settings in `extra`."""
    return {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "/root"), "LC_ALL": "C.UTF-8", **extra}


def karta(database_url: str, *args: str, timeout: float = 120) -> str:
    result = subprocess.run([str(KARTA), *args], check=False, env={**agent_env(), "KARTA_DATABASE_URL": database_url},
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"karta {' '.join(args)} failed: {result.stderr[-2000:]}")
    return result.stdout


def publish(text: str, path: Path) -> None:
    """Print a benchmark's Markdown and keep it in bench/results/ (git-ignored)."""
    print(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@dataclass
class Server:
    base: str  # the URL the agent pushes to (from inside the lab)
    token: str  # scope discovery, sources ssh and nmap
    database_url: str


@contextmanager
def karta_server(lab: Lab, workdir: Path, backend: str = "sqlite",
                 env: dict[str, str] | None = None) -> Iterator[Server]:
    """A migrated, empty database and `karta serve` (one worker) on this machine's end of the service link."""
    url = fresh_database(backend, f"karta_bench_discovery_{os.getpid()}", workdir)
    karta(url, "db", "upgrade")
    token = karta(url, "token", "create", "--name", "discovery-bench", "--scope", "discovery",
                  "--source", "ssh", "--source", "nmap").strip().splitlines()[-1]
    ours, _ = lab.open_service_link()
    with running_server(url, host=ours, env=env) as base:
        yield Server(base, token, url)
    if backend != "sqlite":
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        from bench.common import PG_URL

        admin = create_engine(make_url(PG_URL), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
        admin.dispose()
