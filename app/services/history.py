"""The one code path that writes change records, and the unit of work every write goes through.

Every service that changes a CI or a relationship does it inside a `UnitOfWork` and calls
`record(...)`; the records are inserted just before commit, in the same transaction, so a change and
its history commit together or not at all.

Sequence numbers must grow in *commit* order, or a tool tailing `/changes?since=N` could read N+1
before N commits and skip N forever. So the records are written at the very end of the transaction
under a global lock: a PostgreSQL transaction-scoped advisory lock (released by the commit), or on
SQLite the database write lock that every writer already holds (BEGIN IMMEDIATE). Writers therefore
serialize only for their last insert and the commit.
"""

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, or_, select, text
from sqlalchemy.exc import DBAPIError

from app.core.db import READ_ROUTE, WRITE_OPTION
from app.core.db_errors import aborted_for_another
from app.core.dialect import locked, row_locks
from app.models import ApiToken, ChangeRecord
from app.models.types import as_utc, utcnow
from app.services.bulk import insert_rows
from app.services.errors import TokenRevoked

# An arbitrary constant naming Karta's change-sequence lock among PostgreSQL advisory locks.
CHANGE_SEQUENCE_LOCK = 0x4B415254  # "KART"
log = logging.getLogger("karta.history")
T = TypeVar("T")

_UNSET = object()


def json_value(value: Any) -> Any:
    """A diff value as JSON can hold it."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def diff_fields(old: dict[str, Any] | None, new: dict[str, Any] | None, fields: list[str]) -> dict[str, list[Any]]:
    """{field: [old, new]} for the fields that differ; `attributes` is diffed key by key."""
    if old is None and new is not None:
        return _creation_diff(new, fields)
    old, new = old or {}, new or {}
    diff: dict[str, list[Any]] = {}
    for name in fields:
        before, after = old.get(name, _UNSET), new.get(name, _UNSET)
        if name == "attributes":
            diff.update(_diff_attributes(before, after))
            continue
        before = None if before is _UNSET else json_value(before)
        after = None if after is _UNSET else json_value(after)
        if before != after:
            diff[name] = [before, after]
    return diff


def _creation_diff(new: dict[str, Any], fields: list[str]) -> dict[str, list[Any]]:
    # The common case of a bulk load, kept cheap: every present value is new. UUIDs and datetimes stay
    # as they are; the JSON encoder (orjson) writes them exactly as json_value would.
    diff: dict[str, list[Any]] = {}
    for name in fields:
        value = new.get(name)
        if value is None:
            continue
        if name == "attributes":
            for key in sorted(value):
                if value[key] is not None:
                    diff[f"attributes.{key}"] = [None, value[key]]
        else:
            diff[name] = [None, value]
    return diff


def creation_diff(fields: Iterable[tuple[str, Any]], attributes: dict[str, Any] | None, first_seen: datetime | None,
                  last_seen: datetime | None) -> dict[str, list[Any]]:
    """A new object's diff as diff_fields gives it, built directly (ingest records tens of thousands
    per batch): `fields` (name, value) in history order, then the attributes key by key, then when it
    was first and last seen. Null values are left out."""
    diff = {name: [None, value] for name, value in fields if value is not None}
    for key in sorted(attributes) if attributes else ():
        if attributes[key] is not None:
            diff[f"attributes.{key}"] = [None, attributes[key]]
    if first_seen is not None:
        diff["first_seen"] = [None, as_utc(first_seen)]
    if last_seen is not None:
        diff["last_seen"] = [None, as_utc(last_seen)]
    return diff


def _diff_attributes(before: Any, after: Any) -> dict[str, list[Any]]:
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    diff = {}
    for key in before.keys() | after.keys():
        if before.get(key, _UNSET) != after.get(key, _UNSET):
            diff[f"attributes.{key}"] = [before.get(key), after.get(key)]
    return dict(sorted(diff.items()))


@dataclass
class UnitOfWork:
    engine: Engine
    actor: str
    # The API token the change is made with: checked still valid inside the transaction (see
    # require_live_token), so a write accepted before a revocation cannot commit after it answered.
    token_id: uuid.UUID | None = None
    conn: Connection = field(init=False)
    now: datetime = field(default_factory=utcnow)
    _records: list[dict[str, Any]] = field(default_factory=list, init=False)
    # The largest sequence number this unit of work wrote, read only inside a request that reports it
    # (X-Karta-Seq, with read replicas: app.core.replicas.ReadRoute) and handed on once committed.
    _last_seq: int | None = field(default=None, init=False)

    def __enter__(self) -> "UnitOfWork":
        self.conn = self.engine.connect().execution_options(**{WRITE_OPTION: True})
        try:
            self.conn.begin()
            if self.token_id is not None:
                require_live_token(self.conn, self.token_id, self.now)
        except BaseException:
            self.conn.rollback()
            self.conn.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._flush_records()
                self.conn.commit()
                if self._last_seq is not None:
                    READ_ROUTE.get().committed(self._last_seq)
            else:
                self.conn.rollback()
        finally:
            self.conn.close()

    def record(self, object_type: str, object_id: uuid.UUID, action: str, diff: dict[str, Any]) -> None:
        self._records.append(
            {
                "at": self.now,
                "actor": self.actor,
                "object_type": object_type,
                "object_id": object_id,
                "action": action,
                "diff": diff,
            }
        )

    @property
    def pending_records(self) -> int:
        return len(self._records)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of this unit of work that may fail alone: on an exception its statements are rolled
        back (a SAVEPOINT) and its change records forgotten, the exception raised again; the rest of
        the unit of work stays as it was. Records are flushed at commit only, so none has left yet."""
        kept = len(self._records)
        nested = self.conn.begin_nested()
        try:
            yield
        except BaseException:
            nested.rollback()
            del self._records[kept:]
            raise
        nested.commit()

    def _flush_records(self) -> None:
        if not self._records:
            return
        if row_locks(self.conn):  # SQLite's writer already holds the database's write lock
            self.conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHANGE_SEQUENCE_LOCK})
        insert_rows(self.conn, ChangeRecord.__table__, self._records)
        self._records.clear()
        if READ_ROUTE.get() is not None:
            # Still under the sequence lock: the largest number is this transaction's own.
            self._last_seq = self.conn.execute(select(func.max(ChangeRecord.__table__.c.seq))).scalar_one()


def require_live_token(conn: Connection, token_id: uuid.UUID, now: datetime) -> None:
    """401 unless the token is still neither revoked nor expired, read inside the write's transaction.

    On PostgreSQL the row is held FOR KEY SHARE until commit, and revoking locks it FOR UPDATE first, so
    a revocation waits for the writes in flight with the token, and a write that starts after it sees
    it. (KEY SHARE lets the verifier's last-use update, a non-key UPDATE, pass.) SQLite runs one writer
    at a time, so the read alone is enough there."""
    token = ApiToken.__table__
    query = locked(conn, select(token.c.id).where(
        token.c.id == token_id, token.c.revoked_at.is_(None),
        or_(token.c.expires_at.is_(None), token.c.expires_at > now)), read=True, key_share=True)
    if conn.execute(query).first() is None:
        raise TokenRevoked("The token was revoked or expired while this request waited; nothing was applied.")


WRITE_ATTEMPTS = 3


def in_unit_of_work(engine: Engine, actor: str, work: Callable[[UnitOfWork], T], *,
                    token_id: uuid.UUID | None = None) -> T:
    """`work(uow)` in one unit of work, run again when the database aborted it to break a deadlock
    (two writers locking the same CIs in different orders: a deletion ending relationships while a
    batch relates the same machines). After WRITE_ATTEMPTS the error stands (503, try again)."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            with UnitOfWork(engine, actor, token_id) as uow:
                return work(uow)
        except DBAPIError as exc:
            if not aborted_for_another(exc) or attempt == WRITE_ATTEMPTS:
                raise
            log.info("%s: transaction aborted by the database (%s); running it again, attempt %d",
                     actor, type(exc.orig).__name__, attempt + 1)
    raise AssertionError("unreachable")
