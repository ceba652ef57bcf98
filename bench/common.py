"""What the benchmarks share: a fresh database of either backend."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_URL = os.environ.get("KARTA_BENCH_POSTGRES_URL", "postgresql+psycopg://@127.0.0.1:5432/test")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (/proc/<pid>/stat, fields 14 and 15): what a
    server's work cost, whatever else the (shared) machine ran meanwhile."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def minor_faults(pid: int) -> int:
    """Minor page faults a process has taken so far (/proc/<pid>/stat field 10): pages it touched for the
    first time, or again after the allocator gave them back."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def memory_mib(pid: int | str = "self") -> tuple[float, float]:
    """A process's resident memory and its peak so far, MiB (/proc/<pid>/status VmRSS and VmHWM; nan
    when the process is gone or the kernel does not say)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return float("nan"), float("nan")
    fields = dict(line.split(":", 1) for line in lines if ":" in line)

    def mib(name: str) -> float:
        return int(fields[name].split()[0]) / 1024 if name in fields else float("nan")

    return mib("VmRSS"), mib("VmHWM")


def smaps_rollup(pid: int | str = "self") -> dict[str, float]:
    """A process's /proc/<pid>/smaps_rollup, MiB: resident (Rss), proportional share (Pss) and private
    (clean + dirty: the pages it alone holds)."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[name] = int(value.split()[0]) / 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"],
            "private": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


def fresh_database(backend: str, name: str, workdir: Path) -> str:
    """The URL of an empty database named `name`: a file in `workdir`, or a PostgreSQL database made anew."""
    if backend == "sqlite":
        path = workdir / (name + ".db")
        for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    admin = create_engine(make_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    """Drop a PostgreSQL database a bench made (fresh_database), its connections closed first."""
    admin = create_engine(make_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _maintain(url: str, postgresql: str, sqlite: str) -> None:
    """One maintenance statement, outside any transaction, on the database at `url`."""
    engine = create_engine(make_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(postgresql if engine.dialect.name == "postgresql" else sqlite))
    finally:
        engine.dispose()


def settle(url: str) -> None:
    """Write out what the last run left dirty before the next one is timed: otherwise the database
    flushes one checkout's first load (a checkpoint after ~1 GB of WAL) while the other is measured."""
    _maintain(url, "CHECKPOINT", "PRAGMA wal_checkpoint(TRUNCATE)")


def vacuum(url: str) -> None:
    """What autovacuum would have done in time: dead rows reclaimed and statistics current."""
    _maintain(url, "VACUUM ANALYZE", "ANALYZE")


def karta_command(env: dict[str, str], checkout: Path):
    """A function running `karta ARGS...` with `env` in `checkout`, answering its stdout (exits on failure)."""
    import subprocess
    import sys

    def karta(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=checkout, env=env, capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"karta {' '.join(args)} failed in {checkout}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    return karta


@contextmanager
def served(env: dict[str, str], checkout: Path, *, workers: int = 1, startup_seconds: float = 60) -> Iterator[str]:
    """`karta serve` of `checkout` with `env` (and `workers`) on a free port, ready (GET /readyz);
    yields its base URL, whose `process` is the server's (its pid for memory watches). Every bench
    starts its server here, so they measure the same server the same way; it is stopped on leaving."""
    import subprocess
    import sys
    import time

    import httpx

    from tests.server import ServerUrl, free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", str(workers)],
                              cwd=checkout, env=env, stdout=subprocess.DEVNULL, stderr=None if os.environ.get("KARTA_BENCH_SERVER_LOG") else subprocess.DEVNULL)
    base = ServerUrl(f"http://127.0.0.1:{port}")
    base.process = server
    try:
        deadline = time.monotonic() + startup_seconds
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"karta serve exited with {server.returncode} before it was ready")
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"karta serve was not ready within {startup_seconds:.0f} s")
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
