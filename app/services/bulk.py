"""Lists of keys as ONE bound value, so a statement costs the same whether it names ten ids or ten
thousand, and no driver limit on parameters applies: a uuid[] on PostgreSQL, a JSON array on SQLite."""

import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, String, Uuid, any_, bindparam, cast, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY


def json_list(rows: Iterable[Any]) -> str:
    return orjson.dumps(list(rows)).decode()


def is_postgres(conn: Connection) -> bool:
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


def insert_rows(conn: Connection, table, rows: list[dict[str, Any]], *, on_conflict_do_nothing: bool = False) -> None:
    """Insert many rows. On PostgreSQL the rows travel as one JSON document that the server unpacks
    (jsonb_populate_recordset): one statement and one parameter, several times faster than a pipelined
    executemany, whose per-row cost is mostly in the driver. SQLite's executemany is already a C loop."""
    if not rows:
        return
    if not is_postgres(conn):
        statement = table.insert()
        if on_conflict_do_nothing:
            statement = statement.prefix_with("OR IGNORE")
        conn.execute(statement, rows)
        return
    columns = ", ".join(f'"{name}"' for name in rows[0])
    sql = (f'INSERT INTO "{table.name}" ({columns}) SELECT {columns} '
           f'FROM jsonb_populate_recordset(NULL::"{table.name}", CAST(:rows AS jsonb))')
    if on_conflict_do_nothing:
        sql += " ON CONFLICT DO NOTHING"
    conn.execute(text(sql), {"rows": orjson.dumps(rows, default=_json_default).decode()})


def _json_default(value: Any) -> Any:
    raise TypeError(f"cannot store {type(value).__name__} in a bulk insert")
