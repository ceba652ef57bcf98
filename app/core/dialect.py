"""Where SQLite and PostgreSQL differ in how Karta must use them, said once.

Row locks. PostgreSQL runs writers side by side and Karta locks the rows it depends on (FOR UPDATE,
FOR SHARE, FOR KEY SHARE) so they cannot change or vanish before its commit. SQLite runs one writer
at a time (every writer takes the database's write lock at BEGIN IMMEDIATE, app.core.db), so nothing
can change under it, and it has no row locks: `locked` returns the query unchanged there.

The other differences live in modules of their own: bulk inserts, id lists and rows sent as one JSON
parameter (app.services.bulk), JSON predicates (app.services.ci_filters), the change-sequence lock
(app.services.history).
"""

from typing import Any, TypeVar

from sqlalchemy import Connection, Select

Q = TypeVar("Q", bound=Select)


def row_locks(conn: Connection) -> bool:
    """Whether writers run side by side here and must lock the rows they depend on."""
    return conn.dialect.name == "postgresql"


def locking_clause(conn: Connection, clause: str) -> str:
    """A row-locking clause (" FOR SHARE OF c") to append to a written statement, where there are row locks."""
    return f" {clause}" if row_locks(conn) else ""


def locked(conn: Connection, query: Q, *, order_by: Any = None, **for_update: Any) -> Q:
    """`query` with FOR UPDATE (or `read=True`: FOR SHARE; `key_share=True` with it: FOR KEY SHARE;
    `of=table`) where the database has row locks, ordered by `order_by` first so that concurrent
    writers take their locks in one order and cannot deadlock on them."""
    if not row_locks(conn):
        return query
    if order_by is not None:
        query = query.order_by(order_by)
    return query.with_for_update(**for_update)
