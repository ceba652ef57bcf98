"""What a database error means, from its SQLSTATE (PostgreSQL) or its result code (SQLite), never from
its message text (which changes with versions and locales).

- `unique`: a unique key refused a row, e.g. two requests creating a token, class or relationship type
  of one name at once: the later one is a conflict (409).
- `retry`: the database aborted the statement to let another transaction finish (deadlock,
  serialization failure), or it is unreachable, restarting, out of connections, busy or locked: the
  same request may succeed later (503 with Retry-After). Nothing was applied.
- `value`: the database cannot hold or compare a value sent (PostgreSQL class 22: a NUL byte in text,
  a number out of range): the request is at fault (422).
- `fault`: anything else (a missing table, a syntax error): a fault of Karta or of its deployment
  (500, logged with the request id).
"""

import sqlite3
from enum import StrEnum

from sqlalchemy.exc import DBAPIError


class DatabaseFault(StrEnum):
    unique = "unique"
    retry = "retry"
    value = "value"
    fault = "fault"


UNIQUE_VIOLATION = "23505"
# Deadlock detected, serialization failure: running the transaction again is the documented answer.
ABORTED_FOR_ANOTHER = frozenset({"40P01", "40001"})
_RETRY_SQLSTATES = ABORTED_FOR_ANOTHER | {
    "55P03",  # lock_not_available
    "53300",  # too_many_connections
    "53000", "53100", "53200",  # insufficient resources: disk full, out of memory
    "57P01", "57P02", "57P03",  # admin shutdown, crash shutdown, cannot connect now
    "57014",  # query_canceled (statement timeout)
    "58000", "58030",  # system error, io error
}
_RETRY_SQLSTATE_CLASSES = ("08",)  # connection exceptions
# Busy or locked by another writer, or a passing I/O or memory fault. SQLITE_CANTOPEN (a path or a
# permission wrong) is the deployment's fault, not a moment's: a 500.
_SQLITE_RETRY = frozenset({"SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_NOMEM",
                           "SQLITE_PROTOCOL", "SQLITE_INTERRUPT"})
_SQLITE_UNIQUE = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})
_SQLITE_VALUE = frozenset({"SQLITE_TOOBIG", "SQLITE_MISMATCH", "SQLITE_RANGE"})


def _sqlite_name(error: BaseException) -> str | None:
    name = getattr(error, "sqlite_errorname", None)
    if name is None:
        return None
    # Extended codes (SQLITE_BUSY_SNAPSHOT, SQLITE_IOERR_WRITE) belong to their primary code.
    primary = "_".join(name.split("_")[:2])
    return name if name in _SQLITE_UNIQUE else primary


def classify(exc: BaseException) -> DatabaseFault:
    """The meaning of a database error raised through SQLAlchemy (or straight from a driver)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return DatabaseFault.retry  # the connection broke: SQLAlchemy dropped the pool's generation
    error = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate is not None:
        if sqlstate == UNIQUE_VIOLATION:
            return DatabaseFault.unique
        if sqlstate in _RETRY_SQLSTATES or sqlstate.startswith(_RETRY_SQLSTATE_CLASSES):
            return DatabaseFault.retry
        if sqlstate.startswith("22"):
            return DatabaseFault.value
        return DatabaseFault.fault
    name = _sqlite_name(error) if isinstance(error, sqlite3.Error) else None
    if name is not None:
        if name in _SQLITE_UNIQUE:
            return DatabaseFault.unique
        if name in _SQLITE_RETRY:
            return DatabaseFault.retry
        if name in _SQLITE_VALUE:
            return DatabaseFault.value
        return DatabaseFault.fault
    # psycopg refuses some values itself, before the statement is sent (a NUL in text: PostgreSQL cannot
    # hold one), raising DataError without a SQLSTATE.
    if type(error).__name__ == "DataError" and type(error).__module__.startswith("psycopg"):
        return DatabaseFault.value
    # psycopg raises OperationalError without a SQLSTATE when it cannot reach the server at all.
    if type(error).__name__ == "OperationalError" and type(error).__module__.startswith("psycopg"):
        return DatabaseFault.retry
    return DatabaseFault.fault


def aborted_for_another(exc: BaseException) -> bool:
    """The database aborted the transaction to let another one finish: run it again."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in ABORTED_FOR_ANOTHER
