"""Business services mapped from their entry points: resolving them, and writing each service's map.

A CI of the service family names its entry points in the attribute `entry_points` (`host:port` or
URLs, checked when written: graph.service_map.entry_point_errors). Bringing a service's map current
runs in three steps, so that neither the database nor the graph is held while the other is read:

  resolve   (database) each entry point's host, by the identifiers of host CIs as an alert's
            `instance` is bound (app.services.alert_binding.find_hosts: address, fqdn, hostname),
            then the application CIs that run_on that host and listen on the port (the `listen`,
            `port`, `ports` attributes discovery reports). Unresolved: the reason is kept (no host
            has that address; nothing listens on that port). An entry point that resolved before
            and no longer does is *stale*: its last applications stay the map's roots and the
            service is flagged, never silently emptied.
  walk      (graph) the map below the roots, by layer (graph.service_map.service_map).
  write     (database, one unit of work) the membership, as change records of object type
            `service_map` whose diff names each CI that joined or left ("members.<id>": [null,
            {"name", "class", "layer"}]); the status and entry points; the hosts the entry points
            name (the keeper's index); and the service's `depends_on` relationships to its entry
            applications, which Karta owns: their only sighting is of source `service_mapping`.
            They are created and ended through the relationship history like any other; a
            relationship a person made (any other source) is never created over, changed or ended.

A map is written only forward: a service whose stored map reflects a later change sequence than
the graph this pass walked is left as it is (two workers' keepers may map the same service).
A service without entry points has no map; one whose entry points were removed loses it, recorded.
"""

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select, update

from app.core.dialect import locked
from app.models import (
    ChangeRecord,
    CIIdentifier,
    ConfigurationItem,
    Relationship,
    RelationshipSource,
    ServiceEntryKey,
    ServiceMapMember,
    ServiceMapState,
)
from app.models.service_map import MAPPING_SOURCE
from app.models.types import new_id
from app.services.alert_binding import HOST_FAMILIES, address_classes, find_hosts, holders_of_addresses
from app.services.bulk import id_in, insert_rows
from app.services.history import UnitOfWork
from app.services.registry import Registry
from app.services.relationships import REL_COLUMNS, creation_diff, end_relationships
from graph import ImpactGraph
from graph.service_map import (
    EntryPoint,
    listens_on,
    membership_changes,
    parse_entry_point,
    service_map,
)

SOURCE = MAPPING_SOURCE  # the owned relationships' source, and the actor of every map change (reserved)
OWNED_TYPE = "depends_on"
SERVICE_FAMILY = "service"
ATTRIBUTE = "entry_points"
OBJECT_TYPE = "service_map"
CI = ConfigurationItem.__table__
CHANGE = ChangeRecord.__table__
REL = Relationship.__table__
REL_SOURCE = RelationshipSource.__table__
IDENT = CIIdentifier.__table__
MEMBER = ServiceMapMember.__table__
STATE = ServiceMapState.__table__
KEY = ServiceEntryKey.__table__


@dataclass
class Plan:
    """What one service's map starts from: its entry points as resolved, the applications the walk
    starts from, and the host keys its entry points name. `exists` is false for a CI that is gone or
    no longer a service, or a service without entry points: its map, if any, is removed."""

    service_id: uuid.UUID
    exists: bool
    entry_points: list[dict[str, Any]] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)


def service_classes(registry: Registry) -> list[str]:
    return sorted(name for name, info in registry.classes.items() if info.family == SERVICE_FAMILY)


def layer_of(registry: Registry) -> Callable[[str | None], str]:
    """A CI class -> its layer in a map below the entry: the database class and those under it are
    data stores, the rest of the application family applications, the server and container families
    hosts; anything else is infrastructure."""
    classes = registry.classes

    def layer(ci_class: str | None) -> str:
        info = classes.get(ci_class) if ci_class else None
        if info is None:
            return "infrastructure"
        if "database" in info.ancestors:
            return "data_stores"
        if info.family == "application":
            return "applications"
        if info.family in ("server", "container"):
            return "hosts"
        return "infrastructure"

    return layer


def entry_keys(entry: EntryPoint) -> set[str]:
    """The host keys an entry point names, as host_keys_of_cis spells a host's: its address, or its
    name and (for an fqdn) the name's first label."""
    if entry.address is not None:
        return {entry.address}
    return {entry.host, entry.host.split(".", 1)[0]}


def host_keys_of_cis(conn: Connection, registry: Registry, ci_ids: Iterable[uuid.UUID]) -> set[str]:
    """The keys by which an entry point could name these CIs if they are hosts: their addresses and
    fqdns (and each fqdn's first label), their names (and each name's first label); if they are
    addresses, their reverse-DNS names (and each one's first label)."""
    ids = list(ci_ids)
    if not ids:
        return set()
    keys: set[str] = set()
    for key, value in conn.execute(select(IDENT.c.key, IDENT.c.value).where(
            id_in(conn, IDENT.c.ci_id, ids), IDENT.c.family.in_(HOST_FAMILIES), IDENT.c.key.in_(("ip_address", "fqdn")))):
        keys.add(value)
        if key == "fqdn":
            keys.add(value.split(".", 1)[0])
    host_classes = [name for name, info in registry.classes.items() if info.family in HOST_FAMILIES]
    for (name,) in conn.execute(select(CI.c.name).where(id_in(conn, CI.c.id, ids), CI.c.ci_class.in_(host_classes))):
        lowered = name.strip().lower()
        keys.update({lowered, lowered.split(".", 1)[0]})
    # An address's reverse-DNS name (nmap's PTR name, its dns_name): an entry point may name the host
    # holding that address by it (alert_binding.find_hosts).
    for (dns_name,) in conn.execute(select(CI.c.attributes["dns_name"].as_string()).where(
            id_in(conn, CI.c.id, ids), CI.c.ci_class.in_(address_classes(registry)))):
        if isinstance(dns_name, str) and dns_name.strip():
            lowered = dns_name.strip().lower()
            keys.update({lowered, lowered.split(".", 1)[0]})
    return keys


def hosts_holding(conn: Connection, registry: Registry, ci_ids: Iterable[uuid.UUID],
                  addresses: Iterable[Any] = ()) -> set[uuid.UUID]:
    """The host CIs holding `addresses` and the addresses of those of `ci_ids` that are address CIs: what
    an entry point named by an address's reverse-DNS name (its dns_name) resolved to
    (alert_binding.find_hosts). `addresses`: those of address CIs gone since (a delete's diff)."""
    ids, classes, wanted = list(ci_ids), address_classes(registry), list(addresses)
    if ids and classes:
        wanted += conn.execute(select(CI.c.attributes["address"].as_string()).where(
            id_in(conn, CI.c.id, ids), CI.c.ci_class.in_(classes))).scalars().all()
    return {ci for held_by in holders_of_addresses(conn, wanted).values() for ci in held_by}


def _applications_on(conn: Connection, registry: Registry, hosts: set[uuid.UUID]) -> dict[uuid.UUID, list[tuple]]:
    """host -> [(application id, name, attributes)] of the application-family CIs that run_on it."""
    if not hosts:
        return {}
    apps = [name for name, info in registry.classes.items() if info.family == "application"]
    found: dict[uuid.UUID, list[tuple]] = defaultdict(list)
    for host, app_id, name, attributes in conn.execute(
            select(REL.c.target_id, CI.c.id, CI.c.name, CI.c.attributes).join(CI, CI.c.id == REL.c.source_id)
            .where(id_in(conn, REL.c.target_id, list(hosts)), REL.c.type == "runs_on", CI.c.ci_class.in_(apps))
            .order_by(CI.c.id)):
        found[host].append((app_id, name, attributes))
    return found


def _resolve_one(text: Any, entry: EntryPoint | None, error: str | None, hosts: dict[str, uuid.UUID],
                 apps_on: dict[uuid.UUID, list[tuple]], previous: dict[str, dict], still_there: set[str]
                 ) -> dict[str, Any]:
    shown = text if isinstance(text, str) else repr(text)[:200]
    if entry is None:
        return {"entry_point": shown, "status": "invalid", "reason": error, "host": None, "applications": []}
    host = hosts.get(entry.host)
    if host is None:
        what = "address" if entry.address is not None else "name"
        reason = f"no host has that {what} ({entry.host}), or more than one has"
        resolved = None
    else:
        resolved = [str(app_id) for app_id, _, attributes in apps_on.get(host, [])
                    if isinstance(attributes, dict) and not attributes.get("client_only")
                    and listens_on(attributes, entry.port, entry.address)]
        reason = None if resolved else f"nothing listens on port {entry.port} of that host"
    if resolved:
        return {"entry_point": shown, "status": "resolved", "reason": None, "host": str(host), "applications": resolved}
    before = previous.get(shown) or {}
    kept = [app for app in before.get("applications") or () if app in still_there]
    if kept:  # it resolved once: keep its last map (what of it still exists), flagged
        return {"entry_point": shown, "status": "stale", "reason": reason, "host": before.get("host"),
                "applications": kept}
    return {"entry_point": shown, "status": "unresolved", "reason": reason,
            "host": str(host) if host is not None else None, "applications": []}


def resolve(conn: Connection, registry: Registry, service_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Plan]:
    """Each service's entry points resolved against the database as it stands (a few queries for
    all of them, not one per entry point)."""
    ids = sorted(set(service_ids))
    if not ids:
        return {}
    services = set(service_classes(registry))
    rows = {row.id: row for row in conn.execute(select(CI.c.id, CI.c.ci_class, CI.c.attributes)
                                                .where(id_in(conn, CI.c.id, ids)))}
    previous = {row.service_id: {ep.get("entry_point"): ep for ep in row.entry_points if isinstance(ep, dict)}
                for row in conn.execute(select(STATE.c.service_id, STATE.c.entry_points)
                                        .where(id_in(conn, STATE.c.service_id, ids)))}
    parsed: dict[uuid.UUID, list[tuple[Any, EntryPoint | None, str | None]]] = {}
    for service_id in ids:
        row = rows.get(service_id)
        value = row.attributes.get(ATTRIBUTE) if row is not None and row.ci_class in services else None
        if not isinstance(value, list) or not value:
            continue
        entries = []
        for text in value:
            try:
                entries.append((text, parse_entry_point(text), None))
            except ValueError as exc:  # written before the check existed, or by hand
                entries.append((text, None, str(exc)))
        parsed[service_id] = entries
    hosts = find_hosts(conn, registry, {e.host for entries in parsed.values() for _, e, _ in entries if e})
    apps_on = _applications_on(conn, registry, set(hosts.values()))
    # The applications entry points resolved to before that still exist: a stale entry point keeps them.
    before = {uuid.UUID(app) for entries in previous.values() for ep in entries.values()
              for app in ep.get("applications") or () if isinstance(app, str)}
    still_there = {str(ci_id) for ci_id in conn.execute(select(CI.c.id).where(id_in(conn, CI.c.id, before)))
                   .scalars()} if before else set()
    plans = {}
    for service_id in ids:
        if service_id not in parsed:
            plans[service_id] = Plan(service_id, exists=False)
            continue
        resolved = [_resolve_one(text, entry, error, hosts, apps_on, previous.get(service_id, {}), still_there)
                    for text, entry, error in parsed[service_id]]
        roots = list(dict.fromkeys(app for ep in resolved for app in ep["applications"]))
        keys = set().union(*(entry_keys(e) for _, e, _ in parsed[service_id] if e is not None))
        plans[service_id] = Plan(service_id, True, resolved, roots, keys)
    return plans


def walk(graph: ImpactGraph, plans: dict[uuid.UUID, Plan], registry: Registry) -> dict[uuid.UUID, dict[str, str]]:
    """Each existing service's map {ci_id: layer}, from the graph held still by the caller."""
    layer = layer_of(registry)
    return {service_id: service_map(graph, plan.roots, layer, exclude=(str(service_id),))
            for service_id, plan in plans.items() if plan.exists}


def status_of(entry_points: list[dict[str, Any]]) -> str:
    states = {ep["status"] for ep in entry_points}
    if "stale" in states:
        return "stale"
    if states == {"resolved"}:
        return "mapped"
    return "partial" if "resolved" in states else "unresolved"


def write(uow: UnitOfWork, plans: dict[uuid.UUID, Plan], maps: dict[uuid.UUID, dict[str, str]], as_of_seq: int) -> int:
    """Store the maps, each change recorded; returns how many services' maps changed."""
    conn = uow.conn
    ids = sorted(plans)
    states = {row.service_id: row for row in conn.execute(
        locked(conn, select(STATE).where(id_in(conn, STATE.c.service_id, ids)), order_by=STATE.c.service_id))}
    ids = [service_id for service_id in ids if service_id not in states or states[service_id].as_of_seq <= as_of_seq]
    members: dict[uuid.UUID, dict[str, str]] = defaultdict(dict)
    for row in conn.execute(select(MEMBER).where(id_in(conn, MEMBER.c.service_id, ids))):
        members[row.service_id][str(row.ci_id)] = row.layer
    keys: dict[uuid.UUID, set[str]] = defaultdict(set)
    for service_id, key in conn.execute(select(KEY.c.service_id, KEY.c.key).where(id_in(conn, KEY.c.service_id, ids))):
        keys[service_id].add(key)
    owned = _owned_relationships(conn, ids)
    changes = {service_id: membership_changes(members[service_id], maps.get(service_id, {})) for service_id in ids}
    named = {ci for joined, left, moved in changes.values() for ci in (*joined, *left, *moved)}
    info = _names(conn, [uuid.UUID(ci) for ci in named])
    changed = 0
    for service_id in ids:
        plan, state = plans[service_id], states.get(service_id)
        joined, left, moved = changes[service_id]
        wanted = set(plan.roots) if plan.exists else set()
        _keep_owned(uow, service_id, wanted, owned.get(service_id, {}))
        if not plan.exists:
            if state is not None:
                _forget(conn, service_id)
                uow.record(OBJECT_TYPE, service_id, "delete", {"status": [state.status, None], **_member_diff(
                    {}, members[service_id], {}, info)})
                changed += 1
            continue
        status = status_of(plan.entry_points)
        diff = _member_diff(joined, left, moved, info)
        if state is None or state.status != status:
            diff["status"] = [state.status if state else None, status]
        if state is None or state.entry_points != plan.entry_points:
            diff["entry_points"] = [state.entry_points if state else None, plan.entry_points]
        values = {"status": status, "entry_points": plan.entry_points, "as_of_seq": as_of_seq, "refreshed_at": uow.now}
        if state is None:
            conn.execute(insert(STATE), {"service_id": service_id, **values})
        else:
            conn.execute(update(STATE).where(STATE.c.service_id == service_id).values(values))
        _write_members(conn, service_id, maps[service_id], joined, left, moved)
        wanted_keys = {key[:512] for key in plan.keys}
        if wanted_keys != keys[service_id]:
            conn.execute(delete(KEY).where(KEY.c.service_id == service_id))
            insert_rows(conn, KEY, [{"service_id": service_id, "key": key} for key in sorted(wanted_keys)])
        if diff:
            uow.record(OBJECT_TYPE, service_id, "create" if state is None else "update", diff)
            changed += 1
    return changed


def _names(conn: Connection, ci_ids: list[uuid.UUID]) -> dict[str, tuple[str | None, str | None]]:
    """ci -> (name, class) for a diff: of a CI deleted since, as its deletion's change record says."""
    info = {str(row.id): (row.name, row.ci_class) for row in conn.execute(
        select(CI.c.id, CI.c.name, CI.c.ci_class).where(id_in(conn, CI.c.id, ci_ids)))}
    gone = [ci for ci in ci_ids if str(ci) not in info]
    if gone:
        for object_id, diff in conn.execute(select(CHANGE.c.object_id, CHANGE.c.diff).where(
                id_in(conn, CHANGE.c.object_id, gone), CHANGE.c.object_type == "ci", CHANGE.c.action == "delete")):
            info[str(object_id)] = ((diff.get("name") or [None])[0], (diff.get("class") or [None])[0])
    return info


def _member_diff(joined: dict, left: dict, moved: dict, info: dict[str, tuple]) -> dict[str, list]:
    def described(ci: str, layer: str) -> dict[str, Any]:
        name, ci_class = info.get(ci, (None, None))
        return {"name": name, "class": ci_class, "layer": layer}

    diff: dict[str, list] = {}
    for ci in sorted({*joined, *left, *moved}):
        if ci in joined:
            diff[f"members.{ci}"] = [None, described(ci, joined[ci])]
        elif ci in left:
            diff[f"members.{ci}"] = [described(ci, left[ci]), None]
        else:
            diff[f"members.{ci}"] = [described(ci, moved[ci][0]), described(ci, moved[ci][1])]
    return diff


def _write_members(conn: Connection, service_id: uuid.UUID, after: dict[str, str], joined: dict, left: dict,
                   moved: dict) -> None:
    gone = [uuid.UUID(ci) for ci in (*left, *moved)]
    if gone:
        conn.execute(delete(MEMBER).where(MEMBER.c.service_id == service_id, id_in(conn, MEMBER.c.ci_id, gone)))
    insert_rows(conn, MEMBER, [{"service_id": service_id, "ci_id": uuid.UUID(ci), "layer": after[ci]}
                               for ci in (*joined, *moved)])


def _forget(conn: Connection, service_id: uuid.UUID) -> None:
    for table in (MEMBER, KEY, STATE):
        conn.execute(delete(table).where(table.c.service_id == service_id))


def owned_relationships(conn: Connection, ends: list[uuid.UUID], rel_type: str, *, by: str = "source_id"
                        ) -> dict[uuid.UUID, dict[str, Any]]:
    """{end: {other end: relationship row}} of the `rel_type` relationships Karta owns whose `by` end
    (source_id or target_id) is one of `ends`: sighted by `service_mapping` and by no other source
    (a person's claim, or discovery's, makes it theirs)."""
    if not ends:
        return {}
    other = "target_id" if by == "source_id" else "source_id"
    ours = exists(select(REL_SOURCE.c.relationship_id).where(REL_SOURCE.c.relationship_id == REL.c.id,
                                                             REL_SOURCE.c.source == SOURCE))
    others = exists(select(REL_SOURCE.c.relationship_id).where(REL_SOURCE.c.relationship_id == REL.c.id,
                                                               REL_SOURCE.c.source != SOURCE))
    found: dict[uuid.UUID, dict[str, Any]] = defaultdict(dict)
    for row in conn.execute(select(*REL_COLUMNS).where(id_in(conn, REL.c[by], ends),
                                                       REL.c.type == rel_type, ours, ~others)).mappings():
        found[row[by]][str(row[other])] = row
    return found


def _owned_relationships(conn: Connection, service_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """service -> {target: relationship row} of the depends_on relationships Karta owns."""
    return owned_relationships(conn, service_ids, OWNED_TYPE)


def create_owned(uow: UnitOfWork, source: uuid.UUID, targets: Iterable[uuid.UUID], rel_type: str) -> int:
    """Relationships `source rel_type target` that Karta owns (their one sighting is `service_mapping`),
    recorded; a target gone, or already related to `source` by `rel_type` (a person's relationship
    already says so), is skipped. Both ends are locked until commit, as a person's relationship is
    written (no foreign key, 0006). Returns how many were created."""
    conn = uow.conn
    wanted = sorted(set(targets))
    if not wanted:
        return 0
    present = set(conn.execute(locked(conn, select(CI.c.id).where(id_in(conn, CI.c.id, [source, *wanted])),
                                      order_by=CI.c.id, read=True, key_share=True)).scalars())
    if source not in present:
        return 0
    taken = set(conn.execute(select(REL.c.target_id).where(REL.c.source_id == source, REL.c.type == rel_type)).scalars())
    created = 0
    for target in wanted:
        if target not in present or target in taken:
            continue
        row = {"id": new_id(), "source_id": source, "target_id": target, "type": rel_type, "attributes": {},
               "first_seen": uow.now, "last_seen": uow.now, "created_at": uow.now}
        conn.execute(insert(REL), row)
        conn.execute(insert(REL_SOURCE), {"relationship_id": row["id"], "source": SOURCE, "scope_key": "",
                                          "last_seen": uow.now, "last_run_id": SOURCE})
        uow.record("relationship", row["id"], "create", creation_diff(row))
        created += 1
    return created


def _keep_owned(uow: UnitOfWork, service_id: uuid.UUID, wanted: set[str], owned: dict[str, Any]) -> None:
    """The service depends_on exactly its entry applications, through relationships Karta owns."""
    conn = uow.conn
    unwanted = [row for target, row in sorted(owned.items()) if target not in wanted]
    if unwanted:
        # A person may have claimed one since it was read (app.services.relationships._claim_karta_owned,
        # holding the service locked for key share): the service is locked first, then they are read
        # again, so that a claim committed meanwhile is seen and the relationship kept.
        conn.execute(locked(conn, select(CI.c.id).where(CI.c.id == service_id)))
        still = _owned_relationships(conn, [service_id]).get(service_id, {})
        unwanted = [row for row in unwanted if str(row["target_id"]) in still]
    end_relationships(uow, unwanted)
    create_owned(uow, service_id, (uuid.UUID(target) for target in wanted - set(owned)), OWNED_TYPE)
