"""Column types shared by the tables: JSON that is JSONB on PostgreSQL, and UTC timestamps."""

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from uuid_utils.compat import uuid7

JSONColumn = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit sequence.
SequenceNumber = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)


def new_id() -> uuid.UUID:
    """The id of a new CI or relationship: a UUIDv7 (RFC 9562), time-ordered. Rows created together
    sit together in every index keyed by id, so a bulk load appends to a few index pages instead of
    touching a random page per row (and PostgreSQL logs far fewer full pages after a checkpoint)."""
    return uuid7()


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """A stored time in UTC: SQLite hands timestamps back naive (they were written as UTC), a time
    with another offset is the same instant written in UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _to_utc(value: datetime) -> datetime:
    """Every stored time is UTC; one that UTC cannot hold (year 10000 once shifted) is refused here,
    not by the database later, where it would break every read of the row."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("time out of range once converted to UTC") from exc


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]
