"""What a JSON value must be for Karta to store it, read it back and serve it, on every backend.

JSON parsers accept more than the database, the JSON encoder or a reader can hold. Refused, naming the
field: NUL characters (PostgreSQL text cannot hold U+0000), lone surrogates (not UTF-8), integers
outside the signed 64-bit range, NaN and infinities (not JSON), and nesting deeper than MAX_DEPTH
(responses wrap values in a few more levels, and encoders stop at about 250). Checked once, at the
edge, so nothing half-stored can break the change feed or a list later.
"""

import math
from typing import Any

import orjson

from app.services.errors import InvalidInput, field_error

MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not valid UTF-8)"
    return None


def storable_problem(value: Any, path: str) -> tuple[str, str] | None:
    """(field, reason) for the first part of `value` that cannot be stored, or None."""
    stack = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            reason = _text_problem(item)
            if reason:
                return where, reason
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                return where, "integer outside the 64-bit range"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return where, "not a finite number"
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                return where, f"nested deeper than {MAX_DEPTH} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    reason = _text_problem(key) if isinstance(key, str) else None
                    if reason:
                        return f"{where}.{key!r}", f"key {reason}"
                    stack.append((child, f"{where}.{key}", depth + 1))
            else:
                stack.extend((child, f"{where}.{index}", depth + 1) for index, child in enumerate(item))
    return None


def require_storable(value: Any, path: str) -> None:
    problem = storable_problem(value, path)
    if problem:
        field, reason = problem
        raise InvalidInput(f"{field}: {reason}.", [field_error(field, reason)])


def require_size(value: Any, limit: int, field: str) -> None:
    """422 when `value`, as JSON, is longer than `limit` bytes (a CI's attributes: a record, not a file)."""
    size = len(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
    if size > limit:
        raise InvalidInput(f"{field} take {size:,} bytes as JSON; the limit is {limit:,} (KARTA_MAX_ATTRIBUTES_BYTES).",
                           [field_error(field, f"{size} bytes, more than {limit}")])
