"""Hosts are one identity domain: network devices' identifiers move into the servers' namespace, and the
duplicates that namespace had kept apart are merged.

Until now identifiers were unique per class family, and `server` and `network_device` were two: a switch
nmap found (a `server`, by its MAC) and SNMP walked (a `network_device`, by its chassis MAC) were two CIs.
From now on the network_device family is identified in the server family's namespace
(app.services.registry.IDENTITY_DOMAINS), so its rows of ci_identifier move to family `server`.

Where that would make two CIs hold one value, they are one machine, and they are merged here rather than
left to conflict (every PATCH of either would be refused as a duplicate, and every discovery report that
names both a conflict). So are a device and a server CI whose strong identifiers are all MACs of the
device's interfaces (nmap's sighting of a router's interface, which SNMP now reports as the device's
secondary MAC, `interface_mac`). CIs linked that way form one group; in each:

* the survivor is its network_device CI (the oldest, when several): the one SNMP's cables, host
  attachments and impact hang on. It takes every other member's identifier rows, its sightings (a
  source's row it already has keeps the earliest first and latest last sighting, and forgets its
  fingerprint, so the next report is derived in full) and its relationships (one the survivor already
  has, or one between two members, is ended: deleted with its change record and kept in
  ended_relationship, as the service ends one; any other ends too, and one between its new ends
  begins, with its sightings and change record: a relationship's ends never change). Identifying attributes the survivor lacks are copied
  to it (a MAC it lacks as `interface_mac`), so that an edit of it derives the rows it now holds;
* its class is the class of the member whose class comes from the highest-ranked source (a stamp under
  provenance `class`, else the highest discovery source stamping any field (a person only on a CI
  nobody else wrote); manual > ssh > snmp > nmap > import,
  the default precedence, frozen here), the device's on a tie: a server SSH knows stays a server;
* every other member is retired (status `retired`, attribute `merged_into`: the survivor's id) and
  loses its identifying attributes (their rows are the survivor's), so that it can still be edited. Each CI changed gets one change record (actor
  `migration 0016`), so the feed and the history show what was merged where.

An address (a held identifier) a device and an unrelated server both hold stays with the server: held
values move to whoever reports them next, and a shared address never makes two machines one.

Who a class is known from (ingest/phases.class_owner) is settled before and after merging: a person's
class edit made before 0016 (the change feed shows one across the host families, which discovery never
made) is stamped `manual` as of its time; a CI of the network_device family whose class nobody stamped
and that a discovery source wrote gets a class stamp ranked below every source (before 0016 SNMP made a
network_device of any agent, a Linux host's too): the next source that reports it decides.

The downgrade moves the rows of CIs of the network_device family back to family `network_device`; a
merge is not undone (the retired CIs and the change records say what it did).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

import re
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
DEVICES, HOSTS = "network_device", "server"
ACTOR = "migration 0016"
CHUNK = 500
PRECEDENCE = ("manual", "ssh", "snmp", "nmap", "import")  # the default, as of 0016
STRONG_KEYS = ("serial_number", "product_uuid", "machine_id", "fqdn", "mac_address")

IDENT = sa.table("ci_identifier", sa.column("family"), sa.column("key"), sa.column("value"),
                 sa.column("ci_id", sa.Uuid))
CI = sa.table("ci", sa.column("id", sa.Uuid), sa.column("ci_class"), sa.column("status"),
              sa.column("attributes", JSON), sa.column("provenance", JSON), sa.column("version", sa.Integer),
              sa.column("updated_at", TS), sa.column("created_at", TS))
CLASS = sa.table("ci_class", sa.column("name"), sa.column("parent"), sa.column("held_identifiers", JSON))
SOURCE = sa.table("ci_source", sa.column("ci_id", sa.Uuid), sa.column("source"), sa.column("first_seen", TS),
                  sa.column("last_seen", TS), sa.column("fingerprint"))
REL = sa.table("relationship", sa.column("id", sa.Uuid), sa.column("source_id", sa.Uuid),
               sa.column("target_id", sa.Uuid), sa.column("type"), sa.column("attributes", JSON),
               sa.column("first_seen", TS), sa.column("last_seen", TS), sa.column("created_at", TS))
REL_SOURCE = sa.table("relationship_source", sa.column("relationship_id", sa.Uuid), sa.column("anchor_ci_id", sa.Uuid),
                      sa.column("anchor_fingerprint"))
ENDED = sa.table("ended_relationship", sa.column("relationship_id", sa.Uuid), sa.column("source_id", sa.Uuid),
                 sa.column("target_id", sa.Uuid))
CHANGE = sa.table("change_record", sa.column("at", TS), sa.column("actor"), sa.column("object_type"),
                  sa.column("object_id", sa.Uuid), sa.column("action"), sa.column("diff", JSON))


def _mac(value: object) -> str | None:
    """app.services.identifiers' MAC normalization as of 0016 (a migration keeps doing what it did)."""
    if not isinstance(value, str):
        return None
    digits = re.sub(r"[^0-9a-fA-F]", "", value).lower()
    if len(digits) != 12 or digits in ("000000000000", "ffffffffffff"):
        return None
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def _family_classes(bind, family: str) -> list[str]:
    parents = dict(bind.execute(sa.select(CLASS.c.name, CLASS.c.parent)).all())

    def root(name: str) -> str:
        for _ in range(len(parents) + 1):
            if parents.get(name) is None:
                return name
            name = parents[name]
        return name

    return sorted(name for name in parents if root(name) == family)


def _chunks(values: list, size: int = CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _rank(source: object) -> int:
    return PRECEDENCE.index(source) if source in PRECEDENCE else len(PRECEDENCE)


def _class_rank(provenance: object) -> int:
    """The rank of the source a CI's class is known from (ingest/phases.class_owner, as of 0016)."""
    if not isinstance(provenance, dict):
        return len(PRECEDENCE)
    stamp = provenance.get("class")
    if isinstance(stamp, dict) and isinstance(stamp.get("source"), str):
        return _rank(stamp["source"])
    sources = {s.get("source") for s in provenance.values() if isinstance(s, dict)}
    # A person's edit of another field says nothing of the class, unless nothing but people wrote the CI.
    found = [_rank(source) for source in sources - {"manual"}] or [_rank(source) for source in sources]
    return min(found, default=len(PRECEDENCE))


# discovery.snmp.parse.VIRTUAL_MAC_PREFIXES as of 0016: MACs every router of a redundancy group carries
VIRTUAL_MAC_PREFIXES = ("00:00:5e:00:01:", "00:00:5e:00:02:", "00:00:0c:07:ac:", "00:00:0c:9f:f")


def _interface_macs(attributes: dict) -> set[str]:
    """The MACs of a device's interfaces that can name it alone (discovery.snmp.batch.secondary_macs as of
    0016): unicast, universally administered, no virtual router's."""
    interfaces = attributes.get("interfaces")
    found = {m for i in interfaces if isinstance(i, dict) and (m := _mac(i.get("mac_address")))} \
        if isinstance(interfaces, list) else set()
    return {m for m in found if not int(m[:2], 16) & 3 and not m.startswith(VIRTUAL_MAC_PREFIXES)}


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _as_list(value) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


class _Groups:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, node):
        self.parent.setdefault(node, node)
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, a, b) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b, key=str)] = min(root_a, root_b, key=str)


def upgrade() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    _stamp_persons_class(bind)
    held_keys = {key for (keys,) in bind.execute(sa.select(CLASS.c.held_identifiers)) for key in keys or ()}
    device_rows = bind.execute(sa.select(IDENT.c.key, IDENT.c.value, IDENT.c.ci_id)
                               .where(IDENT.c.family == DEVICES)).all()
    groups = _Groups()
    # A device row whose value a server-family CI holds: one machine.
    by_key: dict[str, list] = {}
    for key, value, _ in device_rows:
        by_key.setdefault(key, []).append(value)
    device_of = {(key, value): ci_id for key, value, ci_id in device_rows}
    for key, values in by_key.items():
        for chunk in _chunks(sorted(set(values))):
            for value, ci_id in bind.execute(sa.select(IDENT.c.value, IDENT.c.ci_id).where(
                    IDENT.c.family == HOSTS, IDENT.c.key == key, IDENT.c.value.in_(chunk))):
                if key not in held_keys:
                    groups.union(device_of[(key, value)], ci_id)
    # A server CI known (strongly) by nothing but MACs of one device's interfaces: nmap's sighting of them.
    device_classes = _family_classes(bind, DEVICES)
    interface_owners: dict[str, set] = {}
    for chunk in _chunks(device_classes):
        for ci_id, attributes in bind.execute(sa.select(CI.c.id, CI.c.attributes).where(CI.c.ci_class.in_(chunk))
                                              .order_by(CI.c.id)):
            for found in _interface_macs(attributes or {}):
                interface_owners.setdefault(found, set()).add(ci_id)
    # A MAC two devices carry (MLAG, a shared virtual MAC) names neither: it joins nothing.
    interface_owner = {mac: next(iter(owners)) for mac, owners in interface_owners.items() if len(owners) == 1}
    macs = sorted(interface_owner)
    candidates: dict = {}
    for chunk in _chunks(macs):
        for value, ci_id in bind.execute(sa.select(IDENT.c.value, IDENT.c.ci_id).where(
                IDENT.c.family == HOSTS, IDENT.c.key == "mac_address", IDENT.c.value.in_(chunk))):
            candidates.setdefault(ci_id, set()).add(interface_owner[value])
    for chunk in _chunks(sorted(candidates, key=str)):
        strong: dict = {}
        for key, value, ci_id in bind.execute(sa.select(IDENT.c.key, IDENT.c.value, IDENT.c.ci_id).where(
                IDENT.c.family == HOSTS, IDENT.c.ci_id.in_(chunk))):
            if key not in held_keys:
                strong.setdefault(ci_id, set()).add((key, value))
        for ci_id in chunk:
            owners = candidates[ci_id]
            pairs = strong.get(ci_id, set())
            if len(owners) == 1 and all(k == "mac_address" and v in interface_owner for k, v in pairs):
                groups.union(next(iter(owners)), ci_id)
    members: dict = {}
    for node in list(groups.parent):
        members.setdefault(groups.find(node), set()).add(node)
    # Who made each device, decided before the merges move sightings onto it.
    by_people = _devices_made_by_people(bind, device_classes)
    for group in members.values():
        _merge(bind, sorted(group, key=str), device_classes, {ci_id for _, _, ci_id in device_rows}, now)
    # What is left of the devices' rows meets no server's strong value; a held one a server holds stays its.
    hosts = IDENT.alias("hosts")
    bind.execute(IDENT.delete().where(IDENT.c.family == DEVICES, sa.exists().where(
        hosts.c.family == HOSTS, hosts.c.key == IDENT.c.key, hosts.c.value == IDENT.c.value)))
    bind.execute(IDENT.update().where(IDENT.c.family == DEVICES).values(family=HOSTS))
    _mark_unproven_devices(bind, device_classes, by_people, now)


def _class_changes(bind) -> dict:
    """CI -> its latest class change in the change feed: (old, new, at, actor)."""
    if bind.dialect.name == "postgresql":
        has_class = sa.text("(change_record.diff -> 'class') IS NOT NULL")
    else:
        has_class = sa.text("json_type(change_record.diff, '$.class') IS NOT NULL")
    latest: dict = {}
    for object_id, at, actor, diff in bind.execute(
            sa.select(CHANGE.c.object_id, CHANGE.c.at, CHANGE.c.actor, CHANGE.c.diff).where(
                CHANGE.c.object_type == "ci", CHANGE.c.action == "update", has_class)
            .order_by(sa.text("change_record.seq"))):
        change = (diff or {}).get("class")
        if isinstance(change, list) and len(change) == 2:
            latest[object_id] = (change[0], change[1], at, actor)
    return latest


def _stamp_persons_class(bind) -> None:
    """A person's class edit made before 0016 was not stamped (main stamped no `class`): one that moved a
    CI between the two host families (which discovery never did before 0016: ingest only made a class
    more specific, an import refuses another family) is stamped `manual` at its time, where the CI still
    has that class, so the next SNMP or nmap run does not undo it (ingest/phases.class_after)."""
    hosts, devices = set(_family_classes(bind, HOSTS)), set(_family_classes(bind, DEVICES))
    crossing = {ci_id: (new, at) for ci_id, (old, new, at, actor) in _class_changes(bind).items()
                if actor != ACTOR and ((old in hosts and new in devices) or (old in devices and new in hosts))}
    for chunk in _chunks(sorted(crossing, key=str)):
        for ci_id, ci_class, provenance in bind.execute(
                sa.select(CI.c.id, CI.c.ci_class, CI.c.provenance).where(CI.c.id.in_(chunk))):
            new, at = crossing[ci_id]
            stamps = dict(provenance or {})
            if ci_class != new or isinstance(stamps.get("class"), dict):
                continue
            stamps["class"] = {"source": "manual", "at": _iso(at)}
            bind.execute(CI.update().where(CI.c.id == ci_id).values(provenance=stamps))
            bind.execute(SOURCE.update().where(SOURCE.c.ci_id == ci_id).values(fingerprint=None))


UNPROVEN = {"source": ACTOR}  # not a source name (it has a space): ranked below every source


def _unstamped(stamps: dict) -> bool:
    """No class stamp, and not a CI nothing but people wrote (theirs: ingest/phases.class_owner)."""
    return not (isinstance(stamps.get("class"), dict) or all(
        isinstance(s, dict) and s.get("source") == "manual" for s in stamps.values()))


def _devices_made_by_people(bind, device_classes: list[str]) -> set:
    found: set = set()
    for chunk in _chunks(device_classes):
        candidates = {ci_id: (dict(provenance or {}), created_at) for ci_id, provenance, created_at in bind.execute(
            sa.select(CI.c.id, CI.c.provenance, CI.c.created_at).where(CI.c.ci_class.in_(chunk))).all()
            if _unstamped(dict(provenance or {}))}
        found |= _made_by_people(bind, candidates)
    return found


def _mark_unproven_devices(bind, device_classes: list[str], by_people: set, now: datetime) -> None:
    """Before 0016 SNMP made a network_device of any agent it walked (a Linux host's net-snmp too):
    that class is no evidence of switching or routing, and the SNMP stamps it came with would keep it
    against everyone below SNMP (ingest/phases.class_owner). A CI of the network_device family whose
    class nobody stamped and that a source (not only people) wrote gets a class stamp ranked below every
    source: the next
    source that reports it decides (SNMP, reporting it again on evidence, keeps it so and stamps it)."""
    for chunk in _chunks(device_classes):
        # A person's edit of another field (a location) is no class decision.
        candidates = {ci_id: (dict(provenance or {}), created_at) for ci_id, provenance, created_at in bind.execute(
            sa.select(CI.c.id, CI.c.provenance, CI.c.created_at).where(CI.c.ci_class.in_(chunk)).order_by(CI.c.id)).all()
            if _unstamped(dict(provenance or {}))}
        for ci_id, (stamps, created_at) in candidates.items():
            if ci_id in by_people:
                # its class is a person's word, whoever reported on it since: stamped as the API now does
                stamps["class"] = {"source": "manual", "at": _iso(created_at)}
            else:
                stamps["class"] = {**UNPROVEN, "at": now.isoformat()}
            bind.execute(CI.update().where(CI.c.id == ci_id).values(provenance=stamps))
            bind.execute(SOURCE.update().where(SOURCE.c.ci_id == ci_id).values(fingerprint=None))


def _as_utc(value) -> datetime | None:
    if value is None:
        return None
    try:
        found = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def _made_by_people(bind, candidates: dict) -> set:
    """Of `candidates` (CI id -> (provenance, created_at)), those created through the CI API: a name a
    person set, and no source's sighting that began at the CI's creation time (ingest, an import
    included, records its source's sighting with the CI). A rename later keeps it so."""
    named = {ci_id: _as_utc(created_at) for ci_id, (stamps, created_at) in candidates.items()
             if isinstance(stamps.get("name"), dict) and stamps["name"].get("source") == "manual"}
    made_by_a_source = set()
    for chunk in _chunks(sorted(named, key=str)):
        for ci_id, first_seen in bind.execute(sa.select(SOURCE.c.ci_id, SOURCE.c.first_seen).where(SOURCE.c.ci_id.in_(chunk))):
            seen, made = _as_utc(first_seen), named[ci_id]
            if seen is None or made is None or abs((seen - made).total_seconds()) < 0.001:
                made_by_a_source.add(ci_id)
    return set(named) - made_by_a_source


def _merge(bind, group: list, device_classes: list[str], device_cis: set, now: datetime) -> None:
    rows = {row["id"]: dict(row) for row in bind.execute(sa.select(CI).where(CI.c.id.in_(group))).mappings()}
    # A group is joined from a device's row: one of its CIs holds network_device rows (its class of that
    # family, unless changed by hand without its rows following).
    devices = sorted((r for r in rows.values() if r["ci_class"] in device_classes or r["id"] in device_cis),
                     key=lambda r: (r["ci_class"] not in device_classes, _iso(r["created_at"]) or "", str(r["id"])))
    survivor = devices[0]
    others = [rows[ci_id] for ci_id in group if ci_id != survivor["id"] and ci_id in rows]
    # The class: the member whose class comes from the highest-ranked source, the survivor's on a tie.
    best = min([survivor, *others], key=lambda r: (_class_rank(r["provenance"]), r is not survivor))
    # Identifier rows: every member's, now the survivor's, in the servers' namespace.
    idents = bind.execute(sa.select(IDENT.c.key, IDENT.c.value).where(IDENT.c.ci_id.in_(group))).all()
    bind.execute(IDENT.delete().where(IDENT.c.ci_id.in_(group)))
    wanted = []
    for key, value in sorted(set(idents)):
        # A value an unrelated server holds (a held one: a strong one would have joined it to the group)
        # stays its (module docstring).
        if bind.execute(sa.select(IDENT.c.ci_id).where(IDENT.c.family == HOSTS, IDENT.c.key == key,
                                                       IDENT.c.value == value)).first() is None:
            wanted.append((key, value))
    if wanted:
        bind.execute(IDENT.insert(), [{"family": HOSTS, "key": k, "value": v, "ci_id": survivor["id"]}
                                      for k, v in wanted])
    # Identifying attributes the survivor lacks, so an edit derives the rows it now holds.
    attributes = dict(survivor["attributes"] or {})
    provenance = dict(survivor["provenance"] or {})
    own_macs = {m for m in map(_mac, _as_list(attributes.get("mac_address"))) if m}
    secondary = [m for m in _as_list(attributes.get("interface_mac")) if isinstance(m, str)]
    for other in others:
        theirs = other["attributes"] or {}
        stamps = other["provenance"] or {}
        for key in STRONG_KEYS:
            if key == "mac_address":
                for found in map(_mac, _as_list(theirs.get(key))):
                    if found and found not in own_macs and found not in secondary:
                        secondary.append(found)
                        if isinstance(stamps.get(key), dict):
                            provenance.setdefault("interface_mac", stamps[key])
            elif attributes.get(key) is None and theirs.get(key) is not None:
                attributes[key] = theirs[key]
                if isinstance(stamps.get(key), dict):
                    provenance[key] = stamps[key]
    if secondary:
        attributes["interface_mac"] = secondary
    # The addresses it now holds are named by its attributes too, or an edit (which derives its rows from
    # them) would drop them.
    addresses = [a for a in _as_list(attributes.get("ip_address")) if isinstance(a, str)]
    named = {a.strip() for a in addresses}
    for key, value in wanted:
        if key == "ip_address" and value not in named:
            addresses.append(value)
            named.add(value)
            stamp = next((o["provenance"]["ip_address"] for o in others
                          if isinstance((o["provenance"] or {}).get("ip_address"), dict)), None)
            if stamp is not None:
                provenance.setdefault("ip_address", stamp)
    if addresses:
        attributes["ip_address"] = addresses
    diff = {f"attributes.{key}": [(survivor["attributes"] or {}).get(key), value]
            for key, value in attributes.items() if (survivor["attributes"] or {}).get(key) != value}
    new_class = best["ci_class"]
    if new_class != survivor["ci_class"]:
        diff["class"] = [survivor["ci_class"], new_class]
        owner = (best["provenance"] or {}).get("class")
        if isinstance(owner, dict):
            provenance["class"] = owner
        else:
            ranked = min((s for s in (best["provenance"] or {}).values() if isinstance(s, dict)),
                         key=lambda s: _rank(s.get("source")), default=None)
            if ranked is not None:
                provenance["class"] = ranked
    bind.execute(CI.update().where(CI.c.id == survivor["id"]).values(
        ci_class=new_class, attributes=attributes, provenance=provenance, version=survivor["version"] + 1,
        updated_at=now))
    _record(bind, now, "ci", survivor["id"], "update", dict(sorted(diff.items())))
    for other in others:
        _retire(bind, other, survivor["id"], now)
    _move_sightings(bind, survivor["id"], [o["id"] for o in others])
    _move_relationships(bind, survivor["id"], {o["id"] for o in others}, now)


def _retire(bind, row: dict, survivor: uuid.UUID, now: datetime) -> None:
    """The member merged away: retired, without its identifying attributes (their rows are the
    survivor's now: naming them still would refuse every edit of it as a duplicate)."""
    attributes = dict(row["attributes"] or {})
    provenance = dict(row["provenance"] or {})
    diff: dict = {}
    for key in (*STRONG_KEYS, "ip_address", "interface_mac"):
        if attributes.get(key) is not None:
            diff[f"attributes.{key}"] = [attributes.pop(key), None]
            provenance.pop(key, None)
    if row["status"] != "retired":
        diff["status"] = [row["status"], "retired"]
    attributes["merged_into"] = str(survivor)  # where its identifiers, sightings and relationships went
    diff["attributes.merged_into"] = [None, str(survivor)]
    bind.execute(CI.update().where(CI.c.id == row["id"]).values(
        status="retired", attributes=attributes, provenance=provenance, version=row["version"] + 1, updated_at=now))
    _record(bind, now, "ci", row["id"], "update", dict(sorted(diff.items())))


def _move_sightings(bind, survivor: uuid.UUID, others: list) -> None:
    kept = {r["source"]: dict(r) for r in bind.execute(sa.select(SOURCE).where(SOURCE.c.ci_id == survivor)).mappings()}
    for row in bind.execute(sa.select(SOURCE).where(SOURCE.c.ci_id.in_(others))
                            .order_by(SOURCE.c.ci_id, SOURCE.c.source)).mappings().all():
        source = row["source"]
        where = sa.and_(SOURCE.c.ci_id == row["ci_id"], SOURCE.c.source == source)
        if source not in kept:
            bind.execute(SOURCE.update().where(where).values(ci_id=survivor, fingerprint=None))
            kept[source] = {**row, "ci_id": survivor}
            continue
        mine = kept[source]
        first = min(mine["first_seen"], row["first_seen"], key=_iso)
        last = max(mine["last_seen"], row["last_seen"], key=_iso)
        bind.execute(SOURCE.update().where(SOURCE.c.ci_id == survivor, SOURCE.c.source == source)
                     .values(first_seen=first, last_seen=last, fingerprint=None))
        bind.execute(SOURCE.delete().where(where))
    bind.execute(SOURCE.update().where(SOURCE.c.ci_id == survivor).values(fingerprint=None))


def _move_relationships(bind, survivor: uuid.UUID, others: set, now: datetime) -> None:
    ends = {survivor, *others}
    touching = bind.execute(sa.select(REL).where(sa.or_(REL.c.source_id.in_(ends), REL.c.target_id.in_(ends)))
                            .order_by(REL.c.id)).mappings().all()
    existing = {(r["source_id"], r["target_id"], r["type"]) for r in touching
                if r["source_id"] not in others and r["target_id"] not in others}
    for rel in touching:
        if rel["source_id"] not in others and rel["target_id"] not in others:
            continue
        source = survivor if rel["source_id"] in others else rel["source_id"]
        target = survivor if rel["target_id"] in others else rel["target_id"]
        if source == target or (source, target, rel["type"]) in existing:
            _end(bind, rel, now)
            continue
        existing.add((source, target, rel["type"]))
        # A relationship's ends never change (the live graph and the history read them from its create
        # and delete records): it ends, and one between the new ends begins, with its sightings.
        new_id = uuid.uuid4()
        bind.execute(REL.insert(), [{**dict(rel), "id": new_id, "source_id": source, "target_id": target}])
        bind.execute(REL_SOURCE.update().where(REL_SOURCE.c.relationship_id == rel["id"])
                     .values(relationship_id=new_id, anchor_fingerprint=None))
        bind.execute(REL_SOURCE.update().where(REL_SOURCE.c.relationship_id == new_id,
                                               REL_SOURCE.c.anchor_ci_id.in_(others)).values(anchor_ci_id=survivor))
        _end(bind, rel, now)
        diff = {"source": [None, str(source)], "target": [None, str(target)], "type": [None, rel["type"]]}
        for key, value in sorted((rel["attributes"] or {}).items()):
            if value is not None:
                diff[f"attributes.{key}"] = [None, value]
        for name in ("first_seen", "last_seen"):
            if rel[name] is not None:
                diff[name] = [None, _iso(rel[name])]
        _record(bind, now, "relationship", new_id, "create", diff)


def _end(bind, rel, now: datetime) -> None:
    diff = {"source": [str(rel["source_id"]), None], "target": [str(rel["target_id"]), None],
            "type": [rel["type"], None]}
    for key, value in sorted((rel["attributes"] or {}).items()):
        diff[f"attributes.{key}"] = [value, None]
    for name in ("first_seen", "last_seen"):
        if rel[name] is not None:
            diff[name] = [_iso(rel[name]), None]
    bind.execute(REL_SOURCE.delete().where(REL_SOURCE.c.relationship_id == rel["id"]))
    bind.execute(REL.delete().where(REL.c.id == rel["id"]))
    bind.execute(ENDED.insert(), [{"relationship_id": rel["id"], "source_id": rel["source_id"],
                                   "target_id": rel["target_id"]}])
    _record(bind, now, "relationship", rel["id"], "delete", diff)


def _record(bind, now: datetime, object_type: str, object_id: uuid.UUID, action: str, diff: dict) -> None:
    bind.execute(CHANGE.insert(), [{"at": now, "actor": ACTOR, "object_type": object_type, "object_id": object_id,
                                    "action": action, "diff": diff}])


def downgrade() -> None:
    bind = op.get_bind()
    for chunk in _chunks(_family_classes(bind, DEVICES)):
        bind.execute(IDENT.update().where(IDENT.c.family == HOSTS, IDENT.c.ci_id.in_(
            sa.select(CI.c.id).where(CI.c.ci_class.in_(chunk)))).values(family=DEVICES))
