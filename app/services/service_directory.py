"""The business services of the estate in memory: name, criticality and owner per service CI.

An incident's blast radius needs every affected service's criticality and owner (the risk, the owners
to notify), and a group holding a datacenter's router takes down 11,000 of the 20,000 services of a
synthetic million-CI estate: probing 11,000 rows of a table that does not fit PostgreSQL's buffers
was the largest part of such a webhook (BENCHMARKS.md, "Alerts become incidents"). Services are few
beside everything else (2% of that estate, ~200 bytes each), so every worker keeps them all, as it
keeps the impact graph, and names them from memory.

Kept in step through the change feed, like the graph (app.services.live_graph), by its own reader:
before an answer, `lookup` reads the CI change records after the sequence it reflects and re-reads
those CIs (a service renamed, re-owned, deleted, a CI whose class became a service's or
stopped being one). More than `catch_up_max` records behind (a bulk load), or when the registry's
service classes changed, it reloads every service instead: one indexed query (ix_ci_class_id).
Sequence numbers grow in commit order (app.services.history), so every change committed before the
question is at or below the last one read. It reads through a connection of its own to the primary,
taken after the graph answered: so it is at least as current as the graph (a service the graph holds
and the directory does not has been deleted). Read through the caller's connection, it was not: a
SQLite read transaction keeps the snapshot of its first statement, older than a graph that caught up
since, and a service created in between was taken for deleted.

Memory: ~250 bytes a service with its strings (20,000 services: ~5 MB per worker; 200,000 at ten
million CIs: ~50 MB).
"""

import threading
import uuid
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, select

from app.core.db import read_transaction
from app.models import ChangeRecord, ConfigurationItem
from app.services.bulk import id_in
from app.services.changes import last_seq
from app.services.impact import service_rank

CI = ConfigurationItem.__table__
CHANGE = ChangeRecord.__table__
# Past this many CI records behind, reloading every service costs less than re-reading each CI.
CATCH_UP_MAX = 20_000


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    criticality: int | None
    owner: str | None
    # impact.service_rank, kept rather than computed per answer: thousands are ranked at once.
    rank: tuple[int, str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rank", service_rank(self.criticality, self.name))


class ServiceDirectory:
    """service CI id (canonical text, as the graph's) -> Service, for the service classes of the registry."""

    def __init__(self, engine: Engine, *, catch_up_max: int = CATCH_UP_MAX) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._services: dict[str, Service] = {}
        self._classes: frozenset[str] | None = None
        self.seq = 0
        self.catch_up_max = catch_up_max
        self.reloads = 0

    def lookup(self, classes: frozenset[str], ci_ids) -> dict[str, Service]:
        """The services among `ci_ids` (the rest are left out), as of the primary's last change, for
        `classes`, the registry's service classes."""
        with self._lock, read_transaction(self._engine, routed=False) as conn:
            self._catch_up(conn, classes)
            services = self._services
            return {ci_id: services[ci_id] for ci_id in ci_ids if ci_id in services}

    def _catch_up(self, conn: Connection, classes: frozenset[str]) -> None:
        target = last_seq(conn)
        if classes != self._classes:
            self._reload(conn, classes, target)
        elif target > self.seq:
            touched = conn.execute(
                select(CHANGE.c.object_id).where(CHANGE.c.seq > self.seq, CHANGE.c.seq <= target,
                                                 CHANGE.c.object_type == "ci")
                .limit(self.catch_up_max + 1)).scalars().all()
            if len(touched) > self.catch_up_max:
                self._reload(conn, classes, target)
            else:
                self._apply(conn, set(touched), classes)
                self.seq = target

    def _reload(self, conn: Connection, classes: frozenset[str], target: int) -> None:
        rows = conn.execute(select(CI.c.id, CI.c.name, CI.c.criticality, CI.c.owner)
                            .where(CI.c.ci_class.in_(sorted(classes)))) if classes else ()
        self._services = {str(ci_id): Service(name, criticality, owner) for ci_id, name, criticality, owner in rows}
        self._classes, self.seq = classes, target
        self.reloads += 1

    def _apply(self, conn: Connection, touched: set[uuid.UUID], classes: frozenset[str]) -> None:
        if not touched:
            return
        rows = conn.execute(select(CI.c.id, CI.c.ci_class, CI.c.name, CI.c.criticality, CI.c.owner)
                            .where(id_in(conn, CI.c.id, touched), CI.c.ci_class.in_(sorted(classes)))).all()
        services = self._services
        for ci_id in touched:
            services.pop(str(ci_id), None)
        for ci_id, ci_class, name, criticality, owner in rows:
            if ci_class in classes:
                services[str(ci_id)] = Service(name, criticality, owner)

