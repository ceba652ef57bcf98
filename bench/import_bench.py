"""Benchmark: spreadsheet import and export end to end through a real `karta serve` (one worker).

A CSV of N servers (default 100,000; fqdn and serial number identifiers, five attributes, owner,
environment, criticality, tags) on SQLite and PostgreSQL:
  1. dry run into the empty database (every row `create`, nothing written),
  2. import (every row created, one transaction),
  3. export (`GET /api/v1/cis?format=csv`, streamed),
  4. the export imported back as a dry run (every row must be `unchanged`),
  5. `karta import` (the CLI) of the export, applied (every row unchanged),
  6. the file with 5% of the rows changed (owner and an attribute), applied.
Each is timed from the first byte sent to the last byte of the answer; rows/s = N / seconds. The
target is >= 5,000 rows/s for pass 2 on PostgreSQL. Prints a Markdown table.

    python bench/import_bench.py [--rows 100000] [--backends sqlite,postgresql]
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fresh_database, karta_command, served, settle  # noqa: E402

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
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for backend in args.backends.split(","):
            results += run(backend, args.rows, workdir)
    print("\n| backend | pass | seconds | rows/s | outcome |\n|---|---|---:|---:|---|")
    for backend, label, seconds, outcome in results:
        print(f"| {backend} | {label} | {seconds:.1f} | {args.rows / seconds:,.0f} | {outcome} |")


def run(backend: str, rows: int, workdir: Path) -> list[tuple]:
    url = fresh_database(backend, "karta_import_bench", workdir)
    env = {**os.environ, "KARTA_DATABASE_URL": url, "KARTA_MAX_IMPORT_BODY_BYTES": str(512 * 1024 * 1024),
           "KARTA_BODY_TIMEOUT_SECONDS": "600", "KARTA_LOAD_GRAPH_AT_STARTUP": "false"}

    karta = karta_command(env, REPO)
    karta("db", "upgrade")
    secret = karta("token", "create", "--name", "bench", "--scope", "write").strip().splitlines()[-1]
    first, changed = sheet(rows, random.Random(13)), sheet(rows, random.Random(13), changed=0.05)
    results = []
    with served(env, REPO) as (base, _):
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=1800) as http:
            def post(body: bytes, query: str) -> tuple[float, str]:
                settle(url)
                started = time.perf_counter()
                response = http.post(f"/api/v1/import?class=server{query}", content=body, headers={"Content-Type": "text/csv"})
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                return elapsed, str(response.json()["counts"])

            for label, body, query in (("dry run, empty database", first, "&dry_run=true"), ("import", first, "")):
                seconds, outcome = post(body, query)
                results.append((backend, label, seconds, outcome))
                print(f"  {backend} {label}: {rows / seconds:,.0f} rows/s ({seconds:.1f} s) {outcome}", file=sys.stderr)
            settle(url)
            started = time.perf_counter()
            exported = http.get("/api/v1/cis?format=csv").content
            seconds = time.perf_counter() - started
            results.append((backend, "export (format=csv)", seconds, f"{len(exported) / 1e6:.1f} MB"))
            seconds, outcome = post(exported, "&dry_run=true")
            results.append((backend, "export imported back, dry run", seconds, outcome))
            path = workdir / "exported.csv"
            path.write_bytes(exported)
            settle(url)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "app.cli", "import", str(path), "--class", "server"], cwd=REPO,
                                  env={**env, "KARTA_URL": base, "KARTA_TOKEN": secret}, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            results.append((backend, "karta import (CLI) of the export", seconds,
                            done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]))
            seconds, outcome = post(changed, "")
            results.append((backend, "5% of rows changed", seconds, outcome))
    return results


if __name__ == "__main__":
    main()
