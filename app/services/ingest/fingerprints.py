"""Fingerprints of what a source reports, so that the same report again costs almost nothing.

An item's fingerprint hashes everything that decides what applying it does: the item's bytes as sent,
the bytes of the relationships anchored on it in the batch (those whose source end, or else target
end, is this item), the class registry, the precedence rules and the scope. A relationship's other end
also enters as that item's own content hash when it is an item of the batch (refs are only
batch-local names); a CI id is in the relationship's bytes.

Ingest stores the fingerprint with the CI version that applying the report left (ci_source). A later
report with the same fingerprint, for a CI still at that version and not stale, is known to change
nothing: identification would find the same CI, reconciliation would produce the same values, and
every anchored relationship still exists as it was (ending one or changing its attributes forgets the
fingerprints of its ends, and so does an address moving to another CI). Such an item is confirmed with
one sighting write and no derivation; everything else takes the full path, and so does the whole batch
when an item to derive could be grouped with a confirmed one (`may_meet_confirmed`, phases.py).
"""

import hashlib
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import orjson
from sqlalchemy import Connection

from app.models.ingest import IngestItem, IngestRelationship
from app.services.ingest import store
from app.services.ingest.batch import Batch
from app.services.ingest.identification import PlannedItem, Triple

# Reports are hashed as sent; a new version of the batch's shape must not confirm a report the
# earlier shape accepted.
SHAPE = hashlib.blake2b(orjson.dumps([IngestItem.model_json_schema(), IngestRelationship.model_json_schema()],
                                     option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


@dataclass
class BatchFingerprints:
    by_ref: dict[str, str] = field(default_factory=dict)  # refs that appear once
    anchors: list[str | None] = field(default_factory=list)  # per relationship: the ref it is anchored on


def of_batch(batch: Batch, salt: bytes) -> BatchFingerprints:
    """Fingerprints of the items (and relationships) as sent, before they are validated: a report
    byte-for-byte equal to one that was valid and applied is valid. (A source that sends the same
    report with its keys in another order only misses the shortcut.)"""
    # This runs for every item of every batch, so it stays a flat loop.
    blake2b = hashlib.blake2b
    result = BatchFingerprints()
    ref_counts = Counter(batch.refs)
    salt += SHAPE
    content = {ref: blake2b(salt + raw, digest_size=16).hexdigest().encode()
               for ref, raw in zip(batch.refs, batch.items) if ref is not None and ref_counts[ref] == 1}
    anchored: dict[str, list[bytes]] = {}
    anchors = result.anchors
    for (source, target, _), raw in zip(batch.ends, batch.relationships):
        if type(source) is str and source in ref_counts:
            anchor, other = source, target
        elif type(target) is str and target in ref_counts:
            anchor, other = target, source
        else:
            anchors.append(None)
            continue
        anchors.append(anchor)
        # A ref is only the batch's name for an item: the other end enters as what that item is.
        if type(other) is str and other in ref_counts:
            raw = raw + content.get(other, b"?")  # JSON text never holds a NUL: the join below is unambiguous
        anchored.setdefault(anchor, []).append(raw)
    for ref, item_hash in content.items():
        carried = anchored.get(ref)
        if carried:
            carried.sort()
            result.by_ref[ref] = blake2b(item_hash + b"\x00" + b"\x00".join(carried), digest_size=16).hexdigest()
        else:
            result.by_ref[ref] = item_hash.decode()
    return result


@dataclass
class Confirmation:
    """What a batch's fingerprints confirm: the items not to derive and the relationships they carry."""

    refs: dict[str, uuid.UUID] = field(default_factory=dict)  # ref -> CI, one item per CI
    carried: list[int] = field(default_factory=list)  # positions of the relationships taken as they were
    cis: set[uuid.UUID] = field(init=False)  # the CIs confirmed

    def __post_init__(self) -> None:
        self.cis = set(self.refs.values())


def confirm(conn: Connection, batch: Batch, prints: BatchFingerprints) -> Confirmation:
    """The reports of this batch that the database confirms unchanged (store.confirmed_reports)."""
    found = store.confirmed_reports(conn, batch.source, list(prints.by_ref.values()))
    refs_of: dict[uuid.UUID, list[str]] = defaultdict(list)
    for ref, fingerprint in prints.by_ref.items():
        if fingerprint in found:
            refs_of[found[fingerprint]].append(ref)
    confirmed = {refs[0]: ci_id for ci_id, refs in refs_of.items() if len(refs) == 1}
    return Confirmation(confirmed, carried_relationships(batch, prints, confirmed))


def carried_relationships(batch: Batch, prints: BatchFingerprints, confirmed: dict[str, uuid.UUID]) -> list[int]:
    """The relationships that came with a confirmed report and end at a confirmed item or an id: taken
    as they were. A confirmed report with any relationship to derive (its other end changed) has all
    of them derived and written, so the ones it no longer carries are not taken as confirmed."""
    item_refs = set(batch.refs)
    carried = []
    for position, anchor in enumerate(prints.anchors):
        if anchor in confirmed:
            source_end, target_end, _ = batch.ends[position]
            other = target_end if source_end == anchor else source_end
            if other in confirmed or other not in item_refs:
                carried.append(position)
    deriving = {prints.anchors[position] for position in set(range(len(prints.anchors))) - set(carried)}
    return [position for position in carried if prints.anchors[position] not in deriving]


def may_meet_confirmed(planned: list[PlannedItem], index: dict[Triple, uuid.UUID], confirmed_cis: set[uuid.UUID]) -> bool:
    """Could an item to derive be grouped with, or take an address from, a confirmed one? Grouping
    and the uniqueness of addresses are decided over the whole batch, so then it must be derived whole."""
    for item in planned:
        if any(index.get(triple) in confirmed_cis for triple in item.held):
            return True
        if not item.strong and any(triple not in index for triple in item.held):
            return True  # an address-only sighting that a confirmed item may report (unindexed)
    return False
