"""Webhook subscriptions: create, read, change, delete, each in a unit of work with a change record
(object_type "webhook"); which change records a subscription's filters match; its secret's encryption.

A new subscription starts at the head of the change feed: it receives the changes committed after it
(its own creation record included, if its filters take webhook records). Re-enabling a disabled one
keeps its cursor, so the changes made while it was disabled are delivered, none skipped.

Secrets are encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256). The key is KARTA_WEBHOOK_KEY
when set (keep it out of the database and of its backups), else a key Karta generates once and keeps in
the service_secret table (`webhook_secrets`), as the web UI does for its sessions: that protects a
copy of the webhook table, a log or an export, not a thief holding the whole database. The secret must
be kept decryptable (not hashed): Karta signs each delivery with it.

URLs can hold credentials too (https://user:pass@host/..., a Slack or Jira hook's token in its path or
query), and change records reach every read token and every unfiltered subscription: a change record
holds only the URL's scheme, host and port, and a fingerprint of the whole (redacted_url). The full URL
is shown only by the admin-only webhook endpoints (to_public).

This module never returns, records or logs a secret.
"""

import base64
import hashlib
import hmac
import uuid
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Connection, Engine, delete, insert, select, update

from app.core.dialect import locked
from app.models.types import as_utc
from app.models.webhook import Webhook, WebhookDelivery, WebhookState
from app.services.changes import last_seq
from app.services.errors import NotFound
from app.services.history import UnitOfWork
from app.services.service_keys import stored_key

WEBHOOK = Webhook.__table__
DELIVERY = WebhookDelivery.__table__
KEY_NAME = "webhook_secrets"
FILTER_KEYS = ("object_types", "classes", "relationship_types", "fields")


class SecretBox:
    """Encrypts and decrypts webhook secrets with the service's key (read once per worker). Seal before
    opening a unit of work: on SQLite, the first use may write the key, which would wait for the
    unit of work's own lock."""

    def __init__(self, engine: Engine, operator_key: str | None = None) -> None:
        self._engine = engine
        self._operator_key = operator_key
        self._fernet: Fernet | None = None

    def _key(self) -> Fernet:
        if self._fernet is None:
            if self._operator_key:
                key = base64.urlsafe_b64encode(hashlib.sha256(b"karta-webhooks:" + self._operator_key.encode()).digest())
            else:
                key = stored_key(self._engine, KEY_NAME)
            self._fernet = Fernet(key)
        return self._fernet

    def seal(self, secret: str) -> str:
        return self._key().encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._key().decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            # Not the key it was sealed with (KARTA_WEBHOOK_KEY changed): the worker logs it as a failure.
            raise ValueError("the webhook's secret cannot be decrypted with this key") from exc


def to_public(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "filters": row["filters"],
        "state": row["state"],
        "disabled_reason": row["disabled_reason"],
        "created_at": as_utc(row["created_at"]),
        "updated_at": as_utc(row["updated_at"]),
        "cursor_seq": row["cursor_seq"],
        "failures": row["failures"],
        "next_attempt_at": as_utc(row["next_attempt_at"]),
        "last_success_at": as_utc(row["last_success_at"]),
    }


def compact_filters(filters: dict[str, Any] | None) -> dict[str, list[str]]:
    """The filters as stored: only the keys given, each list without repeats, sorted."""
    return {key: sorted(set(filters[key])) for key in FILTER_KEYS if filters and filters.get(key) is not None}


def redacted_url(url: str, key: str) -> str:
    """What a change record shows of a webhook's URL: scheme, host and port, never the userinfo, path or
    query (where hook URLs carry their credentials), and a fingerprint of the whole URL, so that a changed
    URL shows as changed. The fingerprint is an HMAC keyed with the subscription's sealed secret (kept in
    the database, never in the feed): a plain hash would let a feed reader test guesses at a weak password.
    Replacing the secret re-keys it: the same URL then shows another fingerprint."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    mark = hmac.new(key.encode(), url.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}{port} (fingerprint {mark})"


def _audited(row: dict[str, Any]) -> dict[str, Any]:
    """What a webhook's change record holds: never the secret, nor more of the URL than redacted_url."""
    return {"url": redacted_url(row["url"], row["secret_encrypted"]), "filters": row["filters"], "state": row["state"]}


def create_webhook(uow: UnitOfWork, url: str, sealed_secret: str, filters: dict[str, Any] | None) -> dict[str, Any]:
    """A new subscription receiving the changes committed after it (its cursor: the feed's head now).
    The secret comes sealed (SecretBox.seal, before the unit of work: on SQLite, making the key on first
    use is a write of its own, which would wait for this transaction's lock)."""
    cursor_seq = last_seq(uow.conn)
    row = {
        "id": uuid.uuid4(), "url": url, "secret_encrypted": sealed_secret, "filters": compact_filters(filters),
        "state": WebhookState.active.value, "disabled_reason": None, "created_at": uow.now, "updated_at": uow.now,
        "cursor_seq": cursor_seq, "failures": 0, "next_attempt_at": None, "last_success_at": None,
        "lease_owner": None, "leased_until": None,
    }
    uow.conn.execute(insert(WEBHOOK), row)
    uow.record("webhook", row["id"], "create", {key: [None, value] for key, value in _audited(row).items()})
    return to_public(row)


def _row(conn: Connection, webhook_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any]:
    query = select(WEBHOOK).where(WEBHOOK.c.id == webhook_id)
    if for_update:
        query = locked(conn, query)
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"No webhook with id {webhook_id}.")
    return dict(row)


def get_webhook(conn: Connection, webhook_id: uuid.UUID) -> dict[str, Any]:
    return to_public(_row(conn, webhook_id))


def list_webhooks(conn: Connection) -> list[dict[str, Any]]:
    return [to_public(row) for row in conn.execute(select(WEBHOOK).order_by(WEBHOOK.c.created_at, WEBHOOK.c.id)).mappings()]


def update_webhook(uow: UnitOfWork, webhook_id: uuid.UUID, changes: dict[str, Any]) -> dict[str, Any]:
    """Change what `changes` names (url, sealed_secret, filters, state). Setting state active clears the run
    of failures and the wait before the next attempt; disabling by hand stops deliveries."""
    before = _row(uow.conn, webhook_id, for_update=True)
    values: dict[str, Any] = {}
    if changes.get("url") is not None:
        values["url"] = changes["url"]
    if changes.get("filters") is not None:
        values["filters"] = compact_filters(changes["filters"])
    if changes.get("state") is not None:
        values["state"] = WebhookState(changes["state"]).value
        if values["state"] == WebhookState.active.value:
            values.update(failures=0, next_attempt_at=None, disabled_reason=None)
        elif before["state"] != values["state"]:
            values["disabled_reason"] = "disabled through the API"
    if changes.get("sealed_secret") is not None:
        values["secret_encrypted"] = changes["sealed_secret"]
    after = {**before, **values}
    old, new = _audited(before), _audited(after)
    diff = {key: [old[key], new[key]] for key in new if before[key] != after[key]}
    if changes.get("sealed_secret") is not None:
        diff["secret"] = [None, "replaced"]
    if values:
        values["updated_at"] = uow.now
        uow.conn.execute(update(WEBHOOK).where(WEBHOOK.c.id == webhook_id).values(**values))
        after.update(values)
    if diff:
        uow.record("webhook", webhook_id, "update", diff)
    return to_public(after)


def delete_webhook(uow: UnitOfWork, webhook_id: uuid.UUID) -> None:
    """Removes the subscription and its delivery log. A delivery in flight finishes; its worker then
    finds the row gone and writes nothing."""
    row = _row(uow.conn, webhook_id, for_update=True)
    uow.conn.execute(delete(DELIVERY).where(DELIVERY.c.webhook_id == webhook_id))
    uow.conn.execute(delete(WEBHOOK).where(WEBHOOK.c.id == webhook_id))
    uow.record("webhook", webhook_id, "delete", {key: [value, None] for key, value in _audited(row).items()})


def disable(uow: UnitOfWork, webhook_id: uuid.UUID, reason: str) -> None:
    """The worker's: the subscription failed too many times in a row."""
    uow.conn.execute(update(WEBHOOK).where(WEBHOOK.c.id == webhook_id)
                     .values(state=WebhookState.disabled.value, disabled_reason=reason, updated_at=uow.now))
    uow.record("webhook", webhook_id, "update",
               {"state": [WebhookState.active.value, WebhookState.disabled.value], "disabled_reason": [None, reason]})


def list_deliveries(conn: Connection, webhook_id: uuid.UUID, limit: int) -> dict[str, Any]:
    """The newest attempts first."""
    _row(conn, webhook_id)
    rows = conn.execute(select(DELIVERY).where(DELIVERY.c.webhook_id == webhook_id)
                        .order_by(DELIVERY.c.attempted_at.desc(), DELIVERY.c.id.desc()).limit(limit)).mappings()
    items = [{**{key: row[key] for key in ("id", "attempt", "first_seq", "last_seq", "records", "status_code",
                                            "error", "duration_ms", "outcome")},
              "attempted_at": as_utc(row["attempted_at"])} for row in rows]
    return {"items": items}


def touches(diff: dict[str, Any], fields: list[str]) -> bool:
    """Whether a diff changes one of `fields`: `attributes` stands for every attributes.* key."""
    for name in fields:
        if name in diff:
            return True
        if name == "attributes" and any(key.startswith("attributes.") for key in diff):
            return True
    return False


def matches(filters: dict[str, list[str]], record: dict[str, Any], kind: str | None) -> bool:
    """Whether a subscription wants a change record. `kind` is the CI's class for a ci record, the
    relationship's type for a relationship record (None when unknown or another object).

    `object_types`, `classes` and `relationship_types` together say which objects: a record passes when
    its kind is named, or it is a CI of a named class, or a relationship of a named type (`classes`
    alone means CIs of those classes only). `fields` then also requires the diff to touch one of them."""
    kinds, classes, types = filters.get("object_types"), filters.get("classes"), filters.get("relationship_types")
    if kinds is not None or classes is not None or types is not None:
        object_type = record["object_type"]
        wanted = (kinds is not None and object_type in kinds and not (
            (object_type == "ci" and classes is not None) or (object_type == "relationship" and types is not None)))
        wanted = wanted or (object_type == "ci" and classes is not None and kind in classes)
        wanted = wanted or (object_type == "relationship" and types is not None and kind in types)
        if not wanted:
            return False
    fields = filters.get("fields")
    return fields is None or touches(record["diff"], fields)
