"""The CIs of an export (GET /api/v1/cis?format=csv), read in one snapshot: first the attribute keys
they hold (the file's header needs them before the first row), then the CIs themselves, a page at a
time in id order, so that 100,000 CIs never sit in memory at once.

One snapshot matters: a CI written between the two reads could hold a key the header lacks. SQLite's
BEGIN gives one; PostgreSQL reads at REPEATABLE READ for it (the API's reads otherwise run in
autocommit, each statement its own snapshot: app/core/db.py).

It never formats a file (app/integrations/csv_export.py does) and never writes.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, select, text

from app.models import ConfigurationItem
from app.services.bulk import is_postgres

CI = ConfigurationItem.__table__
PAGE = 2000
_COLUMNS = (CI.c.id, CI.c.ci_class, CI.c.name, CI.c.status, CI.c.environment, CI.c.criticality, CI.c.owner,
            CI.c.tags, CI.c.attributes)


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        yield conn


def attribute_keys(conn: Connection, conditions: list[ColumnElement[bool]]) -> list[str]:
    """Every attribute key the matching CIs hold, sorted."""
    matching = select(CI.c.attributes).where(*conditions).subquery()
    if is_postgres(conn):
        keys = select(text("jsonb_object_keys(m.attributes)")).select_from(matching.alias("m"))
    else:
        keys = select(text("j.key")).select_from(matching.alias("m")).join(
            text("json_each(m.attributes) AS j"), text("1 = 1"))
    return sorted(set(conn.execute(keys.distinct()).scalars()))


def rows(conn: Connection, conditions: list[ColumnElement[bool]], page: int = PAGE) -> Iterator[list[Any]]:
    """The matching CIs, a page (a list of rows) at a time, in id order (keyset: each page one index range)."""
    after = None
    while True:
        query = select(*_COLUMNS).where(*conditions).order_by(CI.c.id).limit(page)
        if after is not None:
            query = query.where(CI.c.id > after)
        batch = conn.execute(query).mappings().all()
        if not batch:
            return
        yield batch
        if len(batch) < page:
            return
        after = batch[-1]["id"]
