"""Benchmark: the CI read API under concurrent load, uvicorn with 2 workers, 100,000 CIs loaded.

Loads a realistic estate straight into a fresh database (servers, VMs, IPs, applications, databases,
services, clusters; their identifiers; ~150,000 relationships), starts `karta serve --workers 2` and
drives it with wrk (C, so the load generator takes little of the two cores) for:
  - GET /api/v1/cis/{id} with random ids (the detail, relationships included),
  - GET /api/v1/cis with filters (class + environment, status, attribute, tag), 50 per page.
On SQLite and on PostgreSQL, side by side in one run. Prints a Markdown table, writes bench/results/api.md.

    python bench/api_bench.py [--cis 100000] [--seconds 20] [--connections 32] [--backends sqlite,postgresql]
Needs wrk (apt-get install wrk) and, for PostgreSQL, KARTA_BENCH_POSTGRES_URL (default: the local server).
"""

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, text

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
from bench.common import fresh_database, served

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


def run_wrk(base: str, script: str, env: dict, seconds: int, connections: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", handle.name, base],
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=seconds + 60,
                         check=False).stdout
    os.unlink(handle.name)

    def ms(label):
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": ms("50"), "p99": ms("99"),
            "non2xx": int(errors.group(1)) if errors else 0, "socket_errors": socket_errors.group(1) if socket_errors else "",
            "raw": out}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cis", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backends", default="sqlite,postgresql")
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
    for backend in args.backends.split(","):
        url = fresh_database(backend, "karta_bench_api", workdir)
        started = time.perf_counter()
        load(url, cis, relationships)
        print(f"{backend}: loaded in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        secret = make_token(url)
        with served({**os.environ, "KARTA_DATABASE_URL": url}, REPO, workers=args.workers) as base:
            env = {"KARTA_TOKEN": secret, "KARTA_IDS": ids_file.name}
            # Warm-up: caches, connection pools, and each worker's start-up work (SQLite statistics, the
            # impact graph load), which would otherwise compete with the first measurement.
            run_wrk(base, LUA_BY_ID, env, 10, args.connections)
            for label, script in (("GET /api/v1/cis/{id}", LUA_BY_ID), ("GET /api/v1/cis?filters (5 kinds)", LUA_LIST)):
                result = run_wrk(base, script, env, args.seconds, args.connections)
                rows.append((backend, label, result))
                print(f"{backend} {label}: {result['rps']:.0f} req/s p50 {result['p50']:.1f} ms p99 {result['p99']:.1f} ms "
                      f"non-2xx {result['non2xx']} {result['socket_errors']}", file=sys.stderr)
    shutil.rmtree(workdir, ignore_errors=True)
    os.unlink(ids_file.name)
    lines = [(f"CI read API, {len(cis):,} CIs and {len(relationships):,} relationships, uvicorn {args.workers} workers, "
              f"wrk 2 threads x {args.connections} connections x {args.seconds} s, on {os.cpu_count()} cores (wrk shares them)"),
             "", "| backend | endpoint | req/s | p50 ms | p99 ms | non-2xx |", "|---|---|---:|---:|---:|---:|"]
    for backend, label, result in rows:
        lines.append(f"| {backend} | `{label}` | {result['rps']:.0f} | {result['p50']:.1f} | {result['p99']:.1f} | {result['non2xx']} |")
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
