"""Impact answers for people: the graph's states and paths, with names, owners and criticality from
the database, services picked out, counts, a risk level, and who to notify.

The graph's results come in computed (under `LiveGraph.reading()`); these functions only read the
database, so the graph is not held while they do."""

import heapq
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from sqlalchemy import Connection, Engine, Text, cast, select

from app.core.db import read_transaction
from app.models import ConfigurationItem
from app.services.bulk import id_in, id_values, is_postgres
from app.services.errors import InvalidInput, NotFound, field_error
from graph import ImpactGraph, ImpactResult, RootCauseCandidate

CI = ConfigurationItem.__table__
# criticality of the most critical service down or degraded -> risk; a service of unknown criticality
# counts as medium.
RISK_BY_CRITICALITY = {1: "critical", 2: "high", 3: "medium", 4: "low", None: "medium"}
RISK_ORDER = ["low", "medium", "high", "critical"]
# What an answer says of a CI the database no longer has (deleted since the graph saw it).
UNKNOWN_CI = {"name": None, "class": None, "owner": None, "criticality": None}


def describe(conn: Connection, ids: set[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    rows = conn.execute(select(CI.c.id, CI.c.name, CI.c.ci_class, CI.c.owner, CI.c.criticality, CI.c.status)
                        .where(id_in(conn, CI.c.id, [uuid.UUID(i) for i in ids])))
    return {str(row.id): {"name": row.name, "class": row.ci_class, "owner": row.owner,
                          "criticality": row.criticality, "status": row.status} for row in rows}


def require_known(graph: ImpactGraph, ids: list[uuid.UUID], field_name: str) -> list[str]:
    keys = [str(i) for i in ids]
    unknown = [(n, key) for n, key in enumerate(keys) if key not in graph]
    if unknown:
        raise InvalidInput(f"No CI with id {unknown[0][1]}.",
                           [field_error(f"{field_name}.{n}", f"no CI with id {key}") for n, key in unknown])
    return keys


def service_rank(criticality: int | None, name: str | None) -> tuple[int, str]:
    """Where a service comes in a list of affected services: the most critical first (unknown last), by name."""
    return (criticality or 5, name or "")


def service_risk(services: list[dict[str, Any]]) -> str:
    """The risk of a change or failure: the criticality of the most critical service it takes down
    (one step less when only degraded)."""
    risk = "low"
    for service in services:
        if service["state"] in ("down", "degraded"):
            level = RISK_BY_CRITICALITY.get(service["criticality"], "medium")
            if service["state"] == "degraded" and level != "low":
                level = RISK_ORDER[RISK_ORDER.index(level) - 1]  # degraded is one step short of down
            risk = max(risk, level, key=RISK_ORDER.index)
    return risk


def name_many(conn: Connection, ids: set[str]) -> dict[str, dict[str, Any]]:
    """describe for thousands of CIs (the services a datacenter's router takes down): the ids are joined
    as rows, so PostgreSQL probes the primary key once per id (given 11,000 ids as `= ANY` it scanned
    the whole table, 2-3x slower), and come back as text (a UUID parsed and printed again per row
    was a fifth of the time), all at once (SQLAlchemy fetching row by row was a third)."""
    if not ids:
        return {}
    postgres = is_postgres(conn)
    keys = select(id_values(conn, ids if postgres else map(uuid.UUID, ids)).label("id")).subquery()
    rows = conn.execute(select(cast(CI.c.id, Text) if postgres else CI.c.id, CI.c.name, CI.c.ci_class, CI.c.owner,
                               CI.c.criticality, CI.c.status).select_from(keys.join(CI, CI.c.id == keys.c.id))).all()
    return {(ci_id if postgres else str(ci_id)): {"name": name, "class": ci_class, "owner": owner,
                                                  "criticality": criticality, "status": status}
            for ci_id, name, ci_class, owner, criticality, status in rows}


def radius_answer(conn: Connection, result: ImpactResult, nearest: list[str], classes: dict[str, str | None],
                  by_class: Counter, service_ids: list[str], services: Mapping[str, Any], services_max: int,
                  also_name: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """impact_answer for an answer that lists only the `nearest` impacted CIs (ImpactResult.nearest), as an
    incident stores them, with what the graph gave under its lock: `by_class` counts the impacted CIs by
    class and `service_ids` are the failed and impacted CIs of service classes (ImpactGraph.tally),
    `classes` holds the failed and nearest CIs' classes. `services` names the services (by id: name,
    criticality, owner; app.services.service_directory), so the thousands a datacenter's router takes
    down cost no query; the answer lists the `services_max` most critical of them (`services_truncated`,
    `services_count`), and the risk and owners cover them all. The CIs listed, the failed ones and
    `also_name` (root-cause candidates) are named in one query (name_many); the names come back too, for
    root_cause_answer. `owners` are the owners of the CIs listed, failed or services. A failed service
    (an alert bound to the service itself) is among the services, down, and counts in the risk."""
    impacted, failed = result.impacted, set(result.failed)
    info = name_many(conn, {*nearest, *failed, *also_name})
    entries = [{"id": ci_id, "name": info.get(ci_id, UNKNOWN_CI)["name"], "class": classes.get(ci_id),
                "state": hit.state, "distance": hit.distance, "path": hit.path}
               for ci_id, hit in ((ci_id, impacted[ci_id]) for ci_id in nearest)]
    service_ids = [ci_id for ci_id in service_ids if ci_id in services]  # one deleted since the graph saw it: gone
    impacted_services = [ci_id for ci_id in service_ids if ci_id not in failed]
    state_of = {**dict(zip(impacted_services, result.states_of(impacted_services))),
                **{ci_id: "down" for ci_id in service_ids if ci_id in failed}}
    # Thousands of services: the risk is read off their (criticality, state) pairs, of which there are a
    # dozen at most, and an entry is built only for those listed.
    named = list(map(services.__getitem__, service_ids))
    pairs = Counter(zip(map(attrgetter("criticality"), named), map(state_of.__getitem__, service_ids)))
    risk = service_risk([{"criticality": criticality, "state": state} for criticality, state in pairs])
    order = heapq.nsmallest(services_max, zip(map(attrgetter("rank"), named), service_ids))
    listed = [{"id": ci_id, "name": service.name, "criticality": service.criticality, "owner": service.owner,
               "state": state_of[ci_id]} for ci_id, service in ((ci_id, services[ci_id]) for _, ci_id in order)]
    owners = ({info.get(ci_id, UNKNOWN_CI)["owner"] for ci_id in {*nearest, *failed}}
              | set(map(attrgetter("owner"), named))) - {None, ""}
    answer = _answer(result, info, entries, listed, len(impacted), by_class, result.count_by_state(), owners)
    answer.update(risk=risk, services_count=len(service_ids), services_truncated=len(service_ids) > services_max)
    return answer, info


def _answer(result: ImpactResult, info: dict[str, dict[str, Any]], entries: list, services: list, total: int,
            by_class: Counter, by_state: Counter, owners: set[str]) -> dict[str, Any]:
    """An impact answer from its parts (impact_answer's and radius_answer's shape)."""
    return {
        "failed": [{"id": ci_id, "name": info.get(ci_id, {}).get("name"), "class": info.get(ci_id, {}).get("class")}
                   for ci_id in result.failed],
        "impacted": entries,
        "services": sorted(services, key=lambda s: service_rank(s["criticality"], s["name"])),
        "counts": {"total": total, "by_class": dict(sorted(by_class.items(), key=lambda kv: str(kv[0]))),
                   "by_state": {state: by_state.get(state, 0) for state in ("down", "degraded", "at_risk")}},
        "risk": service_risk(services),
        "owners": sorted(owners),
    }


def impact_answer(conn: Connection, result: ImpactResult) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The answer, and per CI in it (failed first) its name, class, owner and state, for drawing."""
    impacted = dict(result.impacted.items())
    info = describe(conn, set(impacted) | set(result.failed))
    entries, services, owners = [], [], set()
    by_class, by_state = Counter(), Counter()
    for ci_id, hit in impacted.items():
        ci = info.get(ci_id, UNKNOWN_CI)
        entries.append({"id": ci_id, "name": ci["name"], "class": ci["class"], "state": hit.state,
                        "distance": hit.distance, "path": hit.path})
        by_class[ci["class"]] += 1
        by_state[hit.state] += 1
        if ci["owner"]:
            owners.add(ci["owner"])
        if ci["class"] == "service":
            services.append({"id": ci_id, "name": ci["name"], "criticality": ci["criticality"],
                             "owner": ci["owner"], "state": hit.state})
    answer = _answer(result, info, entries, services, len(entries), by_class, by_state, owners)
    states = {ci_id: "failed" for ci_id in result.failed} | {e["id"]: e["state"] for e in entries}
    return answer, {ci_id: {**info.get(ci_id, {}), "state": states.get(ci_id)} for ci_id in states}


def root_cause_answer(conn: Connection, symptoms: list[str], candidates: list[RootCauseCandidate],
                      info: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """`info` names the candidates and symptoms when the caller already read them (radius_answer)."""
    if info is None:
        info = describe(conn, {c.ci_id for c in candidates} | set(symptoms))
    return {
        "symptoms": [{"id": s, "name": info.get(s, {}).get("name")} for s in symptoms],
        "candidates": [{"id": c.ci_id, "name": info.get(c.ci_id, {}).get("name"),
                        "class": info.get(c.ci_id, {}).get("class"), "explains": c.explains,
                        "explains_count": len(c.explains), "extra_down": c.extra_down,
                        "extra_down_exact": c.extra_exact} for c in candidates],
    }


def require_ci(graph: ImpactGraph, ci_id: uuid.UUID) -> str:
    key = str(ci_id)
    if key not in graph:
        raise NotFound(f"No CI with id {ci_id}.")
    return key


def spof_answer(conn: Connection, key: str, points: list[str]) -> dict[str, Any]:
    info = describe(conn, set(points))
    return {"ci": key, "single_points_of_failure": [
        {"id": p, "name": info.get(p, {}).get("name"), "class": info.get(p, {}).get("class"),
         "owner": info.get(p, {}).get("owner")} for p in points]}


def require_types(registry_cache, types: list[str] | None, field_name: str = "types") -> None:
    """Every relationship type named must exist (422 naming the first unknown one)."""
    known = registry_cache.get().relationship_types
    for n, name in enumerate(types or []):
        if name not in known:
            raise InvalidInput(f"Unknown relationship type '{name}'.", [field_error(f"{field_name}.{n}", "unknown type")])


@dataclass(frozen=True)
class Analysis:
    """An impact answer (change review or incident) with what drawing it needs: the CIs to draw
    (failed first), the relationships among them (None when not asked for, or when there are
    more CIs than `edges_up_to`), per CI its name, class, owner and state, and the change sequence it reflects."""

    answer: dict[str, Any]
    info: dict[str, dict[str, Any]]
    drawn: list[str]
    edges: list[tuple] | None
    as_of_seq: int


def analyse(live_graph, engine: Engine, ids: list[uuid.UUID], field_name: str, *, max_depth: int | None,
            types: list[str] | None, with_edges: bool = False, edges_up_to: int | None = None,
            before_edges=None) -> Analysis:
    """Treat `ids` as failing together and answer: the API's /impact and /blast-radius and the web
    UI's change review and incident pages all call this. `before_edges(count)` may refuse (raise)
    once the number of CIs to draw is known, before the relationships among them are listed."""
    with live_graph.reading() as graph:
        failed = require_known(graph, ids, field_name)
        result = graph.impact(failed, max_depth=max_depth, types=types)
        as_of_seq = graph.applied_seq
        drawn = [*result.failed, *result.impacted]
        if before_edges is not None:
            before_edges(len(drawn))
        edges = None
        if with_edges and (edges_up_to is None or len(drawn) <= edges_up_to):
            edges = graph.edges_among(drawn)
    with read_transaction(engine) as conn:
        answer, info = impact_answer(conn, result)
    return Analysis(answer, info, drawn, edges, as_of_seq)
