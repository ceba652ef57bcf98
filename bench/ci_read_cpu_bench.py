"""Benchmark: the CPU one single-CI read costs a worker, without sockets or a load generator.

`bench/api_bench.py` measures the read end to end (wrk, uvicorn, two workers on the machine's cores);
this measures what the application itself spends per `GET /api/v1/cis/{id}`, where the machine's noise
and the load generator's share of the cores do not reach:
  - the whole ASGI application (middleware, routing, authorization, the read in the thread pool, the
    answer), called in process by 16 concurrent tasks on uvloop: process CPU per request;
  - the detail statement alone, through SQLAlchemy and through psycopg (app.core.db.driver_first):
    client CPU per execution.
On the PostgreSQL database `api_bench.py --keep` leaves (100,000 CIs by default). Side by side with another
checkout: `--baseline DIR` runs the same measures there (in a process of its own), alternating.

    python bench/api_bench.py --backends postgresql --endpoints detail --keep --seconds 5   # loads, once
    python bench/ci_read_cpu_bench.py [--baseline ../before] [--rounds 3] [--requests 4000]
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONCURRENCY = 16


def measure(database_url: str, requests: int) -> dict:
    """In this process, from the checkout it was started in: CPU µs per request and per statement."""
    sys.path.insert(0, os.getcwd())
    os.environ["KARTA_DATABASE_URL"] = database_url
    os.environ["KARTA_LOAD_GRAPH_AT_STARTUP"] = "false"
    import uvloop
    from sqlalchemy import text

    from app.core.db import make_engine, read_transaction
    from app.main import create_app
    from app.services import cis
    from bench.api_bench import make_token

    engine = make_engine(database_url)
    with engine.connect() as conn:
        ids = [str(row[0]) for row in conn.execute(text("SELECT id FROM ci ORDER BY random() LIMIT 5000"))]
    secret = make_token(database_url)
    app = create_app()
    state: dict = {}

    async def one(path: str) -> int:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {secret}".encode())],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": state}
        status = 0

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    async def run() -> float:
        queue: asyncio.Queue = asyncio.Queue()
        sent: list = []

        async def lifespan_receive():
            return await queue.get()

        async def lifespan_send(message):
            sent.append(message)

        await queue.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": state},
                                           lifespan_receive, lifespan_send))
        for _ in range(600):
            if sent:
                break
            await asyncio.sleep(0.05)

        async def worker(count: int) -> None:
            for _ in range(count):
                status = await one("/api/v1/cis/" + random.choice(ids))
                if status != 200:
                    raise RuntimeError(f"a read answered {status}")

        await asyncio.gather(*(worker(200) for _ in range(CONCURRENCY)))  # warm up
        started = time.process_time()
        await asyncio.gather(*(worker(requests // CONCURRENCY) for _ in range(CONCURRENCY)))
        used = time.process_time() - started
        await queue.put({"type": "lifespan.shutdown"})
        await lifespan
        return used / (requests // CONCURRENCY * CONCURRENCY) * 1e6

    request_us = uvloop.run(run())
    statement = {}
    params = {"rel_limit": cis.DETAIL_RELATIONSHIP_LIMIT + 1, "inline_max": cis.DETAIL_INLINE_ATTRIBUTES_MAX}
    with read_transaction(engine) as conn:
        runs = {"sqlalchemy": lambda ci_id: conn.execute(cis._DETAIL, {**params, "ci_id": ci_id}).mappings().first()}
        try:
            from app.core.db import driver_first
            runs["psycopg"] = lambda ci_id: driver_first(conn, cis._DETAIL, {**params, "ci_id": ci_id})
        except ImportError:  # a checkout from before driver_first
            pass
        sample = [uuid.UUID(ci_id) for ci_id in ids[:1000]]
        for name, run_one in runs.items():
            for ci_id in sample[:50]:
                run_one(ci_id)
            started = time.process_time()
            for ci_id in sample:
                run_one(ci_id)
            statement[name] = (time.process_time() - started) / len(sample) * 1e6
    engine.dispose()
    return {"request_us": request_us, "statement_us": statement}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default="karta_bench_api", help="the database api_bench.py --keep left")
    parser.add_argument("--baseline", type=Path, help="a checkout of the code before, measured in turn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one side, on this database URL, in its checkout
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.requests)))
        return
    sys.path.insert(0, str(REPO))
    from sqlalchemy.engine import make_url

    from bench.common import PG_URL

    database_url = make_url(PG_URL).set(database=args.database).render_as_string(hide_password=False)
    sides = [("after", REPO)] + ([("before", args.baseline.resolve())] if args.baseline else [])
    results: dict[str, list[dict]] = {name: [] for name, _ in sides}
    for round_ in range(args.rounds):
        for name, checkout in (sides if round_ % 2 == 0 else sides[::-1]):
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", database_url,
                                   "--requests", str(args.requests)], cwd=checkout,
                                  env={**os.environ, "PYTHONPATH": str(checkout)}, capture_output=True, text=True,
                                  timeout=900, check=False)
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
            results[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1} {name}: {results[name][-1]}", flush=True)
    lines = ["| code | CPU per request, µs (rounds) | median | detail statement through SQLAlchemy, µs | "
             "through psycopg alone, µs |", "|---|---|---:|---:|---:|"]
    for name, rows in results.items():
        per_request = [row["request_us"] for row in rows]
        through = {kind: statistics.median(row["statement_us"][kind] for row in rows)
                   for kind in ("sqlalchemy", "psycopg") if all(kind in row["statement_us"] for row in rows)}
        lines.append(f"| {name} | {', '.join(f'{value:.0f}' for value in per_request)} | "
                     f"{statistics.median(per_request):.0f} | {through.get('sqlalchemy', float('nan')):.0f} | "
                     f"{through.get('psycopg', float('nan')):.0f} |")
    table = "\n".join(lines)
    print(table)
    results_dir = REPO / "bench" / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "ci_read_cpu.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
