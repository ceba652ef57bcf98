"""Which items of a real discovery run the server confirmed by fingerprint, which it derived, and why.

Measured, not inferred from counts (the ingest answer's `unchanged` mixes both paths): a CI whose
report is confirmed gets only its sighting written (ci_source.last_seen = the batch's time), while
the full path always writes the CI row's own last_seen too (insert, update or touch_cis, all at the
same `now`). So right after one push, for the sightings that push's run left, ``ci.last_seen <
ci_source.last_seen`` means confirmed and equality means derived.

Items are tied to their CI through the fingerprint the server stored: the request bytes (the agent
sends one request with sorted keys) are cut and hashed with the server's own code
(app/services/ingest/fingerprints.py) and salt, read from the database as ingest reads it. The
reasons an item was derived come from comparing it with the previous run's report of the same
thing (same class and name), and from the sighting as it was before the push. Read-only on the
database; never imported by the service.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import orjson
from sqlalchemy import Engine, select

from app.models import CISource, ConfigurationItem, DiscoveryRun, PrecedenceRule
from app.services.ingest import scope_key
from app.services.ingest.batch import Batch
from app.services.ingest.fingerprints import of_batch
from app.services.registry import load_registry
from discovery.batch import split_batch

CI, SIGHTING, PRECEDENCE = ConfigurationItem.__table__, CISource.__table__, PrecedenceRule.__table__
RUN = DiscoveryRun.__table__


def request_bytes(batch: dict) -> bytes:
    """What the agent POSTs for this batch (discovery/push.py), when it fits one request."""
    requests = split_batch(batch)
    if len(requests) != 1:
        raise SystemExit(f"batch of {len(batch['items'])} items went in {len(requests)} requests; keep the lab small")
    return orjson.dumps(requests[0], option=orjson.OPT_SORT_KEYS)


def server_fingerprints(engine: Engine, batch: dict) -> dict[str, str]:
    """ref -> the fingerprint ingest computes for this item (same code, same salt as _apply)."""
    body = Batch.from_json(request_bytes(batch))
    with engine.connect() as conn:
        registry = load_registry(conn)
        rows = [tuple(r) for r in conn.execute(select(PRECEDENCE.c.ci_class, PRECEDENCE.c.attribute,
                                                      PRECEDENCE.c.sources)).all()]
    salt = (registry.digest + orjson.dumps(sorted(rows, key=lambda r: (r[0] or "", r[1] or "")))
            + scope_key(body).encode())
    return of_batch(body, salt).by_ref


@dataclass
class Sighting:
    ci_id: object
    ci_class: str
    name: str
    fingerprint: str | None
    ci_version: int | None
    version: int
    status: str
    sighting_seen: object
    ci_written: object
    run_id: str


def sightings(engine: Engine, source: str) -> dict[object, Sighting]:
    """Every sighting of `source`, with its CI's version, status and own (raw) last_seen."""
    query = select(SIGHTING.c.ci_id, CI.c.ci_class, CI.c.name, SIGHTING.c.fingerprint, SIGHTING.c.ci_version,
                   CI.c.version, CI.c.status, SIGHTING.c.last_seen, CI.c.last_seen, SIGHTING.c.last_run_id
                   ).join(CI, CI.c.id == SIGHTING.c.ci_id).where(SIGHTING.c.source == source)
    with engine.connect() as conn:
        return {row[0]: Sighting(*row) for row in conn.execute(query).all()}


def confirmed_of_run(engine: Engine, source: str, run_id: str) -> tuple[int, int]:
    """(CIs of this run confirmed by fingerprint, CIs it reported), read right after its push."""
    seen = [s for s in sightings(engine, source).values() if s.run_id == run_id]
    return sum(1 for s in seen if s.ci_written != s.sighting_seen), len(seen)


def _key(item: dict) -> tuple[str, str]:
    return item["class"], item["name"]


def _anchored(batch: dict) -> dict[str, list[dict]]:
    """ref -> the relationships anchored on it (source end if it is an item, else target end), as ingest does."""
    refs = {item["ref"] for item in batch["items"]}
    out: dict[str, list[dict]] = {}
    for rel in batch["relationships"]:
        anchor = rel["source"] if rel["source"] in refs else rel["target"] if rel["target"] in refs else None
        if anchor is not None:
            out.setdefault(anchor, []).append(rel)
    return out


def _changed_fields(old: dict, new: dict) -> list[str]:
    fields = []
    for part in ("name", "identifiers", "attributes", "class"):
        a, b = old.get(part), new.get(part)
        if isinstance(a, dict) and isinstance(b, dict):
            fields += [f"{part}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            fields.append(part)
    return fields


def why_derived(previous: dict | None, batch: dict) -> dict[str, str]:
    """ref -> why this item's report differs from the previous run's report of the same thing
    ('' when its report, relationships and their other ends are byte for byte the same)."""
    if previous is None:
        return {item["ref"]: "first report" for item in batch["items"]}
    before = {_key(item): item for item in previous["items"]}
    by_ref_now = {item["ref"]: item for item in batch["items"]}
    by_ref_then = {item["ref"]: item for item in previous["items"]}
    anchored_now, anchored_then = _anchored(batch), _anchored(previous)

    def named(rels: list[dict], by_ref: dict) -> list:
        end = (lambda r: _key(by_ref[r]) if r in by_ref else r)
        return sorted((rel["type"], end(rel["source"]), end(rel["target"]), orjson.dumps(rel.get("attributes"),
                      option=orjson.OPT_SORT_KEYS)) for rel in rels)

    def item_changed(item: dict) -> bool:
        old = before.get(_key(item))
        return old is None or _changed_fields(old, item) != []

    reasons = {}
    for item in batch["items"]:
        old = before.get(_key(item))
        if old is None:
            reasons[item["ref"]] = "new item"
            continue
        fields = _changed_fields(old, item)
        now_rels, then_rels = anchored_now.get(item["ref"], []), anchored_then.get(old["ref"], [])
        if fields:
            reasons[item["ref"]] = "its own report changed: " + ", ".join(fields)
        elif named(now_rels, by_ref_now) != named(then_rels, by_ref_then):
            reasons[item["ref"]] = "the relationships it carries changed"
        elif any(item_changed(by_ref_now[end]) for rel in now_rels for end in (rel["source"], rel["target"])
                 if end in by_ref_now and end != item["ref"]):
            reasons[item["ref"]] = "the other end of a relationship it carries changed"
        elif old["ref"] != item["ref"] or sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in now_rels) \
                != sorted(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in then_rels):
            reasons[item["ref"]] = "renumbered: same report under another batch-local ref"
        else:
            reasons[item["ref"]] = ""
    return reasons


@dataclass
class PushPaths:
    """One push: per item, the path it took (measured) and the reason (explained)."""

    items: int
    confirmed: Counter  # class -> items confirmed
    derived: dict[tuple[str, str], list[str]]  # (class, reason) -> names of the items derived
    unmatched: list[str]  # items whose CI has no sighting with their fingerprint: none was kept (two
    # items of the batch were the same CI, or a relationship it carried failed), so their path is unknown
    run_counts: dict  # what the run record says (GET /api/v1/discovery/runs/{run_id}), for comparison


def paths_of_push(engine: Engine, source: str, run_id: str, batch: dict, previous: dict | None,
                  before: dict[object, Sighting]) -> PushPaths:
    after = {ci: s for ci, s in sightings(engine, source).items() if s.run_id == run_id}
    by_fingerprint = {s.fingerprint: s for s in after.values() if s.fingerprint}
    prints = server_fingerprints(engine, batch)
    reasons = why_derived(previous, batch)
    with engine.connect() as conn:
        counts = conn.execute(select(RUN.c.counts).where(RUN.c.id == run_id)).scalar_one()
    result = PushPaths(len(batch["items"]), Counter(), {}, [], counts)
    for item in batch["items"]:
        seen = by_fingerprint.get(prints.get(item["ref"]))
        if seen is None:
            result.unmatched.append(item["name"])
            continue
        if seen.ci_written != seen.sighting_seen:
            result.confirmed[item["class"]] += 1
            continue
        reason = reasons[item["ref"]]
        if not reason:  # the report is the same bytes as last time: the database says why it was derived
            old = before.get(seen.ci_id)
            if old is None:
                reason = "no earlier sighting by this source"
            elif old.fingerprint != prints.get(item["ref"]):
                reason = "last report not kept (not applied whole)" if old.fingerprint is None \
                    else "same bytes, other fingerprint (salt: classes, precedence or scope changed)"
            elif old.ci_version != old.version:
                reason = (f"the CI changed since this source's last report (version {old.ci_version} -> "
                          f"{old.version}: another source updated it)")
            elif old.status == "stale":
                reason = "the CI was stale"
            else:
                reason = "same report, derived anyway (batch derived whole: an item to derive met a confirmed one)"
        result.derived.setdefault((item["class"], reason), []).append(item["name"])
    return result
