"""The impact graph of one worker process, kept in step with the database through the change feed.

Built once (in the background at start-up, or by the first question), then, before every answer,
the worker applies the change records newer than the last one it applied: a single indexed query
when nothing is new. Every uvicorn worker keeps its own copy this way and answers from memory; no
query rebuilds the graph. Relationship types are read from the registry so a new type's impact
direction is known as soon as the registry is.

The graph holds only what the algorithms need: CI ids (as strings), class and min_members.
Names, owners and criticality come from the database for the CIs in an answer.
"""

import logging
import threading
import time
import uuid
from typing import Any

from sqlalchemy import Engine, String, cast, select

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
CATCH_UP_MAX_PAGES = 1_000


def min_members_of(attributes_value: Any) -> int | None:
    try:
        value = int(attributes_value)
    except (TypeError, ValueError):
        return None
    return value if value >= 1 else None


class LiveGraph:
    def __init__(self, engine: Engine, registry_cache: RegistryCache) -> None:
        self._engine = engine
        self._registry = registry_cache
        self._graph: ImpactGraph | None = None
        self._lock = threading.Lock()
        self.load_seconds: float | None = None

    def current(self) -> ImpactGraph:
        """The graph with every committed change applied."""
        with self._lock:
            semantics = self._semantics()
            if self._graph is None:
                self._graph = self._build(semantics)
            else:
                if semantics != self._graph.semantics:
                    self._graph.set_semantics(semantics)
                self._catch_up(self._graph)
            return self._graph

    def warm_up(self, before=None) -> None:
        threading.Thread(target=self._warm_up, args=(before,), name="karta-graph-load", daemon=True).start()

    def _warm_up(self, before) -> None:
        try:
            if before is not None:
                before()
            self.current()
        except Exception:  # the first question will try again and report the error itself
            log.exception("building the impact graph at start-up failed")

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
        with self._engine.connect() as conn, conn.begin():
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
        self.load_seconds = time.perf_counter() - started
        log.info("impact graph loaded: %d CIs, %d relationships in %.1f s", len(graph),
                 graph.number_of_relationships(), self.load_seconds)
        return graph

    def _catch_up(self, graph: ImpactGraph) -> None:
        for _ in range(CATCH_UP_MAX_PAGES):
            with self._engine.connect() as conn, conn.begin():
                records = conn.execute(
                    select(CHANGE.c.seq, CHANGE.c.object_type, CHANGE.c.object_id, CHANGE.c.action, CHANGE.c.diff)
                    .where(CHANGE.c.seq > graph.applied_seq).order_by(CHANGE.c.seq).limit(CATCH_UP_PAGE)
                ).all()
                if not records:
                    return
                touched = {r.object_id for r in records if r.object_type == "ci" and r.action != "delete"}
                current = {}
                if touched:
                    current = {ci_id: (ci_class, min_members_of(k)) for ci_id, ci_class, k in conn.execute(
                        select(CI.c.id, CI.c.ci_class, CI.c.attributes["min_members"].as_string())
                        .where(id_in(conn, CI.c.id, touched)))}
            for record in records:
                _apply(graph, record, current)
            graph.applied_seq = records[-1].seq
            if len(records) < CATCH_UP_PAGE:
                return


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
