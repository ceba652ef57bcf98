"""Benchmark of graph/ on a synthetic enterprise CMDB, side by side with a PostgreSQL recursive CTE.

    python bench/graph_bench.py --cis 1000000      # the design's scale: 1M CIs, ~3M relationships
    python bench/graph_bench.py --cis 50000        # a quick run

One run: writes the seeded graph (bench/graph_synthetic.py) to its own database via COPY (in a
child process, so its garbage does not count in this one's memory), loads it the way the service
starts (rows read with psycopg, then `bulk_load`), then times impact, blast radius, root cause,
spof and change records, and the same impact sets as a recursive CTE over an indexed edge table
in impact direction. Prints a Markdown table and writes it to bench/results/graph.md.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from graph import ImpactGraph, compact  # noqa: E402
from graph_measures import Report, measure_all, publish  # noqa: E402
from graph_synthetic import SEMANTICS, generate  # noqa: E402

from bench.common import memory_mib  # noqa: E402

SCHEMA = """
DROP TABLE IF EXISTS impact_edge, ci, bench_meta;
CREATE TABLE ci (id uuid PRIMARY KEY, ci_class text NOT NULL, min_members integer);
-- One row per relationship, stored the way impact flows (provider -> dependent).
CREATE TABLE impact_edge (source uuid NOT NULL, target uuid NOT NULL, type text NOT NULL);
CREATE TABLE bench_meta (n_cis integer NOT NULL, seed integer NOT NULL);
"""
INDEXES = """
ALTER TABLE impact_edge ADD PRIMARY KEY (source, target, type);
CREATE INDEX impact_edge_target ON impact_edge (target);
"""
FLIPPED = sorted(t for t, s in SEMANTICS.items() if s.impact == "target_to_source")


def connect(args, dbname: str, **kwargs) -> psycopg.Connection:
    return psycopg.connect(host=args.host, port=args.port, user=args.user, dbname=dbname, **kwargs)


def ensure_database(args) -> None:
    with connect(args, args.admin_db, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.db,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{args.db}"')


def dataset_matches(args) -> bool:
    with connect(args, args.db) as conn:
        if conn.execute("SELECT to_regclass('bench_meta')").fetchone()[0] is None:
            return False
        return conn.execute("SELECT n_cis, seed FROM bench_meta").fetchone() == (args.cis, args.seed)


def write_dataset(args) -> None:
    """Generate and COPY the dataset (runs in the child process)."""
    t0 = time.perf_counter()
    inv = generate(args.cis, args.seed)
    t1 = time.perf_counter()
    flipped = set(FLIPPED)
    with connect(args, args.db) as conn:
        conn.execute(SCHEMA)
        with conn.cursor().copy("COPY ci (id, ci_class, min_members) FROM STDIN") as copy:
            for row in inv.cis:
                copy.write_row(row)
        with conn.cursor().copy("COPY impact_edge (source, target, type) FROM STDIN") as copy:
            for source, target, type_name in inv.relationships:
                copy.write_row((target, source, type_name) if type_name in flipped else (source, target, type_name))
        conn.execute(INDEXES)
        conn.execute("INSERT INTO bench_meta VALUES (%s, %s)", (args.cis, args.seed))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE ci, impact_edge")
    t2 = time.perf_counter()
    print(f"generated {len(inv.cis):,} CIs / {len(inv.relationships):,} relationships in {t1 - t0:.1f} s; "
          f"written in {t2 - t1:.1f} s", file=sys.stderr)


def load_graph(args) -> ImpactGraph:
    """Start-up as the service does it: rows from PostgreSQL straight into bulk_load."""
    g = ImpactGraph(SEMANTICS)
    with connect(args, args.db) as conn:
        cis = conn.cursor(name="cis")
        cis.itersize = 50_000
        cis.execute("SELECT id::text, ci_class, min_members FROM ci")
        rels = conn.cursor(name="rels")
        rels.itersize = 50_000
        # Back to the relationship as recorded: flipped types are stored provider -> dependent.
        rels.execute(
            "SELECT CASE WHEN type = ANY(%(f)s) THEN target ELSE source END::text,"
            " CASE WHEN type = ANY(%(f)s) THEN source ELSE target END::text, type FROM impact_edge",
            {"f": FLIPPED},
        )
        g.bulk_load(cis, rels)
    return g


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cis", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--db", default="karta_bench_graph")
    parser.add_argument("--admin-db", default="postgres")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--user", default="root")
    parser.add_argument("--samples", type=int, default=1000, help="random CIs to fail one at a time")
    parser.add_argument("--top", type=int, default=100, help="most depended-upon CIs to fail one at a time")
    parser.add_argument("--cte-timeout", type=float, default=120.0, help="seconds per CTE query")
    parser.add_argument("--rewrite", action="store_true", help="regenerate even if the database holds this dataset")
    parser.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "graph.md"))
    parser.add_argument("--root-cause-runs", type=int, default=20, help="root cause of 20 random services, this many times")
    parser.add_argument("--python-only", action="store_true",
                        help="no compiled view (graph.compact): every question answered by the Python loop")
    args = parser.parse_args()

    ensure_database(args)
    if args.write_only:
        write_dataset(args)
        return
    if args.rewrite or not dataset_matches(args):
        subprocess.run([sys.executable, __file__, "--write-only", *sys.argv[1:]], check=True, timeout=3600)

    report = Report(args)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    g = load_graph(args)
    load_s = time.perf_counter() - t0
    rss, peak = memory_mib()
    report.add("start-up load (PostgreSQL rows -> bulk_load)", f"{load_s:.1f} s", "<= 60 s", load_s <= 60)
    report.add("resident memory after load (peak)", f"{rss:,.0f} MiB ({peak:,.0f} MiB)", "<= 4096 MiB", peak <= 4096)
    report.add("graph size", f"{len(g):,} CIs, {g.number_of_relationships():,} relationships")
    if not args.python_only:
        t0, before = time.perf_counter(), memory_mib()[0]
        compact.warm_up()
        report.add("compiled loops: compiled, or loaded from numba's cache; resident memory added (numba)",
                   f"{time.perf_counter() - t0:.1f} s; {memory_mib()[0] - before:,.0f} MiB")
        t0, before = time.perf_counter(), memory_mib()[0]
        g.build_compact()
        report.add("compiled view (graph.compact): built in, resident memory added",
                   f"{time.perf_counter() - t0:.1f} s, {memory_mib()[0] - before:,.0f} MiB")
    with connect(args, args.db) as conn:
        conn.execute(f"SET statement_timeout = {int(args.cte_timeout * 1000)}")
        measure_all(g, conn, report, random.Random(args.seed))
    # The machine may be shared: say how busy it was, so a slow row can be read for what it is.
    report.add("load average (1 min) before / after the run", f"{load_before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    publish(report.markdown(), args.out)


if __name__ == "__main__":
    main()
