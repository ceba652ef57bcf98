"""Benchmark: what migration 0017's data step costs an existing estate (issue #15).

0017 forgets the PTR names older nmap agents sent as a host's fqdn, on the CIs only nmap ever wrote.
This builds, at migration 0016 and with bulk SQL, an estate of N such nmap-only CIs (an fqdn, an
address, nmap's provenance and sighting) beside N SSH hosts with an fqdn of their own (which 0017 must
read and leave alone), then times `upgrade 0017` and reports its wall time, CPU time and peak memory.
With --baseline, an earlier checkout's 0017 runs on an identical database in the same run, the two
taking turns, and the ratios are printed.

    python bench/dns_name_migration_bench.py [--cis 100000] [--backends sqlite,postgresql] [--baseline DIR]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(url: str, cis: int) -> None:
    from app.core import migrations
    from app.core.db import make_engine

    engine = make_engine(url)
    migrations.upgrade(engine, "0016")
    now = datetime.now(UTC)
    from app.models import metadata  # the tables as of this checkout; the columns written exist at 0016
    ci, ident, source = (metadata.tables[name] for name in ("ci", "ci_identifier", "ci_source"))
    stamp = {"source": "nmap", "at": now.isoformat()}
    ssh = {"source": "ssh", "at": now.isoformat()}
    with engine.begin() as conn:
        for start in range(0, cis, 5000):
            ci_rows, ident_rows, source_rows = [], [], []
            for n in range(start, min(cis, start + 5000)):
                for kind, owner in (("nmap", stamp), ("ssh", ssh)):
                    ci_id = uuid.uuid4()
                    address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" if kind == "nmap" else \
                        f"172.{16 + (n >> 16 & 15)}.{n >> 8 & 255}.{n & 255}"
                    fqdn = f"{kind}-{n}.example.com"
                    attributes = {"fqdn": fqdn, "ip_address": [address], "os_family": "Linux",
                                  "listening": [{"port": 22, "protocol": "tcp", "service": "ssh"}]}
                    if kind == "ssh":
                        attributes.update({"machine_id": uuid.uuid4().hex, "cpu_count": 4, "memory_mb": 8192,
                                           "kernel": "6.1.0-18-amd64", "os_name": "debian"})
                    ci_rows.append({"id": ci_id, "ci_class": "server", "name": fqdn, "status": "active",
                                    "tags": [], "attributes": attributes,
                                    "provenance": {key: owner for key in ["name", *attributes]},
                                    "created_at": now, "updated_at": now, "first_seen": now, "last_seen": now,
                                    "version": 1})
                    ident_rows += [{"family": "server", "key": "fqdn", "value": fqdn, "ci_id": ci_id},
                                   {"family": "server", "key": "ip_address", "value": address, "ci_id": ci_id}]
                    source_rows.append({"ci_id": ci_id, "source": kind, "scope_key": "s", "first_seen": now,
                                        "last_seen": now, "last_run_id": "r", "missed_runs": 0,
                                        "fingerprint": "f" * 32, "ci_version": 1})
            conn.execute(ci.insert(), ci_rows)
            conn.execute(ident.insert(), ident_rows)
            conn.execute(source.insert(), source_rows)
    engine.dispose()


def measure(url: str) -> dict:
    from app.core import migrations
    from app.core.db import make_engine

    engine = make_engine(url)
    started, cpu = time.perf_counter(), time.process_time()
    migrations.upgrade(engine, "0017")
    result = {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
              "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    import sqlalchemy as sa
    with engine.connect() as conn:
        result["fqdn_rows_left"] = conn.execute(
            sa.text("SELECT count(*) FROM ci_identifier WHERE key = 'fqdn'")).scalar()
    engine.dispose()
    return result


def run_in(checkout: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cis", type=int, default=100_000, help="nmap-only CIs (and as many SSH hosts)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--baseline", help="a checkout of an earlier version to run side by side")
    parser.add_argument("--worker", nargs=3, metavar=("ACTION", "URL", "CIS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        action, url, cis = args.worker
        if action == "build":
            build(url, int(cis))
        else:
            print(json.dumps(measure(url)))
        return
    sys.path.insert(0, str(ROOT))
    from bench.common import drop_database, fresh_database

    checkouts = [("this", ROOT)] + ([("baseline", Path(args.baseline).resolve())] if args.baseline else [])
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for backend in args.backends.split(","):
            for label, checkout in checkouts:
                name = f"karta_bench_0017_{label}"
                url = fresh_database(backend, name, Path(work))
                run_in(ROOT, "--worker", "build", url, str(args.cis))  # the same estate for both
                results[(backend, label)] = json.loads(run_in(checkout, "--worker", "measure", url, "0"))
                print(backend, label, results[(backend, label)], flush=True)
                if backend == "postgresql":
                    drop_database(name)
    print(f"\nMigration 0017 over {args.cis:,} nmap-only CIs and {args.cis:,} SSH hosts, each with an fqdn\n")
    print("| backend | code | seconds | CPU seconds | peak MiB | fqdn rows left |")
    print("|---|---|---:|---:|---:|---:|")
    for (backend, label), r in results.items():
        print(f"| {backend} | {label} | {r['seconds']:.1f} | {r['cpu']:.1f} | {r['peak_mib']:.0f} "
              f"| {r['fqdn_rows_left']:,} |")
    if args.baseline:
        for backend in args.backends.split(","):
            this, base = results[(backend, "this")], results[(backend, "baseline")]
            print(f"{backend}: this / baseline seconds {this['seconds'] / base['seconds']:.2f}x")


if __name__ == "__main__":
    main()
