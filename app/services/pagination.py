"""Opaque cursors for keyset pagination.

Offsets get slower with every page and skip or repeat rows when the table changes between pages; a
cursor that says "after this key" costs one index seek on any page and stays stable. The cursor is the
last key of the page, base64-encoded so clients treat it as opaque.
"""

import base64
import binascii
import uuid
from collections.abc import Callable
from typing import Any

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
