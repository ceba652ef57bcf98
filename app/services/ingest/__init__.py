"""Discovery ingest: identify, reconcile and age what sources report, in bulk.

One batch is one transaction doing a fixed number of statements, whatever its size:
parse -> confirm what is reported unchanged (fingerprints.py) -> identify the rest (identification.py)
-> reconcile (reconciliation.py) -> write in bulk (store.py) -> relationships -> record the run -> close
the scope when the run is complete (staleness.py).

Idempotence: an item whose reconciled values equal the stored ones changes nothing but last_seen:
no version bump, no change record. Sending the same batch twice writes no history the second time.

Concurrency: the identifier index's primary key is the guard. Two agents reporting the same new
machine at once both try to index its serial number; the second transaction fails on the key, rolls
back and runs again, and now finds the CI the first one created. CIs being updated are locked in id
order (PostgreSQL), so overlapping batches serialize on them instead of losing an update or
deadlocking; SQLite serializes writers anyway.

Per-item errors (unknown class, no usable identifier, schema violation, a relationship to an unknown
ref, id or type) are reported with the ref and the reason while the rest of the batch applies; with
`atomic`, any error or conflict applies nothing.
"""

import hashlib
import logging
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.models import DiscoveryRun, PrecedenceRule
from app.models.types import new_id
from app.models.ingest import IngestBatch, IngestItem, IngestRelationship
from app.services.ingest.batch import Batch
from app.services import cis as ci_service
from app.services.errors import Conflict, InvalidInput, Unavailable, field_error
from app.services.storable import require_storable, storable_problem
from app.services.history import UnitOfWork, aborted_to_let_another_finish, diff_fields
from app.services.identity import held_values, identifying_facts
from app.services.identifiers import identifier_values
from app.services.ingest import fingerprints, store
from app.services.ingest.identification import (PlannedItem, contradicting_rule, group_items, non_unique_held,
                                                 resolve)
from app.services.ingest.reconciliation import PrecedenceTable, merge
from app.services.ingest.staleness import close_scope
from app.services.ingest.writes import BackgroundWrites
from app.services.registry import ClassInfo, Registry, RegistryCache
from app.services.relationships import creation_diff as relationship_creation_diff
from app.services.sightings import forget_fingerprints

log = logging.getLogger("karta.ingest")
RUN = DiscoveryRun.__table__
PRECEDENCE = PrecedenceRule.__table__
MAX_ATTEMPTS = 5  # a batch the database aborted this often to break deadlocks fails (503)
# Each race lost is a change another transaction committed, so the next attempt moves on; an operator
# deleting machines one by one while agents report them costs a batch one attempt per deletion.
MAX_RACES = 20
UNIQUE_VIOLATION = "23505"  # PostgreSQL's; SQLite serializes writers, so it cannot lose such a race
# A run keeps at most this many conflicts and errors (a broken agent must not grow a row without bound).
MAX_RECORDED_PROBLEMS = 1000


class AtomicBatchFailed(InvalidInput):
    pass


@dataclass
class StalenessPolicy:
    after_runs: int = 3
    after_days: float = 14.0


@dataclass
class Outcome:
    run_id: str
    source: str
    dry_run: bool
    applied: bool = True
    counts: dict[str, Any] = field(default_factory=dict)
    relationships: dict[str, int] = field(default_factory=dict)
    refs: dict[str, uuid.UUID] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    ended_relationships: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def scope_key(batch: Batch) -> str:
    canonical = orjson.dumps(batch.scope.model_dump(), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


def ingest(engine: Engine, registry_cache: RegistryCache, batch: Batch | IngestBatch, *, actor: str,
           dry_run: bool = False, staleness: StalenessPolicy | None = None) -> Outcome:
    """Apply one batch, retrying when a concurrent batch won a race on an identifier."""
    if isinstance(batch, IngestBatch):
        batch = Batch.from_model(batch)
    staleness = staleness or StalenessPolicy()
    deadlocks = 0
    for attempt in range(1, MAX_RACES + 1):
        try:
            try:
                return _ingest_once(engine, registry_cache, batch, actor=actor, dry_run=dry_run, staleness=staleness,
                                    confirm=True)
            except _ConfirmedOverlap:  # rare: derive the whole batch instead
                return _ingest_once(engine, registry_cache, batch, actor=actor, dry_run=dry_run, staleness=staleness,
                                    confirm=False)
        except (_LostRace, IntegrityError) as exc:
            # Another transaction committed what this one raced: an identifier or a relationship it
            # inserted first (a unique key refused this one's), or the deletion of a CI this one
            # identified. The next attempt sees it. Any other integrity error is a fault: raised.
            if isinstance(exc, IntegrityError) and getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
                raise
            log.info("ingest %s: lost a race to a concurrent change (%s); attempt %d", batch.run_id,
                     getattr(exc, "orig", exc), attempt + 1)
        except DBAPIError as exc:
            deadlocks += 1
            if not aborted_to_let_another_finish(exc) or deadlocks == MAX_ATTEMPTS:
                raise
            log.info("ingest %s: aborted by the database (%s); attempt %d", batch.run_id, type(exc.orig).__name__,
                     attempt + 1)
    raise Unavailable(f"The CIs of this batch changed under it {MAX_RACES} times in a row (other batches or "
                      "deletions of the same machines); nothing was applied. Send it again.")


class _LostRace(Exception):
    """A concurrent transaction committed a change this batch read before it (the batch runs again)."""


class _Rollback(Exception):
    """Ends the unit of work without committing (dry runs, failed atomic batches)."""


class _ConfirmedOverlap(Exception):
    """An item taking the full path is the same CI as an item confirmed by its fingerprint (two
    reports of one machine in a batch): they must be reconciled together, in batch order."""


def _ingest_once(engine: Engine, registry_cache: RegistryCache, batch: Batch, *, actor: str, dry_run: bool,
                 staleness: StalenessPolicy, confirm: bool) -> Outcome:
    outcome = Outcome(run_id=batch.run_id, source=batch.source, dry_run=dry_run)
    try:
        with UnitOfWork(engine, actor) as uow:
            registry = registry_cache.get(conn=uow.conn)
            if any(ci_class is not None and ci_class not in registry.classes for ci_class in batch.classes):
                registry = registry_cache.reload(conn=uow.conn)  # another worker may have just added it
            _apply(uow, registry, batch, outcome, staleness, confirm=confirm)
            failed = outcome.errors or outcome.conflicts
            if batch.atomic and failed:
                outcome.applied = False
                raise _Rollback
            if dry_run:
                raise _Rollback
    except _Rollback:
        pass
    if batch.atomic and not outcome.applied:
        raise AtomicBatchFailed(
            f"Atomic batch not applied: {len(outcome.errors)} error(s) and {len(outcome.conflicts)} conflict(s).",
            [field_error(e.get("field", "items"), e["message"]) for e in outcome.errors],
            conflicts=outcome.conflicts, outcome=outcome.as_dict(),
        )
    return outcome


def _item_error(outcome: Outcome, counts: dict[str, Counter], ci_class: str, index: int, ref: str,
                field_name: str, message: str) -> None:
    outcome.errors.append({"ref": ref, "field": f"items.{index}.{field_name}", "message": message})
    counts[ci_class]["errors"] += 1


def _schema_refuses(cls: ClassInfo, attributes: dict[str, Any], resolution, outcome: Outcome,
                    counts: dict[str, Counter]) -> bool:
    """Report a schema violation against every item of the group; True when there is one."""
    errors = cls.validation_errors(attributes)
    for item in resolution.items if errors else ():
        _item_error(outcome, counts, item.cls.name, item.index, item.ref, errors[0]["field"], errors[0]["message"])
    return bool(errors)


def _plan_items(registry: Registry, batch: Batch, items: list[tuple[int, IngestItem]], outcome: Outcome,
                counts: dict[str, Counter]) -> list[PlannedItem]:
    planned, refs = [], set()
    for index, item in items:
        def refuse(field_name: str, message: str) -> None:
            _item_error(outcome, counts, item.ci_class, index, item.ref, field_name, message)  # noqa: B023

        if item.ref in refs:
            refuse("ref", f"ref '{item.ref}' appears twice in the batch")
            continue
        refs.add(item.ref)
        cls = registry.classes.get(item.ci_class)
        if cls is None:
            refuse("class", f"unknown class '{item.ci_class}'")
            continue
        facts = {**item.attributes, **item.identifiers}
        problem = None if batch.item_storable(index) else storable_problem(
            [item.name, item.environment, item.owner, facts], "item")
        if problem:
            where, reason = problem
            field_name = {"item.0": "name", "item.1": "environment", "item.2": "owner"}.get(
                where, where.replace("item.3", "attributes", 1))
            refuse(field_name, reason)
            continue
        identifying = identifying_facts(item.name, item.environment, facts)
        strong = [(cls.family, k, v) for k, v in identifier_values(cls.effective_rules, identifying)]
        held = [(cls.family, k, v) for k, v in held_values(cls, facts)]
        if not strong and not held:
            usable = [" + ".join(rule) for rule in cls.effective_rules] + list(cls.effective_held)
            refuse("identifiers",
                   f"no identifier usable for class '{cls.name}': give one of {', '.join(usable)} "
                   "(placeholder values such as 'Default string' or loopback addresses do not count)")
            continue
        planned.append(PlannedItem(index=index, ref=item.ref, cls=cls, name=item.name, facts=facts,
                                   environment=item.environment, owner=item.owner, strong=strong, held=held))
    return planned


def _apply(uow: UnitOfWork, registry: Registry, batch: Batch, outcome: Outcome, staleness: StalenessPolicy, *,
           confirm: bool) -> None:
    conn, now, source = uow.conn, uow.now, batch.source
    key = scope_key(batch)
    previous = conn.execute(select(RUN.c.source, RUN.c.scope_key, RUN.c.complete).where(RUN.c.id == batch.run_id)).first()
    # An agent whose last request timed out after it was applied sends it again: that is harmless
    # (items are idempotent) as long as the scope is not closed twice.
    resent_final = previous is not None and previous.complete and batch.complete
    if previous is not None and (previous.source != source or previous.scope_key != key
                                 or (previous.complete and not batch.complete)):
        raise Conflict(
            f"Run '{batch.run_id}' already exists with "
            + ("another source" if previous.source != source else "another scope" if previous.scope_key != key
               else "its last batch (complete: true)")
            + "; a run's batches share source and scope, and nothing follows the complete one. Use a new run_id.",
        )
    counts: dict[str, Counter] = defaultdict(Counter)
    precedence_rows = [tuple(row) for row in conn.execute(
        select(PRECEDENCE.c.ci_class, PRECEDENCE.c.attribute, PRECEDENCE.c.sources)).all()]
    precedence = PrecedenceTable.from_rows(precedence_rows)
    # A report confirms only within its scope: its sightings and relationships belong to that scope.
    salt = registry.digest + orjson.dumps(sorted(precedence_rows, key=lambda r: (r[0] or "", r[1] or ""))) + key.encode()
    prints = fingerprints.of_batch(batch, salt)
    confirmed = _confirmed(conn, source, prints) if confirm else {}
    confirmed_cis = set(confirmed.values())
    item_refs = set(batch.refs)
    carried = []  # relationships that came with a confirmed report and end at a confirmed item or an id
    for position, anchor in enumerate(prints.anchors):
        if anchor in confirmed:
            source_end, target_end, _ = batch.ends[position]
            other = target_end if source_end == anchor else source_end
            if other in confirmed or other not in item_refs:
                carried.append(position)
    # A confirmed report with any relationship to derive (its other end changed) has all of them
    # derived and written, so the ones it no longer carries are not taken as confirmed.
    deriving = {prints.anchors[position] for position in set(range(len(prints.anchors))) - set(carried)}
    carried = [position for position in carried if prints.anchors[position] not in deriving]
    carried_set = set(carried)
    derived_items = [index for index, ref in enumerate(batch.refs) if ref not in confirmed]
    derived_relationships = [position for position in range(len(batch.relationships)) if position not in carried_set]
    items, relationships = batch.validated(derived_items, derived_relationships)
    _require_storable(items, relationships, texts=not batch.text_storable(derived_items, derived_relationships))

    planned = _plan_items(registry, batch, items, outcome, counts)
    groups = group_items(planned)
    ignored_held = non_unique_held(planned)
    index = store.find_identifiers(conn, list({t for item in planned for t in item.strong + item.held}))
    if confirmed and _may_meet_confirmed(planned, index, confirmed_cis):
        raise _ConfirmedOverlap
    held_found = {index[t] for item in planned for t in item.held if t in index}
    held_keys = {k for cls in registry.classes.values() for k in cls.effective_held}
    strong_cis = store.strongly_identified(conn, held_found, held_keys)
    resolutions = [resolve(group, index, strong_cis, ignored_held) for group in groups]
    rows = store.load_cis(conn, {r.ci_id for r in resolutions if r.ci_id is not None})
    for resolution in resolutions:
        if resolution.ci_id is not None and resolution.ci_id in rows:
            contradiction = contradicting_rule(resolution, rows[resolution.ci_id])
            if contradiction:
                resolution.conflict = [str(resolution.ci_id)]
                resolution.reason = contradiction

    if any(resolution.ci_id in confirmed_cis for resolution in resolutions):
        raise _ConfirmedOverlap
    for ref, ci_class in zip(batch.refs, batch.classes):
        if ref in confirmed:
            outcome.refs[ref] = confirmed[ref]
            counts[ci_class]["unchanged"] += 1
    # Reads first: from the CI writes on, the connection works in the background (writes.py) while
    # this thread plans the relationships.
    identified = {item.ref: resolution.ci_id for resolution in resolutions if resolution.ci_id is not None
                  and not resolution.conflict for item in resolution.items}
    relationship_reads = _read_relationships(conn, registry, item_refs, relationships, {**identified, **outcome.refs})

    creates, updates, seen = [], [], set()
    versions: dict[uuid.UUID, int] = {}  # what each CI's version is once this batch is applied
    reported_by: dict[uuid.UUID, list[str]] = defaultdict(list)
    strong_claims, held_claims = [], []
    for resolution in resolutions:
        first = resolution.items[0]
        if resolution.conflict:
            for item in resolution.items:
                outcome.conflicts.append({"ref": item.ref, "class": item.cls.name, "candidates": resolution.conflict,
                                          "message": resolution.reason or "its identifiers match several CIs; nothing was merged"})
                counts[item.cls.name]["conflicts"] += 1
            continue
        row = rows.get(resolution.ci_id) if resolution.ci_id is not None else None
        if resolution.ci_id is not None and row is None:
            raise _LostRace(f"CI {resolution.ci_id} was deleted while this batch identified it")
        cls, name, attributes, provenance = first.cls, None, None, None
        if row is None:
            ci_id = new_id()
            merged_facts: dict[str, Any] = {}
            for item in resolution.items:
                merged_facts.update(item.facts)
            name = resolution.items[-1].name
            if _schema_refuses(cls, merged_facts, resolution, outcome, counts):
                continue
            stamp = {"source": source, "at": now.isoformat()}
            new_row = {
                "id": ci_id, "ci_class": cls.name, "name": name, "status": "active",
                "environment": first.environment, "criticality": None, "owner": first.owner, "tags": [],
                "attributes": merged_facts, "first_seen": now, "last_seen": now, "created_at": now,
                "updated_at": now, "version": 1, "provenance": {k: stamp for k in ["name", *merged_facts]},
            }
            creates.append(new_row)
            uow.record("ci", ci_id, "create", ci_service.creation_diff(new_row))
            action = "created"
            versions[ci_id] = 1
        else:
            ci_id = row["id"]
            stored_cls = registry.classes.get(row["ci_class"], cls)
            # The more specific class wins (an SSH agent knows it is a virtual_machine; nmap says server).
            new_class = cls if cls.name in stored_cls.descendants and cls.name != stored_cls.name else stored_cls
            name, attributes, provenance = row["name"], row["attributes"], row["provenance"]
            diff: dict[str, list[Any]] = {}
            provenance_changed = False
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
                continue
            if diff or provenance_changed:
                updates.append({"id": ci_id, "ci_class": new_class.name, "name": name, "status": status,
                                "attributes": attributes, "provenance": provenance,
                                "version": row["version"] + (1 if diff else 0),
                                "updated_at": now if diff else row["updated_at"], "last_seen": now})
            if diff:
                uow.record("ci", ci_id, "update", dict(sorted(diff.items())))
                action = "updated"
            else:
                action = "unchanged"
            versions[ci_id] = row["version"] + (1 if diff else 0)
        seen.add(ci_id)
        for item in resolution.items:
            reported_by[ci_id].append(item.ref)
            outcome.refs[item.ref] = ci_id
            counts[item.cls.name][action] += 1
            strong_claims.extend((t, ci_id) for t in item.strong if t not in index)
            held_claims.extend((t, ci_id) for t in item.held if t not in ignored_held and index.get(t) != ci_id)

    carried_count = len({batch.ends[position] for position in carried})  # once per (source, target, type)
    new_cis = {row["id"] for row in creates}
    planned_by_ref = {item.ref: item for item in planned}
    with BackgroundWrites(conn) as writes:
        writes.submit(store.insert_cis, creates)
        writes.submit(store.update_cis, updates)
        writes.submit(store.touch_cis, seen - {row["id"] for row in updates} - new_cis, now)
        writes.submit(store.claim_identifiers, strong_claims, held_claims)
        plan = _plan_relationships(registry, item_refs, relationships, relationship_reads, outcome, prints)
        _write_relationships(uow, writes, plan, carried_count, outcome, key, prints, new_cis=new_cis)
        failed_anchors = plan.failed_anchors

        def record_sightings(conn) -> None:
            # A fingerprint is kept only for a report that was applied whole: one item for the CI, and
            # every relationship anchored on it applied. Anything less must be derived again next time.
            # An address another batch took since this one read the index must be taken back by the
            # next report, so that report cannot be confirmed.
            expected = {t: ci_id for ci_id in seen for ref in reported_by[ci_id] for t in planned_by_ref[ref].held
                        if t not in ignored_held}
            held_now = store.find_identifiers(conn, list(expected))
            lost = {ci_id for t, ci_id in expected.items() if held_now.get(t) != ci_id}
            sightings = []
            for ci_id in seen:
                refs = reported_by[ci_id]
                whole = len(refs) == 1 and refs[0] not in failed_anchors and ci_id not in lost
                sightings.append({"ci_id": ci_id, "fingerprint": prints.by_ref.get(refs[0]) if whole else None,
                                  "ci_version": versions[ci_id]})
            store.record_ci_sightings(conn, sightings, source, key, batch.run_id, now, created=new_cis)

        writes.submit(record_sightings)
        writes.submit(store.confirm_sightings, confirmed_cis, source, key, batch.run_id, now)
        writes.submit(forget_fingerprints, {confirmed[ref] for ref in failed_anchors if ref in confirmed})

    totals = Counter()
    for per_class in counts.values():
        totals.update(per_class)
    outcome.counts = {name: totals.get(name, 0) for name in ("created", "updated", "unchanged", "conflicts", "errors")}
    outcome.counts["by_class"] = {cls: dict(counter) for cls, counter in sorted(counts.items())}
    if batch.complete and not resent_final:
        stale, ended = close_scope(uow, source=source, scope_key=key, run_id=batch.run_id,
                                   after_runs=staleness.after_runs, after_days=staleness.after_days)
        outcome.stale, outcome.ended_relationships = [str(ci) for ci in stale], ended
    _record_run(uow, batch, key, outcome)


def _may_meet_confirmed(planned: list[PlannedItem], index: dict, confirmed_cis: set[uuid.UUID]) -> bool:
    """Could an item to derive be grouped with, or take an address from, a confirmed one? Grouping
    and the uniqueness of addresses are decided over the whole batch, so then it must be derived whole."""
    for item in planned:
        if any(index.get(triple) in confirmed_cis for triple in item.held):
            return True
        if not item.strong and any(triple not in index for triple in item.held):
            return True  # an address-only sighting that a confirmed item may report (unindexed)
    return False


def _confirmed(conn, source: str, prints: fingerprints.BatchFingerprints) -> dict[str, uuid.UUID]:
    """ref -> CI for the items whose report is confirmed unchanged (one item per CI)."""
    found = store.confirmed_reports(conn, source, list(prints.by_ref.values()))
    refs_of: dict[uuid.UUID, list[str]] = defaultdict(list)
    for ref, fingerprint in prints.by_ref.items():
        if fingerprint in found:
            refs_of[found[fingerprint]].append(ref)
    return {refs[0]: ci_id for ci_id, refs in refs_of.items() if len(refs) == 1}


def _require_storable(items: list[tuple[int, IngestItem]], relationships: list[tuple[int, IngestRelationship]], *,
                      texts: bool) -> None:
    # What identifies an item or a relationship must be storable (bad values inside an item's
    # attributes are that item's error instead). Names and refs are plain strings: only their text can
    # be unstorable, and only when the batch's bytes say it may be (`texts`).
    for index, item in items if texts else ():
        require_storable(item.ref, f"items.{index}.ref")
        require_storable(item.ci_class, f"items.{index}.class")
    for position, rel in relationships:
        for name in ("source", "target", "type") if texts else ():
            require_storable(getattr(rel, name), f"relationships.{position}.{name}")
        if rel.attributes:
            require_storable(rel.attributes, f"relationships.{position}.attributes")


@dataclass
class _RelationshipReads:
    ids: dict[str, uuid.UUID]  # the ends sent as ids of existing CIs, locked (store.existing_ci_ids)
    found: dict[tuple, Any]  # the relationships to derive that exist, by (source, target, type)


@dataclass
class _RelationshipPlan:
    wanted: dict[tuple[uuid.UUID, uuid.UUID, str], tuple[dict[str, Any], str | None]]  # key -> (attributes, anchor ref)
    found: dict[tuple, Any]  # the wanted ones that exist
    errors: int
    failed_anchors: set[str]  # refs with a relationship anchored on them that failed


def _read_relationships(conn, registry: Registry, batch_refs: set[str | None],
                        derived: list[tuple[int, IngestRelationship]], identified: dict[str, uuid.UUID]) -> _RelationshipReads:
    """What the relationships to derive need from the database, read before any write: the CIs sent
    by id, and which of the relationships exist. Only one between CIs that exist already can: the
    refs `identified` with existing CIs (an item refused later only makes this read a little more)."""
    # Each distinct end once: a ref of this batch, or the id of a CI from an earlier one.
    ids_sent: dict[str, uuid.UUID] = {}
    for _, rel in derived:
        for value in (rel.source, rel.target):
            if value not in batch_refs and value not in ids_sent:
                try:
                    ids_sent[value] = uuid.UUID(value)
                except ValueError:
                    pass
    existing_ids = store.existing_ci_ids(conn, set(ids_sent.values()))
    ids = {value: ci for value, ci in ids_sent.items() if ci in existing_ids}
    types, ends = registry.relationship_types, {**ids, **identified}
    # A list, not a set: a key sent twice only repeats a row, and hashing UUIDs is not free.
    existing = [(source_id, target_id, rel.type) for _, rel in derived
                if (source_id := ends.get(rel.source)) is not None and (target_id := ends.get(rel.target)) is not None
                and source_id != target_id and rel.type in types]
    return _RelationshipReads(ids, store.find_relationships(conn, existing))


def _plan_relationships(registry: Registry, batch_refs: set[str | None], derived: list[tuple[int, IngestRelationship]],
                        reads: _RelationshipReads, outcome: Outcome, prints: fingerprints.BatchFingerprints
                        ) -> _RelationshipPlan:
    """Checks the relationships to derive against the refs applied and the ids found."""
    applied = outcome.refs
    errors, failed_anchors = 0, set()
    ends = {**reads.ids, **applied}
    types = registry.relationship_types
    wanted: dict[tuple[uuid.UUID, uuid.UUID, str], tuple[dict[str, Any], str | None]] = {}
    for position, rel in derived:
        source_id, target_id = ends.get(rel.source), ends.get(rel.target)
        if source_id is not None and target_id is not None and rel.type in types and source_id != target_id:
            wanted[(source_id, target_id, rel.type)] = (rel.attributes, prints.anchors[position])
            continue
        problem = None
        for end, value, ci in (("source", rel.source, source_id), ("target", rel.target, target_id)):
            if ci is None:
                problem = (end, f"'{value}' is an item of this batch that was not applied (see its error or conflict)"
                           if value in batch_refs else f"'{value}' is neither a ref in this batch nor the id of an existing CI")
                break
        if problem is None:
            problem = ("type", f"unknown relationship type '{rel.type}'") if rel.type not in types else (
                "target", "a CI cannot be related to itself")
        outcome.errors.append({"relationship": position, "field": f"relationships.{position}.{problem[0]}",
                               "message": problem[1]})
        errors += 1
        if prints.anchors[position] is not None:
            failed_anchors.add(prints.anchors[position])
    return _RelationshipPlan(wanted, reads.found, errors, failed_anchors)


def _write_relationships(uow: UnitOfWork, writes: BackgroundWrites, plan: _RelationshipPlan, carried: int,
                         outcome: Outcome, key: str, prints: fingerprints.BatchFingerprints,
                         new_cis: set[uuid.UUID]) -> None:
    """Queues the writes of the derived relationships; `carried` others came with confirmed reports,
    as they were."""
    now = uow.now
    counts = Counter(unchanged=carried, errors=plan.errors)
    inserts, attribute_updates, sightings = [], [], []
    updated_ends: set[uuid.UUID] = set()
    for rel_key, (attributes, anchor) in plan.wanted.items():
        existing = plan.found.get(rel_key)
        anchor_ci = outcome.refs.get(anchor) if anchor is not None else None
        anchor_fingerprint = prints.by_ref.get(anchor) if anchor is not None else None
        if existing is None:
            row = {"id": new_id(), "source_id": rel_key[0], "target_id": rel_key[1], "type": rel_key[2],
                   "attributes": attributes, "first_seen": now, "last_seen": now, "created_at": now}
            inserts.append(row)
            uow.record("relationship", row["id"], "create", relationship_creation_diff(row))
            sightings.append({"relationship_id": row["id"], "anchor_ci_id": anchor_ci, "anchor_fingerprint": anchor_fingerprint})
            counts["created"] += 1
            continue
        sightings.append({"relationship_id": existing.id, "anchor_ci_id": anchor_ci, "anchor_fingerprint": anchor_fingerprint})
        merged = {**existing.attributes, **attributes} if attributes else existing.attributes
        if merged != existing.attributes:
            attribute_updates.append((existing.id, merged))
            updated_ends.update(rel_key[:2])
            uow.record("relationship", existing.id, "update",
                       diff_fields({"attributes": existing.attributes}, {"attributes": merged}, ["attributes"]))
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    writes.submit(store.insert_relationships, inserts)
    writes.submit(store.update_relationship_attributes, attribute_updates)
    # Another source's report carrying a relationship whose attributes changed would change them back.
    writes.submit(forget_fingerprints, updated_ends)
    # What these reports carried before is confirmed again only by what they carry now (written below).
    writes.submit(store.forget_anchored, {outcome.refs[anchor] for _, (_, anchor) in plan.wanted.items()
                                          if anchor in outcome.refs} - new_cis,  # a CI created now carried nothing
                  outcome.source)
    writes.submit(store.record_relationship_sightings, sightings, outcome.source, key, outcome.run_id, now,
                  created={row["id"] for row in inserts})
    outcome.relationships = {name: counts.get(name, 0) for name in ("created", "updated", "unchanged", "errors")}


def _record_run(uow: UnitOfWork, batch: Batch, key: str, outcome: Outcome) -> None:
    conn = uow.conn
    row = conn.execute(select(RUN).where(RUN.c.id == batch.run_id)).mappings().first()
    counts = {name: outcome.counts.get(name, 0) for name in ("created", "updated", "unchanged", "conflicts", "errors")}
    counts["relationships_created"] = outcome.relationships.get("created", 0)
    counts["stale"] = len(outcome.stale)
    counts["ended_relationships"] = outcome.ended_relationships
    if row is None:
        conn.execute(RUN.insert(), {
            "id": batch.run_id, "source": batch.source, "actor": uow.actor, "scope": batch.scope.model_dump(),
            "scope_key": key, "started_at": uow.now, "finished_at": uow.now if batch.complete else None,
            "complete": batch.complete, "batches": 1, "counts": counts,
            "conflicts": outcome.conflicts[:MAX_RECORDED_PROBLEMS], "errors": outcome.errors[:MAX_RECORDED_PROBLEMS],
        })
        return
    merged_counts = Counter(row["counts"])
    merged_counts.update(counts)
    conn.execute(RUN.update().where(RUN.c.id == batch.run_id).values(
        batches=row["batches"] + 1, counts=dict(merged_counts),
        conflicts=(row["conflicts"] + outcome.conflicts)[:MAX_RECORDED_PROBLEMS],
        errors=(row["errors"] + outcome.errors)[:MAX_RECORDED_PROBLEMS],
        complete=row["complete"] or batch.complete,
        finished_at=uow.now if batch.complete else row["finished_at"],
    ))
