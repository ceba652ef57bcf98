"""The webhook delivery worker: reads the change feed after each subscription's cursor and POSTs it,
signed, to the subscription's URL; runs inside `karta serve` (a thread per worker process).

At least once, in order. A subscription's cursor is the last seq its receiver acknowledged (or that its
filters skipped). A batch is read after the cursor, sent, and only on a 2xx is the cursor moved past
it, in the same transaction as the delivery's log entry. Karta stopping between the receiver's answer
and that commit sends the batch again (under a new delivery id); nothing else does.

One deliverer per subscription, whatever the number of workers and hosts: a worker first takes the
subscription's lease (UPDATE ... WHERE leased_until < now, a plain row update that works the same on
SQLite and PostgreSQL) and gives it back with the cursor. A lease outlives the longest attempt (twice
the HTTP timeout plus a margin), so a worker killed mid-delivery holds it only that long. Hosts'
clocks must agree to well within that margin. The timeout bounds each network step (connect, send,
each read of the answer's head), not their sum: a receiver dribbling its status line a byte at a time
could stretch one attempt past the lease, and another worker could then send the same batch; the
first one's outcome is then not recorded (its lease is gone), so the cursor never goes back.

Failures are retried with exponential backoff and jitter (KARTA_WEBHOOK_RETRY_BASE_SECONDS doubling
up to KARTA_WEBHOOK_RETRY_MAX_SECONDS, each wait a random 50-100% of that), kept in the database as
the time of the next attempt: a failing subscription waits without holding a thread, and the others
are delivered meanwhile by a bounded pool. After KARTA_WEBHOOK_MAX_FAILURES failures in a row the
subscription is disabled, with a change record.

Bounded everywhere: each HTTP call has a timeout and its answer's body is never read; a batch holds
at most KARTA_WEBHOOK_BATCH_RECORDS records and about KARTA_WEBHOOK_BATCH_BYTES; the feed is read
SCAN_ROWS records at a time, at most SCAN_MAX for one batch; the loop polls every
KARTA_WEBHOOK_POLL_SECONDS and stops within about one HTTP timeout at shutdown; the delivery log keeps the last KARTA_WEBHOOK_LOG_KEEP attempts of each
subscription. This module never logs a secret or a body, nor a subscription's URL (it can hold
credentials): an attempt's error in the delivery log has the URL redacted, and httpx's own "HTTP Request:
POST <url>" log lines (INFO, with the userinfo) are dropped for the worker's threads.
"""

import logging
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, and_, delete, func, insert, or_, select, update

from app.core.config import Settings
from app.core.db import read_transaction, write_transaction
from app.core.dialect import locked
from app.integrations import webhooks as wire
from app.models import ChangeRecord, ConfigurationItem, Relationship
from app.models.types import utcnow
from app.models.webhook import WebhookState
from app.services.bulk import id_in
from app.services.changes import to_public as change_public
from app.services.history import UnitOfWork
from app.services.webhooks import DELIVERY, WEBHOOK, SecretBox, disable, matches, redacted_url

CHANGE = ChangeRecord.__table__
CI = ConfigurationItem.__table__
REL = Relationship.__table__
SCAN_ROWS = 1000
# At most this many records are looked at for one batch: a rare filter over a long backlog moves the
# cursor on in steps (a batch with no records) instead of reading the whole feed under one lease.
SCAN_MAX = 20_000
# How long one task keeps delivering a subscription's backlog before giving its thread to others.
SLICE_SECONDS = 5.0
ACTOR = "webhook-delivery"
log = logging.getLogger("karta.webhooks")
THREAD_PREFIX = "karta-webhook"


class _NoRequestLines(logging.Filter):
    """Drops httpx's request lines logged by the worker's threads: they name the URL in full."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.threadName.startswith(THREAD_PREFIX) and str(record.msg).startswith("HTTP Request:"))


_request_lines_filter = _NoRequestLines()


def backoff_seconds(failures: int, base: float, ceiling: float, rand: random.Random = random) -> float:
    """The wait after the `failures`-th failure in a row: base * 2^(failures-1), capped, times a
    random 0.5-1.0 (jitter: receivers that came back are not hit by every subscription at once)."""
    return min(ceiling, base * 2 ** min(failures - 1, 30)) * rand.uniform(0.5, 1.0)


@dataclass
class Batch:
    records: list[bytes]  # encoded by wire.record_json
    first_seq: int
    last_seq: int
    cursor_after: int  # where the cursor goes once acknowledged: past the records the filters skipped too


def _kinds(conn, records: list[dict[str, Any]]) -> dict[uuid.UUID, str]:
    """The class of each CI and the type of each relationship the records are about: from the diff when
    it says (a create or delete), else from the live row, else from the object's delete record."""
    kinds: dict[uuid.UUID, str] = {}
    wanted = {"ci": set(), "relationship": set()}
    for record in records:
        field = "class" if record["object_type"] == "ci" else "type" if record["object_type"] == "relationship" else None
        if field is None:
            continue
        value = record["diff"].get(field)
        if isinstance(value, list) and len(value) == 2 and (value[1] or value[0]):
            kinds[record["object_id"]] = value[1] or value[0]
        else:
            wanted[record["object_type"]].add(record["object_id"])
    for ids, column, key in ((wanted["ci"], CI.c.ci_class, CI.c.id), (wanted["relationship"], REL.c.type, REL.c.id)):
        ids -= kinds.keys()
        if ids:
            kinds.update(conn.execute(select(key, column).where(id_in(conn, key, ids))).all())
    gone = (wanted["ci"] | wanted["relationship"]) - kinds.keys()
    if gone:
        for object_id, diff in conn.execute(select(CHANGE.c.object_id, CHANGE.c.diff).where(
                id_in(conn, CHANGE.c.object_id, gone), CHANGE.c.action == "delete")):
            value = diff.get("class") or diff.get("type")
            if isinstance(value, list) and value and value[0]:
                kinds[object_id] = value[0]
    return kinds


def next_batch(conn, filters: dict[str, list[str]], cursor: int, head: int, max_records: int,
               max_bytes: int) -> Batch | None:
    """The records after `cursor` that the filters match, up to the bounds; None when nothing is left
    up to `head`. A batch with no records only moves the cursor past what the filters skipped."""
    encoded: list[bytes] = []
    size, first, last, scanned = 0, 0, 0, cursor
    need_kinds = "classes" in filters or "relationship_types" in filters
    # The first read is the batch's size (all of it, when nothing is filtered out); each further read
    # doubles, up to SCAN_ROWS. Reading SCAN_ROWS at once for a batch of 100 cost 34 ms of 82 per delivery.
    chunk, looked = min(max_records, SCAN_ROWS), 0
    while scanned < head and looked < SCAN_MAX:
        rows = conn.execute(select(CHANGE).where(CHANGE.c.seq > scanned, CHANGE.c.seq <= head)
                            .order_by(CHANGE.c.seq).limit(chunk)).mappings().all()
        looked, chunk = looked + len(rows), min(chunk * 2, SCAN_ROWS)
        if not rows:
            scanned = head
            break
        records = [change_public(row) for row in rows]
        kinds = _kinds(conn, records) if need_kinds else {}
        for record in records:
            if matches(filters, record, kinds.get(record["object_id"])):
                data = wire.record_json(record)
                if encoded and (len(encoded) >= max_records or size + len(data) > max_bytes):
                    return Batch(encoded, first, last, last)
                encoded.append(data)
                size += len(data)
                first, last = first or record["seq"], record["seq"]
            scanned = record["seq"]
        if encoded and len(encoded) >= max_records:
            return Batch(encoded, first, last, last)
    if scanned <= cursor:
        return None
    return Batch(encoded, first, last, scanned)


class DeliveryWorker:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.box = SecretBox(engine, settings.webhook_key)
        self.owner = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = timedelta(seconds=2 * settings.webhook_timeout_seconds + 5)
        self._stop = threading.Event()
        self._in_flight: set[uuid.UUID] = set()
        self._lock = threading.Lock()
        self._secrets: dict[str, str] = {}
        self._pool = ThreadPoolExecutor(settings.webhook_concurrency, thread_name_prefix=THREAD_PREFIX)
        logging.getLogger("httpx").addFilter(_request_lines_filter)  # once: a filter already there is not added again
        self._client = httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False, trust_env=False,
                                    limits=httpx.Limits(max_connections=settings.webhook_concurrency * 2))
        self._thread = threading.Thread(target=self._run, name=f"{THREAD_PREFIX}-poll", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Returns once the attempts in flight have ended (each bounded by the HTTP timeout)."""
        self._stop.set()
        self._thread.join(timeout=self.settings.webhook_timeout_seconds + 5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:
                log.exception("webhook poll failed; polling again")
            self._stop.wait(self.settings.webhook_poll_seconds)

    def poll(self) -> None:
        """Hand every subscription that has something due to the pool (one task per subscription)."""
        now = utcnow()
        with read_transaction(self.engine) as conn:
            head = conn.execute(select(func.max(CHANGE.c.seq))).scalar() or 0
            due = conn.execute(select(WEBHOOK.c.id).where(
                WEBHOOK.c.state == WebhookState.active.value, WEBHOOK.c.cursor_seq < head,
                or_(WEBHOOK.c.next_attempt_at.is_(None), WEBHOOK.c.next_attempt_at <= now),
                or_(WEBHOOK.c.leased_until.is_(None), WEBHOOK.c.leased_until < now)).order_by(WEBHOOK.c.id)).scalars().all()
        for webhook_id in due:
            with self._lock:
                if webhook_id in self._in_flight or self._stop.is_set():
                    continue
                self._in_flight.add(webhook_id)
            self._pool.submit(self._deliver_backlog, webhook_id)

    def _deliver_backlog(self, webhook_id: uuid.UUID) -> None:
        try:
            started = time.monotonic()
            while not self._stop.is_set() and time.monotonic() - started < SLICE_SECONDS:
                if not self.deliver_once(webhook_id):
                    break
        except Exception:
            log.exception("webhook %s: delivery failed unexpectedly", webhook_id)
        finally:
            with self._lock:
                self._in_flight.discard(webhook_id)

    def _secret(self, sealed: str) -> str:
        """Decrypted once per sealed value (a PATCHed secret is another value): Fernet costs
        milliseconds per call here, a delivery should not pay it each time."""
        secret = self._secrets.get(sealed)
        if secret is None:
            secret = self.box.open(sealed)
            if len(self._secrets) >= 10_000:
                self._secrets.clear()
            self._secrets[sealed] = secret
        return secret

    def _take_lease(self, webhook_id: uuid.UUID) -> bool:
        now = utcnow()
        with write_transaction(self.engine) as conn:
            taken = conn.execute(update(WEBHOOK).where(
                WEBHOOK.c.id == webhook_id, WEBHOOK.c.state == WebhookState.active.value,
                or_(WEBHOOK.c.next_attempt_at.is_(None), WEBHOOK.c.next_attempt_at <= now),
                or_(WEBHOOK.c.leased_until.is_(None), WEBHOOK.c.leased_until < now, WEBHOOK.c.lease_owner == self.owner),
            ).values(lease_owner=self.owner, leased_until=now + self.lease))
            return taken.rowcount == 1

    def deliver_once(self, webhook_id: uuid.UUID) -> bool:
        """Take the lease, send the next batch, record the outcome. True when there may be more to send
        right away (a batch was acknowledged or skipped)."""
        if not self._take_lease(webhook_id):
            return False
        with read_transaction(self.engine) as conn:
            row = conn.execute(select(WEBHOOK).where(WEBHOOK.c.id == webhook_id)).mappings().first()
            head = conn.execute(select(func.max(CHANGE.c.seq))).scalar() or 0
            batch = row and next_batch(conn, row["filters"], row["cursor_seq"], head,
                                       self.settings.webhook_batch_records, self.settings.webhook_batch_bytes)
        if not batch:
            self._finish(webhook_id, None, None)
            return False
        if not batch.records:
            self._finish(webhook_id, batch, None)
            return True
        delivery_id, attempt = uuid.uuid4(), row["failures"] + 1
        payload = wire.body(webhook_id, delivery_id, attempt, batch.records, batch.first_seq, batch.last_seq)
        status, error, attempted_at, began = None, None, utcnow(), time.monotonic()
        try:
            secret = self._secret(row["secret_encrypted"])
            with self._client.stream("POST", row["url"], content=payload,
                                     headers=wire.headers(webhook_id, delivery_id, secret, payload)) as response:
                status = response.status_code  # the body is never read: nothing to bound
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            text = str(exc).replace(row["url"], redacted_url(row["url"], row["secret_encrypted"]))
            error = f"{type(exc).__name__}: {text[:300]}"
        log_row = {"id": delivery_id, "webhook_id": webhook_id, "attempted_at": attempted_at, "attempt": attempt,
                   "first_seq": batch.first_seq, "last_seq": batch.last_seq, "records": len(batch.records),
                   "status_code": status, "error": error, "outcome": "failed" if error else "delivered",
                   "duration_ms": round((time.monotonic() - began) * 1000)}
        self._finish(webhook_id, batch, log_row)
        return error is None

    def _finish(self, webhook_id: uuid.UUID, batch: Batch | None, log_row: dict[str, Any] | None) -> None:
        """Give the lease back, with the cursor moved (acknowledged or skipped) or the failure counted,
        and the attempt logged, in one transaction. A lease lost meanwhile (the row deleted, or held so
        long it expired and another worker took it) writes nothing."""
        settings = self.settings
        with UnitOfWork(self.engine, ACTOR) as uow:
            mine = and_(WEBHOOK.c.id == webhook_id, WEBHOOK.c.lease_owner == self.owner)
            values: dict[str, Any] = {"lease_owner": None, "leased_until": None}
            failed = log_row is not None and log_row["error"] is not None
            if batch is not None and not failed:
                values.update(cursor_seq=batch.cursor_after, failures=0, next_attempt_at=None)
                if log_row is not None:
                    values["last_success_at"] = log_row["attempted_at"]
            failures, active = None, False
            if failed:
                # Locked (PostgreSQL; SQLite's write lock is already held since BEGIN IMMEDIATE): a PATCH
                # re-enabling the subscription commits before this read or waits for this commit, never
                # in between, where its reset would be overwritten and the subscription disabled again.
                row = uow.conn.execute(locked(uow.conn, select(WEBHOOK.c.failures, WEBHOOK.c.state).where(mine))).first()
                if row is None:
                    return
                failures, active = row.failures + 1, row.state == WebhookState.active.value
                wait = backoff_seconds(failures, settings.webhook_retry_base_seconds, settings.webhook_retry_max_seconds)
                values.update(failures=failures, next_attempt_at=uow.now + timedelta(seconds=wait))
            if uow.conn.execute(update(WEBHOOK).where(mine).values(**values)).rowcount != 1:
                return
            if log_row is not None:
                uow.conn.execute(insert(DELIVERY), log_row)
                self._prune(uow.conn, webhook_id)
            if active and failures >= settings.webhook_max_failures:  # not when disabled by hand meanwhile
                disable(uow, webhook_id, f"{failures} failed deliveries in a row; last: {log_row['error']}")
                log.warning("webhook %s disabled after %d failed deliveries in a row", webhook_id, failures)

    def _prune(self, conn, webhook_id: uuid.UUID) -> None:
        keep = self.settings.webhook_log_keep
        oldest_kept = conn.execute(select(DELIVERY.c.attempted_at).where(DELIVERY.c.webhook_id == webhook_id)
                                   .order_by(DELIVERY.c.attempted_at.desc()).offset(keep - 1).limit(1)).scalar()
        if oldest_kept is not None:
            conn.execute(delete(DELIVERY).where(DELIVERY.c.webhook_id == webhook_id, DELIVERY.c.attempted_at < oldest_kept))
