"""API tokens: creation, verification (cached per worker), revocation.

Only a SHA-256 hash of each secret is stored. Secrets are 256 random bits, so a fast hash is enough:
there is nothing to brute-force that a slow hash would protect. A verified token is cached for
`token_cache_seconds` so a read does not cost a database round trip; revocation and expiry therefore
reach every worker within that many seconds. Last use is written at most once a minute per token.
"""

import hashlib
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from app.core.db import write_transaction
from app.models import ApiToken
from app.models.token import Scope
from app.models.types import as_utc, utcnow
from app.services.errors import Conflict, NotFound
from app.services.storable import require_storable

TOKEN = ApiToken.__table__
NOT_CACHED = object()
log = logging.getLogger("karta.auth")
SECRET_PREFIX = "karta_"
LAST_USED_RESOLUTION = timedelta(minutes=1)

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

    def has(self, scope: Scope) -> bool:
        return any(scope in IMPLIED_SCOPES[own] for own in self.scopes)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def to_public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "scopes": row["scopes"],
        "created_at": as_utc(row["created_at"]),
        "expires_at": as_utc(row["expires_at"]),
        "last_used_at": as_utc(row["last_used_at"]),
        "revoked_at": as_utc(row["revoked_at"]),
    }


def create_token(conn: Connection, name: str, scopes: list[Scope], expires_at: datetime | None = None) -> dict[str, Any]:
    require_storable(name, "name")
    if conn.execute(select(TOKEN.c.id).where(TOKEN.c.name == name)).first() is not None:
        raise Conflict(f"A token named '{name}' already exists; revoke it or choose another name.")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    row = {
        "id": uuid.uuid4(),
        "name": name,
        "secret_hash": hash_secret(secret),
        "scopes": sorted({Scope(s).value for s in scopes}),
        "created_at": utcnow(),
        "expires_at": expires_at,
        "last_used_at": None,
        "revoked_at": None,
    }
    conn.execute(insert(TOKEN), row)
    return {**to_public(row), "secret": secret}


def list_tokens(conn: Connection) -> list[dict[str, Any]]:
    return [to_public(row) for row in conn.execute(select(TOKEN).order_by(TOKEN.c.name)).mappings()]


def revoke_token(conn: Connection, token_id: uuid.UUID) -> None:
    result = conn.execute(
        update(TOKEN).where(TOKEN.c.id == token_id, TOKEN.c.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    if result.rowcount == 0 and conn.execute(select(TOKEN.c.id).where(TOKEN.c.id == token_id)).first() is None:
        raise NotFound(f"No token with id {token_id}.")


class TokenVerifier:
    def __init__(self, engine: Engine, cache_seconds: float) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Principal | None, datetime | None]] = {}
        self._last_used_written: dict[uuid.UUID, datetime] = {}
        self._lock = threading.Lock()

    def cached(self, secret: str) -> Principal | None | object:
        """The answer without touching the database, or NOT_CACHED."""
        cached = self._cache.get(hash_secret(secret))
        if cached is None or time.monotonic() - cached[0] >= self._cache_seconds:
            return NOT_CACHED
        principal, expires_at = cached[1], cached[2]
        if principal is None or (expires_at is not None and expires_at <= utcnow()):
            return None
        return principal

    def verify(self, secret: str) -> Principal | None:
        """Blocking (it may read the database): call it from a worker thread, not the event loop."""
        answer = self.cached(secret)
        if answer is not NOT_CACHED:
            return answer
        digest = hash_secret(secret)
        now_mono = time.monotonic()
        principal, expires_at = self._load(digest)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now_mono, principal, expires_at)
        return principal

    def forget(self) -> None:
        self._cache.clear()

    def _load(self, digest: str) -> tuple[Principal | None, datetime | None]:
        with self._engine.connect() as conn:
            row = conn.execute(select(TOKEN).where(TOKEN.c.secret_hash == digest)).mappings().first()
        if row is None or row["revoked_at"] is not None:
            return None, None
        expires_at = as_utc(row["expires_at"])
        now = utcnow()
        if expires_at is not None and expires_at <= now:
            return None, None
        last_written = self._last_used_written.get(row["id"]) or as_utc(row["last_used_at"])
        if last_written is None or now - last_written >= LAST_USED_RESOLUTION:
            self._last_used_written[row["id"]] = now
            try:
                with write_transaction(self._engine) as conn:
                    conn.execute(update(TOKEN).where(TOKEN.c.id == row["id"]).values(last_used_at=now))
            except Exception as exc:  # bookkeeping only: a busy database must not refuse the caller
                log.warning("could not record the use of token %s: %s", row["name"], exc)
        scopes = frozenset(Scope(s) for s in row["scopes"] if s in Scope.__members__)
        return Principal(token_id=row["id"], name=row["name"], scopes=scopes), expires_at
