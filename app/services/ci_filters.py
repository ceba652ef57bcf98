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
    """attr.<key>=<value>: matches the string value, or the number/boolean it spells ("4", "true"), and
    a list holding either (attr.ip_address=10.0.0.5 finds ["10.0.0.5", "10.0.0.6"])."""
    typed = _typed_literal(value)
    if conn.dialect.name == "postgresql":
        item = CI.c.attributes.op("->")(key)
        # jsonb's @> with an array on the right: true for an array holding that element, false for a scalar.
        matches = [CI.c.attributes.op("->>")(key) == value, item.op("@>")(type_coerce([value], JSONB))]
        if typed is not None:
            matches += [item == type_coerce(typed, JSONB), item.op("@>")(type_coerce([typed], JSONB))]
        return or_(*matches)
    path = "$." + _json_path_key(key)
    extracted = func.json_extract(CI.c.attributes, path)
    element = func.json_each(CI.c.attributes, path).table_valued("value", "type")
    if typed is None:
        scalar, in_list = extracted == value, element.c.value == value
    elif isinstance(typed, bool):
        # json_extract gives 1/0 for true/false; json_type tells a boolean from a number.
        scalar = or_(extracted == value, func.json_type(CI.c.attributes, path) == value)
        in_list = or_(element.c.value == value, element.c.type == value)
    else:
        scalar = or_(extracted == value, extracted == typed)
        in_list = or_(element.c.value == value, (element.c.value == typed) & element.c.type.in_(["integer", "real"]))
    # json_each over a path that holds an array walks its elements (over an object, its members: hence
    # the type check).
    listed = exists(select(literal(1)).select_from(element).where(in_list))
    return or_(scalar, (func.json_type(CI.c.attributes, path) == "array") & listed)


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
