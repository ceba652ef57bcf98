"""What the home page shows the service manager: the estate in counts, the services at risk, what went
stale or has no owner, the open ingest conflicts, the latest changes and discovery runs.

Every part is bounded (a few rows and a count, "and N more"), read with one or two indexed queries, so
the page costs the same on a big estate as on a small one. Services at risk come from the live impact
graph (a single point of failure: one CI whose failure alone takes the service down), at most
SERVICES_EXAMINED of them per view and within SPOF_SECONDS; the page says when it looked at fewer.

Open conflicts are those of each source and scope's latest run: a later run of the same source over the
same scope reports an ambiguity again if it still holds, so an older run's conflicts are history."""

import time
import uuid
from typing import Any

import orjson
from sqlalchemy import Connection, func, select

from app.core.db import read_transaction

from app.models import ChangeRecord, ConfigurationItem, DiscoveryRun
from app.services import discovery_runs
from app.services.bulk import id_in
from app.services.changes import to_public as change_to_public
from app.services.impact import describe
from app.services.registry import RegistryCache

CI = ConfigurationItem.__table__
CHANGE = ChangeRecord.__table__
RUN = DiscoveryRun.__table__

SERVICE_CLASS = "service"
SERVICES_EXAMINED = 100  # services whose single points of failure one view computes
SPOF_SECONDS = 0.3  # and the time it may spend on them (a page, not a report)
SHOWN = 8  # rows per panel
SPOF_SHOWN = 5  # single points of failure named per service
RUNS_EXAMINED = 100  # recent runs read for open conflicts
CONFLICTS_SHOWN = 20
CANDIDATES_SHOWN = 10  # candidate CIs named per conflict
FIELDS_SUMMARISED = 3  # fields of a change spelt out
VALUE_CHARS = 60  # characters of a value in a summary


def counts(conn: Connection) -> dict[str, Any]:
    """CIs by class and by status (two scans of covering indexes)."""
    by_class = dict(conn.execute(select(CI.c.ci_class, func.count()).group_by(CI.c.ci_class)).all())
    by_status = dict(conn.execute(select(CI.c.status, func.count()).group_by(CI.c.status)).all())
    return {"total": sum(by_status.values()), "by_class": dict(sorted(by_class.items())),
            "by_status": {status: by_status.get(status, 0)
                          for status in ("active", "planned", "maintenance", "stale", "retired")}}


def _brief(row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "class": row.ci_class, "owner": row.owner, "status": row.status}


def stale_cis(conn: Connection, limit: int = SHOWN) -> dict[str, Any]:
    """CIs gone stale, the most recently marked first (marking one stale updates it)."""
    rows = conn.execute(select(CI.c.id, CI.c.name, CI.c.ci_class, CI.c.owner, CI.c.status, CI.c.updated_at)
                        .where(CI.c.status == "stale").order_by(CI.c.updated_at.desc(), CI.c.id.desc())
                        .limit(limit)).all()
    count = conn.execute(select(func.count()).select_from(CI).where(CI.c.status == "stale")).scalar_one()
    return {"count": count, "items": [{**_brief(row), "updated_at": row.updated_at} for row in rows]}


def unowned_cis(conn: Connection, limit: int = SHOWN) -> dict[str, Any]:
    rows = conn.execute(select(CI.c.id, CI.c.name, CI.c.ci_class, CI.c.owner, CI.c.status)
                        .where(CI.c.owner.is_(None)).order_by(CI.c.name, CI.c.id).limit(limit)).all()
    count = conn.execute(select(func.count()).select_from(CI).where(CI.c.owner.is_(None))).scalar_one()
    return {"count": count, "items": [_brief(row) for row in rows]}


def services_to_examine(conn: Connection, registry_cache: RegistryCache,
                        limit: int) -> tuple[list[dict[str, Any]], int]:
    """The services (and subclasses) the at-risk panel looks at, most critical first, and how many exist."""
    registry = registry_cache.get(conn=conn)
    if SERVICE_CLASS not in registry.classes:
        return [], 0
    classes = sorted(registry.classes[SERVICE_CLASS].descendants)
    rows = conn.execute(select(CI.c.id, CI.c.name, CI.c.ci_class, CI.c.owner, CI.c.status, CI.c.criticality)
                        .where(CI.c.ci_class.in_(classes))
                        .order_by(CI.c.criticality.is_(None), CI.c.criticality, CI.c.name, CI.c.id).limit(limit)).all()
    total = conn.execute(select(func.count()).select_from(CI).where(CI.c.ci_class.in_(classes))).scalar_one()
    return [{**_brief(row), "criticality": row.criticality} for row in rows], total


def services_at_risk(live_graph, conn: Connection, registry_cache: RegistryCache, *,
                     examined: int | None = None, seconds: float | None = None) -> dict[str, Any]:
    """Services with at least one single point of failure, as the graph stands now."""
    services, total = services_to_examine(conn, registry_cache, examined or SERVICES_EXAMINED)
    seconds = SPOF_SECONDS if seconds is None else seconds
    found: dict[str, list[str]] = {}
    looked_at = 0
    deadline = time.monotonic() + seconds
    with live_graph.reading() as graph:
        for service in services:
            if time.monotonic() > deadline:
                break
            looked_at += 1
            points = graph.spof(str(service["id"]))
            if points:
                found[str(service["id"])] = points
        as_of_seq = graph.applied_seq
    named = describe(conn, {p for points in found.values() for p in points[:SPOF_SHOWN]})
    at_risk = []
    for service in services:
        points = found.get(str(service["id"]))
        if points:
            at_risk.append({**service, "spof_count": len(points),
                            "spof": [{"id": p, **named.get(p, {"name": None, "class": None})} for p in points[:SPOF_SHOWN]]})
    return {"services": at_risk, "examined": looked_at, "total": total, "as_of_seq": as_of_seq}


def open_conflicts(conn: Connection, *, runs_examined: int = RUNS_EXAMINED,
                   limit: int = CONFLICTS_SHOWN) -> dict[str, Any]:
    """The conflicts of each source and scope's latest run among the last `runs_examined` runs, with their
    candidate CIs (those still there) named."""
    rows = conn.execute(select(RUN.c.id, RUN.c.source, RUN.c.scope_key, RUN.c.started_at, RUN.c.conflicts)
                        .order_by(RUN.c.started_at.desc(), RUN.c.id.desc()).limit(runs_examined)).all()
    latest, conflicts = set(), []
    for row in rows:
        if (row.source, row.scope_key) in latest:
            continue
        latest.add((row.source, row.scope_key))
        for conflict in row.conflicts or []:
            if isinstance(conflict, dict):
                conflicts.append({"run_id": row.id, "source": row.source, "started_at": row.started_at, **conflict})
    shown = conflicts[:limit]
    return {"count": len(conflicts), "items": with_candidates(conn, shown)}


def with_candidates(conn: Connection, conflicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each conflict with its candidate CIs named (one query for all); a candidate deleted since has no name."""
    wanted = set()
    for conflict in conflicts:
        for candidate in _candidate_ids(conflict)[:CANDIDATES_SHOWN]:
            wanted.add(candidate)
    named = describe(conn, {str(i) for i in wanted})
    result = []
    for conflict in conflicts:
        ids = _candidate_ids(conflict)
        result.append({
            "run_id": conflict.get("run_id"), "source": conflict.get("source"), "started_at": conflict.get("started_at"),
            "ref": str(conflict.get("ref", "")), "class": str(conflict.get("class", "")),
            "message": str(conflict.get("message", "")), "more_candidates": max(0, len(ids) - CANDIDATES_SHOWN),
            "candidates": [{"id": str(i), "exists": str(i) in named, **named.get(str(i), {"name": None, "class": None})}
                           for i in ids[:CANDIDATES_SHOWN]],
        })
    return result


def _candidate_ids(conflict: dict[str, Any]) -> list[uuid.UUID]:
    ids = []
    for value in conflict.get("candidates") or []:
        try:
            ids.append(uuid.UUID(str(value)))
        except ValueError:
            continue  # recorded by ingest, so never expected; a page must not break on it
    return ids


def latest_changes(conn: Connection, limit: int = SHOWN) -> list[dict[str, Any]]:
    """The newest change records, each with the CI it concerns (a relationship's source) and a short
    summary of its fields."""
    records = [change_to_public(row) for row in
               conn.execute(select(CHANGE).order_by(CHANGE.c.seq.desc()).limit(limit)).mappings()]
    ci_ids = set()
    for record in records:
        if record["object_type"] == "ci":
            ci_ids.add(record["object_id"])
        elif record["object_type"] == "relationship":
            ci_ids.update(_relationship_ends(record))
    names = _names(conn, ci_ids)
    for record in records:
        record["summary"] = summarise(record["diff"])
        if record["object_type"] == "ci":
            record["ci"] = _named(record["object_id"], names, record["diff"].get("name"))
            record["other"] = None
        elif record["object_type"] == "relationship":
            ends = _relationship_ends(record)
            record["ci"] = _named(ends[0], names) if ends else None
            record["other"] = _named(ends[1], names) if len(ends) > 1 else None
        else:
            record["ci"] = record["other"] = None
    return records


def _relationship_ends(record: dict[str, Any]) -> list[uuid.UUID]:
    ends = []
    for field in ("source", "target"):
        old, new = (record["diff"].get(field) or [None, None])[:2]
        try:
            ends.append(uuid.UUID(str(new if new is not None else old)))
        except ValueError:
            pass
    return ends


def _names(conn: Connection, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    return dict(conn.execute(select(CI.c.id, CI.c.name).where(id_in(conn, CI.c.id, ids))).all())


def _named(ci_id: uuid.UUID, names: dict[uuid.UUID, str], name_diff: list | None = None) -> dict[str, Any]:
    """A CI as a change shows it: its name now, or the name the record gives a deleted one."""
    name = names.get(ci_id)
    if name is None and isinstance(name_diff, list):
        name = next((str(v) for v in name_diff if v is not None), None)
    return {"id": ci_id, "name": name, "exists": ci_id in names}


def summarise(diff: dict[str, Any], fields: int = FIELDS_SUMMARISED) -> dict[str, Any]:
    """The first few fields of a diff as (field, old, new) in short text, and how many more there are."""
    shown = []
    for field in sorted(diff)[:fields]:
        change = diff[field]
        old, new = (change[0], change[1]) if isinstance(change, list) and len(change) == 2 else (None, change)
        shown.append({"field": field, "old": _short(old), "new": _short(new)})
    return {"fields": shown, "more": max(0, len(diff) - fields)}


def _short(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, (dict, list)) else _json(value)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS - 1] + "…"


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def latest_runs(conn: Connection, limit: int = SHOWN) -> list[dict[str, Any]]:
    return discovery_runs.list_runs(conn, source=None, limit=limit, cursor=None)["items"]


def home(live_graph, engine, registry_cache: RegistryCache) -> dict[str, Any]:
    """Everything the home page shows, read in one transaction (the graph is held only for its part)."""
    with read_transaction(engine) as conn:
        return {"counts": counts(conn), "at_risk": services_at_risk(live_graph, conn, registry_cache),
                "stale": stale_cis(conn), "unowned": unowned_cis(conn), "conflicts": open_conflicts(conn),
                "changes": latest_changes(conn), "runs": latest_runs(conn)}


RUNS_PER_PAGE = 20
RUN_CONFLICTS_SHOWN = 10  # conflicts named per run on the discovery page


def discovery(conn: Connection, *, source: str | None, cursor: str | None, limit: int | None = None) -> dict[str, Any]:
    """The discovery page: the open conflicts, and a page of runs (newest first), each with its first
    conflicts and their candidates named (one query for the whole page)."""
    runs = discovery_runs.list_runs(conn, source=source, limit=limit or RUNS_PER_PAGE, cursor=cursor)
    shown = [{"run_id": run["id"], **conflict} for run in runs["items"]
             for conflict in run["conflicts"][:RUN_CONFLICTS_SHOWN] if isinstance(conflict, dict)]
    named = with_candidates(conn, shown)
    by_run: dict[str, list[dict[str, Any]]] = {}
    for conflict in named:
        by_run.setdefault(conflict["run_id"], []).append(conflict)
    for run in runs["items"]:
        run["named_conflicts"] = by_run.get(run["id"], [])
    return {"runs": runs["items"], "next_cursor": runs["next_cursor"], "open": open_conflicts(conn, limit=100)}
