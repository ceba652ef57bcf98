"""The record of a discovery run (discovery_run): which source and scope it belongs to, and what its
batches did. A run's batches share source and scope, and nothing follows its complete one."""

import hashlib
from collections import Counter

import orjson
from sqlalchemy import Connection, select

from app.models import DiscoveryRun
from app.services.errors import Conflict
from app.services.history import UnitOfWork
from app.services.ingest.batch import Batch
from app.services.ingest.outcome import COUNTED, Outcome

RUN = DiscoveryRun.__table__
# A run keeps at most this many conflicts and errors (a broken agent must not grow a row without bound).
MAX_RECORDED_PROBLEMS = 1000


def scope_key(batch: Batch) -> str:
    canonical = orjson.dumps(batch.scope.model_dump(), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def closes_scope(conn: Connection, batch: Batch, key: str) -> bool:
    """Whether this batch closes its run's scope (`complete`, and not sent again after the run's
    complete batch was applied); 409 when it cannot belong to the run its id names."""
    previous = conn.execute(select(RUN.c.source, RUN.c.scope_key, RUN.c.complete).where(RUN.c.id == batch.run_id)).first()
    if previous is not None and (previous.source != batch.source or previous.scope_key != key
                                 or (previous.complete and not batch.complete)):
        raise Conflict(
            f"Run '{batch.run_id}' already exists with "
            + ("another source" if previous.source != batch.source else "another scope" if previous.scope_key != key
               else "its last batch (complete: true)")
            + "; a run's batches share source and scope, and nothing follows the complete one. Use a new run_id.",
        )
    # An agent whose last request timed out after it was applied sends it again: that is harmless
    # (items are idempotent) as long as the scope is not closed twice.
    resent_final = previous is not None and previous.complete and batch.complete
    return batch.complete and not resent_final


def record_run(uow: UnitOfWork, batch: Batch, key: str, outcome: Outcome) -> None:
    conn = uow.conn
    row = conn.execute(select(RUN).where(RUN.c.id == batch.run_id)).mappings().first()
    counts = {name: outcome.counts.get(name, 0) for name in COUNTED}
    counts["relationships_created"] = outcome.relationships.get("created", 0)
    counts["stale"] = len(outcome.stale)
    counts["ended_relationships"] = outcome.ended_relationships
    if row is None:
        conn.execute(RUN.insert(), {
            "id": batch.run_id, "source": batch.source, "actor": uow.actor, "scope": batch.scope.model_dump(),
            "scope_key": key, "started_at": uow.now, "finished_at": uow.now if batch.complete else None,
            "complete": batch.complete, "batches": 1, "counts": counts,
            "conflicts": outcome.conflicts[:MAX_RECORDED_PROBLEMS], "errors": outcome.errors[:MAX_RECORDED_PROBLEMS],
        })
        return
    merged_counts = Counter(row["counts"])
    merged_counts.update(counts)
    conn.execute(RUN.update().where(RUN.c.id == batch.run_id).values(
        batches=row["batches"] + 1, counts=dict(merged_counts),
        conflicts=(row["conflicts"] + outcome.conflicts)[:MAX_RECORDED_PROBLEMS],
        errors=(row["errors"] + outcome.errors)[:MAX_RECORDED_PROBLEMS],
        complete=row["complete"] or batch.complete,
        finished_at=uow.now if batch.complete else row["finished_at"],
    ))
