"""Lists of keys as ONE bound value, so a statement costs the same whether it names ten ids or ten
thousand, and no driver limit on parameters applies: a uuid[] on PostgreSQL, a JSON array on SQLite."""

import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Uuid, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY


def json_list(rows: Iterable[Any]) -> str:
    return orjson.dumps(list(rows)).decode()


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def id_values(conn: Connection, ids: Iterable[uuid.UUID]):
    """The ids as rows of one value: unnest(uuid[]) or json_each(json)."""
    if is_postgres(conn):
        return func.unnest(bindparam(None, list(ids), type_=ARRAY(Uuid)))
    return func.json_each(bindparam(None, json_list(i.hex for i in ids))).table_valued("value").c.value


def id_in(conn: Connection, column, ids: Iterable[uuid.UUID]) -> ColumnElement[bool]:
    if is_postgres(conn):
        return column == any_(bindparam(None, list(ids), type_=ARRAY(Uuid)))
    return column.in_(select(id_values(conn, ids)).scalar_subquery())
