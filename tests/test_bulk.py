"""Bulk inserts (COPY on PostgreSQL, executemany on SQLite): values round-trip exactly, and a
constraint violation is raised as SQLAlchemy raises it, so the ingest retry and the 503 mapping see it."""

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.core.db import make_engine
from app.models import ChangeRecord, CIIdentifier, ConfigurationItem
from app.services.bulk import insert_rows

CI = ConfigurationItem.__table__
IDENT = CIIdentifier.__table__
CHANGES = ChangeRecord.__table__


@pytest.fixture
def bulk_engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def a_ci(**overrides):
    at = datetime(2026, 11, 22, 12, 30, 1, 123456, tzinfo=UTC)
    row = {"id": uuid.uuid4(), "ci_class": "server", "name": "web-1 ☃", "status": "active", "environment": None,
           "criticality": 2, "owner": "ops", "tags": ["a", "b"],
           "attributes": {"cpu_count": 2**62, "ratio": 0.1, "nested": {"list": [1, None, "x\ty\\z\"q"]}, "none": None},
           "first_seen": at, "last_seen": at, "created_at": at, "updated_at": at, "version": 1,
           "provenance": {"name": {"source": "ssh", "at": at.isoformat()}}}
    return {**row, **overrides}


def test_rows_round_trip_exactly(bulk_engine):
    rows = [a_ci(), a_ci(name="db-1", environment="prod", criticality=None, tags=[], attributes={})]
    with bulk_engine.begin() as conn:
        insert_rows(conn, CI, rows)
        insert_rows(conn, CHANGES, [{"at": rows[0]["created_at"], "actor": "t", "object_type": "ci",
                                     "object_id": rows[0]["id"], "action": "create", "diff": {"name": [None, "web-1 ☃"]}}])
    with bulk_engine.connect() as conn:
        stored = {row["id"]: dict(row) for row in conn.execute(select(CI)).mappings()}
        change = conn.execute(select(CHANGES)).mappings().one()
    assert set(stored) == {row["id"] for row in rows}
    for row in rows:
        got = stored[row["id"]]
        for name, value in row.items():
            if isinstance(value, datetime):
                assert got[name].replace(tzinfo=UTC) == value, name
            else:
                assert got[name] == value, name
    assert change["object_id"] == rows[0]["id"] and change["diff"] == {"name": [None, "web-1 ☃"]}
    assert change["seq"] >= 1


def test_constraint_violation_is_an_integrity_error(bulk_engine):
    ci = a_ci()
    with bulk_engine.begin() as conn:
        insert_rows(conn, CI, [ci])
        insert_rows(conn, IDENT, [{"family": "host", "key": "serial_number", "value": "S1", "ci_id": ci["id"]}])
    with pytest.raises(IntegrityError), bulk_engine.begin() as conn:
        insert_rows(conn, IDENT, [{"family": "host", "key": "serial_number", "value": "S2", "ci_id": ci["id"]},
                                  {"family": "host", "key": "serial_number", "value": "S1", "ci_id": ci["id"]}])
    with bulk_engine.connect() as conn:  # nothing of the failed insert stayed
        assert conn.execute(select(IDENT.c.value)).scalars().all() == ["S1"]


def test_skipping_conflicts_keeps_the_first_row(bulk_engine):
    ci, other = a_ci(), a_ci()
    with bulk_engine.begin() as conn:
        insert_rows(conn, CI, [ci, other])
        insert_rows(conn, IDENT, [{"family": "host", "key": "ip_address", "value": "10.0.0.1", "ci_id": ci["id"]}])
        insert_rows(conn, IDENT, [{"family": "host", "key": "ip_address", "value": "10.0.0.1", "ci_id": other["id"]},
                                  {"family": "host", "key": "ip_address", "value": "10.0.0.2", "ci_id": other["id"]}],
                    on_conflict_do_nothing=True)
    with bulk_engine.connect() as conn:
        held = dict(conn.execute(select(IDENT.c.value, IDENT.c.ci_id)).all())
    assert held == {"10.0.0.1": ci["id"], "10.0.0.2": other["id"]}
