"""Redundancy inferred from discovered connections: instances an application treats alike become a group.

Discovery reports each live connection as `A depends_on B` with the port A connected to (discovery/
dependencies.py). A proxy with three upstream web instances is then three direct dependencies, and
without more the failure of any one of them takes the proxy, and every service above it, down. Karta
sees what a person would otherwise declare by hand:

  kind      an application A of a service's map (layer entry or applications) depends, through
            relationships that carry a `port` (discovered connections; a person's relationship
            names none), on applications of one class and one kind (discovery's `kind` attribute:
            "orders_api" for `orders_api@web-1:8080` and `orders_api@app-1:8080`; a CI without it,
            its name), at that one port;
  instances at least two such applications, running on at least two different hosts (two on one
            host fall with it together: a group of them would only hide that), none of them a data
            store (the database class and those under it: two databases an application uses at one
            port are far more often two databases than two copies of one; a person declares the
            cluster of real replicas);
  group     a CI of class `cluster` that Karta owns: identified by `cluster_id` "karta-redundancy:
            <A's id>:<the kind's digest>" and sighted by source `service_mapping` in scope A's id, named "<name>:<port> instances behind <A>", with
            `min_members` 1 (any one instance serves) and `redundancy_of` saying what it groups.
            Each instance is `member_of` it and A `depends_on` it, through relationships Karta owns
            (their one sighting is of source `service_mapping`, as a service's own are).

The impact engine's rule "a group covers its members for its dependents" (graph.semantics) then makes
the direct `A depends_on B` carry nothing of its own: losing one instance degrades the group and puts
A, and the services above it, at risk; losing all of them takes A down.

What a person decides stays theirs:
  - a person's own cluster that A depends on and that holds one of the instances (any cluster Karta
    does not own): Karta infers nothing for that kind, and never replaces or joins it;
  - `min_members`: written once, when Karta creates the group; a person raises it (PATCH the CI,
    `{"attributes": {"min_members": 2}}`) and Karta keeps their value as members come and go;
  - a relationship a person asserts on the group (their claim of a Karta-owned one, or one of their
    own) is never ended by Karta; a group that no longer holds (fewer than two instances or hosts, or
    A left every map) loses Karta's relationships, and its CI is deleted only if nothing else
    relates to it.
What Karta finds its group by stays Karta's: a write that would change its `cluster_id` or move it
out of the cluster family (which would orphan it, and have Karta make another beside it) is refused
by every path that writes a CI (app.services.group_identity); editing the group never hands it over.

Kept in step by the service-map keeper (app.services.service_map_keeper), in the transaction that
writes the maps: every application that is or was in one of the maps written is looked at again, so
an instance that appears, disappears or moves host changes its group at the keeper's next pass, each
change a record of the feed like any other.
"""

import hashlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from app.models import CIIdentifier, ConfigurationItem, Relationship, ServiceMapMember, ServiceMapState
from app.models.discovery import CISource
from app.core.batch_contract import MAX_NAME
from app.core.dialect import locked
from app.services.bulk import id_in
from app.services.cis import creation_diff, delete_ci, insert_ci
from app.services.errors import Conflict, InvalidInput
from app.services.group_identity import PREFIX, karta_owned
from app.services.history import UnitOfWork
from app.services.registry import Registry
from app.services.relationships import end_relationships
from app.services.service_map import SOURCE, create_owned, layer_of, owned_relationships
from graph.service_map import parse_entry_point

log = logging.getLogger("karta.service_map")
CI = ConfigurationItem.__table__
REL = Relationship.__table__
CI_SOURCE = CISource.__table__
MEMBER = ServiceMapMember.__table__
STATE = ServiceMapState.__table__
IDENT = CIIdentifier.__table__
GROUP_CLASS = "cluster"
DEFAULT_MIN_MEMBERS = 1
DEPENDENT_LAYERS = ("entry", "applications")
SCOPE_CHUNK = 500  # dependents per lookup of their groups: a bounded number of parameters


@dataclass(frozen=True)
class Kind:
    """What makes instances alike for one dependent: their class, their kind and the port it uses."""

    ci_class: str
    name: str
    port: int

    def digest(self) -> str:
        text = f"{self.ci_class}\x1f{self.name}\x1f{self.port}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def kind_of(name: str, attributes: Any) -> str:
    """What an instance is: discovery's `kind` attribute ("nginx", "postgresql", an application's own
    program name), which its instances on every host share while their names differ (`orders_api@web-1:8080`);
    else, for a CI a person made, its name."""
    kind = attributes.get("kind") if isinstance(attributes, dict) else None
    return kind if isinstance(kind, str) and kind.strip() else name


def cluster_id(dependent: uuid.UUID, kind: Kind) -> str:
    return f"{PREFIX}{dependent}:{kind.digest()}"


def _port(attributes: Any) -> int | None:
    port = attributes.get("port") if isinstance(attributes, dict) else None
    return port if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536 else None


def wanted_groups(conn: Connection, registry: Registry, dependents: set[uuid.UUID],
                  services: set[uuid.UUID] = frozenset()) -> dict[uuid.UUID, dict[Kind, set[uuid.UUID]]]:
    """dependent -> {kind: its instances} for every kind that makes a group (see the module docstring):
    the applications' discovered dependencies, and the mapped services' entry applications."""
    if not dependents and not services:
        return {}
    layer = layer_of(registry)
    # Data stores never: two PostgreSQL servers an application uses at 5432 are its orders and its
    # billing database far more often than copies of one (a person declares real replicas' cluster).
    apps = [name for name, info in registry.classes.items()
            if info.family == "application" and layer(name) != "data_stores"]
    clusters = _group_classes(registry)
    targets: dict[uuid.UUID, dict[Kind, set[uuid.UUID]]] = defaultdict(lambda: defaultdict(set))
    instances: set[uuid.UUID] = set()
    for source, target, attributes, ci_class, name, target_attributes in conn.execute(
            select(REL.c.source_id, REL.c.target_id, REL.c.attributes, CI.c.ci_class, CI.c.name, CI.c.attributes)
            .join(CI, CI.c.id == REL.c.target_id)
            .where(id_in(conn, REL.c.source_id, list(dependents)), REL.c.type == "depends_on",
                   CI.c.ci_class.in_(apps))) if dependents else ():
        port = _port(attributes)
        if port is not None and target != source:
            targets[source][Kind(ci_class, kind_of(name, target_attributes), port)].add(target)
            instances.add(target)
    for service, kinds in _entry_instances(conn, services, apps).items():
        for kind, members in kinds.items():
            targets[service][kind] |= members
            instances |= members
    if not instances:
        return {}
    hosts: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for app_id, host in conn.execute(select(REL.c.source_id, REL.c.target_id).where(
            id_in(conn, REL.c.source_id, list(instances)), REL.c.type == "runs_on")):
        hosts[app_id].add(host)
    # The instances already in a person's group that the dependent depends on: that kind is theirs.
    theirs: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    group_of: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for dependent, group in conn.execute(
            select(REL.c.source_id, REL.c.target_id).join(CI, CI.c.id == REL.c.target_id)
            .where(id_in(conn, REL.c.source_id, list(targets)), REL.c.type == "depends_on",
                   CI.c.ci_class.in_(clusters))):
        group_of[group].add(dependent)
    for group in karta_owned(conn, group_of):
        del group_of[group]
    if group_of:
        for member, group in conn.execute(select(REL.c.source_id, REL.c.target_id).where(
                id_in(conn, REL.c.target_id, list(group_of)), REL.c.type == "member_of")):
            for dependent in group_of[group]:
                theirs[dependent].add(member)
    wanted: dict[uuid.UUID, dict[Kind, set[uuid.UUID]]] = {}
    for dependent, kinds in targets.items():
        for kind, members in kinds.items():
            if len(members) < 2 or len(set().union(*(hosts.get(member, set()) for member in members))) < 2:
                continue  # one instance, or all of them on one host (or on none known)
            if members & theirs.get(dependent, set()):
                continue
            wanted.setdefault(dependent, {})[kind] = members
    return wanted


def _entry_instances(conn: Connection, services: set[uuid.UUID], apps: list[str]
                     ) -> dict[uuid.UUID, dict[Kind, set[uuid.UUID]]]:
    """service -> {kind: entry applications}: the applications its resolved entry points that name an
    address reached (as the map's state stores them), by class, kind and the entry point's port. Several
    addresses of one service at one port (the A records of its name, listed) are alike: any of the
    instances serves the service. Entry points that name hosts by name are not taken together: `shop.
    example.com:443` and `admin.example.com:443` served by two nginx are two front doors, not copies."""
    if not services:
        return {}
    ports: dict[uuid.UUID, dict[uuid.UUID, set[int]]] = defaultdict(lambda: defaultdict(set))
    for service, entry_points in conn.execute(select(STATE.c.service_id, STATE.c.entry_points).where(
            id_in(conn, STATE.c.service_id, list(services)))):
        for entry in entry_points if isinstance(entry_points, list) else ():
            if not isinstance(entry, dict) or entry.get("status") != "resolved":
                continue
            try:
                parsed = parse_entry_point(entry.get("entry_point"))
            except (ValueError, TypeError, AttributeError):
                continue
            if parsed.address is None:
                continue
            port = parsed.port
            for app in entry.get("applications") or ():
                try:
                    ports[service][uuid.UUID(str(app))].add(port)
                except ValueError:
                    continue
    members = {app for by_app in ports.values() for app in by_app}
    if not members:
        return {}
    info = {row.id: row for row in conn.execute(select(CI.c.id, CI.c.ci_class, CI.c.name, CI.c.attributes).where(
        id_in(conn, CI.c.id, list(members)), CI.c.ci_class.in_(apps)))}
    found: dict[uuid.UUID, dict[Kind, set[uuid.UUID]]] = defaultdict(lambda: defaultdict(set))
    for service, by_app in ports.items():
        for app, app_ports in by_app.items():
            row = info.get(app)
            if row is None:
                continue
            for port in app_ports:
                found[service][Kind(row.ci_class, kind_of(row.name, row.attributes), port)].add(app)
    return found


def _karta_groups(conn: Connection, registry: Registry, dependents: set[uuid.UUID]
                  ) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    """(dependent, kind digest) -> group CI of the groups Karta made for these dependents: CIs of the
    group family sighted by source `service_mapping` in the dependent's scope (the sighting's
    `scope_key` is the dependent's id, indexed), whose `cluster_id` Karta wrote. Found by what Karta
    controls, not through the identifier index, which an administrator's identification rules may
    rebuild without `cluster_id`."""
    groups = _group_classes(registry)
    if not groups or not dependents:
        return {}
    found = {}
    scopes = sorted(str(d) for d in dependents)
    rows = [row for start in range(0, len(scopes), SCOPE_CHUNK) for row in conn.execute(
        select(CI.c.id, CI.c.attributes).join(CI_SOURCE, CI_SOURCE.c.ci_id == CI.c.id)
        .where(CI_SOURCE.c.source == SOURCE, CI_SOURCE.c.scope_key.in_(scopes[start:start + SCOPE_CHUNK]),
               CI.c.ci_class.in_(groups)))]
    for ci_id, attributes in rows:
        value = attributes.get("cluster_id") if isinstance(attributes, dict) else None
        if not isinstance(value, str) or not value.startswith(PREFIX):
            continue
        dependent, _, digest = value.removeprefix(PREFIX).partition(":")
        try:
            dependent_id = uuid.UUID(dependent)
        except ValueError:
            continue
        if dependent_id in dependents:
            found[(dependent_id, digest)] = ci_id
    return found


def _adopted(conn: Connection, registry: Registry, missing: dict[tuple[uuid.UUID, str], str]
             ) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    """The groups Karta made that its sighting's scope does not name (a group kept from before the
    scope was written, say): found by the exact `cluster_id` in the identifier index, taken back when
    Karta's sighting is on them, and their sighting's scope set right. Without this, creating the
    group again would clash with its own identifier at every pass."""
    info = registry.classes.get(GROUP_CLASS)
    if info is None or not missing:
        return {}
    by_value = {value: key for key, value in missing.items()}
    hits = dict(conn.execute(select(IDENT.c.value, IDENT.c.ci_id).where(
        IDENT.c.family == info.family, IDENT.c.key == "cluster_id", IDENT.c.value.in_(sorted(by_value)))).all())
    ours = karta_owned(conn, hits.values())
    adopted = {}
    for value, ci_id in hits.items():
        if ci_id in ours:
            key = by_value[value]
            adopted[key] = ci_id
            conn.execute(update(CI_SOURCE).where(CI_SOURCE.c.ci_id == ci_id, CI_SOURCE.c.source == SOURCE)
                         .values(scope_key=str(key[0])))
    return adopted


def _group_classes(registry: Registry) -> list[str]:
    """The classes of the family the `cluster` class belongs to (a redundancy group's)."""
    info = registry.classes.get(GROUP_CLASS)
    if info is None:
        return []
    return [name for name, other in registry.classes.items() if other.family == info.family]


def keep(uow: UnitOfWork, registry: Registry, dependents: Iterable[uuid.UUID],
         services: Iterable[uuid.UUID] = ()) -> int:
    """Bring the groups of these applications and services in step; returns how many groups were
    created, changed or removed. An application that is no longer in any service's map (entry or
    applications layer) keeps no group, nor does a service that is no longer mapped."""
    conn = uow.conn
    apps, services = set(dependents), set(services)
    candidates = apps | services
    if not candidates:
        return 0
    mapped = set(conn.execute(select(MEMBER.c.ci_id).where(
        id_in(conn, MEMBER.c.ci_id, list(apps)), MEMBER.c.layer.in_(DEPENDENT_LAYERS))).scalars()) if apps else set()
    mapped_services = set(conn.execute(select(STATE.c.service_id).where(
        id_in(conn, STATE.c.service_id, list(services)))).scalars()) if services else set()
    wanted = wanted_groups(conn, registry, mapped, mapped_services)
    wanted_digests = {(dependent, kind.digest()): (dependent, kind, members)
                      for dependent, kinds in wanted.items() for kind, members in kinds.items()}
    existing = _karta_groups(conn, registry, candidates)
    existing.update(_adopted(conn, registry, {key: cluster_id(dependent, kind)
                                              for key, (dependent, kind, _) in wanted_digests.items()
                                              if key not in existing}))
    names = {row.id: row.name for row in conn.execute(select(CI.c.id, CI.c.name).where(
        id_in(conn, CI.c.id, list(wanted))))}
    changed = 0
    for key in sorted(existing.keys() - wanted_digests.keys(), key=str):
        changed += _guarded(uow, existing[key], lambda group=existing[key]: _retire(uow, group))
    for key in sorted(wanted_digests, key=str):
        dependent, kind, members = wanted_digests[key]

        def in_step(group=existing.get(key), dependent=dependent, kind=kind, members=members) -> int:
            if group is None:
                group = _create_group(uow, registry, dependent, names.get(dependent), kind)
                if group is None:
                    return 0
            return _members_in_step(uow, dependent, group, members)

        changed += _guarded(uow, key, in_step)
    return changed


def _guarded(uow: UnitOfWork, what: Any, work) -> int:
    """One group's work in a savepoint: if it fails (an identifier an administrator's rules made
    clash, a schema that refuses the group), that group is left as it was and logged, and the maps
    written in the same transaction still commit; it is tried again when the service is next
    refreshed (a change to its map), not on a timer."""
    try:
        with uow.savepoint():
            return work()
    except (Conflict, InvalidInput) as exc:
        log.warning("redundancy group %s left as it was: %s", what, exc)
        return 0


def _create_group(uow: UnitOfWork, registry: Registry, dependent: uuid.UUID, dependent_name: str | None,
                  kind: Kind) -> uuid.UUID | None:
    conn = uow.conn
    cls = registry.classes.get(GROUP_CLASS)
    if cls is None:
        return None
    name = f"{kind.name}:{kind.port} instances behind {dependent_name or dependent}"[:MAX_NAME]
    attributes = {"cluster_id": cluster_id(dependent, kind), "min_members": DEFAULT_MIN_MEMBERS,
                  "redundancy_of": {"dependent": str(dependent), "class": kind.ci_class, "kind": kind.name,
                                    "port": kind.port}}
    errors = cls.validation_errors(attributes)
    if errors:
        raise InvalidInput(f"the class {GROUP_CLASS} refuses Karta's group: {errors[0]['field']}: "
                           f"{errors[0]['message']}", errors)
    stamp = {"source": SOURCE, "at": uow.now.isoformat()}
    row = insert_ci(uow, cls, {"name": name, "status": "active", "environment": None, "criticality": None,
                               "owner": None, "tags": [], "attributes": attributes, "first_seen": uow.now,
                               "last_seen": uow.now}, {field: stamp for field in ("name", *attributes)})
    conn.execute(insert(CI_SOURCE), {"ci_id": row["id"], "source": SOURCE, "scope_key": str(dependent), "first_seen": uow.now,
                                     "last_seen": uow.now, "last_run_id": SOURCE, "missed_runs": 0})
    uow.record("ci", row["id"], "create", creation_diff(row))
    return row["id"]


def _members_in_step(uow: UnitOfWork, dependent: uuid.UUID, group: uuid.UUID, members: set[uuid.UUID]) -> int:
    conn = uow.conn
    owned_members = owned_relationships(conn, [group], "member_of", by="target_id").get(group, {})
    gone = [row for member, row in sorted(owned_members.items()) if uuid.UUID(member) not in members]
    ended = end_relationships(uow, gone)
    created = 0
    for member in sorted(members - {uuid.UUID(m) for m in owned_members}):
        created += create_owned(uow, member, [group], "member_of")
    created += create_owned(uow, dependent, [group], "depends_on")
    return 1 if ended or created else 0


def _retire(uow: UnitOfWork, group: uuid.UUID) -> int:
    """End Karta's relationships of a group that no longer holds. Its CI is deleted only when it is
    Karta's alone: no field a person set (its provenance: a raised min_members stays, to be found and
    refilled when the instances return) and no relationship but Karta's, checked with the group
    locked, so that a person's relationship committed meanwhile is seen."""
    conn = uow.conn
    owned = [row for rows in (owned_relationships(conn, [group], "member_of", by="target_id"),
                              owned_relationships(conn, [group], "depends_on", by="target_id"))
             for row in rows.get(group, {}).values()]
    ended = end_relationships(uow, owned)
    row = conn.execute(locked(conn, select(CI.c.id, CI.c.provenance).where(CI.c.id == group))).first()
    if row is None:
        return 1 if ended else 0
    edited = any(isinstance(stamp, dict) and stamp.get("source") != SOURCE for stamp in (row.provenance or {}).values())
    others = conn.execute(select(REL.c.id).where(or_(REL.c.source_id == group, REL.c.target_id == group)).limit(1)).first()
    if edited or others is not None:
        return 1 if ended else 0
    delete_ci(uow, group, None)
    return 1
