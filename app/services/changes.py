"""Reading history: the global change feed (filtered or not) and one CI's history.

Sequence numbers increase in commit order but are not dense: on PostgreSQL a transaction that takes
numbers and then does not commit (a server killed mid-batch, a rollback) leaves a gap. A gap is never
a missing record.

`from` and `until` filter on a record's `at`: when its transaction began, not when it committed (a
long batch that began before `until` may commit after a client read up to the head).

A filtered feed without an object id cannot use an index for its filter (object type, actor, time);
rather than scan the table without bound, one request looks at most SCAN_WINDOW sequence numbers past
`since`, and `last_seq` says where it stopped: a page may be empty while `last_seq` moves on, and a
client reads on until `last_seq` reaches `head_seq`.

A CI's history holds its own records and those of every relationship that touches or touched it: the
live ones are found by their ends in the relationship table, the ended ones in ended_relationship
(migration 0007), and all their records by object id.
"""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, union

from app.models import ChangeRecord, ConfigurationItem, EndedRelationship, Relationship
from app.models.types import as_utc
from app.services.bulk import id_in
from app.services.errors import InvalidInput, NotFound, field_error
from app.services.pagination import decode_cursor, page

CHANGE = ChangeRecord.__table__
CI = ConfigurationItem.__table__
REL = Relationship.__table__
ENDED = EndedRelationship.__table__
SCAN_WINDOW = 100_000
MAX_SEQ = 2**63 - 1


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


def change_feed(conn: Connection, *, since: int, limit: int, object_type: str | None = None,
                object_id: uuid.UUID | None = None, actor: str | None = None, at_from: datetime | None = None,
                until: datetime | None = None) -> dict[str, Any]:
    """Records after `since`, oldest first, matching every filter given; `last_seq` is the `since` to
    send next time, `head_seq` the newest record's."""
    at_from, until = as_utc(at_from), as_utc(until)  # a time sent without an offset is UTC
    if at_from is not None and until is not None and until <= at_from:
        raise InvalidInput("'until' must be later than 'from'.", [field_error("until", "not after 'from'")])
    query = select(CHANGE).where(CHANGE.c.seq > since).order_by(CHANGE.c.seq).limit(limit)
    conditions = []
    if object_type is not None:
        conditions.append(CHANGE.c.object_type == object_type)
    if actor is not None:
        conditions.append(CHANGE.c.actor == actor)
    if at_from is not None:
        conditions.append(CHANGE.c.at >= at_from)
    if until is not None:
        conditions.append(CHANGE.c.at < until)
    head = last_seq(conn)
    window_end = None
    if object_id is not None:
        query = query.where(CHANGE.c.object_id == object_id)  # ix_change_record_object: no window needed
    elif conditions:
        window_end = min(since + SCAN_WINDOW, MAX_SEQ)
        query = query.where(CHANGE.c.seq <= window_end)
    rows = conn.execute(query.where(*conditions)).mappings().all()
    items = [to_public(row) for row in rows]
    if len(items) == limit:
        next_since = items[-1]["seq"]
    else:
        # Everything up to `head` was looked at (numbers are taken in commit order: whatever commits
        # later gets a larger one), or up to the window's end when that comes first.
        next_since = max(since, head, items[-1]["seq"] if items else since)
        if window_end is not None:
            next_since = max(since, min(window_end, next_since))
    return {"items": items, "last_seq": next_since, "head_seq": head}


def relationships_touching_query(ci_id: uuid.UUID):
    """The ids of every relationship that touches or touched the CI: live ones through the relationship
    table's indexes on its ends, ended ones through ended_relationship's (written by each deletion). One
    select per end, each served by its index."""
    return union(select(REL.c.id).where(REL.c.source_id == ci_id), select(REL.c.id).where(REL.c.target_id == ci_id),
                 select(ENDED.c.relationship_id).where(ENDED.c.source_id == ci_id),
                 select(ENDED.c.relationship_id).where(ENDED.c.target_id == ci_id))


def relationships_touching(conn: Connection, ci_id: uuid.UUID) -> list[uuid.UUID]:
    """Every relationship that touches or touched the CI, ended ones included."""
    return list(conn.execute(relationships_touching_query(ci_id)).scalars())


def object_history(conn: Connection, object_id: uuid.UUID, *, limit: int, cursor: str | None) -> dict[str, Any]:
    """One CI's change records and those of the relationships that touch or touched it, newest first;
    still readable after the CI was deleted."""
    related = relationships_touching(conn, object_id)
    subject = id_in(conn, CHANGE.c.object_id, [object_id, *related]) if related else CHANGE.c.object_id == object_id
    query = select(CHANGE).where(subject).order_by(CHANGE.c.seq.desc()).limit(limit + 1)
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
    return conn.execute(select(func.max(CHANGE.c.seq))).scalar() or 0
