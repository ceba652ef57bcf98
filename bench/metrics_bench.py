"""Benchmark: what the request metrics (app.core.metrics.RequestMetrics) cost a cheap endpoint.

The same app, served by uvicorn as `karta serve` serves it (one worker, Karta's HTTP protocol,
prometheus-client's multiprocess mode in a fresh directory), with and without the metrics
middleware, in rounds of one run (each round in the other order than the last) so that both see the same machine; driven by wrk on
GET /healthz (no token, no database: the middleware's share is the largest there) and GET
/api/v1/classes/server (a token checked from cache, the registry from cache). Then, because a shared
machine's load moves requests/s by more than the difference sought, the middleware alone in this
process: CPU time per request around a bare ASGI answer, with and without it. Prints Markdown tables.

    python bench/metrics_bench.py [--seconds 10] [--rounds 3] [--connections 16]
Needs wrk (apt-get install wrk).
"""

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# Before prometheus-client is imported: this process measures the middleware as `karta serve` runs it.
_OWN_MULTIPROC_DIR = None if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else tempfile.mkdtemp(prefix="karta-bench-mp-")
if _OWN_MULTIPROC_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _OWN_MULTIPROC_DIR

from app.core import migrations
from app.core.db import make_engine
from app.core.metrics import RequestMetrics
from app.main import create_app
from app.services import tokens
from app.services.history import UnitOfWork
from bench.api_bench import run_wrk
from bench.common import fresh_database
from tests.server import free_port, stop

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = {"/healthz": False, "/api/v1/classes/server": True}  # path -> needs the token


def with_metrics():
    return create_app()


def without_metrics():
    app = create_app()
    app.user_middleware = [m for m in app.user_middleware if m.cls is not RequestMetrics]
    return app


def serve(factory: str, database_url: str, metrics_dir: str):
    port = free_port()
    env = {**os.environ, "KARTA_DATABASE_URL": database_url, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"bench.metrics_bench:{factory}", "--factory", "--port", str(port),
         "--workers", "1", "--no-access-log", "--log-level", "warning", "--http",
         "app.core.http_protocol:HeaderDeadlineProtocol"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/readyz", timeout=1, trust_env=False).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.1)
    stop(process)
    raise RuntimeError(f"{factory} did not start")


def lua(path: str, token: str | None) -> str:
    header = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    return header + f'request = function() return wrk.format("GET", "{path}") end\n'


class _Route:
    path_format = "/api/v1/cis/{ci_id}"


async def _bare(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _drive(app, count: int) -> float:
    scope = {"type": "http", "method": "GET", "path": "/api/v1/cis/x", "route": _Route()}

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    started = time.process_time()
    for _ in range(count):
        await app(dict(scope), receive, send)
    return (time.process_time() - started) / count * 1e6


def middleware_cpu(count: int = 200_000) -> tuple[float, float]:
    """CPU microseconds per request without and with the middleware (the best of three)."""
    without = min(asyncio.run(_drive(_bare, count)) for _ in range(3))
    with_it = min(asyncio.run(_drive(RequestMetrics(_bare), count)) for _ in range(3))
    return without, with_it


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="karta-metrics-bench-"))
    url = fresh_database("sqlite", "metrics_bench", workdir)
    engine = make_engine(url)
    migrations.upgrade(engine)
    with UnitOfWork(engine, "bench") as uow:
        token = tokens.create_token(uow, "bench", ["read"])["secret"]
    engine.dispose()
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for round_number in range(args.rounds):
            # Which goes first alternates: the machine's load drifts within a round too.
            order = ("without_metrics", "with_metrics")
            order = order if round_number % 2 == 0 else order[::-1]
            for factory in order:
                metrics_dir = tempfile.mkdtemp(dir=workdir)
                process, base = serve(factory, url, metrics_dir)
                try:
                    for path, needs_token in ENDPOINTS.items():
                        run_wrk(base + path, lua(path, token if needs_token else None), {}, 2, args.connections)
                        result = run_wrk(base + path, lua(path, token if needs_token else None), {}, args.seconds,
                                         args.connections)
                        assert result["non2xx"] == 0 and not result["socket_errors"], result["raw"]
                        results.setdefault((path, factory), []).append(result)
                finally:
                    stop(process)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("| endpoint | without metrics req/s | with metrics req/s | change | p99 without / with (ms) |\n"
          "| --- | --- | --- | --- | --- |")
    for path in ENDPOINTS:
        before, after = results[(path, "without_metrics")], results[(path, "with_metrics")]
        rps0 = statistics.median(r["rps"] for r in before)
        rps1 = statistics.median(r["rps"] for r in after)
        p99_0 = statistics.median(r["p99"] for r in before)
        p99_1 = statistics.median(r["p99"] for r in after)
        each0 = ", ".join(f"{r['rps']:,.0f}" for r in before)
        each1 = ", ".join(f"{r['rps']:,.0f}" for r in after)
        print(f"| GET {path} | {rps0:,.0f} ({each0}) | {rps1:,.0f} ({each1}) | {100 * (rps1 / rps0 - 1):+.1f}% | "
              f"{p99_0:.1f} / {p99_1:.1f} |")
    without, with_it = middleware_cpu()
    if _OWN_MULTIPROC_DIR:
        shutil.rmtree(_OWN_MULTIPROC_DIR, ignore_errors=True)
    print(f"\n| in one process | CPU per request |\n| --- | --- |\n| bare ASGI answer | {without:.1f} us |\n"
          f"| with RequestMetrics (multiprocess mode) | {with_it:.1f} us |\n"
          f"| the middleware's own cost | {with_it - without:.1f} us |")


if __name__ == "__main__":
    main()
