"""Bulk reads and writes for ingest: a fixed number of statements per batch, whatever its size.

Lists of keys travel as one JSON parameter (PostgreSQL: jsonb_to_recordset; SQLite: json_each), so a
lookup of 30,000 identifier values is one statement, not 30,000, and no driver parameter limit applies.

The phases (phases.py) reach the database only through this module, which keeps the performance
shortcuts out of their sight, each tested to agree with the plain way (tests/test_ingest_shortcuts.py):
rows inserted by COPY (bulk.insert_rows), writes queued on a second thread (`Writes`, writes.py).
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Uuid, bindparam, delete, func, select, text, tuple_, update

from app.core.dialect import locked, locking_clause
from app.models import CIIdentifier, CISource, ConfigurationItem, PrecedenceRule, Relationship, RelationshipSource
from app.services.bulk import id_in, insert_rows, is_postgres, json_list, json_rows
from app.services.ingest.writes import BackgroundWrites
from app.services.sightings import forget_fingerprints

# A batch's writes, queued in order on its connection (by a second thread on PostgreSQL, writes.py).
Writes = BackgroundWrites

CI = ConfigurationItem.__table__
IDENT = CIIdentifier.__table__
REL = Relationship.__table__
CI_SOURCE = CISource.__table__
REL_SOURCE = RelationshipSource.__table__
PRECEDENCE = PrecedenceRule.__table__

Triple = tuple[str, str, str]


def precedence_rules(conn: Connection) -> list[tuple[str | None, str | None, list[str]]]:
    """(class, attribute, sources) of every precedence rule."""
    return [tuple(row) for row in conn.execute(select(PRECEDENCE.c.ci_class, PRECEDENCE.c.attribute,
                                                      PRECEDENCE.c.sources)).all()]


def find_identifiers(conn: Connection, triples: Sequence[Triple]) -> dict[Triple, uuid.UUID]:
    if not triples:
        return {}
    w = json_rows(conn, "w", "wanted", {"f": "text", "k": "text", "v": "text"}, triples)
    statement = text(
        f"SELECT i.family, i.key, i.value, i.ci_id FROM {w.source} {w.join} ci_identifier AS i "
        f"ON i.family = {w.columns['f']} AND i.key = {w.columns['k']} AND i.value = {w.columns['v']}")
    rows = conn.execute(statement.columns(ci_id=Uuid), {"wanted": w.value}).all()
    return {(family, key, value): ci_id for family, key, value, ci_id in rows}


def strongly_identified(conn: Connection, ci_ids: set[uuid.UUID], held_keys: set[str]) -> dict[uuid.UUID, set[Triple]]:
    """The identifiers other than held ones of those of `ci_ids` that have some."""
    if not ci_ids:
        return {}
    query = select(IDENT.c.family, IDENT.c.key, IDENT.c.value, IDENT.c.ci_id).where(
        id_in(conn, IDENT.c.ci_id, ci_ids), IDENT.c.key.not_in(sorted(held_keys) or [""]))
    found: dict[uuid.UUID, set[Triple]] = {}
    for family, key, value, ci_id in conn.execute(query):
        found.setdefault(ci_id, set()).add((family, key, value))
    return found


def peek_cis(conn: Connection, ci_ids: set[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The CIs' class, name, environment and attributes, read without a lock: for identification to
    decide with (the CI it chooses is read again, locked, by load_cis)."""
    if not ci_ids:
        return {}
    query = select(CI.c.id, CI.c.ci_class, CI.c.name, CI.c.environment, CI.c.attributes).where(
        id_in(conn, CI.c.id, ci_ids))
    return {row["id"]: row for row in conn.execute(query).mappings()}


def load_cis(conn: Connection, ci_ids: set[uuid.UUID]) -> dict[uuid.UUID, Any]:
    if not ci_ids:
        return {}
    # In id order, so two overlapping batches cannot deadlock. FOR UPDATE, not the weaker NO KEY
    # UPDATE: a batch relating to these CIs (FOR KEY SHARE) then waits here instead of deadlocking
    # later, when this batch takes FOR UPDATE to forget a fingerprint of a relationship both change.
    query = locked(conn, select(CI).where(id_in(conn, CI.c.id, ci_ids)).order_by(CI.c.id))
    return {row["id"]: row for row in conn.execute(query).mappings()}


def existing_ci_ids(conn: Connection, ci_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Those of `ci_ids` that exist, locked until commit so that none is deleted under a relationship
    this batch writes to it (relationships have no foreign keys, migration 0006)."""
    if not ci_ids:
        return set()
    query = locked(conn, select(CI.c.id).where(id_in(conn, CI.c.id, ci_ids)), order_by=CI.c.id, read=True,
                   key_share=True)
    return set(conn.execute(query).scalars())


def insert_cis(conn: Connection, rows: list[dict[str, Any]]) -> None:
    insert_rows(conn, CI, rows)


_UPDATE_CI = (
    update(CI)
    .where(CI.c.id == bindparam("_id"))
    .values(
        ci_class=bindparam("_class"), name=bindparam("_name"), status=bindparam("_status"),
        attributes=bindparam("_attributes"), provenance=bindparam("_provenance"),
        version=bindparam("_version"), updated_at=bindparam("_updated_at"), last_seen=bindparam("_last_seen"),
        # A CI made through the API has none: discovery seeing it first is its first sighting.
        first_seen=func.coalesce(CI.c.first_seen, bindparam("_last_seen")),
    )
)


def update_cis(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(_UPDATE_CI, [{
            "_id": row["id"], "_class": row["ci_class"], "_name": row["name"], "_status": row["status"],
            "_attributes": row["attributes"], "_provenance": row["provenance"], "_version": row["version"],
            "_updated_at": row["updated_at"], "_last_seen": row["last_seen"],
        } for row in rows])


def touch_cis(conn: Connection, ci_ids: set[uuid.UUID], at: datetime) -> None:
    """Move last_seen (and set a missing first_seen) only: no version, no history."""
    if ci_ids:
        conn.execute(update(CI).where(id_in(conn, CI.c.id, ci_ids))
                     .values(last_seen=at, first_seen=func.coalesce(CI.c.first_seen, at)))


def claim_identifiers(conn: Connection, strong: list[tuple[Triple, uuid.UUID]], held: list[tuple[Triple, uuid.UUID]],
                      secondary: Sequence[tuple[Triple, uuid.UUID, uuid.UUID | None]] = ()) -> None:
    """Insert strong identifiers not yet indexed; move held ones to their new holder. A secondary one
    (a router's interface MAC, held under a key other classes identify by) moves only from the holder
    identification saw: a row another batch wrote since (an SSH host naming that MAC strong) stays, the
    insert below does nothing, and the report is not confirmed (phases.apply: `lost`)."""
    taken = [(f, k, v, holder) for (f, k, v), _, holder in secondary if holder is not None]
    for start in range(0, len(taken), 500):
        losers = conn.execute(delete(IDENT).where(
            tuple_(IDENT.c.family, IDENT.c.key, IDENT.c.value, IDENT.c.ci_id).in_(taken[start:start + 500]))
            .returning(IDENT.c.ci_id))
        forget_fingerprints(conn, losers.scalars().all())
    if held:
        m = json_rows(conn, "m", "moved", {"f": "text", "k": "text", "v": "text", "c": "uuid"},
                      ((f, k, v, c) for (f, k, v), c in held))
        losers = conn.execute(text(
            f"DELETE FROM ci_identifier WHERE EXISTS (SELECT 1 FROM {m.source} WHERE ci_identifier.family = "
            f"{m.columns['f']} AND ci_identifier.key = {m.columns['k']} AND ci_identifier.value = {m.columns['v']} "
            f"AND ci_identifier.ci_id <> {m.columns['c']}) RETURNING ci_id"
        ).columns(ci_id=Uuid), {"moved": m.value})
        # The CIs that lost an address would, reporting it again, take it back: derive them in full.
        forget_fingerprints(conn, losers.scalars().all())
    # A plain insert for strong identifiers: if a concurrent batch indexed one first, the primary key
    # refuses this one and the whole batch is retried (it will then find that CI instead of making a twin).
    insert_rows(conn, IDENT, [{"family": f, "key": k, "value": v, "ci_id": c} for (f, k, v), c in dict(strong).items()])
    held = [*held, *((triple, ci_id) for triple, ci_id, _ in secondary)]
    insert_rows(conn, IDENT, [{"family": f, "key": k, "value": v, "ci_id": c} for (f, k, v), c in dict(held).items()],
                on_conflict_do_nothing=True)


def confirmed_reports(conn: Connection, source: str, fingerprints: Sequence[str]) -> dict[str, uuid.UUID]:
    """The CI each fingerprint still confirms: the source's last report on it, at the version that
    report left, not stale. A fingerprint found on two CIs confirms nothing."""
    if not fingerprints:
        return {}
    # The fingerprints as one array on PostgreSQL (= ANY: one index scan), a JSON list on SQLite: the
    # unchanged pass's hot statement, measured in this form (BENCHMARKS.md).
    if is_postgres(conn):
        wanted, values = "s.fingerprint = ANY(string_to_array(:fingerprints, ','))", ",".join(fingerprints)
    else:
        wanted, values = "s.fingerprint IN (SELECT value FROM json_each(:fingerprints))", json_list(fingerprints)
    # FOR SHARE: a concurrent batch cannot change (or make stale) a CI between this check and this
    # batch's commit; it waits, and then sees this sighting.
    lock = locking_clause(conn, "FOR SHARE OF c")
    rows = conn.execute(text(
        "SELECT s.fingerprint, s.ci_id FROM ci_source AS s JOIN ci AS c ON c.id = s.ci_id "
        f"WHERE s.source = :source AND {wanted} AND c.version = s.ci_version AND c.status <> 'stale' ORDER BY s.ci_id{lock}"
    ).columns(ci_id=Uuid), {"source": source, "fingerprints": values}).all()
    found: dict[str, uuid.UUID | None] = {}
    for fingerprint, ci_id in rows:
        found[fingerprint] = ci_id if fingerprint not in found else None
    return {fingerprint: ci_id for fingerprint, ci_id in found.items() if ci_id is not None}


def confirm_sightings(conn: Connection, ci_ids: set[uuid.UUID], source: str, scope_key: str, run_id: str,
                      at: datetime) -> None:
    """A confirmed report: the sighting moves, nothing else is written."""
    if ci_ids:
        conn.execute(update(CI_SOURCE).where(CI_SOURCE.c.source == source, id_in(conn, CI_SOURCE.c.ci_id, ci_ids))
                     .values(scope_key=scope_key, last_seen=at, last_run_id=run_id, missed_runs=0))


def _upsert_sightings(conn: Connection, table, rows: list[tuple], per_row: dict[str, str], fixed: dict[str, str],
                      params: dict[str, Any]) -> None:
    """Insert or refresh one sighting per row, as one INSERT ... SELECT over the rows sent as one JSON
    parameter. `per_row` names the values each row tuple holds, in order, with their PostgreSQL types;
    `fixed` gives the SQL for the values every row shares. On conflict all but the key and first_seen
    are refreshed."""
    key = next(iter(per_row))
    columns = [*per_row, *fixed]
    r = json_rows(conn, "r", "rows", per_row, rows)
    source_rows, picked, value = r.source, list(r.columns.values()), r.value
    refresh = ", ".join(f"{name} = excluded.{name}" for name in columns if name not in (key, "source", "first_seen"))
    statement = (f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {', '.join(picked + list(fixed.values()))} "
                 f"FROM {source_rows} WHERE true ON CONFLICT ({key}, source) DO UPDATE SET {refresh}")
    conn.execute(text(statement).bindparams(bindparam("at", type_=table.c.last_seen.type)), {**params, "rows": value})


def record_ci_sightings(conn: Connection, rows: list[dict[str, Any]], source: str, scope_key: str, run_id: str,
                        at: datetime, *, created: set[uuid.UUID] = frozenset()) -> None:
    """Upsert one sighting per CI; rows are {"ci_id", "fingerprint", "ci_version"} (fingerprint may be None).
    A CI `created` by this batch has no sighting yet: its row is inserted without the upsert's lookup."""
    fresh = [r for r in rows if r["ci_id"] in created]
    insert_rows(conn, CI_SOURCE, [{"ci_id": r["ci_id"], "fingerprint": r["fingerprint"], "ci_version": r["ci_version"],
                                   "source": source, "scope_key": scope_key, "first_seen": at, "last_seen": at,
                                   "last_run_id": run_id, "missed_runs": 0} for r in fresh])
    rows = [r for r in rows if r["ci_id"] not in created] if fresh else rows
    if rows:
        _upsert_sightings(
            conn, CI_SOURCE, [(r["ci_id"], r["fingerprint"], r["ci_version"]) for r in rows],
            {"ci_id": "uuid", "fingerprint": "text", "ci_version": "int"},
            {"source": ":source", "scope_key": ":scope_key", "first_seen": ":at", "last_seen": ":at",
             "last_run_id": ":run_id", "missed_runs": "0"},
            {"source": source, "scope_key": scope_key, "at": at, "run_id": run_id})


def find_relationships(conn: Connection, keys: Sequence[tuple[uuid.UUID, uuid.UUID, str]]) -> dict[tuple, Any]:
    if not keys:
        return {}
    w = json_rows(conn, "w", "wanted", {"s": "uuid", "t": "uuid", "y": "text"}, keys)
    statement = text(
        f"SELECT r.id, r.source_id, r.target_id, r.type, r.attributes FROM {w.source} {w.join} relationship AS r "
        f"ON r.source_id = {w.columns['s']} AND r.target_id = {w.columns['t']} AND r.type = {w.columns['y']}")
    wanted = w.value
    statement = statement.columns(id=Uuid, source_id=Uuid, target_id=Uuid, attributes=REL.c.attributes.type)
    return {(row.source_id, row.target_id, row.type): row for row in conn.execute(statement, {"wanted": wanted}).all()}


def insert_relationships(conn: Connection, rows: list[dict[str, Any]]) -> None:
    insert_rows(conn, REL, rows)


_UPDATE_REL = update(REL).where(REL.c.id == bindparam("_id")).values(attributes=bindparam("_attributes"))


def update_relationship_attributes(conn: Connection, rows: list[tuple[uuid.UUID, dict]]) -> None:
    if rows:
        conn.execute(_UPDATE_REL, [{"_id": rel_id, "_attributes": attributes} for rel_id, attributes in rows])


def forget_anchored(conn: Connection, anchors: set[uuid.UUID], source: str) -> None:
    """These CIs' reports are being derived: what they carried is no longer confirmed by their fingerprint."""
    if anchors:
        conn.execute(update(REL_SOURCE).where(REL_SOURCE.c.source == source, id_in(conn, REL_SOURCE.c.anchor_ci_id, anchors),
                                              REL_SOURCE.c.anchor_fingerprint.is_not(None))
                     .values(anchor_fingerprint=None))


def record_relationship_sightings(conn: Connection, rows: list[dict[str, Any]], source: str, scope_key: str,
                                  run_id: str, at: datetime, *, created: set[uuid.UUID] = frozenset()) -> None:
    """Upsert one sighting per relationship; rows are {"relationship_id", "anchor_ci_id", "anchor_fingerprint"}.
    A relationship `created` by this batch has no sighting yet: its row is inserted without the upsert's lookup."""
    fresh = [r for r in rows if r["relationship_id"] in created]
    insert_rows(conn, REL_SOURCE, [{**r, "source": source, "scope_key": scope_key, "last_seen": at,
                                    "last_run_id": run_id} for r in fresh])
    rows = [r for r in rows if r["relationship_id"] not in created] if fresh else rows
    if rows:
        _upsert_sightings(
            conn, REL_SOURCE, [(r["relationship_id"], r["anchor_ci_id"], r["anchor_fingerprint"]) for r in rows],
            {"relationship_id": "uuid", "anchor_ci_id": "uuid", "anchor_fingerprint": "text"},
            {"source": ":source", "scope_key": ":scope_key", "last_seen": ":at", "last_run_id": ":run_id"},
            {"source": source, "scope_key": scope_key, "at": at, "run_id": run_id})
