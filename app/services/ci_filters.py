"""Filters for the CI list that need dialect-specific SQL (JSON tags and attributes)."""

from sqlalchemy import ColumnElement, Connection, exists, func, literal, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from app.models import ConfigurationItem

CI = ConfigurationItem.__table__


def has_tag(conn: Connection, tag: str) -> ColumnElement[bool]:
    if conn.dialect.name == "postgresql":
        return CI.c.tags.op("@>")(type_coerce([tag], JSONB))
    each = func.json_each(CI.c.tags).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == tag))


def attribute_equals(conn: Connection, key: str, value: str) -> ColumnElement[bool]:
    """attr.<key>=<value>: matches the string value, or the number/boolean it spells ("4", "true")."""
    typed = _typed_literal(value)
    if conn.dialect.name == "postgresql":
        text_match = CI.c.attributes.op("->>")(key) == value
        if typed is None:
            return text_match
        return or_(text_match, CI.c.attributes.op("->")(key) == type_coerce(typed, JSONB))
    path = "$." + _json_path_key(key)
    extracted = func.json_extract(CI.c.attributes, path)
    if typed is None:
        return extracted == value
    if isinstance(typed, bool):
        # json_extract gives 1/0 for true/false; json_type tells a boolean from a number.
        return or_(extracted == value, func.json_type(CI.c.attributes, path) == value)
    return or_(extracted == value, extracted == typed)


def _json_path_key(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _typed_literal(value: str) -> int | float | bool | None:
    if value in ("true", "false"):
        return value == "true"
    try:
        number = int(value)
    except ValueError:
        pass
    else:
        return number if -(2**63) <= number < 2**63 else None  # beyond 64 bits it can only match as text
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None
