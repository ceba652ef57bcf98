"""Read replicas: which database answers a read, and which replicas are fit to answer.

Rules, in the order they apply to one request (the middleware, app/api/read_routing.py, decides the
first two and sets the request's ReadRoute in app.core.db.READ_ROUTE):
  - Only a request that cannot write may read lagging data: GET and HEAD, and the POSTs that only ask
    questions (impact, blast radius, root cause). Everything else, and whatever runs outside a request
    (start-up, the webhook deliverer, token checks, the units of work), reads the primary.
  - The first read of a request chooses its database, and the request keeps it: two reads of one page
    never come from two replicas at different points of the feed.
  - Without X-Karta-Min-Seq: a replica in rotation, round-robin. With it (N): a replica known to have
    applied change N; else the most advanced one is polled on the connection that will serve the read,
    every WAIT_POLL_SECONDS for at most `replica_wait_seconds`; else the primary answers.
  - "Has applied change N" is read on the replica as the change table's largest sequence number. That
    is Karta's own order: sequence numbers are given out under a lock held to the commit
    (app/services/history.py), so the commit holding N precedes every later one in the WAL, and a
    standby that shows N shows everything committed before it. A WAL position (LSN) would need the
    commit's LSN handed to the client and means nothing on SQLite; the sequence is what the client has.
  - A number N beyond the primary's newest change (as last sampled, sampled again once if need be) is
    answered by the primary at once: no replica can reach a change that does not exist yet.
  - A replica that refuses a connection, fails a check, does not answer its check within
    `replica_timeout_seconds` or breaks a read leaves the rotation at once and
    is checked again after 1, 2, 4 ... s (at most `replica_retry_max_seconds`); a replica more than
    `replica_max_lag_seconds` behind leaves it until a check finds it caught up. A read it broke is
    answered again by the primary (the middleware), so readers never see a replica's failure.
  - Lag is measured on the change feed with this worker's clock: every check samples the primary's
    newest sequence number; a replica's lag is the age of the oldest sample it has not yet applied
    (0 when it has them all). No clock of another machine enters, and a standby that stopped receiving
    WAL (not only one that stopped replaying it) is seen falling behind.
  - A replica that stops answering without refusing (a frozen host, a partition) must hang nothing for
    good. Its connections carry TCP timeouts (app.core.db.make_engine); each replica is checked in a
    thread of its own under a hard deadline, so one frozen replica never delays the checks of the
    others; a check past its deadline takes the replica out of rotation and shuts down the sockets of
    every connection to it in use, so its readers fail at once and the primary answers them again.

This module never writes, and never lets a replica's error reach a reader when the primary can answer.
"""

import asyncio
import itertools
import logging
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.core.db import make_engine, read_transaction

log = logging.getLogger("karta.replicas")

HEAD_QUERY = text("SELECT coalesce(max(seq), 0) FROM change_record")
STANDBY_QUERY = text("SELECT pg_is_in_recovery(), (SELECT coalesce(max(seq), 0) FROM change_record)")
# A read waiting for its sequence polls the replica this often (a local standby replays in milliseconds).
WAIT_POLL_SECONDS = 0.01
RETRY_BASE_SECONDS = 1.0
MAX_HEAD_SAMPLES = 100_000
# A check's hard deadline is the replica timeout plus this much (the connect and the query each have the
# timeout; a live replica answers both in milliseconds).
CHECK_GRACE_SECONDS = 1.0


def replica_name(url: str) -> str:
    """host:port/database: what logs, /readyz and metric labels call a replica (never its password)."""
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


class Replica:
    """One standby and what the last check or read found about it."""

    def __init__(self, url: str, *, index: int, pool_size: int, timeout_seconds: int) -> None:
        self.index = index
        self.name = replica_name(url)
        # Connections are bounded: a replica that stops answering costs a reader at most the timeout
        # before the primary answers instead.
        self.engine = make_engine(url, pool_size=pool_size, connect_timeout=timeout_seconds)
        self.check_engine = make_engine(url, pool_size=1, connect_timeout=timeout_seconds,
                                        statement_timeout_ms=timeout_seconds * 1000)
        self.in_rotation = False  # until the first check finds it a standby, caught up
        self.applied_seq = 0
        self.lag_seconds: float | None = None
        self.lag_changes: int | None = None
        self.error: str | None = "not checked yet"
        self.failures = 0
        self.retry_at = 0.0  # time.monotonic() of its next check while out of rotation
        self.checking: threading.Thread | None = None  # its check under way, if any
        # The socket of every connection to it in use (a reader's or the check's), to cut them off.
        self._in_use: dict[int, int] = {}
        self._in_use_lock = threading.Lock()
        for engine in (self.engine, self.check_engine):
            event.listen(engine, "checkout", self._checked_out)
            # Forgotten before its descriptor can be closed (and its number given to another socket).
            for done in ("checkin", "invalidate", "close"):
                event.listen(engine, done, self._done)

    def _checked_out(self, dbapi_connection, record, _proxy) -> None:
        with self._in_use_lock:
            self._in_use[id(record)] = dbapi_connection.fileno()

    def _done(self, _dbapi_connection, record, *_exception) -> None:
        with self._in_use_lock:
            self._in_use.pop(id(record), None)

    def sever(self) -> int:
        """Shut down the socket of every connection to this replica in use: a reader or check blocked on
        a replica that stopped answering then fails at once (and its connection is dropped from the pool).
        shutdown() leaves the descriptor open for its owner to close; held under the lock, no descriptor
        is closed and reused in between (check-in comes first). The number of sockets shut down."""
        severed = 0
        with self._in_use_lock:
            for fd in self._in_use.values():
                try:
                    sock = socket.socket(fileno=os.dup(fd))
                except OSError:
                    continue
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    severed += 1
                except OSError:
                    pass
                finally:
                    sock.close()
        return severed

    def public_status(self) -> dict[str, Any]:
        """What /readyz (no authentication) shows: no address, no database name, no error text."""
        return {"replica": self.index, "in_rotation": self.in_rotation,
                "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
                "lag_changes": self.lag_changes}

    def status(self, now: float) -> dict[str, Any]:
        return {"name": self.name, "in_rotation": self.in_rotation, "applied_seq": self.applied_seq,
                "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
                "lag_changes": self.lag_changes, "error": self.error,
                "next_check_in_seconds": None if self.in_rotation else round(max(0.0, self.retry_at - now), 3)}


class ReplicaSet:
    """The primary engine, its replicas, their health (checked by a thread per worker) and the choice
    of replica for a read."""

    def __init__(self, primary: Engine, urls: list[str], *, pool_size: int, wait_seconds: float,
                 check_seconds: float, max_lag_seconds: float, timeout_seconds: int,
                 retry_max_seconds: float) -> None:
        self.primary = primary
        self.replicas = [Replica(url, index=n, pool_size=pool_size, timeout_seconds=timeout_seconds)
                         for n, url in enumerate(urls)]
        self.check_deadline_seconds = timeout_seconds + CHECK_GRACE_SECONDS
        self.wait_seconds = wait_seconds
        self.check_seconds = check_seconds
        self.max_lag_seconds = max_lag_seconds
        self.retry_max_seconds = retry_max_seconds
        self._turn = itertools.count()
        self._lock = threading.Lock()
        # (time.monotonic(), the primary's newest sequence) per check, as far back as max_lag reaches.
        self._heads: deque[tuple[float, int]] = deque(
            maxlen=min(MAX_HEAD_SAMPLES, math.ceil(max_lag_seconds / check_seconds) + 2))
        self._latest_head: int | None = None  # the primary's newest sequence as last sampled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, primary: Engine, settings) -> "ReplicaSet":
        return cls(primary, settings.replica_urls, pool_size=settings.threads, wait_seconds=settings.replica_wait_seconds,
                   check_seconds=settings.replica_check_seconds, max_lag_seconds=settings.replica_max_lag_seconds,
                   timeout_seconds=settings.replica_timeout_seconds,
                   retry_max_seconds=settings.replica_retry_max_seconds)

    # --- health -------------------------------------------------------------------------------

    def start(self) -> None:
        """Check now and then every check_seconds, in a daemon thread, until stop()."""
        self._thread = threading.Thread(target=self._run, name="karta-replica-checks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for replica in self.replicas:
            replica.engine.dispose()
            replica.check_engine.dispose()

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception:  # the checks must outlive any surprise: the next round runs anyway
                log.exception("checking the read replicas failed")
            if self._stop.wait(self.check_seconds):
                return

    def check(self) -> None:
        """One round: sample the primary's head, then check each replica in rotation or due again, each
        in a thread of its own, all under one deadline. A replica whose check is past it leaves the
        rotation and its connections in use are cut off; its check is not started again until the
        stuck one has ended."""
        now = time.monotonic()
        head: int | None = None
        try:
            with read_transaction(self.primary, routed=False) as conn:
                head = conn.execute(HEAD_QUERY).scalar_one()
            self._heads.append((now, head))
            self._latest_head = head
        except SQLAlchemyError as exc:  # the primary's own trouble is /readyz's; the replicas keep their state
            log.warning("read replicas: the primary did not answer its head: %s", _brief(exc))
        started: list[tuple[Replica, dict[str, Any]]] = []
        for replica in self.replicas:
            if (replica.in_rotation or now >= replica.retry_at) and \
                    (replica.checking is None or not replica.checking.is_alive()):
                outcome: dict[str, Any] = {}
                replica.checking = threading.Thread(target=self._probe, args=(replica, outcome), daemon=True,
                                                    name=f"karta-replica-check-{replica.index}")
                replica.checking.start()
                started.append((replica, outcome))
        deadline = time.monotonic() + self.check_deadline_seconds
        for replica, outcome in started:
            replica.checking.join(max(0.0, deadline - time.monotonic()))
            if replica.checking.is_alive():
                outcome["late"] = True  # what the check finds later is not applied
                self._out(replica, f"did not answer its check within {self.check_deadline_seconds:g} s")
                replica.sever()
            else:
                self._apply(replica, head, outcome)

    @staticmethod
    def _probe(replica: Replica, outcome: dict[str, Any]) -> None:
        try:
            with replica.check_engine.connect() as conn:
                outcome["answer"] = tuple(conn.execute(STANDBY_QUERY).one())
        except SQLAlchemyError as exc:
            if not outcome.get("late"):
                outcome["error"] = _brief(exc)
        except Exception as exc:  # noqa: BLE001 - a surprise is a failed check, not a dead thread unseen
            outcome["error"] = f"{type(exc).__name__}: {exc}"[:200]

    def _apply(self, replica: Replica, head: int | None, outcome: dict[str, Any]) -> None:
        if "answer" not in outcome:
            self._out(replica, outcome.get("error", "the check found nothing"))
            return
        in_recovery, applied = outcome["answer"]
        if not in_recovery:
            # Promoted, or pointed at a primary by mistake: its data no longer follows this primary's.
            self._out(replica, "not a standby (pg_is_in_recovery() is false)")
            return
        now = time.monotonic()
        with self._lock:
            replica.applied_seq = applied  # the truth as of this check (a re-seeded standby may go back)
            replica.lag_changes = None if head is None else max(0, head - replica.applied_seq)
            replica.lag_seconds = self._lag_seconds(replica.applied_seq, now)
            if replica.lag_seconds > self.max_lag_seconds:
                if replica.in_rotation:
                    log.warning("read replica %s is %.1f s behind: out of rotation", replica.name, replica.lag_seconds)
                replica.in_rotation = False
                replica.failures = 0
                replica.retry_at = now  # reachable: checked again at the next round
                replica.error = f"{replica.lag_seconds:.1f} s behind (more than {self.max_lag_seconds:g} s)"
                return
            if not replica.in_rotation:
                log.info("read replica %s in rotation (%.3f s behind)", replica.name, replica.lag_seconds)
            replica.in_rotation, replica.failures, replica.error = True, 0, None

    def _lag_seconds(self, applied: int, now: float) -> float:
        for sampled_at, head in self._heads:  # oldest first
            if head > applied:
                return now - sampled_at
        return 0.0

    def _out(self, replica: Replica, reason: str) -> None:
        with self._lock:
            replica.failures += 1
            delay = min(self.retry_max_seconds, RETRY_BASE_SECONDS * 2 ** min(replica.failures - 1, 30))
            replica.retry_at = time.monotonic() + delay
            if replica.in_rotation or replica.failures == 1:
                log.warning("read replica %s out of rotation (%s); checked again in %.0f s",
                            replica.name, reason, delay)
            replica.in_rotation = False
            replica.error = reason

    def broken(self, replica: Replica, exc: BaseException) -> None:
        """A reader's connection to `replica` failed: out of rotation now, not at the next check."""
        self._out(replica, _brief(exc))

    def beyond_head(self, min_seq: int) -> bool:
        """True when change `min_seq` is newer than the primary's newest: no replica will ever show it
        within the wait, so the primary answers at once. The head last sampled decides; when `min_seq`
        is past it (a write since the last check), the primary is asked once more, unless on the event
        loop (which must not block; wait_for then declines anyway)."""
        latest = self._latest_head
        if latest is not None and min_seq <= latest:
            return False
        try:
            asyncio.get_running_loop()
            return latest is not None
        except RuntimeError:
            pass
        try:
            with read_transaction(self.primary, routed=False) as conn:
                latest = conn.execute(HEAD_QUERY).scalar_one()
        except SQLAlchemyError:
            return False  # the primary's trouble: the read goes on as it would have
        if self._latest_head is None or latest > self._latest_head:
            self._latest_head = latest
        return min_seq > latest

    def public_status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [replica.public_status() for replica in self.replicas]

    def status(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [replica.status(now) for replica in self.replicas]

    # --- choosing -----------------------------------------------------------------------------

    def pick(self, min_seq: int | None) -> Replica | None:
        """A replica in rotation (one known to hold `min_seq` if any does, else the most advanced), or
        None for the primary."""
        healthy = [replica for replica in self.replicas if replica.in_rotation]
        if not healthy:
            return None
        if min_seq:
            ready = [replica for replica in healthy if replica.applied_seq >= min_seq]
            if not ready:
                return max(healthy, key=lambda replica: replica.applied_seq)
            healthy = ready
        return healthy[next(self._turn) % len(healthy)]

    def wait_for(self, replica: Replica, conn: Connection, min_seq: int) -> bool:
        """True once `replica` shows change `min_seq`, polled on `conn` for at most wait_seconds."""
        try:
            asyncio.get_running_loop()
            return False  # on the event loop: never block it; the primary answers
        except RuntimeError:
            pass
        deadline = time.monotonic() + self.wait_seconds
        for _ in range(int(self.wait_seconds / WAIT_POLL_SECONDS) + 2):
            applied = conn.execute(HEAD_QUERY).scalar_one()
            conn.rollback()  # end the poll's transaction: the read sets its own mode
            replica.applied_seq = max(replica.applied_seq, applied)
            if applied >= min_seq:
                return True
            if time.monotonic() + WAIT_POLL_SECONDS > deadline:
                return False
            time.sleep(WAIT_POLL_SECONDS)
        return False


class ReadRoute:
    """One request's way to the database: whether it may read a replica, the sequence it must see, the
    replica it chose, whether that replica broke a read, and the sequence the request's writes committed."""

    __slots__ = ("committed_seq", "decided", "failed", "may_lag", "min_seq", "primary", "replica", "replicas")

    def __init__(self, replicas: ReplicaSet, *, may_lag: bool, min_seq: int | None) -> None:
        self.replicas = replicas
        self.primary = replicas.primary
        self.may_lag = may_lag
        self.min_seq = min_seq
        self.replica: Replica | None = None
        self.decided = False
        self.failed = False
        self.committed_seq: int | None = None

    def committed(self, seq: int) -> None:
        """A unit of work of this request committed change records up to `seq` (app.services.history)."""
        if self.committed_seq is None or seq > self.committed_seq:
            self.committed_seq = seq

    def may_wait(self) -> bool:
        """Whether choosing the database may wait for a replica: a sequence to see that no replica in
        rotation is known to hold yet (app.core.db.read_may_wait)."""
        if self.decided or not self.min_seq:
            return False
        rotation = [replica for replica in self.replicas.replicas if replica.in_rotation]
        return bool(rotation) and not any(replica.applied_seq >= self.min_seq for replica in rotation)

    def prepare(self) -> None:
        """Choose the database now (app.core.db.prepare_read); the reads that follow keep the choice."""
        if not self.decided:
            _, conn = self._replica_connection()
            if conn is not None:
                conn.close()

    @contextmanager
    def transaction(self, begin: bool) -> Iterator[Connection]:
        replica, conn = self._replica_connection()
        if conn is None:
            with read_transaction(self.primary, begin=begin, routed=False) as primary_conn:
                yield primary_conn
            return
        try:
            with conn:
                if begin:
                    with conn.begin():
                        yield conn
                else:
                    yield conn.execution_options(isolation_level="AUTOCOMMIT")
        except DBAPIError as exc:
            # The middleware answers the request again from the primary; a broken connection also
            # takes the replica out of rotation (a query error of the replica's own, such as a conflict
            # with recovery, leaves it in).
            self.failed = True
            if exc.connection_invalidated:
                self.replicas.broken(replica, exc)
            raise

    def _replica_connection(self) -> tuple[Replica | None, Connection | None]:
        if not self.decided:
            self.decided = True
            self.replica = self.replicas.pick(self.min_seq)
            fresh = True
        else:
            fresh = False
        replica = self.replica
        if replica is None:
            return None, None
        conn = None
        try:
            conn = replica.engine.connect()
            if fresh and self.min_seq and replica.applied_seq < self.min_seq and \
                    (self.replicas.beyond_head(self.min_seq) or
                     not self.replicas.wait_for(replica, conn, self.min_seq)):
                conn.close()
                self.replica = None
                return None, None
        except SQLAlchemyError as exc:
            if conn is not None:
                conn.close()
            self.replicas.broken(replica, exc)
            self.replica = None
            return None, None
        return replica, conn


def _brief(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"
