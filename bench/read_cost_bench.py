"""Benchmark: what reading a CI's last_seen from its sightings costs a single-CI read.

A CI's last_seen is the later of its own column and its latest sighting in ci_source (ingest confirms
an unchanged report with one sighting write instead of rewriting the CI row). This measures the
statement behind GET /api/v1/cis/{id} with that derivation against the plain row read it replaced,
side by side, on an estate loaded through ingest (every CI has sightings), on SQLite and PostgreSQL.

    python bench/read_cost_bench.py [--items 20000] [--reads 20000]
"""

import argparse
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import bindparam, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core import migrations  # noqa: E402
from app.core.db import make_engine  # noqa: E402
from app.models import ConfigurationItem  # noqa: E402
from app.models.ingest import IngestBatch  # noqa: E402
from app.services.cis import CI_COLUMNS  # noqa: E402
from app.services.ingest import ingest  # noqa: E402
from app.services.registry import RegistryCache  # noqa: E402
from bench.common import fresh_database  # noqa: E402
from bench.ingest_bench import batches_of, generate  # noqa: E402

CI = ConfigurationItem.__table__
PLAIN = select(CI).where(CI.c.id == bindparam("ci_id"))
DERIVED = select(*CI_COLUMNS).where(CI.c.id == bindparam("ci_id"))


def timed(conn, statement, ids) -> float:
    started = time.perf_counter()
    for ci_id in ids:
        conn.execute(statement, {"ci_id": ci_id}).mappings().first()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    items = generate(args.items, random.Random(20261122))
    workdir = Path(tempfile.mkdtemp(prefix="karta-read-cost-"))
    lines = [f"Single-CI read statement, {args.reads:,} reads of random CIs among {args.items:,} ingested, "
             "alternating rounds of 1,000", "",
             "| backend | plain row µs/read | with derived last_seen µs/read | ratio |", "|---|---:|---:|---:|"]
    for backend in args.backends.split(","):
        engine = make_engine(fresh_database(backend, "karta_bench_read_cost", workdir))
        migrations.upgrade(engine)
        cache, id_of = RegistryCache(engine, 300), {}
        for body in batches_of(items, 5000, "load", id_of):
            outcome = ingest(engine, cache, IngestBatch.model_validate(body), actor="bench")
            id_of.update({ref: str(ci) for ref, ci in outcome.refs.items()})
        ids = [uuid.UUID(v) for v in id_of.values()]
        rng = random.Random(1)
        totals = {"plain": 0.0, "derived": 0.0}
        with engine.connect() as conn:
            for _ in range(args.reads // 1000):
                sample = [rng.choice(ids) for _ in range(1000)]
                totals["plain"] += timed(conn, PLAIN, sample)
                totals["derived"] += timed(conn, DERIVED, sample)
        engine.dispose()
        plain, derived = (totals[k] / args.reads * 1e6 for k in ("plain", "derived"))
        lines.append(f"| {backend} | {plain:,.0f} | {derived:,.0f} | {derived / plain:.2f}x |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
