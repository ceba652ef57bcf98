"""Keeping service maps in step: after writes commit, the maps they touch are brought current.

The keeper reads the change feed after its cursor, as the impact graph catches up (app.services.
live_graph), rather than being called by each write path: every write of every kind (the CI and
relationship API, ingest, imports, the web UI, the CLI, another worker or host) commits its change
records through one unit of work, so reading them misses none, and the write itself never waits
for a map nor fails because of one. Each worker runs one keeper thread, woken after a write of its
own (`notify`) and polling every POLL_SECONDS for the others'.

Which services a pass refreshes (incremental: never every service for every batch):
  - a service CI created, changed or deleted (its entry points may have changed);
  - every service whose stored map holds a CI the records touch: a CI changed or deleted, or the
    dependent end of a relationship created or ended (service_map_member, indexed by CI): a map is
    what its entry applications depend on, so `A depends_on B` created changes the maps holding A
    and no other (B's map, or one holding B alone, gained a dependent, not a provider); for a type
    carrying no impact, none;
  - every service whose entry points name a host key of a touched CI: a host that gained the
    address, a new application on it (its runs_on relationship touches the host), a listener that
    moved (service_entry_key, indexed by key);
  - all of them when a class or relationship type changed (layers and impact directions), when
    more than FULL_PASS_AFTER records are waiting, and on the first pass (no cursor yet): `rebuild`.
Records the keeper itself wrote are skipped (a map changing never changes another's), except the
relationships it creates and ends: a service's `depends_on` its entry applications (a map that goes
through another service, a person having said the portal depends_on payments, walks that service's
owned relationships) and a redundancy group's (app.services.redundancy): the services whose members
hold their dependent end are refreshed on the next pass. That ends: a service's owned relationships
follow from its entry points alone; a group follows from its dependent's discovered dependencies and
adds only itself to the maps holding the dependent (its members were there already, reached
directly), so the refresh it causes finds the same group, writes no relationship, and a map unchanged
is not written. A relationship update whose `port` changed touches its dependent end too (a port
can make or unmake a group).

A chunk of services (SERVICES_PER_TRANSACTION, one transaction) that the database aborts for a
moment's reason, as app.core.db_errors classifies it (a deadlock or serialization failure with a
concurrent ingest batch, a lock timeout, a connection lost), runs again from its start (resolve,
walk, write: what the other transaction committed is seen), CHUNK_ATTEMPTS times at most with an
exponential backoff and jitter (two keepers or batches that collided do not collide again in step).
Still failing, it and the chunks after it stay *due*: the pass ends there, logged, and the next pass
(the next write, or the next poll) refreshes them first, whatever records it reads. The stored cursor
does not move past records whose services are due, so a worker that stops meanwhile loses none of
them: the keeper that starts next reads those records again. Any other failure logs and leaves the
cursor where it was: the next pass catches up.

On PostgreSQL every worker runs a keeper: each writing transaction first takes an advisory lock,
without waiting (KEEPER_LOCK); a keeper that does not get it leaves its pass, cursor unmoved, to the
next poll, so that two first passes on a fresh database never insert the same map rows at once (a
unique violation would roll back a whole chunk). SQLite serializes writers already.
A keeper behind another writes only forward (app.services.service_map.write): the later graph wins.
"""

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, insert, select, text, update
from tenacity import (RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_when_event_set,
                      wait_exponential, wait_random)

from app.core.db import read_transaction, write_transaction
from app.core.db_errors import DatabaseFault, classify
from app.core.dialect import row_locks
from app.models import (
    ChangeRecord,
    ConfigurationItem,
    Relationship,
    ServiceEntryKey,
    ServiceMapCursor,
    ServiceMapMember,
    ServiceMapState,
)
from app.services import redundancy, service_map
from app.services.bulk import id_in
from app.services.changes import last_seq
from app.services.history import UnitOfWork
from app.services.registry import RegistryCache

log = logging.getLogger("karta.service_map")
CHANGE = ChangeRecord.__table__
CI = ConfigurationItem.__table__
REL = Relationship.__table__
MEMBER = ServiceMapMember.__table__
STATE = ServiceMapState.__table__
KEY = ServiceEntryKey.__table__
CURSOR = ServiceMapCursor.__table__
CURSOR_NAME = "keeper"
POLL_SECONDS = 2.0
PAGE = 10_000
FULL_PASS_AFTER = 200_000  # records waiting: past this, mapping every service costs less than reading them
SERVICES_PER_TRANSACTION = 200
# The cursor is written when a pass refreshed something, or this many records / seconds after it was
# last written: a write that touches no service costs the keeper a read, not a write.
CURSOR_WRITE_RECORDS = 10_000
CURSOR_WRITE_SECONDS = 60.0
# A chunk the database aborted (deadlock, serialization failure, lock timeout) runs again this many
# times in all, waiting 0.1 s, 0.2 s, 0.4 s ... (at most CHUNK_BACKOFF_MAX_SECONDS) plus up to
# CHUNK_JITTER_SECONDS at random in between: a few seconds at most before its services are left due.
CHUNK_ATTEMPTS = 5
CHUNK_BACKOFF_SECONDS = 0.1
CHUNK_BACKOFF_MAX_SECONDS = 2.0
CHUNK_JITTER_SECONDS = 0.2
REBUILD_TRIES = 30  # `rebuild` waits for another keeper's pass this many polls at most
THREAD_NAME = "karta-service-maps"
# An arbitrary constant naming the keepers' lock among PostgreSQL advisory locks ("KMAP").
KEEPER_LOCK = 0x4B4D4150


class _Busy(Exception):
    """Another worker's keeper is writing maps: this pass is left to the next poll."""


def transient(exc: BaseException) -> bool:
    """The database aborted the chunk for a moment's reason (app.core.db_errors: what the API answers
    with 503 and Retry-After): the same chunk may succeed when run again."""
    return classify(exc) is DatabaseFault.retry


def _why(exc: BaseException | None) -> str:
    """The error as a log line says it: its SQLSTATE (40P01 deadlock detected, 55P03 lock timeout)
    and the driver's class, not the message (a statement's text and parameters)."""
    error = getattr(exc, "orig", None) or exc
    sqlstate = getattr(error, "sqlstate", None)
    return f"{type(error).__name__}{f' (SQLSTATE {sqlstate})' if sqlstate else ''}"


def dependent_ends(rel_type: str | None, directions: dict[str, str]) -> tuple[str, ...]:
    """Which end of a relationship of this type depends on the other (the end whose maps it can
    change: a map is what its entry applications depend on): the source for `target_to_source`
    (A depends_on B), the target for `source_to_target` (A contains B; M member_of G), none for a
    type that carries no impact. Both for a type the registry does not know (yet)."""
    direction = directions.get(rel_type) if rel_type is not None else None
    if direction == "target_to_source":
        return ("source",)
    if direction == "source_to_target":
        return ("target",)
    if direction == "none":
        return ()
    return ("source", "target")


def gone_addresses(records: Iterable[Any]) -> set[str]:
    """The addresses of the address CIs these records delete (their diff keeps the row before): the
    hosts holding them may be what an entry point named by the address's dns_name resolved to."""
    return {old for record in records if record.object_type == "ci" and record.action == "delete"
            for old in [(record.diff.get("attributes.address") or [None])[0]] if isinstance(old, str)}


def touched_by(records: Iterable[Any], directions: dict[str, str] | None = None
               ) -> tuple[set[uuid.UUID], set[uuid.UUID], set[uuid.UUID], bool]:
    """(the CIs the records touch: CIs written, the dependent end of relationships created or ended
    (`directions`: type -> impact direction; without it, both ends); the dependent ends of the
    relationships the keeper created or ended; the relationships whose `port` changed (their ends
    are looked up); whether a class or relationship type changed). The keeper's other records are
    skipped."""
    touched: set[uuid.UUID] = set()
    through: set[uuid.UUID] = set()
    updated: set[uuid.UUID] = set()
    everything = False
    directions = directions or {}
    for record in records:
        ours = record.actor == service_map.SOURCE
        if ours and not (record.object_type == "relationship" and record.action in ("create", "delete")):
            continue
        if record.object_type == "ci":
            touched.add(record.object_id)
        elif record.object_type == "relationship" and record.action == "update":
            # Its ends are not in the diff; a changed `port` can make or unmake a redundancy group.
            if any(key == "attributes.port" or key == "attributes" for key in record.diff):
                updated.add(record.object_id)
        elif record.object_type == "relationship" and record.action in ("create", "delete"):
            side = 1 if record.action == "create" else 0
            rel_type = (record.diff.get("type") or [None, None])[side]
            for end in dependent_ends(rel_type, directions):
                value = (record.diff.get(end) or [None, None])[side]
                try:
                    (through if ours else touched).add(uuid.UUID(str(value)))
                except ValueError:
                    continue
        elif record.object_type in ("class", "relationship_type"):
            everything = True
    return touched, through, updated, everything


def _log_retry(state: RetryCallState) -> None:
    log.info("service maps: the database aborted a chunk's transaction (%s); attempt %d of %d",
             _why(state.outcome.exception()), state.attempt_number + 1, CHUNK_ATTEMPTS)


class ServiceMapKeeper:
    def __init__(self, engine: Engine, registry_cache: RegistryCache, live_graph, *,
                 poll_seconds: float = POLL_SECONDS) -> None:
        self.engine = engine
        self.registry_cache = registry_cache
        self.live_graph = live_graph
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pass = threading.Lock()  # one pass at a time in this worker
        self._thread: threading.Thread | None = None
        self._cursor: int | None = None  # how far this worker has read (ahead of the stored one)
        self._stored: tuple[int, float] = (0, 0.0)  # the stored cursor and when this worker wrote it
        # Services a pass meant to refresh and could not write (the database kept aborting their chunk):
        # the next pass refreshes them whatever it reads. Touched only under self._pass.
        self._due: set[uuid.UUID] = set()
        self.passes = 0

    # ---- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify(self) -> None:
        """A write committed: catch up soon (never waits, never fails)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.catch_up()
            except Exception:  # the next pass catches up
                log.exception("bringing service maps current failed; the next pass tries again")

    # ---- passes -------------------------------------------------------------------------------

    def catch_up(self) -> int:
        """One pass: refresh the services the records since the cursor touch; returns how many of
        their maps changed."""
        with self._pass:
            self.passes += 1
            with read_transaction(self.engine) as conn:
                head = last_seq(conn)
                if self._cursor is None:
                    stored = conn.execute(select(CURSOR.c.seq).where(CURSOR.c.name == CURSOR_NAME)).scalar()
                    if stored is not None:
                        self._cursor, self._stored = stored, (stored, time.monotonic())
                cursor = self._cursor
                due = set(self._due)
                if cursor is not None and head <= cursor and not due:
                    return 0
                services = None
                if cursor is not None and head - cursor <= FULL_PASS_AFTER:
                    services = self._touched_services(conn, cursor, head)
            try:
                if services is None:  # first pass, far behind, or a class or type changed
                    return self._rebuild(head)
                changed = self._refresh(services | due)
            except _Busy:
                log.debug("another worker's keeper holds the service-map lock; the next poll catches up")
                return 0
            self._advance(head, wrote=bool(services or due))
            return changed

    def _touched_services(self, conn, cursor: int, head: int) -> set[uuid.UUID] | None:
        """The services the records after `cursor` up to `head` touch; None when every one is."""
        touched: set[uuid.UUID] = set()
        through: set[uuid.UUID] = set()
        updated: set[uuid.UUID] = set()
        gone: set[str] = set()
        directions = {name: info.impact_direction
                      for name, info in self.registry_cache.get().relationship_types.items()}
        for start in range(cursor, head, PAGE):  # bounded: head - cursor <= FULL_PASS_AFTER
            records = conn.execute(select(CHANGE.c.actor, CHANGE.c.object_type, CHANGE.c.object_id,
                                          CHANGE.c.action, CHANGE.c.diff)
                                   .where(CHANGE.c.seq > start, CHANGE.c.seq <= min(start + PAGE, head))).all()
            page_touched, page_through, page_updated, everything = touched_by(records, directions)
            if everything:
                return None
            touched |= page_touched
            through |= page_through
            updated |= page_updated
            gone |= gone_addresses(records)
        if updated:  # relationships whose port changed: their dependent ends, as they stand
            for source, target, rel_type in conn.execute(select(REL.c.source_id, REL.c.target_id, REL.c.type)
                                                         .where(id_in(conn, REL.c.id, list(updated)))):
                touched |= {source if end == "source" else target for end in dependent_ends(rel_type, directions)}
        services = self._affected(conn, touched, gone)
        if through:  # the maps that go through a service whose owned relationships changed
            services |= set(conn.execute(select(MEMBER.c.service_id).where(id_in(conn, MEMBER.c.ci_id, list(through)))
                                         .distinct()).scalars())
        return services

    def rebuild(self) -> int:
        """Map every service afresh (the first pass on a database without a cursor; `karta db map-services`)."""
        with self._pass:
            with read_transaction(self.engine) as conn:
                head = last_seq(conn)
            for _ in range(REBUILD_TRIES):
                try:
                    changed = self._rebuild(head)
                except _Busy:
                    time.sleep(self.poll_seconds)
                    continue
                if self._due:  # the command's process ends here: nothing would bring them current later
                    raise RuntimeError(f"{len(self._due)} service map(s) could not be written: the database kept "
                                       f"aborting their transaction (see the log); {changed} changed. Run it again.")
                return changed
            raise RuntimeError(f"another worker's keeper held the service-map lock for {REBUILD_TRIES} tries; "
                               "try again once it is done")

    def _rebuild(self, head: int) -> int:
        registry = self.registry_cache.get()
        with read_transaction(self.engine) as conn:
            services = set(conn.execute(select(STATE.c.service_id)).scalars())
            classes = service_map.service_classes(registry)
            if classes:
                services |= {ci_id for ci_id, attributes in conn.execute(
                    select(CI.c.id, CI.c.attributes).where(CI.c.ci_class.in_(classes)))
                    if isinstance(attributes, dict) and attributes.get(service_map.ATTRIBUTE)}
        changed = self._refresh(services | self._due)
        self._advance(head, wrote=True)
        return changed

    def _affected(self, conn, touched: set[uuid.UUID], gone: set[str] = frozenset()) -> set[uuid.UUID]:
        if not touched:
            return set()
        registry = self.registry_cache.get()
        ids = list(touched)
        services = set(conn.execute(select(CI.c.id).where(
            id_in(conn, CI.c.id, ids), CI.c.ci_class.in_(service_map.service_classes(registry)))).scalars())
        services |= set(conn.execute(select(STATE.c.service_id).where(id_in(conn, STATE.c.service_id, ids))).scalars())
        services |= set(conn.execute(select(MEMBER.c.service_id).where(id_in(conn, MEMBER.c.ci_id, ids))
                                     .distinct()).scalars())
        # An application that starts listening touches no host: the hosts it runs on are looked up too.
        hosts = set(conn.execute(select(REL.c.target_id).where(id_in(conn, REL.c.source_id, ids),
                                                               REL.c.type == "runs_on")).scalars())
        # An address whose reverse-DNS name changed: an entry point that named it resolved to the host
        # holding it, a member of that map; the address CI itself is no member.
        holders = service_map.hosts_holding(conn, registry, ids, gone)
        if holders:
            services |= set(conn.execute(select(MEMBER.c.service_id).where(id_in(conn, MEMBER.c.ci_id, list(holders)))
                                         .distinct()).scalars())
        keys = service_map.host_keys_of_cis(conn, registry, touched | hosts)
        if keys:
            # Every entry key, matched here: a few per service, where a list of the touched hosts' keys
            # would be a statement with as many parameters as a batch has hosts.
            services |= {service_id for service_id, key in conn.execute(select(KEY.c.service_id, KEY.c.key))
                         if key in keys}
        return services

    def _refresh(self, services: set[uuid.UUID]) -> int:
        """Resolve, walk and write the maps of `services`, SERVICES_PER_TRANSACTION at a time, each chunk
        run again when the database aborts it for a moment's reason. A chunk that still fails ends the
        pass: it and the chunks after it stay due (self._due), and a transient failure is logged and
        returns (the pass is done, its cursor moves), any other error is raised."""
        changed = 0
        ordered = sorted(services)
        for start in range(0, len(ordered), SERVICES_PER_TRANSACTION):
            chunk = ordered[start:start + SERVICES_PER_TRANSACTION]
            retrying = self._retrying()
            try:
                changed += retrying(self._refresh_chunk, chunk)
            except Exception as exc:
                self._due.update(ordered[start:])
                if isinstance(exc, _Busy) or not transient(exc):
                    raise
                log.warning("service maps: the database aborted the transaction of %d service(s) %d time(s) (%s); "
                            "they and the %d after them stay due, and the next pass refreshes them (first: %s)",
                            len(chunk), retrying.statistics.get("attempt_number", 1), _why(exc),
                            len(ordered) - start - len(chunk), chunk[0])
                return changed
            self._due.difference_update(chunk)
        return changed

    def _retrying(self) -> Retrying:
        """tenacity: a chunk the database aborted runs again (transient(): deadlock, serialization
        failure, lock timeout, connection lost), CHUNK_ATTEMPTS times in all, with exponential backoff
        and jitter; a wait ends early once the keeper is stopping, and at most one more attempt follows it."""
        return Retrying(retry=retry_if_exception(transient),
                        stop=stop_after_attempt(CHUNK_ATTEMPTS) | stop_when_event_set(self._stop),
                        wait=wait_exponential(multiplier=CHUNK_BACKOFF_SECONDS, max=CHUNK_BACKOFF_MAX_SECONDS)
                        + wait_random(0, CHUNK_JITTER_SECONDS),
                        sleep=self._stop.wait, before_sleep=_log_retry, reraise=True)

    def _refresh_chunk(self, chunk: list[uuid.UUID]) -> int:
        """One chunk's maps, from the database and the graph as they stand now, in one transaction."""
        registry = self.registry_cache.get()
        with read_transaction(self.engine) as conn:
            plans = service_map.resolve(conn, registry, chunk)
        with self.live_graph.reading() as graph:
            maps = service_map.walk(graph, plans, registry)
            as_of_seq = graph.applied_seq
        with UnitOfWork(self.engine, service_map.SOURCE) as uow:
            if row_locks(uow.conn) and not uow.conn.execute(
                    text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": KEEPER_LOCK}).scalar():
                raise _Busy
            # The applications that were or are where a group may start (app.services.redundancy).
            dependents = set(uow.conn.execute(select(MEMBER.c.ci_id).where(
                id_in(uow.conn, MEMBER.c.service_id, chunk),
                MEMBER.c.layer.in_(redundancy.DEPENDENT_LAYERS))).scalars())
            dependents |= {uuid.UUID(ci) for members in maps.values() for ci, layer in members.items()
                           if layer in redundancy.DEPENDENT_LAYERS}
            changed = service_map.write(uow, plans, maps, as_of_seq)
            redundancy.keep(uow, registry, dependents, services=chunk)
        return changed

    def _advance(self, head: int, *, wrote: bool) -> None:
        self._cursor = max(self._cursor or 0, head)
        if self._due:
            # The stored cursor is where a keeper starting afresh reads from: it stays before the records
            # whose services are due, which only this worker's memory holds until they are written.
            return
        stored, at = self._stored
        if not wrote and head - stored < CURSOR_WRITE_RECORDS and time.monotonic() - at < CURSOR_WRITE_SECONDS:
            return
        with write_transaction(self.engine) as conn:
            current = conn.execute(select(CURSOR.c.seq).where(CURSOR.c.name == CURSOR_NAME)).scalar()
            if current is None:
                conn.execute(insert(CURSOR), {"name": CURSOR_NAME, "seq": head})
            elif current < head:
                conn.execute(update(CURSOR).where(CURSOR.c.name == CURSOR_NAME, CURSOR.c.seq < head).values(seq=head))
        self._stored = (head, time.monotonic())
