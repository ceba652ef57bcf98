"""The CIs of an export (GET /api/v1/cis?format=csv), read in one snapshot: first the attribute keys
they hold (the file's header needs them before the first row), then the CIs themselves, a page at a
time in id order, so that 100,000 CIs never sit in memory at once. The relationships of an export
(GET /api/v1/relationships?format=csv) are read the same way, each end with the identifiers that
name it alone.

One snapshot matters: a CI written between the two reads could hold a key the header lacks. SQLite's
BEGIN gives one; PostgreSQL reads at REPEATABLE READ for it (the API's reads otherwise run in
autocommit, each statement its own snapshot: app/core/db.py).

It never formats a file (app/integrations/csv_export.py does) and never writes.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, select, text

from app.models import CIIdentifier, ConfigurationItem, Relationship
from app.services.bulk import id_in, is_postgres
from app.services.identifiers import normalize

CI = ConfigurationItem.__table__
REL = Relationship.__table__
IDENT = CIIdentifier.__table__
PAGE = 2000
_COLUMNS = (CI.c.id, CI.c.ci_class, CI.c.name, CI.c.status, CI.c.environment, CI.c.criticality, CI.c.owner,
            CI.c.tags, CI.c.attributes)


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        yield conn


def attribute_keys(conn: Connection, conditions: list[ColumnElement[bool]], table=CI) -> list[str]:
    """Every attribute key the matching CIs (or relationships, with `table=REL`) hold, sorted."""
    matching = select(table.c.attributes).where(*conditions).subquery()
    if is_postgres(conn):
        keys = select(text("jsonb_object_keys(m.attributes)")).select_from(matching.alias("m"))
    else:
        keys = select(text("j.key")).select_from(matching.alias("m")).join(
            text("json_each(m.attributes) AS j"), text("1 = 1"))
    return sorted(set(conn.execute(keys.distinct()).scalars()))


def rows(conn: Connection, conditions: list[ColumnElement[bool]], page: int = PAGE,
         columns: tuple = _COLUMNS) -> Iterator[list[Any]]:
    """The matching CIs (or relationships, with `columns` of REL), a page (a list of rows) at a time, in
    id order (keyset: each page one index range)."""
    table = columns[0].table
    after = None
    while True:
        query = select(*columns).where(*conditions).order_by(table.c.id).limit(page)
        if after is not None:
            query = query.where(table.c.id > after)
        batch = conn.execute(query).mappings().all()
        if not batch:
            return
        yield batch
        if len(batch) < page:
            return
        after = batch[-1]["id"]


_REL_COLUMNS = (REL.c.id, REL.c.source_id, REL.c.type, REL.c.target_id, REL.c.attributes)


def relationship_rows(conn: Connection, conditions: list[ColumnElement[bool]], families: set[str],
                      page: int = PAGE) -> Iterator[tuple[list[Any], dict[uuid.UUID, str]]]:
    """The matching relationships a page at a time, in id order, each page with how to write its ends
    (`unique_identifiers`)."""
    for batch in rows(conn, conditions, page, _REL_COLUMNS):
        ends = {row["source_id"] for row in batch} | {row["target_id"] for row in batch}
        yield batch, unique_identifiers(conn, ends, families)


def unique_identifiers(conn: Connection, ci_ids: set[uuid.UUID], families: set[str]) -> dict[uuid.UUID, str]:
    """CI id -> `key=value` of an identifier that names that CI and no other (the first such key in
    alphabetical order, then the smallest value), for the CIs that have one. This is the form the
    import resolves (app/services/imports.py `_resolve_end`: exactly one CI holds that key and value,
    whatever its family), and it reads in a spreadsheet and in another Karta, where ids differ.
    `families` are every class family (the registry's): the holders of a value are looked up through
    the index's (family, key, value) key, one probe per family, never by a scan."""
    if not ci_ids:
        return {}
    held = conn.execute(select(IDENT.c.ci_id, IDENT.c.key, IDENT.c.value).where(id_in(conn, IDENT.c.ci_id, ci_ids)))
    candidates: dict[uuid.UUID, list[tuple[str, str]]] = {}
    values_of: dict[str, set[str]] = {}
    for ci_id, key, value in held:
        # Composite rules (name+environment: parts joined by a control character) are not written, nor a
        # value the import would normalise into another (none should be): neither would read back.
        if "=" in key or "+" in key or key == "name" or value != value.strip() or normalize(key, value) != value:
            continue
        candidates.setdefault(ci_id, []).append((key, value))
        values_of.setdefault(key, set()).add(value)
    holders: dict[tuple[str, str], set[uuid.UUID]] = {}
    for key, values in values_of.items():
        ordered = sorted(values)
        for start in range(0, len(ordered), 500):
            for ci_id, value in conn.execute(select(IDENT.c.ci_id, IDENT.c.value).where(
                    IDENT.c.family.in_(sorted(families)), IDENT.c.key == key,
                    IDENT.c.value.in_(ordered[start:start + 500]))):
                holders.setdefault((key, value), set()).add(ci_id)
    named = {}
    for ci_id, pairs in candidates.items():
        alone = sorted(pair for pair in pairs if holders.get(pair) == {ci_id})
        if alone:
            named[ci_id] = f"{alone[0][0]}={alone[0][1]}"
    return named
