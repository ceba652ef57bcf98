"""Relationships between CIs: create, read, list, end. One relationship per (source, target, type)."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.core.dialect import locked
from app.models import CISource, ConfigurationItem, EndedRelationship, Relationship, RelationshipSource
from app.models.discovery import MANUAL_SOURCE
from app.models.relationship import RelationshipCreate
from app.models.service_map import MAPPING_SOURCE
from app.models.types import as_utc, new_id
from app.services.bulk import insert_rows
from app.services.errors import Conflict, InvalidInput, NotFound, field_error
from app.services.storable import require_storable
from app.services.history import UnitOfWork, diff_fields
from app.services.history import creation_diff as history_creation_diff
from app.services.pagination import decode_uuid_cursor, page
from app.services.registry import RegistryCache
from app.services.sightings import columns_with_latest_sighting, forget_fingerprints

REL = Relationship.__table__
REL_SOURCE = RelationshipSource.__table__
ENDED = EndedRelationship.__table__
CI = ConfigurationItem.__table__

HISTORY_FIELDS = ["source", "target", "type", "attributes", "first_seen", "last_seen"]

# A relationship's last_seen is the latest of its own and its sightings: each source's row (written
# when the relationship was reported row by row) or, when the source's report carrying it was
# confirmed by fingerprint, that report's sighting. Confirming a report rewrites no relationship row.
_ANCHOR = CISource.__table__.alias("anchor")
_LATEST_SIGHTING = (
    select(func.max(case(
        (and_(_ANCHOR.c.fingerprint == REL_SOURCE.c.anchor_fingerprint, _ANCHOR.c.last_seen > REL_SOURCE.c.last_seen),
         _ANCHOR.c.last_seen),
        else_=REL_SOURCE.c.last_seen)))
    .select_from(REL_SOURCE.outerjoin(_ANCHOR, and_(_ANCHOR.c.ci_id == REL_SOURCE.c.anchor_ci_id,
                                                    _ANCHOR.c.source == REL_SOURCE.c.source)))
    .where(REL_SOURCE.c.relationship_id == REL.c.id, REL_SOURCE.c.source != MANUAL_SOURCE)  # a claim, not a sighting
    .scalar_subquery()
)
REL_COLUMNS = columns_with_latest_sighting(REL, _LATEST_SIGHTING)


def to_public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "source": row["source_id"],
        "target": row["target_id"],
        "type": row["type"],
        "attributes": row["attributes"],
        "first_seen": as_utc(row["first_seen"]),
        "last_seen": as_utc(row["last_seen"]),
        "created_at": as_utc(row["created_at"]),
    }


def creation_diff(row: Any) -> dict[str, list[Any]]:
    """diff_fields(None, to_public(row), HISTORY_FIELDS), built directly."""
    return history_creation_diff((("source", row["source_id"]), ("target", row["target_id"]), ("type", row["type"])),
                                 row["attributes"], row["first_seen"], row["last_seen"])


def create_relationship(uow: UnitOfWork, registry_cache: RegistryCache, data: RelationshipCreate) -> dict[str, Any]:
    rtype = registry_cache.knows_type(data.type, conn=uow.conn).get_type(data.type)
    require_storable(data.attributes, "attributes")
    if data.source == data.target:
        raise InvalidInput(
            "A CI cannot be related to itself.", [field_error("target", "equals source")]
        )
    # Both ends stay locked until commit (no foreign key, migration 0006): a CI being deleted waits,
    # then ends this relationship with its others.
    ends = locked(uow.conn, select(CI.c.id).where(CI.c.id.in_([data.source, data.target])), order_by=CI.c.id,
                  read=True, key_share=True)
    found = set(uow.conn.execute(ends).scalars())
    missing = [field_error(end, f"no CI with id {ci_id}")
               for end, ci_id in (("source", data.source), ("target", data.target)) if ci_id not in found]
    if missing:
        raise InvalidInput(f"The relationship names a CI that does not exist: {missing[0]['message']}.", missing)
    if rtype.membership:
        _require_redundancy_group(uow.conn, registry_cache, data.target, data.type)
    claimed = _claim_karta_owned(uow, data)
    if claimed is not None:
        return claimed
    _refuse_duplicate(uow.conn, data.source, data.target, data.type)
    row = {
        "id": new_id(),
        "source_id": data.source,
        "target_id": data.target,
        "type": data.type,
        "attributes": data.attributes,
        "first_seen": None,
        "last_seen": None,
        "created_at": uow.now,
    }
    try:
        with uow.conn.begin_nested():
            uow.conn.execute(insert(REL), row)
    except IntegrityError:
        _refuse_duplicate(uow.conn, data.source, data.target, data.type)
        raise
    # A person asserted it: discovery that stops reporting it must not end it.
    uow.conn.execute(insert(REL_SOURCE), {"relationship_id": row["id"], "source": MANUAL_SOURCE, "scope_key": "",
                                          "last_seen": uow.now, "last_run_id": "api"})
    public = to_public(row)
    uow.record("relationship", row["id"], "create", diff_fields(None, public, HISTORY_FIELDS))
    return public


def _require_redundancy_group(conn: Connection, registry_cache: RegistryCache, target: uuid.UUID, rel_type: str) -> None:
    """A membership relationship makes its target a redundancy group in every impact answer (down only
    when fewer than min_members members are up): refused unless the target is one, a CI of the
    `cluster` family or one with a `min_members` attribute, so that no typo turns an application into
    a group and silently changes what impact says."""
    ci_class, attributes = conn.execute(select(CI.c.ci_class, CI.c.attributes).where(CI.c.id == target)).one()
    family = registry_cache.knows_class(ci_class, conn=conn).classes[ci_class].family
    if family != "cluster" and "min_members" not in attributes:
        raise InvalidInput(
            f"'{rel_type}' makes its target a redundancy group, but CI {target} is a {ci_class} without "
            "min_members. Relate members to a CI of class cluster (or give the target a min_members attribute).",
            [field_error("target", "not a redundancy group")])


def _claim_karta_owned(uow: UnitOfWork, data: RelationshipCreate) -> dict[str, Any] | None:
    """A person asserting a relationship Karta keeps for a service map (its only sighting of source
    `service_mapping`, app.services.service_map) makes it theirs too: their `manual` sighting is added
    beside Karta's, and Karta, which ends only relationships no other source sighted, never ends it.
    Answered as a new one is; the person's attributes replace Karta's (none), recorded. None when
    there is no such relationship (a relationship of any other source is a conflict, as before)."""
    conn = uow.conn
    row = conn.execute(select(*REL_COLUMNS).where(REL.c.source_id == data.source, REL.c.target_id == data.target,
                                                  REL.c.type == data.type)).mappings().first()
    if row is None:
        return None
    sources = set(conn.execute(select(REL_SOURCE.c.source).where(REL_SOURCE.c.relationship_id == row["id"])).scalars())
    if sources != {MAPPING_SOURCE}:
        return None
    conn.execute(insert(REL_SOURCE), {"relationship_id": row["id"], "source": MANUAL_SOURCE, "scope_key": "",
                                      "last_seen": uow.now, "last_run_id": "api"})
    before = to_public(row)
    if data.attributes != row["attributes"]:
        conn.execute(update(REL).where(REL.c.id == row["id"]).values(attributes=data.attributes))
        after = {**before, "attributes": data.attributes}
        uow.record("relationship", row["id"], "update", diff_fields(before, after, HISTORY_FIELDS))
        return after
    return before


def _refuse_duplicate(conn: Connection, source: uuid.UUID, target: uuid.UUID, rel_type: str) -> None:
    existing = conn.execute(
        select(REL.c.id).where(REL.c.source_id == source, REL.c.target_id == target, REL.c.type == rel_type)
    ).scalar()
    if existing is not None:
        raise Conflict(
            f"{source} already {rel_type} {target}: relationship {existing}.", existing_relationship=str(existing)
        )


def end_relationships(uow: UnitOfWork, rows: Sequence[Any]) -> list[Any]:
    """Delete relationships, recording each that this transaction deleted (the record keeps its ends and
    type, so history has it); returns those rows. One a concurrent transaction deleted first is
    neither deleted nor recorded again: its DELETE waits for that commit and then finds nothing."""
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    # A source that reported one of these would now report a relationship that is gone. Forgetting
    # locks both ends FOR UPDATE, which also keeps the sightings whole without a foreign key (0006):
    # a batch writing a sighting of one of these holds an end locked, so this waits for its commit
    # and then deletes that sighting too.
    forget_fingerprints(uow.conn, [row[end] for row in rows for end in ("source_id", "target_id")])
    # What the DELETE removed, as it was then: `rows` were read before the locks were taken, and an
    # update committed meanwhile would otherwise leave the record with attributes it no longer had.
    deleted: dict[uuid.UUID, Any] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        uow.conn.execute(delete(REL_SOURCE).where(REL_SOURCE.c.relationship_id.in_(chunk)))  # no cascade (0006)
        returned = uow.conn.execute(delete(REL).where(REL.c.id.in_(chunk))
                                    .returning(REL.c.id, REL.c.attributes, REL.c.first_seen))
        deleted.update((row.id, row) for row in returned)
    ended = [{**row, "attributes": deleted[row["id"]].attributes, "first_seen": deleted[row["id"]].first_seen}
             for row in rows if row["id"] in deleted]
    for row in ended:
        uow.record("relationship", row["id"], "delete", diff_fields(to_public(row), None, HISTORY_FIELDS))
    # Its ends, for the histories of the CIs it touched (changes.relationships_touching).
    insert_rows(uow.conn, ENDED, [{"relationship_id": row["id"], "source_id": row["source_id"],
                                   "target_id": row["target_id"]} for row in ended])
    return ended


def delete_relationship(uow: UnitOfWork, relationship_id: uuid.UUID) -> None:
    row = uow.conn.execute(select(*REL_COLUMNS).where(REL.c.id == relationship_id)).mappings().first()
    if row is None or not end_relationships(uow, [row]):
        raise NotFound(f"No relationship with id {relationship_id}.")


def get_relationship(conn: Connection, relationship_id: uuid.UUID) -> dict[str, Any]:
    row = conn.execute(select(*REL_COLUMNS).where(REL.c.id == relationship_id)).mappings().first()
    if row is None:
        raise NotFound(f"No relationship with id {relationship_id}.")
    return to_public(row)


def relationship_conditions(rel_type: str | None, source: uuid.UUID | None,
                            target: uuid.UUID | None) -> list[ColumnElement[bool]]:
    """The relationship list's filters as conditions (the list and its CSV export share them)."""
    conditions = []
    if rel_type is not None:
        conditions.append(REL.c.type == rel_type)
    if source is not None:
        conditions.append(REL.c.source_id == source)
    if target is not None:
        conditions.append(REL.c.target_id == target)
    return conditions


def list_relationships(
    conn: Connection,
    *,
    rel_type: str | None = None,
    source: uuid.UUID | None = None,
    target: uuid.UUID | None = None,
    limit: int,
    cursor: str | None = None,
) -> dict[str, Any]:
    query = select(*REL_COLUMNS).where(*relationship_conditions(rel_type, source, target)).order_by(REL.c.id).limit(limit + 1)
    if cursor:
        query = query.where(REL.c.id > decode_uuid_cursor(cursor))
    rows = conn.execute(query).mappings().all()
    return page(rows, limit, to_public, "id")
