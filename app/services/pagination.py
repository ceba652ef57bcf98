"""Opaque cursors for keyset pagination.

Offsets get slower with every page and skip or repeat rows when the table changes between pages; a
cursor that says "after this key" costs one index seek on any page and stays stable. The cursor is the
last key of the page, base64-encoded so clients treat it as opaque.

A list sorted by something other than its key pages on (sort value, key): the keyset cursor carries
the sort it was made for, the last row's sort value and its key, so a cursor sent with another sort is
refused instead of silently skipping or repeating rows.
"""

import base64
import binascii
import uuid
from datetime import datetime
from collections.abc import Callable
from typing import Any

import orjson

from app.services.errors import InvalidInput, field_error


def encode_cursor(key: str | int) -> str:
    return base64.urlsafe_b64encode(str(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("The cursor is not one this API issued.", [field_error("cursor", "malformed cursor")]) from exc


def decode_uuid_cursor(cursor: str) -> uuid.UUID:
    try:
        return uuid.UUID(decode_cursor(cursor))
    except ValueError as exc:
        raise InvalidInput("The cursor is not one this API issued.", [field_error("cursor", "malformed cursor")]) from exc


def page(rows: list[Any], limit: int, to_public: Callable[[Any], dict[str, Any]], key: str) -> dict[str, Any]:
    """One page from a query that fetched limit + 1 rows: the extra row only says that a next page exists,
    whose cursor is the key of this page's last item."""
    items = [to_public(row) for row in rows[:limit]]
    more = len(rows) > limit
    return {"items": items, "next_cursor": encode_cursor(items[-1][key]) if more else None}


def _malformed(reason: str = "malformed cursor") -> InvalidInput:
    return InvalidInput("The cursor is not one this API issued.", [field_error("cursor", reason)])


def encode_keyset(sort: str, value: str | datetime | None, key: uuid.UUID | str) -> str:
    """A cursor after the row whose sort value is `value` and whose key is `key`, for `sort`."""
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    return encode_cursor(orjson.dumps([sort, value, str(key)]).decode())


def decode_keyset(cursor: str, sort: str) -> tuple[str | datetime | None, uuid.UUID]:
    """(sort value, key) from a cursor `encode_keyset(sort, ...)` made; 422 for any other."""
    try:
        made_for, value, key = orjson.loads(decode_cursor(cursor))
        if isinstance(value, dict):
            value = datetime.fromisoformat(value["t"])
        elif value is not None and not isinstance(value, str):
            raise ValueError("not a sort value")
        key = uuid.UUID(key)
    except (orjson.JSONDecodeError, ValueError, TypeError, KeyError) as exc:
        raise _malformed() from exc
    if made_for != sort:
        raise InvalidInput(f"The cursor was made for sort '{made_for}', not '{sort}': start again from the first page.",
                           [field_error("cursor", "made for another sort")])
    return value, key
