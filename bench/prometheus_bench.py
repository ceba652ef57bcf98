"""Benchmark: the http_sd targets answer and a /metrics scrape on a big estate.

Loads bench/api_bench.py's estate (servers and VMs with fqdns, applications, services depending on
them, clusters; 100,000 CIs by default: 40,000 hosts, 4,000 services) into a fresh database, then
times, in one process through the ASGI app (no network):
  - GET /api/v1/integrations/prometheus/targets (every host, with the services each one serves),
  - GET /metrics with the database's counts read (cache expired) and from the cache.
On SQLite and PostgreSQL. Prints a Markdown table.

    python bench/prometheus_bench.py [--cis 100000] [--repeat 5] [--backends sqlite,postgresql]
"""

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi.testclient import TestClient

from app.core import metrics
from app.core.config import Settings
from app.main import create_app
from bench.api_bench import generate_estate, load, make_token
from bench.common import fresh_database

TARGETS = "/api/v1/integrations/prometheus/targets"


def timed(client: TestClient, url: str, headers: dict, repeat: int) -> tuple[list[float], object]:
    times, response = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:500]
    return times, response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cis", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    cis, relationships = generate_estate(args.cis, random.Random(7))
    workdir = Path(tempfile.mkdtemp(prefix="karta-prometheus-bench-"))
    print(f"{len(cis):,} CIs, {len(relationships):,} relationships\n")
    print("| backend | targets: groups, bytes | targets p50 / max (ms) | /metrics, counts read (ms) | /metrics, cached (ms) |")
    print("| --- | --- | --- | --- | --- |")
    for backend in args.backends.split(","):
        url = fresh_database(backend, "prometheus_bench", workdir)
        load(url, cis, relationships)
        headers = {"Authorization": f"Bearer {make_token(url)}"}
        app = create_app(Settings(database_url=url, load_graph_at_startup=False, metrics_cache_seconds=0))
        with TestClient(app) as client:
            client.post("/api/v1/impact", json={"ci_ids": [str(cis[0]["id"])]}, headers=headers)  # builds the graph
            target_times, response = timed(client, TARGETS, headers, args.repeat)
            groups, size = len(response.json()), len(response.content)
            read_times, _ = timed(client, "/metrics", headers, args.repeat)
            app.state.metrics_registry = metrics.registry_for(app.state.engine, app.state.live_graph, 3600)
            client.get("/metrics", headers=headers)
            cached_times, _ = timed(client, "/metrics", headers, args.repeat)
        app.state.engine.dispose()
        print(f"| {backend} | {groups:,}, {size:,} | {1000 * statistics.median(target_times):.0f} / "
              f"{1000 * max(target_times):.0f} | {1000 * statistics.median(read_times):.1f} | "
              f"{1000 * statistics.median(cached_times):.1f} |")


if __name__ == "__main__":
    main()
