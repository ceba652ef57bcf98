"""Benchmark: what keeping business-service maps current costs ingest, and how fast a map follows a change.

The estate of bench/ingest_bench.py (100,000 items, ~200,000 relationships, pushed over HTTP in
batches of 5,000 by one client to `karta serve` with one worker), twice, on two fresh databases of
one backend, served side by side by the same code:

  mapped    the estate's services (2,000 at 100,000 items) carry `entry_points`: `--services` of them
            (1,000 by default) name the fqdn of the host of one of their applications and its port,
            so the keeper maps them; the others carry none;
  unmapped  the same estate with no entry points: no service has a map.

Measured:
  1. the unchanged pass (the same batches again, as discovery's next run sends them), on the two
     databases taking turns, `--rounds` times each: mapped / unmapped time (target: within 5%);
  2. a batch that changes one mapped service's edges (a new database behind one of its entry
     applications, through POST /api/v1/ingest): from the ingest answer to the `service_map`
     change record that names the new member, polled every 2 ms (target: <= 100 ms), `--changes` times.

    python bench/service_map_bench.py [--items 100000] [--services 1000] [--backend postgresql]
                                      [--rounds 3] [--changes 20]
"""

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fresh_database, karta_command, served, settle
from bench.ingest_bench import batches_of, generate

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
MAP_WAIT_SECONDS = 600


def with_entry_points(items, services: int):
    """The estate with `services` services given one entry point each: the fqdn of the host one of
    their applications runs on, and that application's port."""
    by_ref = {item["ref"]: (item, rels) for item, rels in items}
    fqdn_of = {item["ref"]: item["identifiers"]["fqdn"] for item, _ in items if "fqdn" in item["identifiers"]
               and item["class"] in ("server", "virtual_machine")}
    out, given = [], 0
    for item, rels in items:
        if item["class"] == "service" and given < services:
            app = by_ref[rels[0]["target"]]
            host = next(r["target"] for r in app[1] if r["type"] == "runs_on")
            item = {**item, "attributes": {**item["attributes"],
                                           "entry_points": [f"{fqdn_of[host]}:{app[0]['attributes']['port']}"]}}
            given += 1
        out.append((item, rels))
    return out


def push(http: httpx.Client, items, run: str, id_of: dict) -> float:
    started = time.perf_counter()
    for body in batches_of(items, 5000, run, id_of):
        response = http.post("/api/v1/ingest", content=orjson.dumps(body), headers={"Content-Type": "application/json"})
        response.raise_for_status()
        id_of.update(response.json()["refs"])
    return time.perf_counter() - started


def wait_mapped(url: str, services: int) -> float:
    """Seconds until `services` maps exist and the keeper has written nothing for 5 s (its stored
    cursor lags what it has read by design, so the feed's quiet is what says it is done), bounded."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(url))
    started, last_head, quiet_since = time.perf_counter(), None, time.perf_counter()
    try:
        while time.perf_counter() - started < MAP_WAIT_SECONDS:
            with engine.connect() as conn:
                mapped = conn.execute(text("SELECT count(*) FROM service_map_state")).scalar()
                head = conn.execute(text("SELECT max(seq) FROM change_record")).scalar() or 0
            if head != last_head:
                last_head, quiet_since = head, time.perf_counter()
            if mapped >= services and time.perf_counter() - quiet_since >= 5:
                return quiet_since - started
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise SystemExit(f"the keeper did not map {services} services within {MAP_WAIT_SECONDS} s")


def map_follows(http: httpx.Client, id_of: dict, items, services: int, changes: int, rng: random.Random) -> list[float]:
    """Milliseconds from each one-service batch's answer to the map record naming its new member."""
    mapped = [(item, rels) for item, rels in items if item["class"] == "service" and "entry_points" in item["attributes"]]
    times = []
    for n in range(changes):
        item, rels = mapped[rng.randrange(len(mapped))]
        service_id = id_of[item["ref"]]
        entry_app = rels[0]["target"]  # the application whose host and port the entry point names
        ref = f"bench-db-{n}"
        body = {"source": "ssh", "run_id": f"follow-{n}", "scope": {"hosts": [f"follow-{n}"]},
                "items": [{"ref": ref, "class": "database", "name": ref,
                           "identifiers": {"instance_key": f"follow/{os.getpid()}/{n}"}, "attributes": {"port": 5432}}],
                "relationships": [{"source": id_of[entry_app], "target": ref, "type": "depends_on"}]}
        before = http.get("/api/v1/changes", params={"object_type": "service_map", "object_id": service_id}).json()
        seen = len(before["items"])
        response = http.post("/api/v1/ingest", json=body)
        response.raise_for_status()
        answered = time.perf_counter()
        new_id = response.json()["refs"][ref]
        while True:
            records = http.get("/api/v1/changes", params={"object_type": "service_map", "object_id": service_id}).json()
            if len(records["items"]) > seen and any(f"members.{new_id}" in r["diff"] for r in records["items"][seen:]):
                times.append((time.perf_counter() - answered) * 1000)
                break
            if time.perf_counter() - answered > 30:
                raise SystemExit(f"the map of {service_id} did not follow within 30 s")
            time.sleep(0.002)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--backend", default="postgresql", choices=("sqlite", "postgresql"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    items = [(item, rels) for item, rels in generate(args.items, random.Random(42))]
    mapped_items = with_entry_points(items, args.services)
    workdir = Path(tempfile.mkdtemp(prefix="karta-bench-map-"))
    sides = {}
    for side, data in (("mapped", mapped_items), ("unmapped", items)):
        url = fresh_database(args.backend, f"karta_bench_map_{side}", workdir)
        env = {**os.environ, "KARTA_DATABASE_URL": url}
        karta = karta_command(env, REPO)
        karta("db", "upgrade")
        secret = karta("token", "create", "--name", "bench", "--scope", "discovery", "--scope", "read"
                       ).strip().splitlines()[-1]
        sides[side] = (url, env, secret, data)
    results: dict[str, list[float]] = {"mapped": [], "unmapped": []}
    follow: list[float] = []
    with served(sides["mapped"][1], REPO) as mapped_base, served(sides["unmapped"][1], REPO) as unmapped_base:
        bases = {"mapped": mapped_base, "unmapped": unmapped_base}
        clients = {side: httpx.Client(base_url=bases[side], timeout=600,
                                      headers={"Authorization": f"Bearer {sides[side][2]}"}) for side in sides}
        ids: dict[str, dict] = {"mapped": {}, "unmapped": {}}
        for side in ("mapped", "unmapped"):
            seconds = push(clients[side], sides[side][3], "load", ids[side])
            print(f"{side}: first load {seconds:.1f} s", file=sys.stderr)
        mapped_in = wait_mapped(sides["mapped"][0], args.services)
        print(f"mapped: {args.services} services mapped {mapped_in:.0f} s after the load", file=sys.stderr)
        for n in range(args.rounds):
            order = ("mapped", "unmapped") if n % 2 == 0 else ("unmapped", "mapped")
            for side in order:
                settle(sides[side][0])
                seconds = push(clients[side], sides[side][3], f"again-{n}", ids[side])
                results[side].append(seconds)
                print(f"round {n}: {side} unchanged pass {seconds:.2f} s", file=sys.stderr)
        follow = map_follows(clients["mapped"], ids["mapped"], mapped_items, args.services, args.changes,
                             random.Random(9))
        for client in clients.values():
            client.close()
    mapped_s, unmapped_s = statistics.mean(results["mapped"]), statistics.mean(results["unmapped"])
    follow.sort()
    lines = [f"Service maps, {args.items:,} items, {args.services:,} mapped services, {args.backend}, "
             f"`karta serve` with one worker each, batches of 5,000",
             "", "| measure | value |", "|---|---:|",
             f"| unchanged pass, mapped (mean of {args.rounds}) | {mapped_s:.2f} s |",
             f"| unchanged pass, unmapped (mean of {args.rounds}) | {unmapped_s:.2f} s |",
             f"| mapped / unmapped | {mapped_s / unmapped_s:.3f} |",
             f"| a one-service batch's map current after its answer, p50 | {statistics.median(follow):.0f} ms |",
             f"| same, p90 | {follow[int(0.9 * (len(follow) - 1))]:.0f} ms |",
             f"| same, max of {len(follow)} | {follow[-1]:.0f} ms |",
             f"| every service mapped, after the first load | {mapped_in:.0f} s |"]
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "service_map.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
