"""The expiry sweep: open Alertmanager incidents whose group fell silent past `expires_at` stop firing.

Why a sweep (app.services.incidents, "expired", says why incidents expire): a group whose alerts are
all silenced gets no notification at all, so nothing else would ever close its incident, and the change
feed (webhooks, `karta incidents --follow`) must say so when it happens, not when someone next reads
the incident. Reads stay read-only.

Each worker of the service runs one `IncidentExpirer` thread (started and stopped by the app's
lifespan, as the webhook DeliveryWorker is). A sweep reads the due incidents from ix_incident_expires_at,
at most `incident_sweep_max`, for at most SWEEP_SECONDS, and expires each in its own unit of work that
locks the incident's row, skipping one another worker holds (PostgreSQL's SKIP LOCKED; SQLite has one
writer at a time) and re-checking under the lock that no notification renewed it meanwhile. So several
workers sweep side by side without expiring an incident twice, and a sweep never holds a lock long.
This module never talks HTTP.
"""

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.core.db import read_transaction
from app.models import Incident
from app.services import incidents

log = logging.getLogger("karta.incidents")
INCIDENT = Incident.__table__
ACTOR = "alert-expiry"
SWEEP_SECONDS = 5.0


def sweep(ctx: incidents.Context, limit: int, *, now: datetime | None = None,
          budget_seconds: float = SWEEP_SECONDS) -> int:
    """Expire the incidents due (found due at `now`, and still due when locked), oldest expiry first, at
    most `limit` and for about `budget_seconds`; how many expired (the rest wait for the next sweep).

    `now` given (tests) is the clock of the whole sweep, the re-check under the lock included, so a test
    moves time instead of sleeping. Not given, each incident is re-checked at its own unit of work's
    time, and its change record carries the moment it expired, not the sweep's start."""
    started = time.monotonic()
    with read_transaction(ctx.engine) as conn:
        due = conn.execute(select(INCIDENT.c.id).where(INCIDENT.c.expires_at <= (now or datetime.now(UTC)))
                           .order_by(INCIDENT.c.expires_at, INCIDENT.c.id).limit(limit)).scalars().all()
    expired = 0
    for incident_id in due:
        if time.monotonic() - started > budget_seconds:
            break
        expired += incidents.expire(ctx, ACTOR, incident_id, now=now)
    return expired


class IncidentExpirer:
    """A thread sweeping every `incident_sweep_seconds` until stopped, for the app whose state it gets."""

    def __init__(self, state: Any) -> None:
        self.ctx = incidents.context(state)
        self.interval, self.limit = state.settings.incident_sweep_seconds, state.settings.incident_sweep_max
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="karta-incident-expiry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Returns once the sweep in progress ended (bounded by SWEEP_SECONDS and one unit of work)."""
        self._stop.set()
        self._thread.join(timeout=SWEEP_SECONDS + 30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                expired = sweep(self.ctx, self.limit)
                if expired:
                    log.info("incidents: %d expired (their groups fell silent past expires_at)", expired)
            except Exception:
                log.exception("incident expiry sweep failed; sweeping again")
