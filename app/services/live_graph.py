"""The impact graph of one worker process, kept in step with the database through the change feed.

Built once (in the background at start-up, or by the first question), then, before every answer,
the worker reads the last committed sequence number and applies the change records up to it: a
single indexed query when nothing is new. Every uvicorn worker keeps its own copy this way and
answers from memory. Relationship types are read from the registry so a new type's impact
direction is known as soon as the registry is.

An answer must never come from a graph older than it says. So:
  - the sequence read before catching up is the one the answer reflects (`applied_seq`, shown as
    `as_of_seq`); since sequence numbers grow in commit order (app.services.history), every change
    committed before the question arrived is at or below it: a worker reads its own writes;
  - with read replicas, a question that may lag catches up from its request's replica (the graph
    only moves forward: a replica behind the graph adds nothing), and one that sends X-Karta-Min-Seq
    from a database that has that change (app/core/replicas.py);
  - more than `catch_up_max` records behind (a worker idle through a bulk load), applying them one by
    one would cost more than loading afresh, so the graph is rebuilt; it never stops half way;
  - `reading()` holds the graph still while an answer is computed from it, so another thread's
    catch-up cannot slip changes in between its parts (nor move `applied_seq` under it).

The graph holds only what the algorithms need: CI ids (as strings), class and min_members.
Names, owners and criticality come from the database for the CIs in an answer.
"""

import gc
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, String, cast, select

from app.core.db import prepare_read, read_transaction
from app.models import ChangeRecord, ConfigurationItem, Relationship
from app.services.bulk import id_in
from app.services.changes import last_seq
from app.services.registry import RegistryCache
from graph import ImpactGraph, RelationshipSemantics

log = logging.getLogger("karta.graph")
CI = ConfigurationItem.__table__
REL = Relationship.__table__
CHANGE = ChangeRecord.__table__
CATCH_UP_PAGE = 10_000
# Past this many records behind, the graph is rebuilt rather than caught up. Measured: catching up
# costs ~20 us a record (120,000 in 2.3 s on SQLite, reads included), a million-CI graph loads in
# 22 s (BENCHMARKS.md): at the cap, catching up still takes a fifth of a big graph's rebuild.
CATCH_UP_MAX = 200_000


def min_members_of(attributes_value: Any) -> int | None:
    try:
        value = int(attributes_value)
    except (TypeError, ValueError):
        return None
    return value if value >= 1 else None


class LiveGraph:
    def __init__(self, engine: Engine, registry_cache: RegistryCache, *, catch_up_max: int = CATCH_UP_MAX,
                 catch_up_page: int = CATCH_UP_PAGE) -> None:
        self._engine = engine
        self._registry = registry_cache
        self._graph: ImpactGraph | None = None
        self._lock = threading.Lock()
        self.catch_up_max = catch_up_max
        self.catch_up_page = catch_up_page
        self.load_seconds: float | None = None
        self.builds = 0
        # Moves whenever the relationships held may have changed (a build, a semantics change, a
        # relationship created or deleted, a CI deleted): what is derived from the edges alone (an
        # inventory's service groups) is kept while it stands still. Read it inside reading().
        self.edges_version = 0

    @contextmanager
    def reading(self) -> Iterator[ImpactGraph]:
        """The graph with every change committed before the call applied, held still until the block
        ends: an answer computed inside reflects exactly `graph.applied_seq`. Keep the block to graph
        work; database reads and drawing belong after it."""
        prepare_read(self._engine)  # a wait for a replica (X-Karta-Min-Seq) happens here, not under the lock
        with self._lock:
            yield self._refresh()

    def snapshot(self, wait_seconds: float) -> tuple[int, int, int] | None:
        """(CIs, related pairs of CIs, applied_seq) of the graph as it is, without catching up (for
        metrics); None before it is built, or while a catch-up or build holds it past `wait_seconds`.
        Pairs, not relationships: counting those walks every edge under the lock (0.5 s at 1.5 million)."""
        if not self._lock.acquire(timeout=wait_seconds):
            return None
        try:
            graph = self._graph
            return None if graph is None else (len(graph), graph.number_of_links(), graph.applied_seq)
        finally:
            self._lock.release()

    def warm_up(self, before=None) -> None:
        threading.Thread(target=self._warm_up, args=(before,), name="karta-graph-load", daemon=True).start()

    def _warm_up(self, before) -> None:
        try:
            if before is not None:
                before()
            with self.reading():
                pass
        except Exception:  # the first question will try again and report the error itself
            log.exception("building the impact graph at start-up failed")

    def _refresh(self) -> ImpactGraph:
        semantics = self._semantics()
        graph = self._graph
        if graph is not None:
            if semantics != graph.semantics:
                graph.set_semantics(semantics)
                self.edges_version += 1
            if self._catch_up(graph):
                return graph
            log.warning("impact graph more than %d changes behind (at seq %d): rebuilding it",
                        self.catch_up_max, graph.applied_seq)
            # Let the old graph go before loading the new one (never two in memory); the load froze it
            # out of the collector's reach, so hand its cycles back to the collector.
            self._graph = graph = None
            gc.unfreeze()
        self._graph = self._build(semantics)
        self.edges_version += 1
        return self._graph

    def _semantics(self) -> dict[str, RelationshipSemantics]:
        return {
            name: RelationshipSemantics(impact=info.impact_direction, membership=info.membership)
            for name, info in self._registry.get().relationship_types.items()
        }

    def _id_column(self, column, conn):
        # PostgreSQL renders the canonical text itself, which saves a million uuid -> str in Python.
        return cast(column, String) if conn.dialect.name == "postgresql" else column

    def _build(self, semantics: dict[str, RelationshipSemantics]) -> ImpactGraph:
        started = time.perf_counter()
        graph = ImpactGraph(semantics)
        with read_transaction(self._engine, begin=True) as conn:
            # Read first: whatever commits while the tables stream in is at most applied twice, and
            # applying a record again changes nothing.
            seq = last_seq(conn)
            stream = conn.execution_options(stream_results=True, yield_per=50_000)
            cis = stream.execute(select(self._id_column(CI.c.id, conn), CI.c.ci_class,
                                        CI.c.attributes["min_members"].as_string()))
            relationships = stream.execute(select(self._id_column(REL.c.source_id, conn),
                                                  self._id_column(REL.c.target_id, conn), REL.c.type))
            graph.bulk_load(
                ((str(ci_id), ci_class, min_members_of(k)) for ci_id, ci_class, k in cis),
                ((str(source), str(target), rel_type) for source, target, rel_type in relationships),
            )
        graph.applied_seq = seq
        self.builds += 1
        self.load_seconds = time.perf_counter() - started
        log.info("impact graph loaded: %d CIs, %d relationships in %.1f s", len(graph),
                 graph.number_of_relationships(), self.load_seconds)
        return graph

    def _catch_up(self, graph: ImpactGraph) -> bool:
        """Apply every record up to the last committed one; False, having applied none, when there
        are more than `catch_up_max` of them."""
        with read_transaction(self._engine, begin=True) as conn:
            target = last_seq(conn)
            if target <= graph.applied_seq:
                return True
            if target - graph.applied_seq > self.catch_up_max and conn.execute(
                select(CHANGE.c.seq).where(CHANGE.c.seq > graph.applied_seq).order_by(CHANGE.c.seq)
                .offset(self.catch_up_max).limit(1)  # sequence numbers have gaps: count the records
            ).first() is not None:
                return False
        # At most catch_up_max records lie at or below target: the pages are bounded.
        for _ in range(self.catch_up_max // self.catch_up_page + 1):
            with read_transaction(self._engine, begin=True) as conn:
                records = conn.execute(
                    select(CHANGE.c.seq, CHANGE.c.object_type, CHANGE.c.object_id, CHANGE.c.action, CHANGE.c.diff)
                    .where(CHANGE.c.seq > graph.applied_seq, CHANGE.c.seq <= target)
                    .order_by(CHANGE.c.seq).limit(self.catch_up_page)
                ).all()
                if not records:
                    break
                touched = {r.object_id for r in records if r.object_type == "ci" and r.action != "delete"}
                current = {}
                if touched:
                    current = {ci_id: (ci_class, min_members_of(k)) for ci_id, ci_class, k in conn.execute(
                        select(CI.c.id, CI.c.ci_class, CI.c.attributes["min_members"].as_string())
                        .where(id_in(conn, CI.c.id, touched)))}
            if any(r.object_type == "relationship" or (r.object_type == "ci" and r.action == "delete") for r in records):
                self.edges_version += 1
            for record in records:
                _apply(graph, record, current)
            graph.applied_seq = records[-1].seq
            if len(records) < self.catch_up_page:
                break
        graph.applied_seq = target  # every record up to it is applied (the rest of the way are gaps)
        return True


def _apply(graph: ImpactGraph, record: Any, current: dict[uuid.UUID, tuple[str, int | None]]) -> None:
    object_id, diff = record.object_id, record.diff
    if record.object_type == "ci":
        if record.action != "delete" and object_id in current:
            graph.upsert_ci(str(object_id), *current[object_id])
        else:
            graph.remove_ci(str(object_id))
    elif record.object_type == "relationship" and record.action in ("create", "delete"):
        side = 1 if record.action == "create" else 0
        ends = (diff.get("source", [None, None])[side], diff.get("target", [None, None])[side],
                diff.get("type", [None, None])[side])
        if None in ends:
            return
        if record.action == "create":
            graph.add_relationship(*ends)
        else:
            graph.remove_relationship(*ends)
