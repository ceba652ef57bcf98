"""Benchmark: what read-replica support costs a single-CI read when no replica is configured.

Without KARTA_DATABASE_REPLICA_URLS no middleware is installed and the units of work write as before;
what every read now runs in addition is app.core.db.read_transaction's look at the request's route (a
context variable, unset). This times the single-CI read (GET /api/v1/cis/{id}'s statement) inside
read_transaction as it was at `--before` (taken from git) and as it is, in one process on one engine,
in alternating rounds of 1,000 reads of random CIs of an estate loaded through ingest.

    python bench/replica_bench.py [--before 37c3217] [--items 20000] [--rounds 21]
"""

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import bindparam, create_engine, select, text
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from app.core import db, migrations
from app.models import ConfigurationItem
from app.models.ingest import IngestBatch
from app.services.cis import CI_COLUMNS
from app.services.ingest import ingest
from app.services.registry import RegistryCache
from bench.common import fresh_database
from bench.ingest_bench import batches_of, generate

CI = ConfigurationItem.__table__
READ = select(*CI_COLUMNS).where(CI.c.id == bindparam("ci_id"))
ROUND = 1_000


def read_transaction_before(commit: str):
    """read_transaction as app/core/db.py had it at `commit`."""
    source = subprocess.run(["git", "show", f"{commit}:app/core/db.py"], cwd=HERE, capture_output=True, text=True,
                            check=True).stdout
    namespace: dict = {"__name__": "db_before"}
    exec(compile(source, f"{commit}:app/core/db.py", "exec"), namespace)  # noqa: S102 - our own file, from git
    return namespace["read_transaction"]


def timed(read_transaction, engine, ids) -> float:
    started = time.perf_counter()
    for ci_id in ids:
        with read_transaction(engine) as conn:
            conn.execute(READ, {"ci_id": ci_id}).mappings().first()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default="37c3217", help="the commit before read replicas")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    # "control" is a second copy of the code before: its ratio to "before" is the noise of this method.
    sides = {"before": read_transaction_before(args.before), "after": db.read_transaction,
             "control": read_transaction_before(args.before)}
    workdir = Path(tempfile.mkdtemp(prefix="karta-replica-bench-"))
    lines = [(f"Single-CI read inside read_transaction, no replica configured: {args.rounds} alternating rounds of "
             f"{ROUND:,} reads of random CIs among {args.items:,} ingested"), "",
             ("| backend | before µs/read | after µs/read | after / before (median of rounds) | "
             "control / before (median) |"), "|---|---:|---:|---:|---:|"]
    for backend in args.backends.split(","):
        url = fresh_database(backend, "karta_bench_replica", workdir)
        engine = db.make_engine(url)
        migrations.upgrade(engine)
        cache, id_of = RegistryCache(engine, 300), {}
        for body in batches_of(generate(args.items, random.Random(20261202)), 5000, "load", id_of):
            outcome = ingest(engine, cache, IngestBatch.model_validate(body), actor="bench")
            id_of.update({ref: str(ci) for ref, ci in outcome.refs.items()})
        ids = [uuid.UUID(value) for value in id_of.values()]
        rng = random.Random(1)
        for side in sides.values():  # warm both: pool, statement cache
            timed(side, engine, ids[:ROUND])
        totals, ratios, control = dict.fromkeys(sides, 0.0), [], []
        for n in range(args.rounds):
            sample = [rng.choice(ids) for _ in range(ROUND)]
            order = list(sides)[n % 3:] + list(sides)[:n % 3]  # each side first, second and third in turn
            spent = {side: timed(sides[side], engine, sample) for side in order}
            for side, seconds in spent.items():
                totals[side] += seconds
            ratios.append(spent["after"] / spent["before"])
            control.append(spent["control"] / spent["before"])
        engine.dispose()
        before, after = (totals[side] / (args.rounds * ROUND) * 1e6 for side in ("before", "after"))
        lines.append(f"| {backend} | {before:,.1f} | {after:,.1f} | {after / before:.3f} "
                     f"({statistics.median(ratios):.3f}) | {statistics.median(control):.3f} |")
        if backend == "postgresql":
            admin = create_engine(make_url(url).set(database="test"), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text('DROP DATABASE IF EXISTS "karta_bench_replica" WITH (FORCE)'))
            admin.dispose()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
