"""Lists of keys as ONE bound value, so a statement costs the same whether it names ten ids or ten
thousand, and no driver limit on parameters applies: a uuid[] on PostgreSQL, a JSON array on SQLite."""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_dumps
from sqlalchemy import ColumnElement, Connection, String, Uuid, any_, bindparam, cast, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

_POSTGRES = postgresql.dialect()
_COPY_TYPES = {"UUID": "uuid", "JSONB": "jsonb", "JSON": "json", "STRING": "varchar", "VARCHAR": "varchar",
               "TEXT": "text", "DATETIME": "timestamptz", "TIMESTAMP": "timestamptz", "INTEGER": "int4",
               "BIGINTEGER": "int8", "BIG_INTEGER": "int8", "BOOLEAN": "bool", "FLOAT": "float8"}


def json_list(rows: Iterable[Any]) -> str:
    return orjson.dumps(list(rows)).decode()


def is_postgres(conn: Connection) -> bool:
    """PostgreSQL's array and COPY paths apply (every other engine Karta runs on is SQLite)."""
    return conn.dialect.name == "postgresql"


def _id_array(ids: Iterable[uuid.UUID]):
    # One text value the server splits: the driver's per-element uuid[] adaptation cost more than the
    # statements that used it.
    return cast(func.string_to_array(bindparam(None, ",".join(map(str, ids)), type_=String), ","), ARRAY(Uuid))


def id_values(conn: Connection, ids: Iterable[uuid.UUID]):
    """The ids as rows of one value: unnest(uuid[]) or json_each(json)."""
    if is_postgres(conn):
        return func.unnest(_id_array(ids))
    return func.json_each(bindparam(None, json_list(i.hex for i in ids))).table_valued("value").c.value


def id_in(conn: Connection, column, ids: Iterable[uuid.UUID]) -> ColumnElement[bool]:
    if is_postgres(conn):
        return column == any_(_id_array(ids))
    return column.in_(select(id_values(conn, ids)).scalar_subquery())


@dataclass(frozen=True)
class JsonRows:
    """Rows of values sent as one JSON parameter, for a statement written once for both databases:
    `source` goes in its FROM clause, `columns` names the SQL reading each value, `join` is the join
    that keeps these rows the outer loop (SQLite plans a CROSS JOIN in the written order: one index
    probe per row), `value` is the parameter to bind."""

    source: str
    columns: dict[str, str]
    join: str
    value: str


def json_rows(conn: Connection, alias: str, parameter: str, columns: dict[str, str],
              rows: Iterable[Sequence[Any]]) -> JsonRows:
    """`columns` maps each value's name to its PostgreSQL type (text, uuid, int); each row holds the
    values in that order. PostgreSQL: jsonb_to_recordset of objects; SQLite: json_each of arrays, UUIDs
    as the 32 hex digits its Uuid columns store."""
    if is_postgres(conn):
        typed = ", ".join(f"{name} {sql_type}" for name, sql_type in columns.items())
        value = json_list({name: str(v) if isinstance(v, uuid.UUID) else v for name, v in zip(columns, row)}
                          for row in rows)
        return JsonRows(f"jsonb_to_recordset(CAST(:{parameter} AS jsonb)) AS {alias}({typed})",
                        {name: f"{alias}.{name}" for name in columns}, "JOIN", value)
    value = json_list([v.hex if isinstance(v, uuid.UUID) else v for v in row] for row in rows)
    return JsonRows(f"json_each(:{parameter}) AS {alias}",
                    {name: f"json_extract({alias}.value, '$[{position}]')" for position, name in enumerate(columns)},
                    "CROSS JOIN", value)


def insert_rows(conn: Connection, table, rows: list[dict[str, Any]], *, on_conflict_do_nothing: bool = False) -> None:
    """Insert many rows as one statement. PostgreSQL: COPY in binary format, or, when conflicts are to
    be skipped (COPY cannot), one JSON document the server unpacks (jsonb_populate_recordset); both are
    several times faster than a pipelined executemany, whose per-row cost is mostly in the driver.
    SQLite's executemany is already a C loop."""
    if not rows:
        return
    if not is_postgres(conn):
        statement = table.insert()
        if on_conflict_do_nothing:
            statement = statement.prefix_with("OR IGNORE")
        conn.execute(statement, rows)
        return
    if not on_conflict_do_nothing:
        _copy_rows(conn, table, rows)
        return
    columns = ", ".join(f'"{name}"' for name in rows[0])
    sql = (f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} '
           f'FROM jsonb_populate_recordset(NULL::"{table.name}", CAST(:rows AS jsonb)) ON CONFLICT DO NOTHING')
    conn.execute(text(sql), {"rows": orjson.dumps(rows, default=_json_default).decode()})


def _json_default(value: Any) -> Any:
    raise TypeError(f"cannot store {type(value).__name__} in a bulk insert")


def _copy_type(column) -> str:
    """The PostgreSQL type COPY's binary format sends a column's values as."""
    sql_type = column.type.dialect_impl(_POSTGRES)
    kind = sql_type.__visit_name__.upper()
    if kind in ("DATETIME", "TIMESTAMP") and not getattr(sql_type, "timezone", False):
        return "timestamp"
    return _COPY_TYPES.get(kind) or kind.lower()


def _copy_rows(conn: Connection, table, rows: list[dict[str, Any]]) -> None:
    # Binary COPY: about 35% less server time than unpacking a JSON document for rows with JSON
    # columns (measured on `ci`), and the values are encoded by the driver's C dumpers.
    names = list(rows[0])
    columns = ", ".join(f'"{name}"' for name in names)
    statement = f'COPY "{table.name}" ({columns}) FROM STDIN (FORMAT BINARY)'
    cursor = conn.connection.dbapi_connection.cursor()
    set_json_dumps(_dump_json, context=cursor)
    try:
        with cursor.copy(statement) as copy:
            copy.set_types([_copy_type(table.c[name]) for name in names])
            values = itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
            for row in rows:
                copy.write_row(values(row))
    except psycopg.Error as exc:
        # Raised as SQLAlchemy raises what the driver says, so callers (the retry on a lost identifier
        # race, the 503 for an unavailable database) treat COPY like any other statement.
        raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc
    except TypeError as exc:
        raise TypeError(f"cannot store a value in {table.name}: {exc}") from exc
    finally:
        cursor.close()


def _dump_json(value: Any) -> bytes:
    return orjson.dumps(value, default=_json_default)
