"""What sources last confirmed about CIs (ci_source), and when that confirmation stops counting.

Ingest keeps, per CI and source, a fingerprint of the source's last report and the CI version it led
to. The same report again is then confirmed without being re-derived. That shortcut is sound only
while nothing outside the CI's own row changed what the report would do: a relationship it carried
ending, or an address it held moving to another CI. Those paths call `forget_fingerprints`, and the
next report from that source is derived in full.
"""

import uuid
from collections.abc import Iterable

from sqlalchemy import Column, Connection, Table, case, or_, select, type_coerce, update

from app.core.dialect import locked, row_locks
from app.models import CISource, ConfigurationItem
from app.services.bulk import id_in

CI_SOURCE = CISource.__table__
CI = ConfigurationItem.__table__


def columns_with_latest_sighting(table: Table, latest_sighting) -> list[Column]:
    """The table's columns, last_seen being the later of the row's own and `latest_sighting` (a
    scalar subquery over the sightings): ingest records sightings without rewriting the row."""
    own = table.c.last_seen
    later = case((or_(own.is_(None), latest_sighting > own), latest_sighting), else_=own)
    return [column for column in table.c if column.name != "last_seen"] + [type_coerce(later, own.type).label("last_seen")]


def forget_fingerprints(conn: Connection, ci_ids: Iterable[uuid.UUID]) -> None:
    ids = sorted(set(ci_ids))
    if ids and row_locks(conn):
        # A batch deriving one of these CIs holds it locked and is about to store its fingerprint:
        # wait for it, so the fingerprint is forgotten after it is stored, not before.
        conn.execute(locked(conn, select(CI.c.id).where(id_in(conn, CI.c.id, ids)), order_by=CI.c.id))
    if ids:
        conn.execute(update(CI_SOURCE).where(id_in(conn, CI_SOURCE.c.ci_id, ids), CI_SOURCE.c.fingerprint.is_not(None))
                     .values(fingerprint=None))
