"""A real streaming replica for the read-replica tests: a primary PostgreSQL cluster of our own and a hot
standby made from it with `pg_basebackup -R`, both on free ports under a temporary directory, run as
the postgres user. The shared cluster on 5432 is never touched.

Needs root (to run PostgreSQL as postgres) and PostgreSQL's server programs (initdb, pg_ctl,
pg_basebackup); without them the tests skip, and fail in CI (KARTA_REQUIRE_ALL)."""

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from app.core import migrations
from app.core.db import make_engine
from tests.conftest import missing_requirement
from tests.discovery.lab_services import postgres_bindir
from tests.server import free_port

PG_TIMEOUT = 60


def _as_postgres(*argv: str, timeout: float = PG_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv],
                            capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


class Cluster:
    """One PostgreSQL cluster of the pair, started and stopped with pg_ctl."""

    def __init__(self, bindir: Path, home: Path, name: str) -> None:
        self.bindir = bindir
        self.data = home / name
        self.log = home / f"{name}.log"
        self.port = free_port()
        self.socket_dir = home / "sockets"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.socket_dir} "
                   "-c fsync=off -c full_page_writes=off -c shared_buffers=32MB -c max_connections=300 "
                   "-c wal_keep_size=256MB -c logging_collector=off")
        _as_postgres(str(self.bindir / "pg_ctl"), "start", "-D", str(self.data), "-l", str(self.log), "-w",
                     "-t", str(PG_TIMEOUT), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        _as_postgres(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", mode, "-w", "-t", str(PG_TIMEOUT))

    def running(self) -> bool:
        return _as_postgres(str(self.bindir / "pg_ctl"), "status", "-D", str(self.data), check=False).returncode == 0


class ReplicatedPostgres:
    """A primary with a database `karta` migrated to head, and its hot standby."""

    database = "karta"

    def __init__(self, bindir: Path, home: Path) -> None:
        self.primary = Cluster(bindir, home, "primary")
        self.standby = Cluster(bindir, home, "standby")
        _as_postgres(str(bindir / "initdb"), "-D", str(self.primary.data), "-A", "trust", "-U", "postgres",
                     "--no-sync", "-E", "UTF8", timeout=120)  # its pg_hba admits replication from 127.0.0.1
        self.primary.start()
        admin = create_engine(self.primary.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        admin.dispose()
        engine = make_engine(self.primary_url)
        migrations.upgrade(engine)
        engine.dispose()
        _as_postgres(str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
                     "-D", str(self.standby.data), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync", timeout=120)
        self.standby.start()
        self.standby_admin = create_engine(self.standby.url(), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        self.wait_until(self.is_standby, 30, "the standby accepting reads in recovery")

    @property
    def primary_url(self) -> str:
        return self.primary.url(self.database)

    @property
    def replica_url(self) -> str:
        return self.standby.url(self.database)

    def standby_sql(self, sql: str):
        with self.standby_admin.connect() as conn:
            return conn.execute(text(sql)).scalar()

    def is_standby(self) -> bool:
        try:
            return bool(self.standby_sql("SELECT pg_is_in_recovery()"))
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def pause_replay(self) -> None:
        self.standby_sql("SELECT pg_wal_replay_pause()")
        self.wait_until(lambda: self.standby_sql("SELECT pg_get_wal_replay_pause_state()") == "paused", 10,
                        "the standby's replay paused")

    def resume_replay(self) -> None:
        self.standby_sql("SELECT pg_wal_replay_resume()")

    @staticmethod
    def wait_until(condition, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {seconds} s waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        self.standby_admin.dispose()
        for cluster in (self.standby, self.primary):
            if cluster.running():
                cluster.stop("immediate")


@pytest.fixture(scope="module")
def replicated():
    if os.geteuid() != 0:
        missing_requirement("the replica tests run PostgreSQL as user postgres: they need root")
    bindir = postgres_bindir()
    if bindir is None or not all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "pg_basebackup")):
        missing_requirement("PostgreSQL's server programs (initdb, pg_ctl, pg_basebackup) are not installed")
    if shutil.which("setpriv") is None:
        missing_requirement("setpriv (util-linux) is not installed: it runs PostgreSQL as user postgres")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing_requirement("there is no postgres user to run PostgreSQL as")
    with replicated_postgres(bindir) as pair:
        yield pair


@contextmanager
def replicated_postgres(bindir: Path, prefix: str = "karta-replica-") -> Iterator[ReplicatedPostgres]:
    """A primary and its hot standby in a directory of their own (bench/lb_bench.py uses it too), stopped
    and removed on leaving; a setup that failed prints what PostgreSQL said and stops what started."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.chown(home, "postgres", "postgres")
    (home / "sockets").mkdir()
    shutil.chown(home / "sockets", "postgres", "postgres")
    pair = None
    try:
        pair = ReplicatedPostgres(bindir, home)
        yield pair
    except BaseException:  # setup failed: what PostgreSQL said
        for log in sorted(home.glob("*.log")):
            print(f"{log.name}:\n{log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        if pair is not None:
            pair.close()
        else:  # initdb or the backup failed half way: stop whatever started
            for name in ("standby", "primary"):
                if (home / name / "postmaster.pid").exists():
                    _as_postgres(str(bindir / "pg_ctl"), "stop", "-D", str(home / name), "-m", "immediate", check=False)
        shutil.rmtree(home, ignore_errors=True)
