"""Benchmark: how soon a new worker answers impact questions, loading its graph from PostgreSQL or from
the snapshot another worker wrote (KARTA_GRAPH_SNAPSHOT_DIR), and what writing the snapshot costs.

    python bench/graph_snapshot_bench.py --cis 1000000            # the target's scale (issue #14: <= 5 s)
    python bench/graph_snapshot_bench.py --cis 50000 --changes 200   # a quick run

The estate is bench/incident_bench.py's (the synthetic enterprise of bench/graph_synthetic.py written
into Karta's tables), in a fresh PostgreSQL database `karta_snapshot_bench` (`--database` names another;
dropped at the end unless --keep; --reuse measures the one a previous --keep run left). Then, each a real `karta serve` (1 worker):
  1. a worker with a snapshot directory and nothing in it: loads from the database, answers, and its
     background writer writes the snapshot (KARTA_GRAPH_SNAPSHOT_SECONDS=1 makes it due at once);
  2. a worker without snapshots: loads from the database, answers; `--changes` change records are then
     committed through it (applications created, each depending on one server, some of those
     relationships deleted again), all after the snapshot;
  3. a worker with the snapshot: loads it, applies those changes from the feed, answers; its answer
     must name every application still depending on that server.
"Start to answer" runs from starting `karta serve` to the first impact answer (the question is sent as
soon as /readyz answers and waits for the graph). Then, in this process, where the time goes: the rows
streamed from PostgreSQL against `bulk_load`, the file read and laid out, and a snapshot written while
another thread keeps asking questions (how long the lock was held, how long those questions took).
Writes bench/results/graph_snapshot.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from incident_bench import load, reuse  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from app.core.config import Settings  # noqa: E402
from app.core.db import make_engine, read_transaction  # noqa: E402
from app.models import ConfigurationItem, Relationship  # noqa: E402
from app.services.live_graph import CAPTURE_TRIES, SNAPSHOT_FILE, LiveGraph, min_members_of  # noqa: E402
from app.services.registry import RegistryCache  # noqa: E402
from bench.common import PG_URL, drop_database, fresh_database, memory_mib, served  # noqa: E402
from graph import ImpactGraph, snapshot  # noqa: E402

DATABASE = "karta_snapshot_bench"
RESULTS = Path(__file__).resolve().parent / "results"
RUN = f"{int(time.time()):x}"  # names this run's applications apart from a --reuse'd database's earlier ones
CI = ConfigurationItem.__table__
REL = Relationship.__table__


def first_answer(base: str, secret: str, ci_id: str) -> dict:
    """The impact of `ci_id`, asked as soon as the worker is ready: it waits for the graph."""
    response = httpx.post(base + "/api/v1/impact", json={"ci_ids": [ci_id]}, timeout=600,
                          headers={"Authorization": f"Bearer {secret}"})
    response.raise_for_status()
    return response.json()


def change(base: str, secret: str, server_id: str, count: int) -> set[str]:
    """`count` change records committed through the worker at `base`: applications created, each depending
    on `server_id`, a tenth of those relationships deleted again. The names still depending on it."""
    headers = {"Authorization": f"Bearer {secret}"}
    depending, made = set(), 0
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        n = 0
        while made < count:
            name = f"snapbench-{RUN}-app-{n}"
            ci = client.post("/api/v1/cis", json={"class": "application", "name": name})
            ci.raise_for_status()
            link = client.post("/api/v1/relationships",
                               json={"source": ci.json()["id"], "target": server_id, "type": "depends_on"})
            link.raise_for_status()
            made += 2
            depending.add(name)
            if n % 10 == 9 and made < count:
                client.delete(f"/api/v1/relationships/{link.json()['id']}").raise_for_status()
                made += 1
                depending.discard(name)
            n += 1
    return depending


def timed(work) -> tuple[float, float]:
    """(wall, CPU) seconds of work(): on a shared machine the CPU time says what the work itself costs."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def stream_then_load(live: LiveGraph, semantics) -> tuple[tuple[float, float], tuple[float, float]]:
    """The two halves of a load from the database, apart, (wall, CPU) seconds each: the rows streamed into
    lists (the queries of LiveGraph._build), then bulk_load from those lists."""
    started, cpu = time.perf_counter(), time.process_time()
    with read_transaction(live._engine, begin=True) as conn:
        stream = conn.execution_options(stream_results=True, yield_per=50_000)
        cis = [(str(i), c, min_members_of(k)) for i, c, k in stream.execute(
            select(live._id_column(CI.c.id, conn), CI.c.ci_class, CI.c.attributes["min_members"].as_string()))]
        rels = [(str(s), str(t), kind) for s, t, kind in stream.execute(
            select(live._id_column(REL.c.source_id, conn), live._id_column(REL.c.target_id, conn), REL.c.type))]
    streamed, streamed_cpu = time.perf_counter(), time.process_time()
    graph = ImpactGraph(semantics)
    graph.bulk_load(cis, rels)
    loaded, loaded_cpu = time.perf_counter(), time.process_time()
    del graph, cis, rels
    gc.unfreeze()
    gc.collect()
    return (streamed - started, streamed_cpu - cpu), (loaded - streamed, loaded_cpu - streamed_cpu)


def questions_during(live: LiveGraph, ci_id: str, seconds: float | None, work=None) -> list[float]:
    """Latencies (ms) of impact questions asked back to back by another thread, for `seconds` or while
    `work()` runs in this one."""
    latencies, done = [], threading.Event()

    def ask():
        deadline = time.monotonic() + 600
        while not done.is_set() and time.monotonic() < deadline:
            started = time.perf_counter()
            with live.reading() as graph:
                graph.impact([ci_id], max_depth=2)
            latencies.append((time.perf_counter() - started) * 1000)
            time.sleep(0.005)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        if work is not None:
            work()
        else:
            time.sleep(seconds)
    finally:
        done.set()
        asker.join(timeout=60)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cis", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=1000, help="change records committed after the snapshot")
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--reuse", action="store_true", help="measure the database a previous --keep run left")
    parser.add_argument("--keep", action="store_true", help="leave the database for --reuse")
    parser.add_argument("--load-rounds", type=int, default=1, help="times snapshot.load is timed in-process (best kept)")
    parser.add_argument("--database", default=DATABASE, help="the PostgreSQL database's name (made, or --reuse'd)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="karta-snapshot-bench-"))
    print(f"snapshot directory: {workdir / 'graph'}", file=sys.stderr)
    snapshots = workdir / "graph"
    load_before = os.getloadavg()
    if args.reuse:
        url = make_url(PG_URL).set(database=args.database).render_as_string(hide_password=False)
        _, secret = reuse(url)
    else:
        url = fresh_database("postgresql", args.database, workdir)
        _, secret = load(url, args.cis, args.seed)
    try:
        engine = make_engine(url)
        with engine.connect() as conn:
            server_id = str(conn.execute(select(CI.c.id).where(CI.c.ci_class == "server").order_by(CI.c.id)
                                         .limit(1)).scalar_one())
        env = {**os.environ, "KARTA_DATABASE_URL": url, "KARTA_THREADS": "8", "KARTA_SERVICE_MAPS_KEEP": "false",
               "KARTA_WEBHOOKS_DELIVER": "false"}
        rows = []

        # 1. No snapshot yet: from the database; its writer then writes one.
        started = time.perf_counter()
        with served({**env, "KARTA_GRAPH_SNAPSHOT_DIR": str(snapshots), "KARTA_GRAPH_SNAPSHOT_SECONDS": "1"}, ROOT,
                    startup_seconds=300) as base:
            ready = time.perf_counter() - started
            first_answer(base, secret, server_id)
            rows.append(("from PostgreSQL (snapshot dir empty)", ready, time.perf_counter() - started,
                         os.getloadavg()[0]))
            print(rows[-1], file=sys.stderr)
            deadline = time.monotonic() + 600
            while not (snapshots / SNAPSHOT_FILE).exists() and time.monotonic() < deadline:
                time.sleep(0.5)
        written = snapshot.read_header(snapshots / SNAPSHOT_FILE)

        # 2. Without snapshots: from the database; then the changes the snapshot does not hold.
        started = time.perf_counter()
        with served(env, ROOT, startup_seconds=300) as base:
            ready = time.perf_counter() - started
            first_answer(base, secret, server_id)
            rows.append(("from PostgreSQL (snapshots off)", ready, time.perf_counter() - started, os.getloadavg()[0]))
            print(rows[-1], file=sys.stderr)
            depending = change(base, secret, server_id, args.changes)

        # 3. From the snapshot, then the changes from the feed.
        started = time.perf_counter()
        with served({**env, "KARTA_GRAPH_SNAPSHOT_DIR": str(snapshots), "KARTA_GRAPH_SNAPSHOT_SECONDS": "3600"}, ROOT,
                    startup_seconds=300) as base:
            ready = time.perf_counter() - started
            answer = first_answer(base, secret, server_id)
            rows.append((f"from the snapshot (seq {written.applied_seq}) + {args.changes} changes from the feed",
                         ready, time.perf_counter() - started, os.getloadavg()[0]))
            print(rows[-1], file=sys.stderr)
        named = {item["name"] for item in answer["impacted"] if item["name"].startswith(f"snapbench-{RUN}-")}
        if named != depending:
            raise SystemExit(f"the worker started from the snapshot answered {len(named)} dependents, "
                             f"not {len(depending)}")

        # In this process: where the time goes, with the collector set as in a worker.
        gc.set_threshold(*Settings().gc_thresholds)
        registry = RegistryCache(engine, 5)
        live = LiveGraph(engine, registry, snapshot_dir=snapshots, snapshot_seconds=3600)
        semantics = live._semantics()
        # Before anything else has grown this process's heap: a fresh worker's conditions. What the first load
        # leaves resident (the graph, the file's buffers freed) is what a worker holds; later rounds reuse that
        # freed memory, so only their times are kept (--load-rounds).
        loads, held = [], []
        for _ in range(args.load_rounds):
            before, wall, cpu = memory_mib()[0], time.perf_counter(), time.process_time()
            graph, _ = snapshot.load(snapshots / SNAPSHOT_FILE, semantics, schema_revision=live.schema_revision())
            loads.append((time.perf_counter() - wall, time.process_time() - cpu))
            held.append((memory_mib()[0] - before) * 2**20)
            del graph
            gc.unfreeze()
            gc.collect()
        resident = held[0]
        file_load = min(loads)

        def first_question():
            with live.reading() as graph:
                graph.impact([server_id])

        live_start = timed(first_question)
        assert live.built_from_snapshot == written.applied_seq, "the in-process worker did not start from the snapshot"
        quiet = questions_during(live, server_id, 5)
        during = questions_during(live, server_id, None, lambda: live.write_snapshot(force=True))
        cost = live.last_snapshot
        with live._lock:  # what the last try, which holds the lock throughout, would hold it for
            started = time.perf_counter()
            whole = snapshot.Capture(live._graph)
            whole.take()
            whole_hold = time.perf_counter() - started
        del whole
        live._graph = None
        gc.unfreeze()
        gc.collect()
        streamed, bulk = stream_then_load(live, semantics)
        engine.dispose()
    finally:
        if not args.keep:
            drop_database(args.database)
    load_after = os.getloadavg()

    lines = [f"Worker start to first impact answer, {args.cis:,} CIs (bench/graph_synthetic.py in Karta's tables), "
             f"PostgreSQL, `karta serve` 1 worker, {os.cpu_count()} cores", "",
             "| graph loaded | start to /readyz | start to first impact answer | load avg (1 min) at answer |",
             "|---|---:|---:|---:|"]
    lines += [f"| {what} | {ready:.1f} s | {seconds:.1f} s | {load:.1f} |" for what, ready, seconds, load in rows]
    lines += ["", "In-process, the same database and file (wall seconds, and this process's CPU seconds):", "",
              "| measure | value |", "|---|---:|",
              f"| snapshot file read, checked and laid out (snapshot.load), best of {len(loads)} | {file_load[0]:.2f} s "
              f"({file_load[1]:.2f} s CPU; all: {', '.join(f'{wall:.2f}' for wall, _ in loads)} s) |",
              f"| resident memory held after one snapshot.load (graph kept, file freed) | {resident / 2**20:.0f} MiB |",
              f"| LiveGraph start from the snapshot + catch-up of {args.changes} changes + one answer | "
              f"{live_start[0]:.1f} s ({live_start[1]:.1f} s CPU) |",
              f"| rows streamed from PostgreSQL into lists (LiveGraph._build's queries) | {streamed[0]:.1f} s "
              f"({streamed[1]:.1f} s CPU) |",
              f"| bulk_load of those lists | {bulk[0]:.1f} s ({bulk[1]:.1f} s CPU) |",
              f"| snapshot file size | {cost['bytes'] / 1e6:.0f} MB ({cost['cis']:,} CIs) |",
              f"| snapshot write: capture (with catch-up) / encode + write | {cost['capture_seconds']:.1f} / "
              f"{cost['write_seconds']:.1f} s |",
              f"| lock held while capturing: longest hold / all holds ({cost['tries']} tries) | "
              f"{cost['lock_max_seconds'] * 1000:.0f} ms / {cost['lock_total_seconds'] * 1000:.0f} ms |",
              f"| lock held by a capture in one hold (the fallback after {CAPTURE_TRIES} moved tries) | {whole_hold * 1000:.0f} ms |",
              f"| questions (impact, depth 2) from another thread, quiet: p50 / max ({len(quiet)}) | "
              f"{statistics.median(quiet):.1f} / {max(quiet):.1f} ms |",
              f"| the same questions during the snapshot write: p50 / max ({len(during)}) | "
              f"{statistics.median(during):.1f} / {max(during):.1f} ms |",
              f"| load average (1, 5, 15 min) before / after | {' '.join(f'{v:.1f}' for v in load_before)} / "
              f"{' '.join(f'{v:.1f}' for v in load_after)} |"]
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "graph_snapshot.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
