"""Fingerprints of what a source reports, so that the same report again costs almost nothing.

An item's fingerprint hashes everything that decides what applying it does: the item as reported
(class, name, identifiers, attributes, environment, owner), the relationships anchored on it in the
batch (those whose source end, or else target end, is this item), the class registry and the
precedence rules. A relationship's other end enters as that item's own content hash when it is an
item of the batch (refs are only batch-local names) or as the literal CI id.

Ingest stores the fingerprint with the CI version that applying the report left (ci_source). A later
report with the same fingerprint, for a CI still at that version and not stale, is known to change
nothing: identification would find the same CI, reconciliation would produce the same values, and
every anchored relationship still exists (ending one forgets the fingerprints of its ends, and so
does an address moving to another CI). Such an item is confirmed with one sighting write and no
derivation; everything else takes the full path.
"""

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.models.ingest import IngestItem, IngestRelationship

# Reports are hashed as sent; a new version of the batch's shape must not confirm a report the
# earlier shape accepted.
SHAPE = hashlib.blake2b(orjson.dumps([IngestItem.model_json_schema(), IngestRelationship.model_json_schema()],
                                     option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


@dataclass
class BatchFingerprints:
    by_ref: dict[str, str] = field(default_factory=dict)  # refs that appear once and could be hashed
    anchors: list[str | None] = field(default_factory=list)  # per relationship: the ref it is anchored on
    refs: list[str | None] = field(default_factory=list)  # per item: its ref, when it has a usable one


def ref_of(raw: Any, key: str = "ref") -> str | None:
    value = raw.get(key) if type(raw) is dict else None
    return value if type(value) is str else None


def of_batch(items: list[Any], relationships: list[Any], salt: bytes) -> BatchFingerprints:
    """Fingerprints of the items (and relationships) as parsed, before they are validated: a report
    byte-for-byte equal to one that was valid and applied is valid."""
    # This runs for every item of every batch, so it stays a flat loop over plain dicts.
    dumps, sort_keys, blake2b = orjson.dumps, orjson.OPT_SORT_KEYS, hashlib.blake2b
    refs = [ref_of(raw) for raw in items]
    result = BatchFingerprints(refs=refs)
    ref_counts = Counter(refs)
    salt += SHAPE
    content: dict[str, bytes] = {}
    for ref, raw in zip(refs, items):
        if ref is None or ref_counts[ref] != 1:
            continue
        try:
            content[ref] = blake2b(salt + dumps(raw, option=sort_keys), digest_size=16).digest()
        except TypeError:
            continue  # a value orjson cannot encode takes the full path, which reports it
    anchored: dict[str, list[bytes]] = {}
    anchors = result.anchors
    for raw in relationships:
        if type(raw) is not dict:
            anchors.append(None)
            continue
        source, target = raw.get("source"), raw.get("target")
        if type(source) is str and source in ref_counts:
            anchor, other = source, target
        elif type(target) is str and target in ref_counts:
            anchor, other = target, source
        else:
            anchors.append(None)
            continue
        anchors.append(anchor)
        try:
            encoded = dumps(raw, option=sort_keys)
        except TypeError:
            content.pop(anchor, None)
            continue
        # A ref is only the batch's name for an item: the other end enters as what that item is.
        if type(other) is str and other in ref_counts:
            encoded += content.get(other, b"?")
        anchored.setdefault(anchor, []).append(encoded)
    for ref, item_hash in content.items():
        carried = anchored.get(ref)
        if carried:
            carried.sort()
            item_hash = blake2b(item_hash + b"".join(len(e).to_bytes(4, "big") + e for e in carried),
                                digest_size=16).digest()
        result.by_ref[ref] = item_hash.hex()
    return result
