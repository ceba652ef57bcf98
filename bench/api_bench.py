"""Benchmark: the CI read API under concurrent load, uvicorn with 2 workers, 100,000 CIs loaded.

Loads a realistic estate straight into a fresh database (servers, VMs, IPs, applications, databases,
services, clusters; their identifiers; ~150,000 relationships), starts `karta serve --workers 2` and
drives it with wrk (C, so the load generator takes little of the two cores) for:
  - GET /api/v1/cis/{id} with random ids (the detail, relationships included),
  - GET /api/v1/cis with filters (class + environment, status, attribute, tag), 50 per page.
On SQLite and on PostgreSQL, side by side in one run. Prints a Markdown table, writes bench/results/api.md.

    python bench/api_bench.py [--cis 100000] [--seconds 20] [--connections 32] [--backends sqlite,postgresql]

Side by side with other code: `--baseline DIR` (a checkout of the code before) serves the same database in
turn with this checkout, `--rounds` times each, alternating (these machines' speed drifts within minutes: a
ratio is only worth what one run gives). `--keep` leaves the PostgreSQL database, `--reuse` serves it again
without loading (the estate is generated from the same seed, so the ids asked for are the same).
`--endpoints detail` times the single-CI read only.
Needs wrk (apt-get install wrk) and, for PostgreSQL, KARTA_BENCH_POSTGRES_URL (default: the local server).
"""

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.core import migrations
from app.core.db import make_engine, write_transaction
from app.models import CIIdentifier, ConfigurationItem, Relationship
from app.services import tokens
from app.services.history import UnitOfWork
from app.services.identifiers import identifier_values
from app.services.identity import identifying_facts
from app.services.registry import load_registry
from bench.common import PG_URL, cpu_seconds, drop_database, fresh_database, served, settle, vacuum
from tests.test_load_balancer import children

RESULTS = Path(__file__).resolve().parent / "results"

# Share of the estate per class, roughly what a mid-size company's CMDB holds.
MIX = [("server", 0.15), ("virtual_machine", 0.25), ("ip_address", 0.25), ("application", 0.15),
       ("database", 0.05), ("web_server", 0.05), ("service", 0.04), ("cluster", 0.02), ("network_device", 0.04)]
ENVIRONMENTS = ["prod"] * 5 + ["stage"] * 2 + ["dev"] * 3
OWNERS = [f"team-{name}" for name in ("web", "payments", "data", "platform", "network", "identity", "search")]
OSES = [("debian", "12"), ("ubuntu", "22.04"), ("rhel", "9.3"), ("windows", "2022")]


def generate_estate(count: int, rng: random.Random):
    now = datetime.now(UTC)
    cis, by_class = [], {}
    for ci_class, share in MIX:
        for n in range(int(count * share)):
            ci_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            env = rng.choice(ENVIRONMENTS)
            attributes: dict = {}
            name = f"{ci_class.replace('_', '-')}-{n:06d}"
            if ci_class in ("server", "virtual_machine", "network_device"):
                os_name, os_version = rng.choice(OSES)
                attributes = {
                    "serial_number": f"{rng.choice(['CZ', 'SGH', 'J30'])}{rng.getrandbits(40):012X}",
                    "machine_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                    "fqdn": f"{name}.{env}.example.com",
                    "mac_address": [":".join(f"{rng.getrandbits(8):02x}" for _ in range(6)).replace(
                        "", "", 0)],
                    "os_name": os_name, "os_version": os_version,
                    "cpu_count": rng.choice([2, 4, 8, 16, 32]), "memory_mb": rng.choice([4096, 8192, 32768, 131072]),
                }
                attributes["mac_address"] = ["52:54:00:" + ":".join(f"{rng.getrandbits(8):02x}" for _ in range(3))]
            elif ci_class == "ip_address":
                attributes = {"address": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}
                name = attributes["address"]
            elif ci_class in ("application", "database", "web_server"):
                attributes = {"instance_key": f"{uuid.UUID(int=rng.getrandbits(128)).hex}/{ci_class}/{n}",
                              "port": rng.choice([80, 443, 5432, 3306, 8080, 6379])}
            elif ci_class == "cluster":
                attributes = {"cluster_id": f"cl-{n:05d}", "min_members": rng.choice([1, 2])}
            elif ci_class == "service":
                attributes = {"service_id": f"SVC{n:05d}", "sla": rng.choice(["gold", "silver", "bronze"])}
            tags = rng.sample(["pci", "gdpr", "web", "batch", "edge", "legacy"], k=rng.randint(0, 2))
            row = {"id": ci_id, "ci_class": ci_class, "name": name, "status": rng.choice(["active"] * 9 + ["maintenance"]),
                   "environment": env, "criticality": rng.randint(1, 4), "owner": rng.choice(OWNERS), "tags": tags,
                   "attributes": attributes, "first_seen": now, "last_seen": now, "created_at": now,
                   "updated_at": now, "version": 1}
            cis.append(row)
            by_class.setdefault(ci_class, []).append(ci_id)
    hosts = by_class["server"] + by_class["virtual_machine"]
    apps = by_class["application"] + by_class["database"] + by_class["web_server"]
    relationships, seen = [], set()

    def relate(source, target, rel_type):
        if source != target and (source, target, rel_type) not in seen:
            seen.add((source, target, rel_type))
            relationships.append({"id": uuid.UUID(int=rng.getrandbits(128), version=4), "source_id": source,
                                  "target_id": target, "type": rel_type, "attributes": {}, "first_seen": now,
                                  "last_seen": now, "created_at": now})

    for app_id in apps:
        relate(app_id, rng.choice(hosts), "runs_on")
        relate(app_id, rng.choice(apps), "depends_on")
    for service in by_class["service"]:
        for _ in range(rng.randint(2, 6)):
            relate(service, rng.choice(apps), "depends_on")
    for host in hosts:
        relate(host, rng.choice(by_class["network_device"]), "connects_to")
        if rng.random() < 0.3:
            relate(host, rng.choice(by_class["cluster"]), "member_of")
    return cis, relationships


def load(database_url: str, cis, relationships) -> None:
    engine = make_engine(database_url)
    migrations.upgrade(engine)
    with write_transaction(engine) as conn:
        registry = load_registry(conn)
        identifiers = {}
        for row in cis:
            cls = registry.classes[row["ci_class"]]
            for key, value in identifier_values(cls.effective_rules, identifying_facts(row["name"], row["environment"], row["attributes"])):
                identifiers.setdefault((cls.family, key, value), row["id"])
        for table, rows in ((ConfigurationItem.__table__, cis), (Relationship.__table__, relationships),
                            (CIIdentifier.__table__, [{"family": f, "key": k, "value": v, "ci_id": i}
                                                      for (f, k, v), i in identifiers.items()])):
            for start in range(0, len(rows), 5000):
                conn.execute(insert(table), rows[start:start + 5000])
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
    engine.dispose()


def make_token(database_url: str) -> str:
    engine = make_engine(database_url)
    with UnitOfWork(engine, "bench") as uow:
        secret = tokens.create_token(uow, f"bench-{uuid.uuid4().hex[:6]}", ["read"])["secret"]
    engine.dispose()
    return secret


LUA_BY_ID = """
local ids = {}
for line in io.lines(os.getenv("KARTA_IDS")) do ids[#ids + 1] = line end
local auth = {["Authorization"] = "Bearer " .. os.getenv("KARTA_TOKEN")}
request = function()
  return wrk.format("GET", "/api/v1/cis/" .. ids[math.random(#ids)], auth)
end
"""
LUA_LIST = """
local queries = {
  "/api/v1/cis?class=server&environment=prod&limit=50",
  "/api/v1/cis?class=application&status=active&limit=50",
  "/api/v1/cis?attr.os_name=debian&limit=50",
  "/api/v1/cis?tag=pci&environment=stage&limit=50",
  "/api/v1/cis?owner=team-web&class=database&limit=50",
}
local auth = {["Authorization"] = "Bearer " .. os.getenv("KARTA_TOKEN")}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", queries[(n % #queries) + 1], auth)
end
"""


def require_estate(url: str, last: dict, count: int) -> None:
    """Exit unless the database holds the estate this run generated (a --reuse of a database loaded with
    another --cis would time 404s): its last CI, by id and name (ids come from one seeded sequence, so
    another estate may hold the same id under another name)."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            table = ConfigurationItem.__table__
            found = conn.execute(select(func.count()).select_from(table).where(
                table.c.id == last["id"], table.c.name == last["name"])).scalar()
    except SQLAlchemyError as exc:
        sys.exit(f"{url} cannot be read ({type(exc).__name__}): load it (without --reuse) first")
    finally:
        engine.dispose()
    if not found:
        sys.exit(f"{url} does not hold the estate of --cis {count}: load it (without --reuse) first")


def wait_for_graph(base: str, secret: str, ci_id, seconds: float = 900) -> None:
    """Until the workers hold their impact graphs (built at start-up in the background): a read measured
    while one is being built measures the build. An impact question waits for its worker's graph; it is
    asked on 8 new connections at once, three times; whichever worker accepts a connection answers it,
    so every worker is asked unless one accepted all 24."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    def ask(_):
        answer = httpx.post(base + "/api/v1/impact", json={"ci_ids": [str(ci_id)], "max_depth": 1},
                            headers={"Authorization": f"Bearer {secret}"}, timeout=seconds)
        answer.raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            list(pool.map(ask, range(8)))


def _backends(database: str) -> list[int]:
    """The PostgreSQL processes serving `database` (their titles name it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres: ") and f" {database} " in title:
                found.append(int(entry.name))
    return found


def cpu_by_process(server_pid: int, database: str) -> dict[tuple[str, int], float]:
    """CPU seconds used so far by each of the server's processes (the supervisor, its workers and their
    helpers) and each PostgreSQL backend serving `database` (none when `database` is empty: SQLite),
    keyed by (side, pid)."""
    workers = children(server_pid)
    sides = {"server": [server_pid, *workers, *(helper for pid in workers for helper in children(pid))],
             "database": _backends(database) if database else []}
    found = {}
    for side, pids in sides.items():
        for pid in pids:
            try:
                found[side, pid] = cpu_seconds(pid)
            except OSError:
                pass
    return found


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """What each side used between two readings, process by process: a process that started meanwhile
    counts from zero; one that ended meanwhile is not counted (its last figure is gone with it)."""
    used = {"server": 0.0, "database": 0.0}
    for (side, pid), seconds in after.items():
        used[side] += seconds - before.get((side, pid), 0.0)
    return used


def run_wrk(base: str, script: str, env: dict, seconds: int, connections: int, database: str = "") -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    server_pid = getattr(base, "process", None)
    before = cpu_by_process(server_pid.pid, database) if server_pid else None
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", handle.name, base],
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=seconds + 60,
                         check=False).stdout
    after = cpu_by_process(server_pid.pid, database) if server_pid else None
    os.unlink(handle.name)

    def ms(label):
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu = ({side: seconds / max(requests, 1) * 1e6 for side, seconds in cpu_used(before, after).items()}
           if server_pid else {"server": float("nan"), "database": float("nan")})
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50"), "p99": ms("99"),
            "server_us": cpu["server"], "database_us": cpu["database"],
            "non2xx": int(errors.group(1)) if errors else 0, "socket_errors": socket_errors.group(1) if socket_errors else "",
            "raw": out}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cis", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--endpoints", default="detail,list", help="detail, list, or detail,list")
    parser.add_argument("--baseline", type=Path, help="a checkout of the code before, served in turn with this one")
    parser.add_argument("--baseline-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the baseline's server only (with --baseline: compare settings)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for this checkout's server only")
    parser.add_argument("--rounds", type=int, default=1, help="timed runs per endpoint and checkout, alternating")
    parser.add_argument("--database", default="karta_bench_api", help="the PostgreSQL database (or SQLite file) name")
    parser.add_argument("--keep", action="store_true", help="leave the database (PostgreSQL, or the SQLite file in the "
                        "temporary directory's parent) for --reuse; without it (and without --reuse) a PostgreSQL database is "
                        "dropped at the end")
    parser.add_argument("--reuse", action="store_true", help="serve the database a --keep run left, without loading")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    rng = random.Random(20261122)
    started = time.perf_counter()
    cis, relationships = generate_estate(args.cis, rng)
    print(f"generated {len(cis)} CIs, {len(relationships)} relationships in {time.perf_counter() - started:.1f}s",
          file=sys.stderr)
    with tempfile.NamedTemporaryFile("w", suffix=".ids", delete=False) as ids_file:
        ids_file.write("\n".join(str(row["id"]) for row in rng.sample(cis, min(20_000, len(cis)))) + "\n")
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="karta-bench-"))
    scripts = {"detail": ("GET /api/v1/cis/{id}", LUA_BY_ID), "list": ("GET /api/v1/cis?filters (5 kinds)", LUA_LIST)}
    endpoints = [scripts[name] for name in args.endpoints.split(",")]
    baseline_env = dict(pair.split("=", 1) for pair in args.baseline_env)
    checkouts = [("after", REPO, dict(pair.split("=", 1) for pair in args.env))] + ([("before", args.baseline.resolve(), baseline_env)] if args.baseline else [])
    for backend in args.backends.split(","):
        if args.reuse:
            url = (f"sqlite:///{workdir.parent / (args.database + '.db')}" if backend == "sqlite"
                   else make_url(PG_URL).set(database=args.database).render_as_string(hide_password=False))
        else:
            url = fresh_database(backend, args.database, workdir.parent if args.keep else workdir)
            started = time.perf_counter()
            load(url, cis, relationships)
            if backend == "postgresql":
                vacuum(url)  # what autovacuum would do to the new rows meanwhile, done before any timing
            print(f"{backend}: loaded in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        try:
            require_estate(url, cis[-1], args.cis)
            secret = make_token(url)
            for round_no in range(args.rounds):
                # Alternate which checkout goes first, so neither always meets the machine as the other left it.
                for name, checkout, extra_env in (checkouts if round_no % 2 == 0 else checkouts[::-1]):
                    settle(url)  # the previous server's writes flushed before this one is timed
                    with served({**os.environ, "KARTA_DATABASE_URL": url, **extra_env}, checkout, workers=args.workers,
                                startup_seconds=600) as base:
                        env = {"KARTA_TOKEN": secret, "KARTA_IDS": ids_file.name}
                        # Warm-up: caches, connection pools, and each worker's start-up work (SQLite statistics,
                        # the impact graph load), which would otherwise compete with the first measurement.
                        wait_for_graph(base, secret, cis[0]["id"])
                        run_wrk(base, LUA_BY_ID, env, 10, args.connections)
                        for label, script in endpoints:
                            result = run_wrk(base, script, env, args.seconds, args.connections,
                                             make_url(url).database if backend == "postgresql" else "")
                            rows.append((backend, name, round_no, label, result))
                            print(f"{backend} {name} round {round_no + 1} {label}: {result['rps']:.0f} req/s p50 "
                                  f"{result['p50']:.1f} ms p99 {result['p99']:.1f} ms CPU/request server {result['server_us']:.0f} us "
                                  f"database {result['database_us']:.0f} us non-2xx {result['non2xx']} "
                                  f"{result['socket_errors']} (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
        finally:
            if backend == "postgresql" and not (args.keep or args.reuse):
                drop_database(args.database)  # several GB at 1,000,000 CIs: not left behind by a failed run
    shutil.rmtree(workdir, ignore_errors=True)
    os.unlink(ids_file.name)
    lines = [(f"CI read API, {len(cis):,} CIs and {len(relationships):,} relationships, uvicorn {args.workers} workers, "
              f"wrk 2 threads x {args.connections} connections x {args.seconds} s, on {os.cpu_count()} cores (wrk shares them)"),
             "", "| backend | code | round | endpoint | req/s | p50 ms | p99 ms | CPU per request: server / database µs | non-2xx |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for backend, name, round_no, label, result in rows:
        lines.append(f"| {backend} | {name} | {round_no + 1} | `{label}` | {result['rps']:.0f} | {result['p50']:.1f} | "
                     f"{result['p99']:.1f} | {result['server_us']:.0f} / {result['database_us']:.0f} | {result['non2xx']} |")
    if args.baseline:
        lines += ["", "| backend | endpoint | req/s after / before (median of rounds) | p99 after / before (median) | "
                  "server CPU per request after / before (median) |", "|---|---|---:|---:|---:|"]
        for backend in args.backends.split(","):
            for label, _ in endpoints:
                pairs = [[result for b, n, r, lab, result in rows if (b, n, r, lab) == (backend, name, round_no, label)][0]
                         for round_no in range(args.rounds) for name in ("after", "before")]
                rps = sorted(pairs[i]["rps"] / pairs[i + 1]["rps"] for i in range(0, len(pairs), 2))
                p99 = sorted(pairs[i]["p99"] / pairs[i + 1]["p99"] for i in range(0, len(pairs), 2))
                cpu = sorted(pairs[i]["server_us"] / pairs[i + 1]["server_us"] for i in range(0, len(pairs), 2))
                lines.append(f"| {backend} | `{label}` | {statistics.median(rps):.3f} ({', '.join(f'{x:.3f}' for x in rps)}) | "
                             f"{statistics.median(p99):.3f} ({', '.join(f'{x:.3f}' for x in p99)}) | "
                             f"{statistics.median(cpu):.3f} ({', '.join(f'{x:.3f}' for x in cpu)}) |")
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
