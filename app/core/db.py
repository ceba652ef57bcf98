"""Database engines: SQLite (embedded default) and PostgreSQL, set up the way Karta needs them.

SQLite runs in WAL mode with foreign keys on and a busy timeout, so several uvicorn workers and
discovery pushes can share one file. Nothing here creates tables: migrations own the schema.
"""

from pathlib import Path

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


# Execution option that marks a connection as about to write (see _begin_sqlite_transaction).
WRITE_OPTION = "karta_write"


def _json_serializer(value) -> str:
    return orjson.dumps(value).decode()


def make_engine(database_url: str, *, pool_size: int = 10) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            json_serializer=_json_serializer,
            json_deserializer=orjson.loads,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_sqlite_transaction)
        return engine
    return create_engine(
        url,
        json_serializer=_json_serializer,
        json_deserializer=orjson.loads,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
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
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
