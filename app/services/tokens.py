"""API tokens: creation, verification (cached per worker), revocation, and the sources a token may report as.

Only a SHA-256 hash of each secret is stored. Secrets are 256 random bits, so a fast hash is enough:
there is nothing to brute-force that a slow hash would protect.

Caching and revocation. A verified token is kept in a bounded TTL cache for `token_cache_seconds`, so
a request does not cost a database round trip. The time an entry is trusted is counted from *before*
the database read that filled it. Revoking a token commits, then waits that long before answering
(`revocation_settled`): by then every worker's entry for it has expired, and any read after the commit
sees the revocation. So once `DELETE /api/v1/tokens/{id}` (or `karta token revoke`) has answered, no
worker of any host accepts the token again, with no per-request database read and no message between
workers. Secrets the database does not know are cached in a cache of their own, so a flood of random
bearer tokens evicts only other random tokens, never a valid one.

Sources. `manual` is the source of edits through the CI API and outranks every discovery source, so
ingest never accepts it. A token may be limited to the sources it reports as (`sources`); null means
any source but `manual` (tokens made before migration 0007 have null).
"""

import getpass
import hashlib
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cachetools import TTLCache
from sqlalchemy import Connection, Engine, insert, select, update

from app.core.db import write_transaction
from app.core.dialect import locked
from app.models import ApiToken
from app.models.discovery import MANUAL_SOURCE
from app.models.service_map import MAPPING_SOURCE
from app.models.token import Scope
from app.models.types import as_utc, utcnow
from app.services.errors import Conflict, InvalidInput, NotFound, field_error
from app.services.history import UnitOfWork
from app.services.storable import require_storable

TOKEN = ApiToken.__table__
NOT_CACHED = object()
log = logging.getLogger("karta.auth")
SECRET_PREFIX = "karta_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
KNOWN_CACHE_SIZE = 10_000
UNKNOWN_CACHE_SIZE = 10_000
# Unknown secrets are remembered briefly: long enough to absorb a burst, short enough to be harmless.
UNKNOWN_CACHE_SECONDS = 1.0

# What each scope grants beyond itself.
IMPLIED_SCOPES = {
    Scope.admin: frozenset(Scope),
    Scope.write: frozenset({Scope.write, Scope.read}),
    Scope.discovery: frozenset({Scope.discovery, Scope.read}),
    Scope.read: frozenset({Scope.read}),
}


@dataclass(frozen=True)
class Principal:
    token_id: uuid.UUID
    name: str
    scopes: frozenset[Scope]
    sources: frozenset[str] | None = None  # None: any source but manual
    expires_at: datetime | None = None  # the web UI's session ends with the token

    def has(self, scope: Scope) -> bool:
        return any(scope in IMPLIED_SCOPES[own] for own in self.scopes)

    def may_report_as(self, source: str) -> bool:
        if source in RESERVED_SOURCES:
            return False
        return self.sources is None or source in self.sources


# Sources no token may report as, and why: Karta writes them itself. `service_mapping` is also no
# token's name: it is the actor of the keeper's records, which the keeper skips and which look like
# Karta's own in history.
RESERVED_SOURCES = {
    MANUAL_SOURCE: "'manual' is the source of edits through the CI API; no token may report as it.",
    MAPPING_SOURCE: "'service_mapping' is the source of the relationships Karta keeps for service maps; "
                    "no token may report as it.",
}


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_state(row: Any, now: datetime | None = None) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    expires_at = as_utc(row["expires_at"])
    if expires_at is not None and expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def to_public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "scopes": row["scopes"],
        "sources": row["sources"],
        "state": token_state(row),
        "created_at": as_utc(row["created_at"]),
        "expires_at": as_utc(row["expires_at"]),
        "last_used_at": as_utc(row["last_used_at"]),
        "revoked_at": as_utc(row["revoked_at"]),
    }


def _audited(row: dict[str, Any]) -> dict[str, Any]:
    """What a token's change record holds: never the secret or its hash."""
    return {"name": row["name"], "scopes": row["scopes"], "sources": row["sources"], "expires_at": row["expires_at"]}


def create_token(uow: UnitOfWork, name: str, scopes: list[Scope], expires_at: datetime | None = None,
                 sources: list[str] | None = None) -> dict[str, Any]:
    """A new token and its secret (shown once). The change record names the token, never the secret."""
    require_storable(name, "name")
    if not name.strip():
        raise InvalidInput("A token needs a name: it is the actor in history.", [field_error("name", "empty")])
    if name.strip() == MAPPING_SOURCE:
        raise InvalidInput("'service_mapping' is the actor of Karta's service-map changes; a token named so would "
                           "pass for Karta in history. Choose another name.", [field_error("name", "reserved")])
    if expires_at is not None and as_utc(expires_at) <= uow.now:
        raise InvalidInput(f"expires_at {as_utc(expires_at).isoformat()} is in the past; a token must expire later.",
                           [field_error("expires_at", "in the past")])
    if sources is not None:
        for index, source in enumerate(sources):
            if source in RESERVED_SOURCES:
                raise InvalidInput(RESERVED_SOURCES[source], [field_error(f"sources.{index}", "reserved")])
        if len(set(sources)) != len(sources):
            raise InvalidInput("A source is named twice.", [field_error("sources", "duplicate source")])
    if uow.conn.execute(select(TOKEN.c.id).where(TOKEN.c.name == name)).first() is not None:
        raise Conflict(f"A token named '{name}' already exists; revoke it or choose another name.")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    row = {
        "id": uuid.uuid4(),
        "name": name,
        "secret_hash": hash_secret(secret),
        "scopes": sorted({Scope(s).value for s in scopes}),
        "sources": sorted(sources) if sources is not None else None,
        "created_at": uow.now,
        "expires_at": expires_at,
        "last_used_at": None,
        "revoked_at": None,
    }
    uow.conn.execute(insert(TOKEN), row)
    uow.record("token", row["id"], "create", {key: [None, value] for key, value in _audited(row).items()
                                              if value is not None})
    return {**to_public(row), "secret": secret}


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    return [to_public(row) for row in conn.execute(select(TOKEN).order_by(TOKEN.c.name)).mappings()]


def find_token_by_id_or_name(engine: Engine, id_or_name: str) -> dict[str, Any]:
    """A token by its id or its name (the CLI takes either)."""
    try:
        condition = TOKEN.c.id == uuid.UUID(id_or_name)
    except ValueError:
        condition = TOKEN.c.name == id_or_name
    with engine.connect() as conn:
        row = conn.execute(select(TOKEN).where(condition)).mappings().first()
    if row is None:
        raise NotFound(f"No token with id or name '{id_or_name}'.")
    return to_public(row)


def revoke_token(uow: UnitOfWork, token_id: uuid.UUID) -> bool:
    """Revoke; False if it already was. Callers answer only after `revocation_settled`. The row is locked
    FOR UPDATE first: that waits for the writes in flight with the token (history.require_live_token)."""
    if uow.conn.execute(locked(uow.conn, select(TOKEN.c.id).where(TOKEN.c.id == token_id))).first() is None:
        raise NotFound(f"No token with id {token_id}.")
    result = uow.conn.execute(
        update(TOKEN).where(TOKEN.c.id == token_id, TOKEN.c.revoked_at.is_(None)).values(revoked_at=uow.now)
    )
    if result.rowcount == 0:
        return False
    uow.record("token", token_id, "update", {"revoked_at": [None, uow.now.isoformat()]})
    return True


def revocation_settled(cache_seconds: float) -> float:
    """How long after a revocation commits every worker's cache has forgotten the token (seconds)."""
    return cache_seconds + 0.05  # a margin for the time between the cache stamp and the read


def cli_actor(command: str) -> str:
    """The actor of a change made with the `karta` command on the database's machine."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        user = "unknown"
    return f"{command} ({user})"[:200]


class TokenVerifier:
    def __init__(self, engine: Engine, cache_seconds: float) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        # digest -> (stamp, principal, expires_at): trusted cache_seconds from `stamp`, taken before the
        # database read that filled the entry (see the module docstring).
        self._known: TTLCache = TTLCache(KNOWN_CACHE_SIZE, max(cache_seconds, 0.001), timer=time.monotonic)
        self._unknown: TTLCache = TTLCache(UNKNOWN_CACHE_SIZE, max(min(UNKNOWN_CACHE_SECONDS, cache_seconds), 0.001),
                                           timer=time.monotonic)
        self._last_used_written: TTLCache = TTLCache(KNOWN_CACHE_SIZE, LAST_USED_RESOLUTION.total_seconds())
        self._lock = threading.Lock()

    @property
    def cache_seconds(self) -> float:
        return self._cache_seconds

    def cached(self, secret: str) -> Principal | None | object:
        """The answer without touching the database, or NOT_CACHED."""
        digest = hash_secret(secret)
        with self._lock:
            known = self._known.get(digest)
            unknown = known is None and digest in self._unknown
        if unknown:
            return None
        # The cache's own TTL runs from insertion; trust is counted from before the read (`stamp`).
        if known is None or time.monotonic() - known[0] >= self._cache_seconds:
            return NOT_CACHED
        _, principal, expires_at = known
        if expires_at is not None and expires_at <= utcnow():
            return None
        return principal

    def verify(self, secret: str) -> Principal | None:
        """Blocking (it may read the database): call it from a worker thread, not the event loop."""
        answer = self.cached(secret)
        if answer is not NOT_CACHED:
            return answer
        digest = hash_secret(secret)
        stamp = time.monotonic()  # before the read: the entry must not outlive a revocation it missed
        principal, expires_at = self._load(digest)
        with self._lock:
            if principal is None:
                self._unknown[digest] = True
            else:
                self._known[digest] = (stamp, principal, expires_at)
        return principal

    def forget(self, token_id: uuid.UUID | None = None) -> None:
        """Drop cached answers: those of one token, or all."""
        with self._lock:
            if token_id is None:
                self._known.clear()
                return
            for digest, (_, principal, _) in list(self._known.items()):
                if principal.token_id == token_id:
                    del self._known[digest]

    def _load(self, digest: str) -> tuple[Principal | None, datetime | None]:
        with self._engine.connect() as conn:
            row = conn.execute(select(TOKEN).where(TOKEN.c.secret_hash == digest)).mappings().first()
        if row is None or token_state(row) != "active":
            return None, None
        now = utcnow()
        with self._lock:  # cachetools caches are not thread-safe, and verify runs on many threads
            last_written = self._last_used_written.get(row["id"]) or as_utc(row["last_used_at"])
            due = last_written is None or now - last_written >= LAST_USED_RESOLUTION
            if due:
                self._last_used_written[row["id"]] = now
        if due:
            try:
                with write_transaction(self._engine) as conn:
                    conn.execute(update(TOKEN).where(TOKEN.c.id == row["id"]).values(last_used_at=now))
            except Exception as exc:  # bookkeeping only: a busy database must not refuse the caller
                log.warning("could not record the use of token %s: %s", row["name"], exc)
        scopes = frozenset(Scope(s) for s in row["scopes"] if s in Scope.__members__)
        sources = frozenset(row["sources"]) if row["sources"] is not None else None
        expires_at = as_utc(row["expires_at"])
        return Principal(token_id=row["id"], name=row["name"], scopes=scopes, sources=sources,
                         expires_at=expires_at), expires_at
