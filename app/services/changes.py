"""Reading history: the global change feed and one object's history."""

import uuid
from typing import Any

from sqlalchemy import Connection, select

from app.models import ChangeRecord, ConfigurationItem
from app.models.types import as_utc
from app.services.errors import InvalidInput, NotFound, field_error
from app.services.pagination import decode_cursor, page

CHANGE = ChangeRecord.__table__
CI = ConfigurationItem.__table__


def to_public(row: Any) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "at": as_utc(row["at"]),
        "actor": row["actor"],
        "object_type": row["object_type"],
        "object_id": row["object_id"],
        "action": row["action"],
        "diff": row["diff"],
    }


def change_feed(conn: Connection, *, since: int, limit: int) -> dict[str, Any]:
    """Records after `since`, oldest first; `last_seq` is the `since` to send next time."""
    rows = conn.execute(
        select(CHANGE).where(CHANGE.c.seq > since).order_by(CHANGE.c.seq).limit(limit)
    ).mappings().all()
    items = [to_public(row) for row in rows]
    return {"items": items, "last_seq": items[-1]["seq"] if items else since}


def object_history(conn: Connection, object_id: uuid.UUID, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """One CI's change records, newest first; still readable after the CI was deleted."""
    query = select(CHANGE).where(CHANGE.c.object_id == object_id).order_by(CHANGE.c.seq.desc()).limit(limit + 1)
    if cursor:
        try:
            before = int(decode_cursor(cursor))
            if not 0 < before < 2**63:
                raise ValueError("out of range")
        except ValueError as exc:
            raise InvalidInput("The cursor is not one this API issued.", [field_error("cursor", "malformed cursor")]) from exc
        query = query.where(CHANGE.c.seq < before)
    rows = conn.execute(query).mappings().all()
    if not rows and not cursor and conn.execute(select(CI.c.id).where(CI.c.id == object_id)).first() is None:
        raise NotFound(f"No CI with id {object_id}, and none ever had history.")
    return page(rows, limit, to_public, "seq")


def last_seq(conn: Connection) -> int:
    return conn.execute(select(CHANGE.c.seq).order_by(CHANGE.c.seq.desc()).limit(1)).scalar() or 0
