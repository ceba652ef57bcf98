"""Database engines: SQLite (embedded default) and PostgreSQL, set up the way Karta needs them.

SQLite runs in WAL mode with foreign keys on and a busy timeout, so several uvicorn workers and
discovery pushes can share one file. Nothing here creates tables: migrations own the schema.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

# Execution option that marks a connection as about to write (see _begin_sqlite_transaction).
WRITE_OPTION = "karta_write"
# The request's read route (app.core.replicas.ReadRoute) when read replicas are configured: it sends
# the request's reads to a replica and collects the sequence its writes commit. Unset (None) without
# replicas, and outside requests (start-up, background workers): every read is then the primary's.
READ_ROUTE: ContextVar[Any] = ContextVar("karta_read_route", default=None)


def _json_serializer(value) -> str:
    return orjson.dumps(value).decode()


def make_engine(database_url: str, *, pool_size: int = 5, connect_timeout: int | None = None,
                statement_timeout_ms: int | None = None) -> Engine:
    """An engine whose pool holds `pool_size` connections. The service sizes it to its thread pool:
    a request that finds the pool empty would otherwise open (and later close) a connection of its own,
    which costs more than the query it came for. `connect_timeout` (seconds) and `statement_timeout_ms`
    bound what a replica that stopped answering can cost (PostgreSQL only; app.core.replicas).

    `connect_timeout` also bounds a connection whose peer goes silent after connecting (a frozen host,
    a partition): statement_timeout is the server's and never fires there, so the kernel is told to
    break the connection when sent data stays unacknowledged that long (tcp_user_timeout) or an idle
    connection's keepalive probes go unanswered for about as long."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            json_serializer=_json_serializer,
            json_deserializer=orjson.loads,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_sqlite_transaction)
        return engine
    options = "-c timezone=UTC" + (f" -c statement_timeout={statement_timeout_ms}" if statement_timeout_ms else "")
    connect_args: dict[str, Any] = {"options": options}
    if connect_timeout is not None:
        connect_args.update(connect_timeout=connect_timeout, tcp_user_timeout=connect_timeout * 1000,
                            keepalives=1, keepalives_idle=connect_timeout, keepalives_interval=1,
                            keepalives_count=max(1, connect_timeout))
    return create_engine(
        url,
        json_serializer=_json_serializer,
        json_deserializer=orjson.loads,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it would add a round trip to every request. A connection broken by a server
        # restart fails one request with 503 and the pool drops every connection of that generation.
        pool_recycle=1800,
        # Every session speaks UTC, whatever the server's or the database's `timezone` setting: times
        # read back then equal the UTC times written (an incident's repeat must compare equal, and
        # answers show UTC whatever the server's locale).
        connect_args=connect_args,
    )


def _configure_sqlite_connection(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # autocommit at driver level; SQLAlchemy's begin hook issues BEGIN
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_sqlite_transaction(conn) -> None:
    # pysqlite never emits BEGIN before a SELECT, so we emit it ourselves: a read-modify-write is
    # then one transaction. Writers (execution option karta_write) take the write lock up front
    # (IMMEDIATE) so they queue on busy_timeout instead of failing on a read-to-write upgrade.
    # Straight to the driver: this runs on every request, and SQLAlchemy's statement machinery
    # costs more than the BEGIN itself.
    statement = "BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN"
    conn.connection.driver_connection.execute(statement)


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock up front (BEGIN IMMEDIATE)."""
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        yield conn


_statistics_lock = threading.Lock()
_statistics_refreshed_at: dict[str, float] = {}
STATISTICS_INTERVAL_SECONDS = 600.0


@contextmanager
def read_transaction(engine: Engine, *, begin: bool = False, routed: bool = True) -> Iterator[Connection]:
    """A read-only transaction for one answer (an API endpoint or a page).

    On PostgreSQL reads run in autocommit: under READ COMMITTED every statement takes its own snapshot
    anyway, so BEGIN and COMMIT would only add a round trip each. SQLite's BEGIN does give the
    statements one snapshot, and costs nothing on the wire. `begin`: a real transaction on both (the
    impact graph's loads stream inside one).

    Inside a request that may read lagging data (READ_ROUTE set, app.core.replicas), reads of the
    primary `engine` are served by a replica instead; without replicas that is one context lookup.
    `routed=False`: on `engine` itself, whatever the request."""
    if routed:
        route = READ_ROUTE.get()
        if route is not None and route.may_lag and route.primary is engine:
            with route.transaction(begin) as conn:
                yield conn
            return
    if begin:
        with engine.connect() as conn, conn.begin():
            yield conn
        return
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn
        return
    with engine.connect() as conn, conn.begin():
        yield conn


# What driver_first sends for a statement on a dialect (an engine's): a handful, bounded below. Each entry
# holds its statement and dialect, so their ids stay theirs while it is kept.
_DRIVER_SQL: dict[tuple[int, int], tuple[Any, Any, str, dict[str, Any]]] = {}


def _driver_sql(statement: Any, dialect: Any) -> tuple[str, dict[str, Any]]:
    key = (id(statement), id(dialect))
    entry = _DRIVER_SQL.get(key)
    if entry is None:
        compiled = statement.compile(dialect=dialect)
        if compiled.post_compile_params or compiled.literal_execute_params:
            raise ValueError("driver_first cannot send a statement SQLAlchemy completes at execution (IN lists)")
        if compiled.escaped_bind_names or any(
                bind.callable is not None or bind.type.dialect_impl(dialect).bind_processor(dialect) is not None
                for bind in compiled.bind_names):
            raise ValueError("driver_first cannot send parameters SQLAlchemy converts or computes at execution")
        # The values the statement binds itself (literals); the caller's parameters fill the others.
        constants = {name: bind.effective_value for bind, name in compiled.bind_names.items() if not bind.required}
        if len(_DRIVER_SQL) >= 64:
            _DRIVER_SQL.clear()
        entry = _DRIVER_SQL[key] = (statement, dialect, compiled.string, constants)
    return entry[2], entry[3]


def driver_first(conn: Connection, statement: Any, params: dict[str, Any]) -> dict[str, Any] | None:
    """The first row of a SELECT (as a dict), or None: run by psycopg itself on `conn`'s connection, past
    SQLAlchemy's execution and result handling, which cost the client ~200 µs of CPU for the CI detail
    read against 124-152 µs for psycopg alone (BENCHMARKS.md, "The single-CI read ahead of FastAPI's
    routing"). PostgreSQL outside a transaction only (the service's reads run in autocommit); for
    statements whose parameters and columns SQLAlchemy does not convert (tests/test_cis.py compares the
    detail read's row both ways). The statement is compiled once per engine.

    An error leaves as SQLAlchemy raises it (a DBAPIError around psycopg's), so it is classified and
    answered as before. On one SQLAlchemy takes for a disconnect, the statement is run once more through
    SQLAlchemy, which fails at once on the broken connection and does what SQLAlchemy does then (that
    connection and the pool's others of its generation dropped); the error raised is still psycopg's
    first one, with `connection_invalidated` set (which takes a replica out of rotation: app.core.replicas)."""
    driver = conn.connection.driver_connection
    if not getattr(driver, "autocommit", False):
        raise ValueError("driver_first runs outside a transaction only (PostgreSQL in autocommit)")
    sql, constants = _driver_sql(statement, conn.dialect)
    arguments = {**constants, **params}
    try:
        with driver.cursor() as cursor:
            cursor.execute(sql, arguments)
            row = cursor.fetchone()
            names = [column.name for column in cursor.description] if row is not None else None
    except psycopg.Error as exc:
        if not conn.dialect.is_disconnect(exc, driver, None):
            raise DBAPIError.instance(sql, arguments, exc, psycopg.Error, dialect=conn.dialect) from exc
        try:
            found = conn.execute(statement, params).mappings().first()
        except DBAPIError as again:
            raise DBAPIError.instance(sql, arguments, exc, psycopg.Error, dialect=conn.dialect,
                                      connection_invalidated=again.connection_invalidated) from again
        return None if found is None else dict(found)
    return None if row is None else dict(zip(names, row))


def read_may_wait(engine: Engine) -> bool:
    """Whether the request's first read of `engine` may wait for a replica to show a change
    (X-Karta-Min-Seq, with read replicas, none of which is known to have it): prepare_read(engine) would
    do that wait now."""
    route = READ_ROUTE.get()
    return route is not None and route.may_lag and route.primary is engine and route.may_wait()


def prepare_read(engine: Engine) -> None:
    """Let the request's route choose its database for reads of `engine` now (waiting for a replica
    that has X-Karta-Min-Seq, if it must), so that no lock taken before the first read is held through
    that wait. Nothing without read replicas."""
    route = READ_ROUTE.get()
    if route is not None and route.may_lag and route.primary is engine:
        route.prepare()


def refresh_statistics(engine: Engine, *, force: bool = False) -> bool:
    """Give SQLite's planner fresh table statistics (PostgreSQL's autovacuum does this by itself).

    Without them SQLite answers a filtered, id-ordered page by sorting every row of one index's match
    (40 ms at 100,000 CIs) instead of walking the primary key (6 ms). ANALYZE takes ~0.2 s at that size,
    so it runs at start-up and after bulk loads, at most once per STATISTICS_INTERVAL_SECONDS."""
    if engine.dialect.name != "sqlite":
        return False
    key = str(engine.url)
    with _statistics_lock:
        if not force and time.monotonic() - _statistics_refreshed_at.get(key, -1e9) < STATISTICS_INTERVAL_SECONDS:
            return False
        _statistics_refreshed_at[key] = time.monotonic()
    with write_transaction(engine) as conn:
        # Every table but FTS5's (the search index, migration 0009): statistics counted while its shadow
        # tables are small make SQLite plan FTS5's own range deletes as scans, and a connection keeps
        # that estimate even once the rows are deleted; the next big load then slows down quadratically
        # (0.27x at 20,000 items). Without statistics the planner assumes a big table.
        tables = conn.exec_driver_sql(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "AND name NOT LIKE 'ci\\_fts\\_%' ESCAPE '\\'").scalars().all()
        for table in tables:
            conn.exec_driver_sql(f'ANALYZE "{table}"')
    return True


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
