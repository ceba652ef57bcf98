"""Benchmark: Alertmanager's webhook for a 20-alert group, answered with the incident computed, with
a large graph loaded (target: p99 <= 200 ms at 1,000,000 CIs).

    python bench/incident_bench.py --cis 1000000               # PostgreSQL, the target's scale
    python bench/incident_bench.py --cis 50000 --backends sqlite,postgresql   # a quick run

The estate is the graph benchmark's synthetic enterprise (bench/graph_synthetic.py: datacenters of
routers, switches, racks, hypervisor clusters, VMs, applications in redundancy groups, business
services; ~3 relationships per CI), written straight into Karta's tables (COPY on PostgreSQL) with
Karta's classes (hosts are server / virtual_machine / network_device, groups are clusters,
business services are services) and an ip_address identifier per host, so alerts bind through the
identifier index as in production. `karta serve` (1 worker) then gets, one at a time, groups of 20
alerts, each `instance` = a host's address:9100, the 20 hosts either random (unrelated failures, the
worst case for root cause) or taken down by one failure (what one group usually is), each group:
  - new: 20 firing alerts (binding, an incident created, blast radius and root cause of 20 failed
    CIs, a change record);
  - resolve: the same group, all 20 resolved (the incident recomputed and resolved);
  - repeat: the same group again, unchanged (Alertmanager's repeat: computed, nothing written).
Latency is measured by the client, over real HTTP. Writes bench/results/incident.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from graph_synthetic import generate
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from app.core import migrations
from app.core.db import make_engine, refresh_statistics, write_transaction
from app.models import (
    CIClass,
    CIIdentifier,
    ConfigurationItem,
    Relationship,
    RelationshipType,
)
from app.services import tokens
from app.services.bulk import insert_rows
from app.services.history import UnitOfWork
from bench.common import PG_URL, fresh_database, served

RESULTS = Path(__file__).resolve().parent / "results"
CHUNK = 50_000
KARTA_CLASS = {"router": "network_device", "switch": "network_device", "storage_controller": "network_device",
               "network_ha_group": "cluster", "hypervisor_cluster": "cluster", "hypervisor": "server",
               "server": "server", "backup_server": "server", "vm": "virtual_machine", "application": "application",
               "business_service": "service", "rack": "rack", "datastore": "datastore"}
HOST_FAMILY = {"network_device": "network_device", "server": "server", "virtual_machine": "server"}
OWNERS = [f"team-{n}" for n in range(40)]


def address(n: int) -> str:
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def load(url: str, n_cis: int, seed: int) -> tuple[dict[str, str], str]:
    """Write the estate; the hosts' addresses by CI id, and a token of scope write."""
    started = time.perf_counter()
    inventory = generate(n_cis, seed)
    rng = random.Random(seed)
    now = datetime.now(UTC)
    engine = make_engine(url)
    # The search indexes (0009: trigram GIN on PostgreSQL) are built after the load, on the full
    # table, as bench/search_bench.py does: kept up row by row they made the load several times slower.
    migrations.upgrade(engine, "0008")
    hosts: dict[str, str] = {}
    with write_transaction(engine) as conn:
        conn.execute(insert(CIClass.__table__), [
            {"name": name, "parent": None, "label": name.title(), "description": "bench", "attribute_schema": {},
             "identification_rules": [], "held_identifiers": [], "created_at": now, "updated_at": now}
            for name in ("rack", "datastore")])
        conn.execute(insert(RelationshipType.__table__), [
            {"name": "backs_up", "forward_label": "backs up", "reverse_label": "backed up by",
             "impact_direction": "none", "membership": False, "description": "bench", "created_at": now}])
        rows, identifiers = [], []
        for n, (ci_id, synthetic_class, min_members) in enumerate(inventory.cis):
            ci_class = KARTA_CLASS[synthetic_class]
            attributes = {"min_members": min_members} if min_members else {}
            if ci_class in HOST_FAMILY:
                attributes["ip_address"] = address(len(hosts) + 1)
                identifiers.append({"family": HOST_FAMILY[ci_class], "key": "ip_address",
                                    "value": attributes["ip_address"], "ci_id": uuid.UUID(ci_id)})
                hosts[ci_id] = attributes["ip_address"]
            rows.append({"id": uuid.UUID(ci_id), "ci_class": ci_class, "name": f"{synthetic_class}-{n}", "status": "active",
                         "environment": "prod", "criticality": rng.randint(1, 4) if ci_class == "service" else None,
                         "owner": rng.choice(OWNERS), "tags": [], "attributes": attributes, "first_seen": now,
                         "last_seen": now, "created_at": now, "updated_at": now, "version": 1, "provenance": {}})
            if len(rows) >= CHUNK:
                insert_rows(conn, ConfigurationItem.__table__, rows)
                insert_rows(conn, CIIdentifier.__table__, identifiers)
                rows, identifiers = [], []
        if rows:
            insert_rows(conn, ConfigurationItem.__table__, rows)
            insert_rows(conn, CIIdentifier.__table__, identifiers)
        relationships = inventory.relationships
        for start in range(0, len(relationships), CHUNK):
            insert_rows(conn, Relationship.__table__, [
                {"id": uuid.uuid4(), "source_id": uuid.UUID(s), "target_id": uuid.UUID(t), "type": kind, "attributes": {},
                 "first_seen": now, "last_seen": now, "created_at": now}
                for s, t, kind in relationships[start:start + CHUNK]])
    migrations.upgrade(engine)
    if not refresh_statistics(engine, force=True):
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    with UnitOfWork(engine, "bench") as uow:
        secret = tokens.create_token(uow, "alertmanager", ["write"])["secret"]
    engine.dispose()
    print(f"loaded {len(inventory.cis):,} CIs, {len(relationships):,} relationships, {len(hosts):,} hosts in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    return hosts, secret


def reuse(url: str) -> tuple[dict[str, str], str]:
    """What load() returns, from a database a previous run loaded (--reuse), and a new token."""
    engine = make_engine(url)
    with engine.connect() as conn:
        hosts = {str(ci_id): value for ci_id, value in conn.execute(
            text("SELECT ci_id, value FROM ci_identifier WHERE key = 'ip_address' ORDER BY value"))}
    with UnitOfWork(engine, "bench") as uow:
        secret = tokens.create_token(uow, f"alertmanager-{uuid.uuid4().hex[:6]}", ["write"])["secret"]
    engine.dispose()
    return hosts, secret


def payload(group: str, addresses: list[str], status: str) -> dict:
    alerts = [{"status": status, "labels": {"alertname": "NodeDown", "instance": f"{a}:9100", "severity": "critical"},
               "annotations": {"summary": f"{a} is down"}, "startsAt": "2026-12-02T15:00:00Z",
               "endsAt": "2026-12-02T16:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
               "generatorURL": "http://prometheus:9090/graph", "fingerprint": f"{n:016x}"}
              for n, a in enumerate(addresses)]
    return {"version": "4", "groupKey": group, "truncatedAlerts": 0, "status": status, "receiver": "karta",
            "groupLabels": {"alertname": "NodeDown"}, "commonLabels": {"alertname": "NodeDown"},
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": alerts}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def one_cause(client: httpx.Client, hosts: dict[str, str], rng: random.Random) -> list[str]:
    """20 hosts that one failure takes down or degrades together (what one Alertmanager group usually
    is): a random host or network device whose blast radius holds at least 20 hosts."""
    ids = list(hosts)
    for _ in range(1000):
        answer = client.post("/api/v1/blast-radius", json={"failed": [rng.choice(ids)]}).json()
        down = [hosts[e["id"]] for e in answer["impacted"] if e["id"] in hosts]
        if len(down) >= 20:
            return rng.sample(down, 20)
    raise RuntimeError("no failure takes 20 hosts with it")


def compiled_view(client: httpx.Client) -> float | None:
    """karta_graph_compact from /metrics (1: the worker answers impact with the compiled loop), None when
    the graph's metrics are not there."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("karta_graph_compact "):
            return float(line.split()[1])
    return None


def measure(base: str, secret: str, hosts: dict[str, str], groups: int, seed: int, tag: str = "",
            compact: bool | None = None) -> tuple[dict[str, list[float]], dict]:
    """`tag` makes the groups' keys new (a round on a database that holds the incidents of another); with
    `compact` True the measure waits until the worker answers from its compiled view (graph.compact)."""
    rng = random.Random(seed + 1)
    addresses_of = list(hosts.values())
    times: dict[str, list[float]] = {}
    sizes: dict[str, list[int]] = {}
    url = "/api/v1/integrations/alertmanager"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=300, trust_env=False) as client:
        started = time.perf_counter()
        warm = client.post(url, json=payload(f"warm-up {uuid.uuid4()}", rng.sample(addresses_of, 20), "firing"))  # builds the graph (a new group: a stored one is answered without it)
        assert warm.status_code == 200, warm.text
        first = time.perf_counter() - started
        if compact is not None:
            deadline = time.monotonic() + 300
            while compiled_view(client) != float(compact):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the worker's karta_graph_compact did not become {int(compact)} in 300 s")
                time.sleep(0.5)
            first = time.perf_counter() - started
        for n in range(groups):
            for shape in ("random hosts", "one cause"):
                addresses = rng.sample(addresses_of, 20) if shape == "random hosts" else one_cause(client, hosts, rng)
                for kind, status in (("new", "firing"), ("repeat", "firing"), ("resolve", "resolved")):
                    started = time.perf_counter()
                    response = client.post(url, json=payload(f'{{}}:{{bench="{shape} {n}{tag}"}}', addresses, status))
                    times.setdefault(f"{shape}: {kind}", []).append((time.perf_counter() - started) * 1000)
                    if response.status_code != 200:
                        raise RuntimeError(f"{response.status_code}: {response.text[:500]}")
                    if kind == "new":
                        incident = response.json()
                        assert len(incident["failed"]) == 20 and incident["counts"]["unbound"] == 0, incident["counts"]
                        sizes.setdefault(f"{shape}: impacted", []).append(incident["blast_radius"]["counts"]["total"])
                        sizes.setdefault(f"{shape}: candidates", []).append(len(incident["root_cause"]))
    return times, {"first_s": first, **{k: statistics.mean(v) for k, v in sizes.items()}}


def breakdown(url: str, hosts: dict[str, str], groups: int, seed: int) -> list[str]:
    """Where a new group's time goes, in this process (no HTTP): the graph's impact and root cause (with
    the incident's extra cap), what the graph hands over of the answer (the nearest CIs, counts by
    class, the services' ids), and the query that names what the incident stores
    (app.services.incidents.compute's parts)."""
    from app.core.config import Settings
    from app.core.db import read_transaction
    from app.main import create_app
    from app.services import impact

    settings = Settings(database_url=url, load_graph_at_startup=False, webhooks_deliver=False)
    app = create_app(settings)
    rng, ids = random.Random(seed + 2), list(hosts)
    services = frozenset({"service"})
    parts: dict[str, dict[str, list[float]]] = {}
    with app.state.live_graph.reading() as graph:
        shapes = {"random hosts": [rng.sample(ids, 20) for _ in range(groups)], "one cause": []}
        while len(shapes["one cause"]) < groups:
            down = [i for i in graph.impact([rng.choice(ids)]).impacted if i in hosts]
            if len(down) >= 20:
                shapes["one cause"].append(rng.sample(down, 20))
    for shape, sets in shapes.items():
        for failed in sets:
            timings = parts.setdefault(shape, {})
            with app.state.live_graph.reading() as graph:
                started = time.perf_counter()
                result = graph.impact(failed)
                timings.setdefault("graph impact", []).append(time.perf_counter() - started)
                started = time.perf_counter()
                candidates = graph.root_cause(failed, limit=10, extra_cap=settings.incident_root_cause_extra_cap)
                timings.setdefault("graph root_cause (10)", []).append(time.perf_counter() - started)
                started = time.perf_counter()
                nearest = result.nearest(settings.incident_impacted_max)
                by_class, impacted_services = graph.tally(result.impacted, services)
                classes = graph.classes([*failed, *nearest])
                service_ids = [ci_id for ci_id in failed if classes.get(ci_id) in services] + impacted_services
                timings.setdefault("graph: what is stored (nearest, counts, services)", []).append(
                    time.perf_counter() - started)
            started = time.perf_counter()
            with read_transaction(app.state.engine) as conn:
                named = app.state.service_directory.lookup(services, service_ids)
                _, info = impact.radius_answer(conn, result, nearest, classes, by_class, service_ids, named,
                                               settings.incident_services_max, {c.ci_id for c in candidates} | set(failed))
                impact.root_cause_answer(conn, failed, candidates, info)
            timings.setdefault("naming them (database)", []).append(time.perf_counter() - started)
    app.state.engine.dispose()
    lines = ["| shape | part | p50 ms | p99 ms |", "|---|---|---:|---:|"]
    for shape, timings in parts.items():
        for part, values in timings.items():
            lines.append(f"| {shape} | {part} | {statistics.median(values) * 1000:.1f} | "
                         f"{percentile(values, 0.99) * 1000:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cis", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=200, help="20-alert groups, each sent new, repeated, resolved")
    parser.add_argument("--backends", default="postgresql")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--reuse", action="store_true", help="measure the PostgreSQL database a previous run left")
    parser.add_argument("--breakdown", action="store_true", help="also time the parts of a new group in-process")
    parser.add_argument("--compare-compact", type=int, default=0, metavar="ROUNDS",
                        help="serve the database with the compiled view off (KARTA_GRAPH_COMPACT=false) and on, in "
                             "turn, for ROUNDS rounds, the same groups each time; per-round figures and ratios")
    args = parser.parse_args()
    if args.compare_compact:
        return compare_compact(args)
    workdir = Path(tempfile.mkdtemp(prefix="karta-incident-bench-"))
    lines = [(f"POST /api/v1/integrations/alertmanager, 20-alert groups, {args.cis:,} CIs (bench/graph_synthetic.py), "
              f"{args.groups} groups sent one at a time to `karta serve` (1 worker), client-side latency, "
              f"{os.cpu_count()} cores"), "",
             "| backend | webhook | p50 ms | p95 ms | p99 ms | max ms |", "|---|---|---:|---:|---:|---:|"]
    notes = []
    for backend in args.backends.split(","):
        if args.reuse and backend == "postgresql":
            url = make_url(PG_URL).set(database="karta_bench_incident").render_as_string(hide_password=False)
            hosts, secret = reuse(url)
        else:
            url = fresh_database(backend, "karta_bench_incident", workdir)
            hosts, secret = load(url, args.cis, args.seed)
        with served({**os.environ, "KARTA_DATABASE_URL": url}, Path(__file__).resolve().parent.parent) as base:
            times, sizes = measure(base, secret, hosts, args.groups, args.seed)
        for kind, values in times.items():
            lines.append(f"| {backend} | {kind} | {statistics.median(values):.1f} | {percentile(values, 0.95):.1f} | "
                         f"{percentile(values, 0.99):.1f} | {max(values):.1f} |")
            print(lines[-1], file=sys.stderr)
        if args.breakdown:
            notes += ["", f"{backend}, where a new group's time goes:", ""] + breakdown(url, hosts, args.groups, args.seed)
        notes.append(f"{backend}: first webhook (graph built) {sizes.pop('first_s'):.1f} s; per new group on average: "
                     + "; ".join(f"{k} {v:.1f}" for k, v in sizes.items()))
    report = "\n".join(lines + [""] + notes)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "incident.md").write_text(report + "\n")


def compare_compact(args) -> None:
    """The same database and groups served by the Python loop and by the compiled view in turn (which goes
    first alternates by round), the same code otherwise: KARTA_GRAPH_COMPACT false, then true."""
    if args.reuse:
        url = make_url(PG_URL).set(database="karta_bench_incident").render_as_string(hide_password=False)
        hosts, secret = reuse(url)
    else:
        url = fresh_database("postgresql", "karta_bench_incident", Path(tempfile.mkdtemp(prefix="karta-incident-bench-")))
        hosts, secret = load(url, args.cis, args.seed)
    engine = make_engine(url)
    with UnitOfWork(engine, "bench") as uow:  # /metrics (scope read) tells when the compiled view answers
        secret = tokens.create_token(uow, f"bench-{uuid.uuid4().hex[:6]}", ["read", "write"])["secret"]
    engine.dispose()
    runs: dict[str, list[dict[str, list[float]]]] = {"python": [], "compiled": []}
    firsts: dict[str, list[float]] = {"python": [], "compiled": []}
    for round_ in range(args.compare_compact):
        for mode in (("python", "compiled") if round_ % 2 == 0 else ("compiled", "python")):
            env = {**os.environ, "KARTA_DATABASE_URL": url, "KARTA_GRAPH_COMPACT": str(mode == "compiled").lower()}
            with served(env, ROOT, startup_seconds=120) as base:
                times, sizes = measure(base, secret, hosts, args.groups, args.seed, tag=f" r{round_} {mode}",
                                       compact=mode == "compiled")
            runs[mode].append(times)
            firsts[mode].append(sizes["first_s"])
            print(f"round {round_ + 1} {mode}: " + "; ".join(
                f"{kind} p50 {statistics.median(v):.1f} p99 {percentile(v, 0.99):.1f}" for kind, v in times.items()),
                file=sys.stderr, flush=True)
    lines = [f"POST /api/v1/integrations/alertmanager, 20-alert groups, {args.cis:,} CIs, {args.groups} groups per shape "
             f"and round, `karta serve` (1 worker), Python loop (KARTA_GRAPH_COMPACT=false) against the compiled view, "
             f"{args.compare_compact} rounds, {os.cpu_count()} cores", "",
             "| webhook | p50 ms, Python loop (per round) | p50 ms, compiled | p99 ms, Python loop | p99 ms, compiled | "
             "compiled / Python, p50 (median of rounds) | p99 (median of rounds) |", "|---|---|---|---|---|---:|---:|"]
    for kind in runs["python"][0]:
        cells = []
        for share in (0.5, 0.99):
            for mode in ("python", "compiled"):
                cells.append(" / ".join(f"{percentile(run[kind], share) if share != 0.5 else statistics.median(run[kind]):.0f}"
                                        for run in runs[mode]))
        ratio = [statistics.median((statistics.median(c[kind]) if share == 0.5 else percentile(c[kind], share))
                                   / max(1e-9, statistics.median(p[kind]) if share == 0.5 else percentile(p[kind], share))
                                   for p, c in zip(runs["python"], runs["compiled"])) for share in (0.5, 0.99)]
        lines.append(f"| {kind} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {ratio[0]:.2f} | {ratio[1]:.2f} |")
    lines += ["", "first webhook until the worker answers as measured (graph built; compiled view built too): "
              + "; ".join(f"{mode} " + " / ".join(f"{v:.1f} s" for v in values) for mode, values in firsts.items())]
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "incident-compact.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
