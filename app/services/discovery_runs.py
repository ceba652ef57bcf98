"""Reading the record of discovery runs."""

from typing import Any

from sqlalchemy import Connection, select, tuple_

from app.models import DiscoveryRun
from app.models.types import as_utc
from app.services.errors import InvalidInput, NotFound, field_error
from app.services.pagination import decode_cursor, page

RUN = DiscoveryRun.__table__


def to_public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"], "source": row["source"], "actor": row["actor"], "scope": row["scope"],
        "started_at": as_utc(row["started_at"]), "finished_at": as_utc(row["finished_at"]),
        "complete": row["complete"], "batches": row["batches"], "counts": row["counts"],
        "conflicts": row["conflicts"], "errors": row["errors"],
    }


def get_run(conn: Connection, run_id: str) -> dict[str, Any]:
    row = conn.execute(select(RUN).where(RUN.c.id == run_id)).mappings().first()
    if row is None:
        raise NotFound(f"No discovery run with id '{run_id}'.")
    return to_public(row)


def list_runs(conn: Connection, *, source: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
    query = select(RUN).order_by(RUN.c.started_at.desc(), RUN.c.id.desc()).limit(limit + 1)
    if source is not None:
        query = query.where(RUN.c.source == source)
    if cursor:
        run_id = decode_cursor(cursor)
        after = conn.execute(select(RUN.c.started_at).where(RUN.c.id == run_id)).scalar()
        if after is None:
            raise InvalidInput("The cursor names a run that does not exist.", [field_error("cursor", "unknown run")])
        query = query.where(tuple_(RUN.c.started_at, RUN.c.id) < tuple_(after, run_id))
    return page(conn.execute(query).mappings().all(), limit, to_public, "id")
