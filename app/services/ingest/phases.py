"""One batch, in named phases: plan -> identify -> reconcile -> apply -> close.

- plan: what the batch asks for. The run it belongs to, the precedence rules, the reports the database
  confirms unchanged by their fingerprint (fingerprints.py), and the rest validated and read into
  planned items (identification rule 1). Items refused here are the batch's per-item errors.
- identify: which CI each planned item is (identification.py), from one lookup of every identifier;
  the CIs found are read and locked in id order. Also read here, before any write: what the
  relationships need (relationships.py).
- reconcile: pure. For each machine, a new CI or the merge of the reports into the stored one
  (reconciliation.py), with the change records, the identifiers to claim and the sightings to write.
- apply: the writes, queued in order on the batch's writer (store.py) while this thread plans the
  relationships; then the sightings, which store each report's fingerprint when it applied whole.
- close: the counts, the scope closed when the run is complete (staleness.py), the run recorded.

Only plan, identify, apply and close touch the database, and only through store.py (and the run and
staleness modules); reconcile and the helpers it uses run without one (tests/test_ingest_phases.py).
A phase raises LostRace when another transaction committed a change this one read before: the
whole batch runs again (pipeline.py).
"""

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection

from app.models.discovery import MANUAL_SOURCE
from app.models.ingest import IngestItem, IngestRelationship
from app.models.types import new_id
from app.services import cis as ci_service
from app.services import group_identity
from app.services.history import UnitOfWork
from app.services.identity import own_identifiers
from app.services.ingest import fingerprints, relationships, runs, store
from app.services.ingest.batch import Batch
from app.services.ingest.identification import (PlannedItem, Resolution, Triple, contradicting_rule,
                                                 group_items, non_unique_held, plan_items, resolve)
from app.services.ingest.outcome import ClassCounts, Outcome, StalenessPolicy
from app.services.ingest.reconciliation import PrecedenceTable, merge
from app.services.ingest.staleness import close_scope
from app.services.registry import ClassInfo, Registry
from app.services.storable import require_storable

class LostRace(Exception):
    """A concurrent transaction committed a change this batch read before it (the batch runs again)."""


class ConfirmedOverlap(Exception):
    """An item taking the full path is the same CI as an item confirmed by its fingerprint (two
    reports of one machine in a batch): they must be reconciled together, in batch order."""


@dataclass
class Plan:
    key: str  # the scope's
    closes_scope: bool
    precedence: PrecedenceTable
    prints: fingerprints.BatchFingerprints
    confirmation: fingerprints.Confirmation
    relationships: list[tuple[int, IngestRelationship]]  # those to derive, validated
    planned: list[PlannedItem]
    counts: ClassCounts


def plan(conn: Connection, registry: Registry, batch: Batch, outcome: Outcome, *, confirm: bool) -> Plan:
    """What the batch asks for: the reports confirmed by their fingerprint, and the others validated
    and read into planned items (the ones refused are reported as the batch's errors)."""
    key = runs.scope_key(batch)
    closes = runs.closes_scope(conn, batch, key)
    precedence_rows = store.precedence_rules(conn)
    # A report confirms only within its scope: its sightings and relationships belong to that scope.
    salt = registry.digest + orjson.dumps(sorted(precedence_rows, key=lambda r: (r[0] or "", r[1] or ""))) + key.encode()
    prints = fingerprints.of_batch(batch, salt)
    confirmation = fingerprints.confirm(conn, batch, prints) if confirm else fingerprints.Confirmation()
    carried = set(confirmation.carried)
    derived_items = [index for index, ref in enumerate(batch.refs) if ref not in confirmation.refs]
    derived_relationships = [position for position in range(len(batch.relationships)) if position not in carried]
    items, derived = batch.validated(derived_items, derived_relationships)
    require_identifying_storable(items, derived, texts=not batch.text_storable(derived_items, derived_relationships))
    counts = ClassCounts()
    planned, errors = plan_items(registry, items, batch.item_storable)
    for error in errors:
        counts.item_error(outcome, *error)
    return Plan(key, closes, PrecedenceTable.from_rows(precedence_rows), prints, confirmation, derived, planned, counts)


def require_identifying_storable(items: list[tuple[int, IngestItem]], derived: list[tuple[int, IngestRelationship]], *,
                                 texts: bool) -> None:
    """422 for the whole batch when what identifies an item or a relationship cannot be stored (bad
    values inside an item's attributes are that item's error instead). Names and refs are plain
    strings: only their text can be unstorable, and only when the batch's bytes say it may be."""
    for index, item in items if texts else ():
        require_storable(item.ref, f"items.{index}.ref")
        require_storable(item.ci_class, f"items.{index}.class")
    for position, rel in derived:
        for name in ("source", "target", "type") if texts else ():
            require_storable(getattr(rel, name), f"relationships.{position}.{name}")
        if rel.attributes:
            require_storable(rel.attributes, f"relationships.{position}.attributes")


@dataclass
class Identification:
    resolutions: list[Resolution]
    rows: dict[uuid.UUID, Any]  # the CIs found, locked
    index: dict[Triple, uuid.UUID]  # the identifiers found
    ignored_held: set[Triple]  # addresses several machines of the batch claim
    reads: relationships.RelationshipReads
    karta_groups: set[uuid.UUID] = field(default_factory=set)  # of the CIs found, the groups Karta made
    # the strong identifiers of the CIs found by a held value (store.strongly_identified)
    strong_of: dict[uuid.UUID, set[Triple]] = field(default_factory=dict)


def identify(conn: Connection, registry: Registry, batch: Batch, the_plan: Plan, outcome: Outcome) -> Identification:
    """Which CI each planned item is (identification.py), the CIs found read and locked; and what the
    relationships need, read now so that the writes can run in the background from then on."""
    planned, confirmed = the_plan.planned, the_plan.confirmation
    groups = group_items(planned)
    ignored_held = non_unique_held(planned)
    index = store.find_identifiers(conn, list({t for item in planned for t in item.strong + item.held}))
    confirmed_cis = confirmed.cis
    if confirmed_cis and fingerprints.may_meet_confirmed(planned, index, confirmed_cis):
        raise ConfirmedOverlap
    held_found = {index[t] for item in planned for t in item.held if t in index}
    held_keys = {k for cls in registry.classes.values() for k in cls.effective_held}
    strong_cis = store.strongly_identified(conn, held_found, held_keys)
    resolutions = _resolve(conn, registry, planned, groups, index, strong_cis, ignored_held)
    rows = store.load_cis(conn, {r.ci_id for r in resolutions if r.ci_id is not None})
    for resolution in resolutions:
        if resolution.ci_id is not None and resolution.ci_id in rows:
            if resolution.by_secondary and not _names_as_own(registry, resolution, rows[resolution.ci_id]):
                raise LostRace(f"CI {resolution.ci_id} stopped naming the MACs it was found by while this batch "
                               "identified it")
            contradiction = contradicting_rule(resolution, rows[resolution.ci_id])
            if contradiction:
                resolution.conflict = [str(resolution.ci_id)]
                resolution.reason = contradiction
    if any(resolution.ci_id in confirmed_cis for resolution in resolutions):
        raise ConfirmedOverlap
    for ref, ci_class in zip(batch.refs, batch.classes):
        if ref in confirmed.refs:
            outcome.refs[ref] = confirmed.refs[ref]
            the_plan.counts[ci_class]["unchanged"] += 1
    identified = {item.ref: resolution.ci_id for resolution in resolutions if resolution.ci_id is not None
                  and not resolution.conflict for item in resolution.items}
    reads = relationships.read(conn, registry, set(batch.refs), the_plan.relationships, {**identified, **outcome.refs})
    return Identification(resolutions, rows, index, ignored_held, reads, group_identity.karta_groups(conn, rows),
                          strong_cis)


def _own_triples(registry: Registry, row: Any) -> set[Triple]:
    """The strong identifiers a stored CI names by its own facts (identity.own_identifiers), as triples."""
    cls = registry.classes.get(row["ci_class"])
    if cls is None:
        return set()
    return {(cls.identity_family, key, value)
            for key, value in own_identifiers(cls, row["name"], row["environment"], row["attributes"])}


def _names_as_own(registry: Registry, resolution: Resolution, row: Any) -> bool:
    """Whether the CI a group was found by its interface MACs still names them all as its own (read again,
    locked: another transaction may have changed it since identification read it unlocked)."""
    macs = {t for item in resolution.items for t in item.held if t[1] in item.cls.single_keys}
    return macs <= _own_triples(registry, row)


def _resolve(conn: Connection, registry: Registry, planned: list[PlannedItem], groups: list[list[PlannedItem]],
             index: dict[Triple, uuid.UUID], strong_cis: dict[uuid.UUID, set[Triple]],
             ignored_held: set[Triple]) -> list[Resolution]:
    """identification.resolve for each group, knowing which CIs found by a secondary value (a router's
    interface MAC) name it as their own. Such a match that a stronger rule contradicts (the CI's serial
    is another) is no match: the group is resolved as without it, two machines, no conflict."""
    secondary_found: set[uuid.UUID] = set()
    for item in planned:  # only an item its strong identifiers do not find can need it
        if item.strong and item.held and not any(t in index for t in item.strong):
            keys = item.cls.single_keys
            secondary_found.update(index[t] for t in item.held if t[1] in keys and t in index)
    peeked = store.peek_cis(conn, secondary_found)
    own = {ci_id: _own_triples(registry, row) for ci_id, row in peeked.items()}
    resolutions = []
    for group in groups:
        resolution = resolve(group, index, strong_cis, ignored_held, own)
        if resolution.by_secondary and contradicting_rule(resolution, peeked[resolution.ci_id]):
            resolution = resolve(group, index, strong_cis, ignored_held)
        resolutions.append(resolution)
    return resolutions


@dataclass
class Changes:
    """What reconciling the batch's machines decided, to be written by `apply`."""

    creates: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    seen: set[uuid.UUID] = field(default_factory=set)  # every CI this batch derived
    versions: dict[uuid.UUID, int] = field(default_factory=dict)  # each CI's version once applied
    reported_by: dict[uuid.UUID, list[str]] = field(default_factory=lambda: defaultdict(list))
    strong_claims: list[tuple[Triple, uuid.UUID]] = field(default_factory=list)
    held_claims: list[tuple[Triple, uuid.UUID]] = field(default_factory=list)
    # secondary values claimed: (triple, new holder, the holder identification saw, or None)
    secondary_claims: list[tuple[Triple, uuid.UUID, uuid.UUID | None]] = field(default_factory=list)
    records: list[tuple[str, uuid.UUID, str, dict]] = field(default_factory=list)  # change records, in order

    @property
    def new_cis(self) -> set[uuid.UUID]:
        return {row["id"] for row in self.creates}


def reconcile(registry: Registry, the_plan: Plan, found: Identification, outcome: Outcome, *, source: str,
              now) -> Changes:
    """Pure: for each machine, the CI to create or the stored one's merge with its reports (precedence
    per attribute, reconciliation.py); conflicts and schema violations reported, never applied."""
    changes, counts = Changes(), the_plan.counts
    for resolution in found.resolutions:
        if resolution.conflict:
            for item in resolution.items:
                outcome.conflicts.append({"ref": item.ref, "class": item.cls.name, "candidates": resolution.conflict,
                                          "message": resolution.reason or "its identifiers match several CIs; nothing was merged"})
                counts[item.cls.name]["conflicts"] += 1
            continue
        row = found.rows.get(resolution.ci_id) if resolution.ci_id is not None else None
        if resolution.ci_id is not None and row is None:
            raise LostRace(f"CI {resolution.ci_id} was deleted while this batch identified it")
        if row is None:
            ci_id, action = _create(resolution, changes, outcome, counts, source=source, now=now), "created"
        else:
            ci_id, action = row["id"], _update(registry, the_plan.precedence, resolution, row, changes, outcome, counts,
                                              source=source, now=now, karta_group=row["id"] in found.karta_groups)
        if ci_id is None or action is None:
            continue  # refused: by the class's schema, or as a change of what identifies a Karta group
        changes.seen.add(ci_id)
        for item in resolution.items:
            changes.reported_by[ci_id].append(item.ref)
            outcome.refs[item.ref] = ci_id
            counts[item.cls.name][action] += 1
            changes.strong_claims.extend((t, ci_id) for t in item.strong if t not in found.index)
            for t in item.held:
                if t in found.ignored_held or found.index.get(t) == ci_id:
                    continue
                if t[1] not in item.cls.single_keys:
                    changes.held_claims.append((t, ci_id))
                elif not _another_machines(found.index.get(t), found.strong_of, resolution):
                    # A secondary value (a key the class is identified by): taken only from the holder
                    # seen now, so a machine that names it strong in a batch committed meanwhile keeps it.
                    changes.secondary_claims.append((t, ci_id, found.index.get(t)))
                # else left with that machine: this report is not confirmed (apply: record_sightings)
    return changes


def _another_machines(holder: uuid.UUID | None, strong_of: dict[uuid.UUID, set[Triple]], resolution: Resolution) -> bool:
    """Whether the holder of a secondary value (a router's interface MAC: identity.SECONDARY, indexed
    under a key its class identifies by) is another machine: it is taken over from a CI that is a
    sighting of this one (nmap's of that interface: strong identifiers all among the group's values),
    never from one known by others of its own (an SSH host naming that MAC among its own): that one
    keeps it, and neither is refused for it."""
    if holder is None:
        return False
    reported = {t for item in resolution.items for t in (*item.strong, *item.held)}
    return not strong_of.get(holder, set()) <= reported


def _schema_refuses(cls: ClassInfo, attributes: dict[str, Any], resolution: Resolution, outcome: Outcome,
                    counts: ClassCounts) -> bool:
    """Report a schema violation against every item of the group; True when there is one."""
    return _refused(cls.validation_errors(attributes), resolution, outcome, counts)


def _refused(errors: list[dict[str, str]], resolution: Resolution, outcome: Outcome, counts: ClassCounts) -> bool:
    """Report the first of `errors` against every item of the group; True when there is one."""
    for item in resolution.items if errors else ():
        counts.item_error(outcome, item.cls.name, item.index, item.ref, errors[0]["field"], errors[0]["message"])
    return bool(errors)


def _create(resolution: Resolution, changes: Changes, outcome: Outcome, counts: ClassCounts, *, source: str,
            now) -> uuid.UUID | None:
    first, cls = resolution.items[0], resolution.items[0].cls
    merged_facts: dict[str, Any] = {}
    for item in resolution.items:
        merged_facts.update(item.facts)
    if _schema_refuses(cls, merged_facts, resolution, outcome, counts):
        return None
    ci_id = new_id()
    stamp = {"source": source, "at": now.isoformat()}
    row = {
        "id": ci_id, "ci_class": cls.name, "name": resolution.items[-1].name, "status": "active",
        "environment": first.environment, "criticality": None, "owner": first.owner, "tags": [],
        "attributes": merged_facts, "first_seen": now, "last_seen": now, "created_at": now,
        "updated_at": now, "version": 1, "provenance": {k: stamp for k in ["name", *merged_facts]},
    }
    changes.creates.append(row)
    changes.records.append(("ci", ci_id, "create", ci_service.creation_diff(row)))
    changes.versions[ci_id] = 1
    return ci_id


def _update(registry: Registry, precedence: PrecedenceTable, resolution: Resolution, row: Any, changes: Changes,
            outcome: Outcome, counts: ClassCounts, *, source: str, now, karta_group: bool = False) -> str | None:
    """Merges the group's reports into the stored CI; its action ("updated" or "unchanged"), or None
    when the result breaks the class's schema or would change what identifies a redundancy group
    Karta made (`karta_group`: app.services.group_identity)."""
    ci_id, cls = row["id"], resolution.items[0].cls
    stored_cls = registry.classes.get(row["ci_class"], cls)
    new_class = class_after(precedence, stored_cls, cls, source, row["provenance"])
    name, attributes, provenance = row["name"], row["attributes"], row["provenance"]
    stamp = provenance.get(CLASS_FIELD) if isinstance(provenance, dict) else None
    # A class stamp of no source (migration 0016: a pre-0016 network_device, no evidence) is replaced by
    # the first source that reports the class again: its evidence.
    unproven = (isinstance(stamp, dict) and cls.family == new_class.family
                and stamp.get("source") not in precedence.order(new_class, CLASS_FIELD)
                and source in precedence.order(new_class, CLASS_FIELD))
    if new_class.family != stored_cls.family or unproven:
        provenance = {**provenance, CLASS_FIELD: {"source": source, "at": now.isoformat()}}
    diff: dict[str, list[Any]] = {}
    provenance_changed = unproven
    for item in resolution.items:
        result = merge(precedence, new_class, source, now, name, attributes, provenance, item.name, item.facts)
        name, attributes, provenance = result.name, result.attributes, result.provenance
        for field_name, (old, new) in result.diff.items():
            diff[field_name] = [diff[field_name][0] if field_name in diff else old, new]
        provenance_changed |= result.provenance_changed
    diff = {k: v for k, v in diff.items() if v[0] != v[1]}
    if new_class.name != row["ci_class"]:
        diff["class"] = [row["ci_class"], new_class.name]
    status = row["status"]
    if status == "stale":
        diff["status"], status = ["stale", "active"], "active"
    if diff and _schema_refuses(new_class, attributes, resolution, outcome, counts):
        return None
    if karta_group and _refused(group_identity.identity_errors(row["attributes"], attributes), resolution, outcome,
                                counts):
        return None
    version = row["version"] + (1 if diff else 0)
    if diff or provenance_changed:
        changes.updates.append({"id": ci_id, "ci_class": new_class.name, "name": name, "status": status,
                                "attributes": attributes, "provenance": provenance, "version": version,
                                "updated_at": now if diff else row["updated_at"], "last_seen": now})
    if diff:
        changes.records.append(("ci", ci_id, "update", dict(sorted(diff.items()))))
    changes.versions[ci_id] = version
    return "updated" if diff else "unchanged"


CLASS_FIELD = "class"  # the provenance entry, and the precedence attribute, of a CI's class


def class_owner(precedence: PrecedenceTable, stored_cls: ClassInfo, provenance: Any) -> str | None:
    """The source a CI's class is known from: the one that set it across families (its stamp under
    CLASS_FIELD: a person's class edit or creation, ingest's change below), else the highest-ranked
    discovery source (by the precedence of 'class') that set any of its fields: the source that created
    it, or one above it that has reported on it since (and so did not contradict the class, or would
    have changed it); a person's edits count only on a CI no source ever reported on."""
    if not isinstance(provenance, dict):
        return None
    stamp = provenance.get(CLASS_FIELD)
    if isinstance(stamp, dict) and isinstance(stamp.get("source"), str):
        return stamp["source"]
    best, by_person = None, False
    for stamp in provenance.values():
        source = stamp.get("source") if isinstance(stamp, dict) else None
        if source == MANUAL_SOURCE:
            # A person's edit of another field (a name, a location) says nothing of the class: only a
            # class edit, stamped under CLASS_FIELD, pins it (or a CI nothing but people ever wrote).
            by_person = True
        elif isinstance(source, str) and (best is None or not precedence.may_overwrite(stored_cls, CLASS_FIELD, best,
                                                                                      source)):
            best = source
    return best if best is not None or not by_person else MANUAL_SOURCE


def class_after(precedence: PrecedenceTable, stored_cls: ClassInfo, reported: ClassInfo, source: str,
                provenance: Any) -> ClassInfo:
    """The class a stored CI has after `source` reports it as `reported`.

    Within a family the more specific class wins, whoever says it (an SSH agent knows it is a
    virtual_machine; nmap says server), and an ancestor or a sibling never replaces it. Across the
    families of one identity domain (app.services.registry: nmap's `server`, SNMP's `network_device`)
    the source precedence of the attribute 'class' decides, both ways: the reporter changes the class
    when it ranks at or above the source the class is known from (class_owner). By default
    manual > ssh > snmp > import > nmap (the rule migration 0018 writes): SNMP's network_device
    replaces nmap's guess and nmap never undoes it, nor a class a person's sheet gave; a server SSH or a
    person knows stays one; SSH or a person saying otherwise later wins."""
    if reported.name == stored_cls.name or reported.name in stored_cls.descendants:
        return reported
    if reported.family == stored_cls.family:
        return stored_cls
    owner = class_owner(precedence, stored_cls, provenance)
    # Only a source ranked above the owner: the owner itself changing its mind across families (nmap's
    # OS guess differing between runs) would flip the class on every run.
    if source != owner and precedence.may_overwrite(stored_cls, CLASS_FIELD, source, owner):
        return reported
    return stored_cls


def apply(uow: UnitOfWork, registry: Registry, batch: Batch, the_plan: Plan, found: Identification, changes: Changes,
          outcome: Outcome, *, background: bool = True) -> None:
    """Writes what reconcile decided, in order on the batch's writer (store.Writes: the database works
    while this thread plans the relationships), then the sightings of every CI derived or confirmed."""
    for record in changes.records:
        uow.record(*record)
    conn, now, source, key, prints = uow.conn, uow.now, batch.source, the_plan.key, the_plan.prints
    confirmed = the_plan.confirmation
    # Each (source, target, type) a confirmed report carried counts once.
    carried_count = len({batch.ends[position] for position in confirmed.carried})
    new_cis = changes.new_cis
    planned_by_ref = {item.ref: item for item in the_plan.planned}
    with store.Writes(conn, background=background) as writes:
        writes.submit(store.insert_cis, changes.creates)
        writes.submit(store.update_cis, changes.updates)
        writes.submit(store.touch_cis, changes.seen - {row["id"] for row in changes.updates} - new_cis, now)
        writes.submit(store.claim_identifiers, changes.strong_claims, changes.held_claims, changes.secondary_claims)
        checked = relationships.plan(registry, set(batch.refs), the_plan.relationships, found.reads, outcome, prints)
        relationships.write(uow, writes, checked, carried_count, outcome, key, prints, new_cis=new_cis)
        failed_anchors = checked.failed_anchors

        def record_sightings(conn: Connection) -> None:
            # A fingerprint is kept only for a report that was applied whole: one item for the CI, and
            # every relationship anchored on it applied. Anything less must be derived again next time.
            # An address another batch took since this one read the index must be taken back by the
            # next report, so that report cannot be confirmed; nor can one that left a value with
            # another machine (_another_machines): once that machine stops naming it, the same report
            # must take it.
            expected = {t: ci_id for ci_id in changes.seen for ref in changes.reported_by[ci_id]
                        for t in planned_by_ref[ref].held if t not in found.ignored_held}
            held_now = store.find_identifiers(conn, list(expected))
            # A new CI's interface MAC that nobody held when this batch identified it, indexed by another
            # CI since (an SSH host committed meanwhile): identification would have found that host by it;
            # left so, the new CI's chassis MAC would keep the two apart for good. Decided again.
            raced = [t for ci_id in new_cis for ref in changes.reported_by[ci_id] for t in planned_by_ref[ref].held
                     if t[1] in planned_by_ref[ref].cls.single_keys and t not in found.index
                     and held_now.get(t) not in (None, ci_id)]
            if raced:
                raise LostRace(f"{raced[0][1]} '{raced[0][2]}' was indexed by another CI while this batch identified it")
            lost = {ci_id for t, ci_id in expected.items() if held_now.get(t) != ci_id}
            sightings = []
            for ci_id in changes.seen:
                refs = changes.reported_by[ci_id]
                whole = len(refs) == 1 and refs[0] not in failed_anchors and ci_id not in lost
                sightings.append({"ci_id": ci_id, "fingerprint": prints.by_ref.get(refs[0]) if whole else None,
                                  "ci_version": changes.versions[ci_id]})
            store.record_ci_sightings(conn, sightings, source, key, batch.run_id, now, created=new_cis)

        writes.submit(record_sightings)
        writes.submit(store.confirm_sightings, confirmed.cis, source, key, batch.run_id, now)
        writes.submit(store.forget_fingerprints, {confirmed.refs[ref] for ref in failed_anchors if ref in confirmed.refs})


def close(uow: UnitOfWork, batch: Batch, the_plan: Plan, outcome: Outcome, staleness: StalenessPolicy) -> None:
    """The batch's counts; when the run is complete, its scope closed (what it did not see ages,
    staleness.py); the run recorded."""
    outcome.counts = the_plan.counts.totals()
    if the_plan.closes_scope:
        stale, ended = close_scope(uow, source=batch.source, scope_key=the_plan.key, run_id=batch.run_id,
                                   after_runs=staleness.after_runs, after_days=staleness.after_days)
        outcome.stale, outcome.ended_relationships = [str(ci) for ci in stale], ended
    runs.record_run(uow, batch, the_plan.key, outcome)
