"""Incidents: alert groups from monitoring, bound to CIs, with what they take down and who to call.

`receive(group)` is what every alert source comes to (Alertmanager's webhook, the generic form that
Nagios and Zabbix use, through app/integrations/): the group's alerts are bound to CIs
(app.services.alert_binding), merged into the group's incident (one per group key; an alert is
known by its fingerprint, and one the source stopped mentioning keeps its last state unless the
rules of "Alerts that stop being reported" below end it), and the
incident is recomputed from the firing alerts' CIs, the *failed CIs*, taken together:
  - the blast radius (app.services.impact: states, affected services with criticality and owner, risk);
  - ranked root-cause candidates (the graph's root_cause over the failed set; extra CIs down counted up
    to a cap, KARTA_INCIDENT_ROOT_CAUSE_EXTRA_CAP, so a webhook answers in milliseconds);
  - the owners to notify: owners of the failed CIs and of the services in the blast radius.
It is open while one alert fires, resolved when none does, and reopens when one fires again.

Alerts that stop being reported. Alertmanager lists a group's current alerts in every notification,
and leaves out an alert silenced or inhibited after it fired; a group whose alerts are all silenced
gets no notification at all. Left as it was last reported, such an alert would fire in Karta forever.
  - `absent`: a firing alert missing from a *complete* notification of its group (`AlertGroup.complete`:
    Alertmanager with none of the group's alerts truncated) is no longer firing. It ends like a resolved
    one for the incident's status, and fires again if a later notification lists it firing.
  - `expired`: a source that repeats its firing groups (`AlertGroup.renotified`: Alertmanager sends the
    group again every repeat_interval while one alert fires) gives an open incident `expires_at`, the
    later of now + `Context.alert_expiry_seconds` and the latest `endsAt` of its firing alerts. Past
    it with no newer notification, its firing alerts are `expired`. Not `endsAt` alone: Prometheus
    sets it a few minutes ahead and renews it in Alertmanager without a notification, so the endsAt a
    webhook carries has passed long before the next repeat of a group that still fires; the setting
    (KARTA_ALERT_EXPIRY_SECONDS) is the route's repeat_interval plus group_interval and a margin.
    Expiry is applied when a notification of the group arrives (a truncated one: to the alerts it does
    not list) and by the sweep (`expire`, run by app.services.incident_expiry), which writes the
    change record when the alert expires, not when someone next looks, and keeps reads read-only.
The generic form (Nagios, Zabbix, `karta alert`) reports one check per request and repeats nothing:
neither rule applies to it; an alert of it ends when the check reports OK or UP.
Counts: `resolved` counts every alert that does not fire; `absent` and `expired` (present when not 0)
say how many of those ended that way.

Each change goes through one unit of work and one change record (object_type "incident"): the diff of
status, alert counts, failed CIs (the first 100), impacted count and risk. Alerts get no records of
their own, so the feed says "incident X: 2 -> 0 firing, open -> resolved" once, not once per alert;
an alert whose labels or annotations alone changed updates its row without a record (monitoring's
text, not the incident's state). A webhook that changes nothing (Alertmanager repeating itself)
writes no record and no alert, and only puts the incident's `expires_at` off; one that finds the map
changed under the incident (an owner, a service, a root cause) stores the new computation with a
record, and one that finds the same answer on a newer map only moves `as_of_seq` (so the next repeat
need not recompute).

The graph is read under `live_graph.reading()` only for the graph's own work; names and owners are
read from the database after it. This module never talks HTTP and never parses an outside format.
"""

import hashlib
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.core.db import read_transaction
from app.core.dialect import locked
from app.models import ChangeRecord, Incident, IncidentAlert
from app.models.types import as_utc, new_id
from app.services import alert_binding, impact
from app.services.bulk import insert_rows
from app.services.errors import NotFound
from app.services.history import UnitOfWork, in_unit_of_work
from app.services.pagination import decode_uuid_cursor, page
from app.services.service_directory import ServiceDirectory

INCIDENT = Incident.__table__
ALERT = IncidentAlert.__table__
CHANGE = ChangeRecord.__table__
# What the graph and the descriptions of CIs are made of: a change to any of them means recomputing.
GRAPH_OBJECTS = ("ci", "relationship", "class", "relationship_type")
ROOT_CAUSE_LIMIT = 10
# An incident keeps at most this many alerts: past it, the resolved ones that ended first are dropped
# (a group that churns through new fingerprints for months must not grow without end).
MAX_ALERTS = 10_000
# The change feed names at most this many failed CIs per record (the first by id; the incident has them all).
FEED_FAILED_MAX = 100
# A page of incidents names at most this many failed CIs and services of each.
LIST_NAMED_MAX = 20


@dataclass(frozen=True)
class AlertIn:
    """One alert as a source reports it, in Karta's terms (the integrations translate to this)."""

    fingerprint: str
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str | None = None
    # A firing alert's end as the source foresees it (Alertmanager's endsAt): see "expired" above.
    valid_until: datetime | None = None


@dataclass(frozen=True)
class AlertGroup:
    source: str  # alertmanager | alerts
    group_key: str
    alerts: list[AlertIn]
    receiver: str | None = None
    group_labels: dict[str, str] = field(default_factory=dict)
    # The alerts are all the group's current ones: a firing alert left out is `absent`.
    complete: bool = False
    # The source sends a firing group again and again: an incident silent past expires_at has expired.
    renotified: bool = False


@dataclass(frozen=True)
class Context:
    """What computing an incident needs from the running service."""

    engine: Any
    live_graph: Any
    registry: Any  # RegistryCache
    rules: list[dict[str, str]] | None = None
    impacted_max: int = 500
    services_max: int = 500
    # The services' names, criticality and owners in memory (None: a directory of the call's own).
    services: Any = None
    # Root-cause candidates are told apart by the CIs they would take down besides the symptoms only up
    # to this many (graph.causes, extra_cap): past it, counting costs seconds at a million CIs.
    root_cause_extra_cap: int | None = 1_000
    # How long an open incident of a renotified group stays open without a notification (see "expired").
    alert_expiry_seconds: float = 4 * 3600 + 15 * 60


def context(state: Any) -> Context:
    """The context of the running service (the app's state): the API's and the expiry sweep's."""
    settings = state.settings
    return Context(engine=state.engine, live_graph=state.live_graph, registry=state.registry,
                   rules=settings.alert_bindings, impacted_max=settings.incident_impacted_max,
                   services_max=settings.incident_services_max, services=state.service_directory,
                   root_cause_extra_cap=settings.incident_root_cause_extra_cap,
                   alert_expiry_seconds=settings.alert_expiry_seconds)


def key_hash(group_key: str) -> str:
    return hashlib.sha256(group_key.encode("utf-8", "surrogatepass")).hexdigest()


def receive(ctx: Context, actor: str, group: AlertGroup, *, token_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Merge the group's alerts into its incident and recompute it; the incident's summary as stored."""
    group = _clean_group(group)
    # One entry per fingerprint: a source that repeats one in a payload means its last word.
    alerts = list({alert.fingerprint: alert for alert in group.alerts}.values())
    # Everything that only reads comes first, outside the write transaction: the graph's root cause
    # can take seconds, and a writer holding its locks (SQLite's is the whole database's) that long
    # would stall every other write.
    with read_transaction(ctx.engine) as conn:
        bindings = alert_binding.bind(conn, ctx.registry.get(conn=conn), ctx.rules, (a.labels for a in alerts))
        incoming = {alert.fingerprint: (alert, binding) for alert, binding in zip(alerts, bindings)}
        row = conn.execute(select(INCIDENT).where(INCIDENT.c.group_key_hash == key_hash(group.group_key))
                           ).mappings().first()
        stored = _stored_alerts(conn, row["id"]) if row is not None else {}
        ended = _no_longer_reported(stored, incoming, group, row, datetime.now(UTC))
        failed = _failed({**stored, **{f: {**stored[f], "status": status} for f, (status, _) in ended.items()},
                          **{f: {"status": a.status, "ci_id": b.ci_id if b else None} for f, (a, b) in incoming.items()}})
        computed = None if row is not None and _still_holds(conn, row, failed) else (failed, *compute(ctx, conn, failed))
    return in_unit_of_work(ctx.engine, actor, lambda uow: _apply(ctx, uow, group, incoming, computed),
                           token_id=token_id)


def expire(ctx: Context, actor: str, incident_id: uuid.UUID, *, now: datetime | None = None) -> bool:
    """Expire the firing alerts of an incident whose group fell silent past its expires_at (the sweep,
    app.services.incident_expiry); whether it did. Skips an incident another worker holds (it is
    being notified or expired there) and one a notification renewed since it was found (still due at
    `now`, the unit of work's clock unless given: a test or a sweep told the time judges by it)."""
    def work(uow: UnitOfWork) -> bool:
        if now is not None:
            uow.now = now  # the re-check, the record's time and the incident's updated_at all read it
        query = select(INCIDENT).where(INCIDENT.c.id == incident_id, INCIDENT.c.expires_at <= uow.now)
        row = uow.conn.execute(locked(uow.conn, query, skip_locked=True)).mappings().first()
        if row is None:
            return False
        group = AlertGroup(source=row["source"], group_key=row["group_key"], alerts=[], receiver=row["receiver"],
                           group_labels=row["group_labels"])
        _apply(ctx, uow, group, {}, None)
        return True
    return in_unit_of_work(ctx.engine, actor, work)


def _no_longer_reported(stored: dict[str, dict[str, Any]], incoming: dict, group: AlertGroup, row,
                        now: datetime) -> dict[str, tuple[str, datetime]]:
    """The stored firing alerts this notification ends, with their new status and end: `absent` when it
    lists the whole group and not them; `expired` (at expires_at) when the incident's time has passed."""
    if group.complete:
        status, end = "absent", now
    elif row is not None and row["expires_at"] is not None and _same(row["expires_at"]) <= _same(now):
        status, end = "expired", row["expires_at"]
    else:
        return {}
    return {f: (status, end) for f, alert in stored.items() if alert["status"] == "firing" and f not in incoming}


def _expires_at(ctx: Context, group: AlertGroup, incoming: dict, row, status: str, now: datetime) -> datetime | None:
    """When the open incident of a renotified group expires (see "expired" above); None when resolved.
    A notification from a source that does not repeat (the generic form) leaves it as it was."""
    if status != "open":
        return None
    if not group.renotified:
        return row.get("expires_at")
    latest = max((a.valid_until for a, _ in incoming.values() if a.status == "firing" and a.valid_until), default=None)
    window = now + timedelta(seconds=ctx.alert_expiry_seconds)
    return window if latest is None or _same(latest) < _same(window) else latest


def _stored_alerts(conn: Connection, incident_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    return {r["fingerprint"]: dict(r) for r in conn.execute(
        select(ALERT).where(ALERT.c.incident_id == incident_id)).mappings()}


def _failed(alerts: dict[str, dict[str, Any]]) -> list[str]:
    """The failed CIs: those of the firing alerts."""
    return sorted({str(a["ci_id"]) for a in alerts.values() if a["status"] == "firing" and a["ci_id"]})


def _still_holds(conn: Connection, row, failed: list[str]) -> bool:
    """Whether the incident's stored computation is still true: the same CIs failing on the same graph
    (Alertmanager repeating a group, one more alert on an already failed host)."""
    return failed == [ci["id"] for ci in row["summary"].get("failed", [])] and not graph_changed_since(
        conn, row["as_of_seq"])


def _text(value: str | None) -> str | None:
    """Text any database stores: JSON may carry a lone surrogate (no UTF-8 for it) or a NUL (PostgreSQL's
    JSONB and text refuse it), neither of which may turn a valid notification into an error."""
    if value is None or (value.isprintable() and value.isascii()):
        return value
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _clean(mapping: dict[str, str]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in mapping.items()}


def _clean_group(group: AlertGroup) -> AlertGroup:
    return replace(
        group, group_key=_text(group.group_key), receiver=_text(group.receiver), group_labels=_clean(group.group_labels),
        alerts=[replace(a, fingerprint=_text(a.fingerprint), labels=_clean(a.labels), annotations=_clean(a.annotations),
                        generator_url=_text(a.generator_url)) for a in group.alerts])


def _apply(ctx: Context, uow: UnitOfWork, group: AlertGroup, incoming: dict, computed: tuple | None) -> dict[str, Any]:
    conn, now = uow.conn, uow.now
    row, created = _lock_or_create(uow, group)
    incident_id = row["id"]
    stored = _stored_alerts(conn, incident_id)
    changed = {}
    for fingerprint, (alert, binding) in incoming.items():
        new = {"incident_id": incident_id, "fingerprint": fingerprint, "status": alert.status,
               "labels": alert.labels, "annotations": alert.annotations, "starts_at": alert.starts_at,
               "ends_at": alert.ends_at, "generator_url": alert.generator_url,
               "ci_id": binding.ci_id if binding else None, "bound_by": binding.rule if binding else None}
        old = stored.get(fingerprint)
        _fill_times(new, old, now)
        if old is None or any(_same(old[k]) != _same(v) for k, v in new.items()):
            changed[fingerprint] = {**new, "updated_at": now}
    for fingerprint, (status, end) in _no_longer_reported(stored, incoming, group, row, now).items():
        changed[fingerprint] = {**stored[fingerprint], "status": status, "ends_at": end, "updated_at": now}
    merged = {**stored, **changed}
    dropped = _over_the_cap(merged)
    for fingerprint in dropped:
        merged.pop(fingerprint)
        changed.pop(fingerprint, None)
    failed = _failed(merged)
    if not created and _still_holds(conn, row, failed):
        summary, as_of_seq = dict(row["summary"]), row["as_of_seq"]  # it says when it was computed
    elif computed is not None and computed[0] == failed:
        summary, as_of_seq = dict(computed[1]), computed[2]
    else:  # another notification of the group changed its alerts meanwhile: compute under the lock
        summary, as_of_seq = compute(ctx, conn, failed)
    summary["counts"] = _counts(merged.values())
    status = "open" if summary["counts"]["firing"] else "resolved"
    expires_at = _expires_at(ctx, group, incoming, row, status, now)
    before = None if created else _feed_view(row["status"], row["summary"])
    after = _feed_view(status, summary)
    # When the feed's view and the whole summary are as stored, nothing is recorded: a graph recomputed
    # with the same answer only moves when it was last confirmed (so a repeat does not recompute), and a
    # repeat of the group puts off its expiry. When only the summary changed (an owner, a service's
    # criticality, a root cause), it is stored below with a record naming what the feed view shows of it.
    if (not created and not changed and not dropped and before == after
            and _as_stored(summary) == _as_stored(row["summary"])):
        moved = {k: v for k, v in (("as_of_seq", as_of_seq), ("expires_at", expires_at)) if _same(v) != _same(row[k])}
        if moved:
            conn.execute(update(INCIDENT).where(INCIDENT.c.id == incident_id).values(**moved))
        return _public({**row, **moved}, row["summary"], as_of_seq)
    stale = set(changed) | set(dropped)
    for chunk in _chunks(sorted(stale)):
        conn.execute(delete(ALERT).where(ALERT.c.incident_id == incident_id, ALERT.c.fingerprint.in_(chunk)))
    if changed:
        insert_rows(conn, ALERT, list(changed.values()))
    values = {"status": status, "summary": summary, "as_of_seq": as_of_seq, "updated_at": now,
              "resolved_at": (row["resolved_at"] or now) if status == "resolved" else None,
              "receiver": group.receiver, "group_labels": group.group_labels, "expires_at": expires_at}
    conn.execute(update(INCIDENT).where(INCIDENT.c.id == incident_id).values(**values))
    diff = {k: [_before(before, k), after.get(k, 0)] for k in (*after, *(before or ()))
            if before is None or _before(before, k) != after.get(k, 0)}
    if created:
        diff = {"group_key": [None, group.group_key], "source": [None, group.source], **diff}
    elif not diff:  # what changed is below the feed's view (a name, a path, a root cause's count)
        diff = {"as_of_seq": [row["as_of_seq"], as_of_seq]}
    if diff:
        uow.record("incident", incident_id, "create" if created else "update", diff)
    return _public({**row, **values}, summary, as_of_seq)


def _before(view: dict[str, Any] | None, key: str) -> Any:
    """A value of the feed's view before; the counts shown only when not 0 (absent, expired) were 0."""
    if view is None:
        return None
    return view.get(key, 0 if key.removeprefix("alerts_") in _ENDED_COUNTS else None)


def _fill_times(new: dict[str, Any], old: dict[str, Any] | None, now: datetime) -> None:
    """Times a source did not give (Nagios says only "CRITICAL" or "OK"): an alert started when it first
    fired (a repeated notification does not move it) and ended when it was reported resolved."""
    if new["starts_at"] is None:
        kept = old is not None and (old["status"] == "firing" or new["status"] == "resolved")
        new["starts_at"] = old["starts_at"] if kept else now
    if new["status"] == "resolved" and new["ends_at"] is None:
        new["ends_at"] = old["ends_at"] if old is not None and old["status"] == "resolved" else now


def _same(value: Any) -> Any:
    """A value as stored, comparable with what is read back: times as naive UTC (SQLite hands them back
    naive, PostgreSQL in the session's time zone, which need not be UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    return value


def _as_stored(summary: dict[str, Any]) -> Any:
    """A summary as the JSON column gives it back (tuples as lists, ids as text), to compare with one read."""
    return orjson.loads(orjson.dumps(summary))


def _chunks(values: list, size: int = 500):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _lock_or_create(uow: UnitOfWork, group: AlertGroup) -> tuple[dict[str, Any], bool]:
    conn, digest = uow.conn, key_hash(group.group_key)
    query = locked(conn, select(INCIDENT).where(INCIDENT.c.group_key_hash == digest))
    row = conn.execute(query).mappings().first()
    if row is not None:
        return dict(row), False
    new = {"id": new_id(), "group_key": group.group_key, "group_key_hash": digest, "source": group.source,
           "receiver": group.receiver, "group_labels": group.group_labels, "status": "open", "summary": {},
           "as_of_seq": 0, "opened_at": uow.now, "resolved_at": None, "updated_at": uow.now, "expires_at": None}
    try:
        with conn.begin_nested():
            conn.execute(insert(INCIDENT).values(**new))
    except IntegrityError:
        # Another webhook of the same group created it after our read: take its row, locked.
        return dict(conn.execute(query).mappings().one()), False
    return new, True


def _over_the_cap(alerts: dict[str, dict]) -> list[str]:
    if len(alerts) <= MAX_ALERTS:
        return []
    resolved = sorted((a for a in alerts.values() if a["status"] != "firing"),
                      key=lambda a: (_same(a["ends_at"] or a["updated_at"]), a["fingerprint"]))
    return [a["fingerprint"] for a in resolved[:len(alerts) - MAX_ALERTS]]


_ENDED_COUNTS = ("absent", "expired")


def _counts(alerts) -> dict[str, int]:
    """firing, resolved (every alert not firing), unbound; and absent, expired (of the resolved) when not 0."""
    counts = Counter()
    for alert in alerts:
        counts[alert["status"]] += 1
        if alert["ci_id"] is None:
            counts["unbound"] += 1
    ended = {status: counts[status] for status in _ENDED_COUNTS if counts[status]}
    return {"firing": counts["firing"], "resolved": counts["resolved"] + sum(ended.values()),
            "unbound": counts["unbound"], **ended}


def _feed_view(status: str, summary: dict[str, Any]) -> dict[str, Any]:
    """What the change feed says of an incident: enough to read, not the whole computation."""
    counts = summary.get("counts", {})
    radius = summary.get("blast_radius", {})
    return {"status": status, "alerts_firing": counts.get("firing", 0), "alerts_resolved": counts.get("resolved", 0),
            "alerts_unbound": counts.get("unbound", 0),
            "failed_cis": [ci["id"] for ci in summary.get("failed", [])[:FEED_FAILED_MAX]],
            "impacted": radius.get("counts", {}).get("total", 0), "risk": radius.get("risk"),
            "owners": summary.get("owners", []),
            "services": [service["id"] for service in radius.get("services", [])[:FEED_FAILED_MAX]],
            **{f"alerts_{status}": counts[status] for status in _ENDED_COUNTS if counts.get(status)}}


def graph_changed_since(conn: Connection, seq: int) -> bool:
    """Whether a CI or relationship changed after `seq` (incident records, also in the feed, do not count)."""
    return conn.execute(select(CHANGE.c.seq).where(CHANGE.c.seq > seq, CHANGE.c.object_type.in_(GRAPH_OBJECTS))
                        .limit(1)).first() is not None


def compute(ctx: Context, conn: Connection, failed: list[str]) -> tuple[dict[str, Any], int]:
    """The failed CIs' blast radius, root-cause candidates and owners, and the change sequence they reflect.

    A group of unrelated hosts may hold a datacenter's router: 50,000 CIs impacted, 11,000 of them
    services. The graph hands over only what is stored (the nearest CIs, counts by class, the services'
    ids). Every service's criticality and owner is needed now, for the risk and the owners to notify:
    they come from memory (app.services.service_directory), and one query names the nearest, the
    failed CIs and the root-cause candidates. The incident lists the most critical services only
    (`services_max`); the risk and the owners cover them all."""
    services = ctx.registry.get(conn=conn).classes
    services = frozenset(name for name, info in services.items() if info.family == "service")
    directory = ctx.services if ctx.services is not None else ServiceDirectory(ctx.engine)
    with ctx.live_graph.reading() as graph:  # impact, root cause and the CIs' classes
        known = [ci_id for ci_id in failed if ci_id in graph]  # a CI deleted since the alert bound to it
        result = graph.impact(known) if known else None
        candidates = graph.root_cause(known, limit=ROOT_CAUSE_LIMIT, extra_cap=ctx.root_cause_extra_cap) if known else []
        if result is not None:
            nearest = result.nearest(ctx.impacted_max)
            by_class, impacted_services = graph.tally(result.impacted, services)
            classes = graph.classes([*known, *nearest])
            service_ids = [ci_id for ci_id in known if classes.get(ci_id) in services] + impacted_services
        as_of_seq = graph.applied_seq
    if result is None:
        info = impact.describe(conn, set(failed))
        named = {}
        radius = {"impacted": [], "impacted_truncated": False, "services": [], "services_count": 0,
                  "services_truncated": False,
                  "counts": {"total": 0, "by_class": {}, "by_state": {"down": 0, "degraded": 0, "at_risk": 0}},
                  "risk": None}
        causes = []
    else:
        named = directory.lookup(services, service_ids)  # after the graph: at least as current
        answer, info = impact.radius_answer(conn, result, nearest, classes, by_class, service_ids, named,
                                            ctx.services_max, {c.ci_id for c in candidates} | set(failed))
        radius = {"impacted": answer["impacted"], "impacted_truncated": len(result.impacted) > ctx.impacted_max,
                  "services": answer["services"], "services_count": answer["services_count"],
                  "services_truncated": answer["services_truncated"], "counts": answer["counts"],
                  "risk": answer["risk"]}
        causes = impact.root_cause_answer(conn, known, candidates, info)["candidates"]
    failed_cis = [{"id": ci_id, **{k: info.get(ci_id, {}).get(k) for k in ("name", "class", "owner", "criticality")}}
                  for ci_id in failed]
    owners = {ci["owner"] for ci in failed_cis if ci["owner"]} | {s.owner for s in named.values() if s.owner}
    return {"failed": failed_cis, "blast_radius": radius, "root_cause": causes, "owners": sorted(owners)}, as_of_seq


def _public(row: dict[str, Any], summary: dict[str, Any], as_of_seq: int) -> dict[str, Any]:
    return {"id": row["id"], "group_key": row["group_key"], "source": row["source"], "receiver": row["receiver"],
            "group_labels": row["group_labels"], "status": row["status"], "opened_at": as_utc(row["opened_at"]),
            "resolved_at": as_utc(row["resolved_at"]), "updated_at": as_utc(row["updated_at"]),
            "expires_at": as_utc(row.get("expires_at")),
            "as_of_seq": as_of_seq, "counts": summary.get("counts", {}), "failed": summary.get("failed", []),
            "blast_radius": summary.get("blast_radius", {}), "root_cause": summary.get("root_cause", []),
            "owners": summary.get("owners", [])}


def list_incidents(conn: Connection, status: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
    """Newest first (ids are time-ordered), a page at a time."""
    query = select(INCIDENT).order_by(INCIDENT.c.id.desc()).limit(limit + 1)
    if status is not None:
        query = query.where(INCIDENT.c.status == status)
    if cursor:
        query = query.where(INCIDENT.c.id < decode_uuid_cursor(cursor))
    rows = conn.execute(query).mappings().all()

    def brief(row) -> dict[str, Any]:
        full = _public(dict(row), row["summary"], row["as_of_seq"])
        radius = full.pop("blast_radius")
        full.pop("root_cause")
        return {**full, "failed": full["failed"][:LIST_NAMED_MAX], "failed_count": len(full["failed"]),
                "risk": radius.get("risk"), "impacted": radius.get("counts", {}).get("total", 0),
                "services": [{"id": s["id"], "name": s["name"], "state": s["state"]}
                             for s in radius.get("services", [])[:LIST_NAMED_MAX]]}

    return page(rows, limit, brief, "id")


def get_incident(conn: Connection, incident_id: uuid.UUID) -> dict[str, Any]:
    row = conn.execute(select(INCIDENT).where(INCIDENT.c.id == incident_id)).mappings().first()
    if row is None:
        raise NotFound(f"No incident with id {incident_id}.")
    alerts = conn.execute(select(ALERT).where(ALERT.c.incident_id == incident_id)
                          .order_by(ALERT.c.status, ALERT.c.fingerprint)).mappings().all()
    names = impact.describe(conn, {str(a["ci_id"]) for a in alerts if a["ci_id"]})
    return {**_public(dict(row), row["summary"], row["as_of_seq"]), "alerts": [
        {"fingerprint": a["fingerprint"], "status": a["status"], "labels": a["labels"], "annotations": a["annotations"],
         "starts_at": as_utc(a["starts_at"]), "ends_at": as_utc(a["ends_at"]), "generator_url": a["generator_url"],
         "ci": None if a["ci_id"] is None else {"id": str(a["ci_id"]), "name": names.get(str(a["ci_id"]), {}).get("name"),
                                                "class": names.get(str(a["ci_id"]), {}).get("class")},
         "bound_by": a["bound_by"]} for a in alerts]}
