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

import orjson

from app.models.ingest import IngestBatch


@dataclass
class BatchFingerprints:
    by_ref: dict[str, str] = field(default_factory=dict)  # refs that appear once and could be hashed
    anchors: list[str | None] = field(default_factory=list)  # per relationship: the ref it is anchored on


def _digest(*parts: bytes) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(part)
        hasher.update(b"\x00")
    return hasher.hexdigest()


def anchor_of(source: str, target: str, refs: set[str]) -> str | None:
    if source in refs:
        return source
    return target if target in refs else None


def of_batch(batch: IngestBatch, salt: bytes) -> BatchFingerprints:
    result = BatchFingerprints()
    ref_counts = Counter(item.ref for item in batch.items)
    refs = set(ref_counts)
    content: dict[str, bytes] = {}
    for item in batch.items:
        if ref_counts[item.ref] != 1:
            continue
        try:
            encoded = orjson.dumps((item.ci_class, item.name, item.identifiers, item.attributes, item.environment,
                                    item.owner), option=orjson.OPT_SORT_KEYS)
        except TypeError:
            continue  # a value orjson cannot encode takes the full path, which reports it
        content[item.ref] = hashlib.blake2b(salt + encoded, digest_size=16).digest()
    anchored: dict[str, list[bytes]] = {}
    for rel in batch.relationships:
        anchor = anchor_of(rel.source, rel.target, refs)
        result.anchors.append(anchor)
        if anchor is None:
            continue
        outgoing = anchor == rel.source
        other = rel.target if outgoing else rel.source
        other_token = content.get(other, b"?" + other.encode()) if other in refs else b"#" + other.encode()
        try:
            encoded = orjson.dumps((outgoing, rel.type, other_token.hex(), rel.attributes), option=orjson.OPT_SORT_KEYS)
        except TypeError:
            content.pop(anchor, None)
            continue
        anchored.setdefault(anchor, []).append(encoded)
    for ref, item_hash in content.items():
        result.by_ref[ref] = _digest(item_hash, *sorted(anchored.get(ref, ())))
    return result
