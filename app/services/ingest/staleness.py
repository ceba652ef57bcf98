"""Closing a scope: what a complete run did not see.

A run that says `complete: true` covered its whole scope (the same source and the same subnets and
hosts as earlier runs; the scope's canonical form is its key). Then:
- every CI that source had seen in that scope and this run did not see misses one more run; when it
  has missed `stale_after_runs` complete runs in a row, or was last seen by that source more than
  `stale_after_days` ago, it becomes `stale` — unless another source has seen it since (a host that
  nmap no longer sees but SSH still logs into is not stale). A stale CI seen again becomes active.
- every relationship that source had reported in that scope and this run did not (neither row by row
  nor as part of a report confirmed by its fingerprint, see fingerprints.py) is ended (deleted,
  with its change record), unless another source, or a person through the API, also asserts it: then
  only this source's claim is dropped.
Discovery never deletes a CI.
"""

import uuid
from datetime import timedelta

from sqlalchemy import and_, delete, exists, select, update

from app.models import CISource, ConfigurationItem, Relationship, RelationshipSource
from app.services.bulk import id_in
from app.services.cis import HISTORY_FIELDS, to_public
from app.services.history import UnitOfWork, diff_fields
from app.services.relationships import REL_COLUMNS, end_relationships

CI = ConfigurationItem.__table__
REL = Relationship.__table__
CI_SOURCE = CISource.__table__
REL_SOURCE = RelationshipSource.__table__


def close_scope(uow: UnitOfWork, *, source: str, scope_key: str, run_id: str, after_runs: int,
                after_days: float) -> tuple[list[uuid.UUID], int]:
    """Returns the CIs made stale and the number of relationships ended."""
    conn = uow.conn
    unseen = and_(CI_SOURCE.c.source == source, CI_SOURCE.c.scope_key == scope_key, CI_SOURCE.c.last_run_id != run_id)
    conn.execute(update(CI_SOURCE).where(unseen).values(missed_runs=CI_SOURCE.c.missed_runs + 1))
    other = CI_SOURCE.alias("other")
    seen_since_by_another = exists(select(other.c.ci_id).where(
        other.c.ci_id == CI_SOURCE.c.ci_id, other.c.source != source, other.c.last_seen > CI_SOURCE.c.last_seen))
    candidates = (
        select(CI)
        .join(CI_SOURCE, CI_SOURCE.c.ci_id == CI.c.id)
        .where(unseen, CI.c.status.in_(["active", "maintenance", "planned"]),
               (CI_SOURCE.c.missed_runs >= after_runs) | (CI_SOURCE.c.last_seen < uow.now - timedelta(days=after_days)),
               ~seen_since_by_another)
        .order_by(CI.c.id)
    )
    stale = conn.execute(candidates).mappings().all()
    for row in stale:
        before = to_public(row)
        after = {**before, "status": "stale"}
        uow.record("ci", row["id"], "update", diff_fields(before, after, HISTORY_FIELDS))
    if stale:
        # One parameter however many (an array on PostgreSQL): a scope of 100,000 CIs going stale at once
        # would otherwise be one statement with a bound value per CI.
        conn.execute(update(CI).where(id_in(conn, CI.c.id, [row["id"] for row in stale]))
                     .values(status="stale", version=CI.c.version + 1, updated_at=uow.now))
    return [row["id"] for row in stale], _end_unreported_relationships(uow, source, scope_key, run_id)


def _end_unreported_relationships(uow: UnitOfWork, source: str, scope_key: str, run_id: str) -> int:
    conn = uow.conn
    # A relationship this run did not report row by row may still have come with a report the run
    # confirmed by its fingerprint (the anchor's sighting carries this run and the same fingerprint).
    anchor = CI_SOURCE.alias("anchor")
    confirmed = exists(select(anchor.c.ci_id).where(
        anchor.c.ci_id == REL_SOURCE.c.anchor_ci_id, anchor.c.source == source, anchor.c.last_run_id == run_id,
        anchor.c.fingerprint == REL_SOURCE.c.anchor_fingerprint))
    unreported = and_(REL_SOURCE.c.source == source, REL_SOURCE.c.scope_key == scope_key,
                      REL_SOURCE.c.last_run_id != run_id, ~confirmed)
    other = REL_SOURCE.alias("other")
    claimed_elsewhere = exists(select(other.c.relationship_id).where(
        other.c.relationship_id == REL_SOURCE.c.relationship_id, other.c.source != source))
    ending = conn.execute(
        select(*REL_COLUMNS).join(REL_SOURCE, REL_SOURCE.c.relationship_id == REL.c.id).where(unreported, ~claimed_elsewhere)
        .order_by(REL.c.id)
    ).mappings().all()
    conn.execute(delete(REL_SOURCE).where(unreported))
    return len(end_relationships(uow, ending))  # not those a concurrent deletion ended first
