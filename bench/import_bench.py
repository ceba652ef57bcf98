"""Benchmark: spreadsheet import and export end to end through a real `karta serve` (one worker).

A CSV of N servers (default 100,000; fqdn and serial number identifiers, five attributes, owner,
environment, criticality, tags) on SQLite and PostgreSQL:
  1. dry run into the empty database (every row `create`, nothing written),
  2. import (every row created, one transaction),
  3. export (`GET /api/v1/cis?format=csv`, streamed),
  4. the export imported back as a dry run (every row must be `unchanged`),
  5. `karta import` (the CLI) of the export, applied (every row unchanged),
  6. the file with 5% of the rows changed (owner and an attribute), applied;
and, as the reference measured on the same machine at the same time (these machines are shared and
their speed drifts), the same servers as discovery reports through POST /api/v1/ingest in batches of
5,000 into a database of their own ("ingest reference"). Each is timed from the first byte sent to the
last byte of the answer; rows/s = N / seconds. The target is >= 5,000 rows/s for pass 2 on PostgreSQL.
Prints a Markdown table.

    python bench/import_bench.py [--rows 100000] [--backends sqlite,postgresql]
                                 [--passes reference,dry,import,export,back,cli,changed]
"""

import argparse
import csv
import io
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fresh_database, karta_command, served, settle

REPO = Path(__file__).resolve().parent.parent
HEADER = ["class", "name", "status", "environment", "criticality", "owner", "tags", "identifier.fqdn",
          "identifier.serial_number", "attribute.cpu_count", "attribute.memory_mb", "attribute.os_name",
          "attribute.os_version", "attribute.rack"]


def sheet(rows: int, rng: random.Random, changed: float = 0.0) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for n in range(rows):
        touched = rng.random() < changed
        writer.writerow(["server", f"host-{n:06d}", "active", rng.choice(["prod", "test", "dev"]), rng.randint(1, 4),
                         "team-b" if touched else f"team-{n % 40}", "linux,dc1" if n % 3 else "linux",
                         f"host-{n:06d}.dc1.example.com", f"SN{n:08d}", rng.choice([2, 4, 8, 16]),
                         rng.choice([4096, 8192, 16384]), "debian", "12", f"R{n % 500}-{'x' if touched else 'y'}"])
    return out.getvalue().encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--passes", default="reference,dry,import,export,back,cli,changed")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for backend in args.backends.split(","):
            passes = set(args.passes.split(","))
            if passes & {"back", "cli"}:
                passes.add("export")  # they import the export
            results += run(backend, args.rows, workdir, passes)
    print("\n| backend | pass | seconds | rows/s | outcome |\n|---|---|---:|---:|---|")
    for backend, label, seconds, outcome in results:
        print(f"| {backend} | {label} | {seconds:.1f} | {args.rows / seconds:,.0f} | {outcome} |")


def reference(backend: str, rows: int, workdir: Path, body: bytes) -> tuple:
    """The same servers through ingest (batches of 5,000) into a database of their own."""
    url = fresh_database(backend, "karta_import_bench_ref", workdir)
    env = {**os.environ, "KARTA_DATABASE_URL": url, "KARTA_LOAD_GRAPH_AT_STARTUP": "false"}
    karta = karta_command(env, REPO)
    karta("db", "upgrade")
    secret = karta("token", "create", "--name", "bench", "--scope", "write").strip().splitlines()[-1]
    items = [{"ref": f"r{n}", "class": "server", "name": row["name"], "environment": row["environment"],
              "owner": row["owner"], "identifiers": {"fqdn": row["identifier.fqdn"], "serial_number": row["identifier.serial_number"]},
              "attributes": {"cpu_count": int(row["attribute.cpu_count"]), "memory_mb": int(row["attribute.memory_mb"]),
                             "os_name": row["attribute.os_name"], "os_version": row["attribute.os_version"],
                             "rack": row["attribute.rack"]}}
             for n, row in enumerate(csv.DictReader(io.StringIO(body.decode())))]
    bodies = [orjson.dumps({"source": "ssh", "run_id": "reference", "items": items[start:start + 5000]})
              for start in range(0, len(items), 5000)]
    with served(env, REPO) as base, httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"},
                                                      timeout=1800) as http:
        settle(url)
        started = time.perf_counter()
        created = 0
        for batch in bodies:
            response = http.post("/api/v1/ingest", content=batch, headers={"Content-Type": "application/json"})
            response.raise_for_status()
            created += response.json()["counts"]["created"]
        seconds = time.perf_counter() - started
    print(f"  {backend} ingest reference: {rows / seconds:,.0f} items/s ({seconds:.1f} s)", file=sys.stderr)
    return backend, "ingest reference (POST /api/v1/ingest, batches of 5,000)", seconds, f"created {created}"


def run(backend: str, rows: int, workdir: Path, passes: set[str]) -> list[tuple]:
    url = fresh_database(backend, "karta_import_bench", workdir)
    env = {**os.environ, "KARTA_DATABASE_URL": url, "KARTA_MAX_IMPORT_BODY_BYTES": str(512 * 1024 * 1024),
           "KARTA_BODY_TIMEOUT_SECONDS": "600", "KARTA_LOAD_GRAPH_AT_STARTUP": "false"}

    karta = karta_command(env, REPO)
    karta("db", "upgrade")
    secret = karta("token", "create", "--name", "bench", "--scope", "write").strip().splitlines()[-1]
    first, changed = sheet(rows, random.Random(13)), sheet(rows, random.Random(13), changed=0.05)
    results = [reference(backend, rows, workdir, first)] if "reference" in passes else []
    with served(env, REPO) as base, httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"},
                                                      timeout=1800) as http:
        def timed(name: str, label: str, work) -> None:
            if name in passes:
                settle(url)
                started = time.perf_counter()
                outcome = work()
                seconds = time.perf_counter() - started
                results.append((backend, label, seconds, outcome))
                print(f"  {backend} {label}: {rows / seconds:,.0f} rows/s ({seconds:.1f} s) {outcome}", file=sys.stderr)

        def post(body: bytes, query: str) -> str:
            response = http.post(f"/api/v1/import?class=server{query}", content=body, headers={"Content-Type": "text/csv"})
            response.raise_for_status()
            return str(response.json()["counts"])

        exported = {}

        def export() -> str:
            exported["csv"] = http.get("/api/v1/cis?format=csv").content
            (workdir / "exported.csv").write_bytes(exported["csv"])
            return f"{len(exported['csv']) / 1e6:.1f} MB"

        def cli() -> str:
            done = subprocess.run([sys.executable, "-m", "app.cli", "import", str(workdir / "exported.csv"), "--class", "server"],
                                  cwd=REPO, env={**env, "KARTA_URL": base, "KARTA_TOKEN": secret}, capture_output=True, text=True, check=False)
            return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]

        timed("dry", "dry run, empty database", lambda: post(first, "&dry_run=true"))
        timed("import", "import", lambda: post(first, ""))
        timed("export", "export (format=csv)", export)
        timed("back", "export imported back, dry run", lambda: post(exported["csv"], "&dry_run=true"))
        timed("cli", "karta import (CLI) of the export", cli)
        timed("changed", "5% of rows changed", lambda: post(changed, ""))
    return results


if __name__ == "__main__":
    main()
