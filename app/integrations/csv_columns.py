"""The columns of Karta's CI spreadsheet and how a value sits in a cell, both ways.

The export (csv_export.py) writes exactly what the import (csv_import.py) reads, so an exported file
imports back unchanged. Header, in this order (only `name` is required on import; any column may be
left out, and a column left out leaves that field as it is):

    id,class,name,status,environment,criticality,owner,tags,identifier.<key>...,attribute.<key>...

- `id`: the CI's id. On import it is a check, not a key: rows are identified by their identifiers, as
  discovery's reports are; a row whose identifiers lead to another CI than an existing `id` is an error.
  An id no CI has (a file from another Karta) creates a CI with a new id.
- `class`: the row's class; empty, the `class=` of the request. With both, the row's class must be
  that class or one of its subclasses (an export of `class=server` holds virtual machines).
- `name`: text. `status`: planned, active, maintenance, stale or retired (empty: as it is; a new CI is
  active). `environment`, `owner`: text, empty is none. `criticality`: 1..4, empty is none.
- `tags`: comma-separated (`web,pci`); a JSON array (`["a,b"," c"]`) when a tag holds a comma, starts
  or ends with a space or would otherwise be misread. Empty: no tags.
- `identifier.<key>` / `attribute.<key>`: one attribute each. Identifiers are the attributes the
  class's identification rules read (fqdn, serial_number, ...); both kinds are stored as attributes,
  the prefix only says which is which to the reader. Empty cell: the attribute is not reported (an
  import never deletes an attribute). A cell is read as JSON when it is JSON (`8` is the number 8,
  `true`, `["a","b"]`, `{"k":1}`, `"8"` the text 8), as text otherwise (`web-1`, `01`, `TRUE`), and
  as text too when the class's schema declares that attribute text (os_version `12` is "12"). The
  export writes a text value as it is unless it would read back as something else: then as JSON.

Every text cell is neutralised against spreadsheet formulas on the way out and restored on the way
in (app/core/csv_cells.py): the only change a round trip could make, undone exactly.

Standard library and orjson only: nothing here touches the database.
"""

from typing import Any

import orjson

ID, CLASS, NAME, STATUS, ENVIRONMENT, CRITICALITY, OWNER, TAGS = (
    "id", "class", "name", "status", "environment", "criticality", "owner", "tags")
FIELD_COLUMNS = (ID, CLASS, NAME, STATUS, ENVIRONMENT, CRITICALITY, OWNER, TAGS)
IDENTIFIER_PREFIX, ATTRIBUTE_PREFIX = "identifier.", "attribute."
# The relationship form: one row per relationship.
REL_SOURCE, REL_TYPE, REL_TARGET = "source", "type", "target"
RELATIONSHIP_COLUMNS = (REL_SOURCE, REL_TYPE, REL_TARGET)


class CellError(ValueError):
    """A cell that cannot be read; its message is the reason shown for that row and column."""


# What JSON can start with: a cell starting otherwise (most texts) is text without asking the parser.
_JSON_STARTS = frozenset('-0123456789"[{tfn \t\r\n')


def decode_value(cell: str) -> Any:
    """An attribute's value from its (restored, non-empty) cell: JSON when it is JSON, else the text."""
    if cell[:1] not in _JSON_STARTS:
        return cell
    try:
        value = orjson.loads(cell)
    except orjson.JSONDecodeError:
        return cell
    if type(value) is float and not any(mark in cell for mark in ".eE"):
        return cell  # a whole number beyond 64 bits (orjson makes it a float): its digits, as text
    return value


def encode_value(value: Any) -> str:
    """The cell of an attribute's value: `decode_value(encode_value(v)) == v`."""
    if isinstance(value, str) and value and decode_value(value) == value:
        return value
    return orjson.dumps(value).decode()


def _plain_tags(tags: list[str]) -> bool:
    return all(tag and tag == tag.strip() and "," not in tag for tag in tags) and not (
        tags and tags[0].startswith("["))


def encode_tags(tags: list[str]) -> str:
    return ",".join(tags) if _plain_tags(tags) else orjson.dumps(tags).decode()


def decode_tags(cell: str) -> list[str]:
    if not cell.strip():
        return []
    if cell.lstrip().startswith("["):
        try:
            tags = orjson.loads(cell)
        except orjson.JSONDecodeError:
            raise CellError("starts with '[' but is not a JSON array of texts") from None
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise CellError("a JSON array of texts is expected")
        return tags
    return [tag.strip() for tag in cell.split(",") if tag.strip()]


def decode_criticality(cell: str) -> int | None:
    if not cell.strip():
        return None
    try:
        value = int(cell.strip())
    except ValueError:
        raise CellError(f"'{cell[:40]}' is not a whole number from 1 (most critical) to 4") from None
    if not 1 <= value <= 4:
        raise CellError(f"{value} is not from 1 (most critical) to 4")
    return value


def encode_optional(value: Any) -> str:
    return "" if value is None else str(value)
