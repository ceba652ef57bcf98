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


def _digest(*parts: bytes) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(part)
        hasher.update(b"\x00")
    return hasher.hexdigest()


def ref_of(raw: Any, key: str = "ref") -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def of_batch(items: list[Any], relationships: list[Any], salt: bytes) -> BatchFingerprints:
    """Fingerprints of the items (and relationships) as parsed, before they are validated: a report
    byte-for-byte equal to one that was valid and applied is valid."""
    result = BatchFingerprints(refs=[ref_of(raw) for raw in items])
    ref_counts = Counter(result.refs)
    salt += SHAPE
    content: dict[str, bytes] = {}
    for ref, raw in zip(result.refs, items):
        if ref is None or ref_counts[ref] != 1:
            continue
        try:
            encoded = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            continue  # a value orjson cannot encode takes the full path, which reports it
        content[ref] = hashlib.blake2b(salt + encoded, digest_size=16).digest()
    anchored: dict[str, list[bytes]] = {}
    for raw in relationships:
        source, target = ref_of(raw, "source"), ref_of(raw, "target")
        anchor = source if source in ref_counts else target if target in ref_counts else None
        result.anchors.append(anchor)
        if anchor is None:
            continue
        other = target if anchor == source else source
        try:
            encoded = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            content.pop(anchor, None)
            continue
        # A ref is only the batch's name for an item: the other end enters as what that item is.
        anchored.setdefault(anchor, []).append(encoded + content.get(other, b"?") if other in ref_counts else encoded)
    for ref, item_hash in content.items():
        result.by_ref[ref] = _digest(item_hash, *sorted(anchored.get(ref, ())))
    return result
