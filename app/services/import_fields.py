"""The CI fields an import sets besides what ingest reconciles: status, environment, criticality,
owner and tags.

Ingest (app/services/ingest/) reconciles a report's name and attributes under source precedence, and
sets environment and owner only when it creates a CI: discovery never reports the others. A
spreadsheet does, and these fields have no per-source provenance (only edits and imports set them),
so an import sets the ones its rows give, as an edit would. This phase runs between ingest's
reconcile and apply, on the same `Changes`, so that one change record per CI holds the whole diff and
one version bump covers it; then `write` stores the four fields ingest's own update leaves alone.

It must never write anything but those fields, and only for CIs the batch derived.
"""

import uuid
from typing import Any

from sqlalchemy import Connection, bindparam, update

from app.models import ConfigurationItem
from app.services import cis as ci_service
from app.services.ingest.phases import Changes

CI = ConfigurationItem.__table__
FIELDS = ("status", "environment", "criticality", "owner", "tags")
_WRITTEN_HERE = ("environment", "criticality", "owner", "tags")  # status travels with ingest's update


def reconcile_fields(changes: Changes, given: dict[uuid.UUID, list[dict[str, Any]]], stored: dict[uuid.UUID, Any],
                     now) -> dict[uuid.UUID, dict[str, Any]]:
    """Pure. `given` holds, per CI, the fields each of its rows gave (in file order, the last wins);
    `stored` the CIs as read and locked by identify. Adjusts `changes` (rows, change records, versions)
    and returns the values `write` must store, per CI."""
    creates = {row["id"]: row for row in changes.creates}
    updates = {row["id"]: row for row in changes.updates}
    record_at = {(record[1], record[2]): position for position, record in enumerate(changes.records) if record[0] == "ci"}
    to_write: dict[uuid.UUID, dict[str, Any]] = {}
    for ci_id, field_rows in given.items():
        if ci_id in creates:
            row = creates[ci_id]
            for fields in field_rows:
                row.update(fields)
            position = record_at[(ci_id, "create")]
            changes.records[position] = ("ci", ci_id, "create", _with_fields(row, changes.records[position][3]))
            continue
        before = stored.get(ci_id)
        if before is None:
            continue  # not derived (refused by its schema): nothing to set
        _update(changes, ci_id, before, updates.get(ci_id), field_rows, record_at, to_write, now)
    changes.records[:] = [record for record in changes.records if record is not None]  # an update undone
    return to_write


def _with_fields(row: dict[str, Any], diff: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """ci_service.creation_diff(row) from the diff ingest made before the fields were set: its fields
    made again, in history order, and the rest (attributes, first and last seen) kept."""
    head = {public: [None, row[column]] for public, column in ci_service.CREATED_FIELDS if row[column] is not None}
    return {**head, **{name: change for name, change in diff.items() if name not in head and name not in FIELDS}}


def _update(changes: Changes, ci_id: uuid.UUID, before: Any, ingest_row: dict[str, Any] | None,
            field_rows: list[dict[str, Any]], record_at: dict, to_write: dict, now) -> None:
    after = {name: before[name] for name in FIELDS}
    if ingest_row is not None:
        after["status"] = ingest_row["status"]  # a stale CI seen again is active, unless a row says otherwise
    for fields in field_rows:
        after.update(fields)
    field_diff = {name: [before[name], after[name]] for name in FIELDS if before[name] != after[name]}
    position = record_at.get((ci_id, "update"))
    ingest_diff = dict(changes.records[position][3]) if position is not None else {}
    ingest_diff.pop("status", None)
    diff = dict(sorted({**ingest_diff, **field_diff}.items()))
    version = before["version"] + (1 if diff else 0)
    if ingest_row is None and diff:
        ingest_row = {"id": ci_id, "ci_class": before["ci_class"], "name": before["name"],
                      "attributes": before["attributes"], "provenance": before["provenance"], "last_seen": now}
        changes.updates.append(ingest_row)
    if ingest_row is not None:
        ingest_row.update(status=after["status"], version=version,
                          updated_at=now if diff else before["updated_at"])
        if not diff and ingest_row["provenance"] == before["provenance"]:
            changes.updates.remove(ingest_row)  # nothing left to write but last_seen: touch_cis does that
    if position is not None:
        changes.records[position] = ("ci", ci_id, "update", diff) if diff else None
    elif diff:
        changes.records.append(("ci", ci_id, "update", diff))
    changes.versions[ci_id] = version
    if any(name in field_diff for name in _WRITTEN_HERE):
        to_write[ci_id] = {name: after[name] for name in _WRITTEN_HERE}


_UPDATE_FIELDS = (update(CI).where(CI.c.id == bindparam("_id"))
                  .values(environment=bindparam("_environment"), criticality=bindparam("_criticality"),
                          owner=bindparam("_owner"), tags=bindparam("_tags")))


def write(conn: Connection, values: dict[uuid.UUID, dict[str, Any]]) -> None:
    """Stores the fields `reconcile_fields` decided (one statement, executed for every CI)."""
    if values:
        conn.execute(_UPDATE_FIELDS, [{"_id": ci_id, **{f"_{name}": value for name, value in fields.items()}}
                                      for ci_id, fields in values.items()])
