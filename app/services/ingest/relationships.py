"""The relationships of a batch: what they need from the database (read before any write), which
of them apply (pure), and their writes (queued on the batch's writer, store.py).

A relationship is keyed by (source CI, target CI, type); each end is a ref of the batch or the id of an
existing CI. One that exists already is confirmed (its attributes merged, the source's sighting
refreshed); one that does not is created with its change record. Each is anchored on the item whose
report carries it (fingerprints.py), so a confirmed report can carry it unchanged next time.
"""

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from app.models.ingest import IngestRelationship
from app.models.types import new_id
from app.services.history import UnitOfWork, diff_fields
from app.services.ingest import fingerprints, store
from app.services.ingest.outcome import Outcome
from app.services.registry import Registry
from app.services.relationships import creation_diff as relationship_creation_diff


@dataclass
class RelationshipReads:
    ids: dict[str, uuid.UUID]  # the ends sent as ids of existing CIs, locked (store.existing_ci_ids)
    found: dict[tuple, Any]  # the relationships to derive that exist, by (source, target, type)


@dataclass
class RelationshipPlan:
    wanted: dict[tuple[uuid.UUID, uuid.UUID, str], tuple[dict[str, Any], str | None]]  # key -> (attributes, anchor ref)
    found: dict[tuple, Any]  # the wanted ones that exist
    errors: int
    failed_anchors: set[str]  # refs with a relationship anchored on them that failed


def read(conn, registry: Registry, batch_refs: set[str | None],
                        derived: list[tuple[int, IngestRelationship]], identified: dict[str, uuid.UUID]) -> RelationshipReads:
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
    return RelationshipReads(ids, store.find_relationships(conn, existing))


def plan(registry: Registry, batch_refs: set[str | None], derived: list[tuple[int, IngestRelationship]],
                        reads: RelationshipReads, outcome: Outcome, prints: fingerprints.BatchFingerprints
                        ) -> RelationshipPlan:
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
    return RelationshipPlan(wanted, reads.found, errors, failed_anchors)


def write(uow: UnitOfWork, writes: store.Writes, checked: RelationshipPlan, carried: int,
                         outcome: Outcome, key: str, prints: fingerprints.BatchFingerprints,
                         new_cis: set[uuid.UUID]) -> None:
    """Queues the writes of the derived relationships; `carried` others came with confirmed reports,
    as they were."""
    now = uow.now
    counts = Counter(unchanged=carried, errors=checked.errors)
    inserts, attribute_updates, sightings = [], [], []
    updated_ends: set[uuid.UUID] = set()
    for rel_key, (attributes, anchor) in checked.wanted.items():
        existing = checked.found.get(rel_key)
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
    writes.submit(store.forget_fingerprints, updated_ends)
    # What these reports carried before is confirmed again only by what they carry now (written below).
    writes.submit(store.forget_anchored, {outcome.refs[anchor] for _, (_, anchor) in checked.wanted.items()
                                          if anchor in outcome.refs} - new_cis,  # a CI created now carried nothing
                  outcome.source)
    writes.submit(store.record_relationship_sightings, sightings, outcome.source, key, outcome.run_id, now,
                  created={row["id"] for row in inserts})
    outcome.relationships = {name: counts.get(name, 0) for name in ("created", "updated", "unchanged", "errors")}
