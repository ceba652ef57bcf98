"""Each performance shortcut of ingest gives what the plain way gives.

The shortcuts (BENCHMARKS.md) sit behind the store layer: confirming an unchanged report by its
fingerprint instead of deriving it, writes on a second thread, rows inserted by COPY, creation diffs
built directly (the last is tests/test_history.py::test_creation_diffs_built_directly_equal_the_generic_ones).
Each test runs the same work both ways, side by side in one database, and compares what is stored.
"""

import uuid

import orjson
import pytest
from sqlalchemy import select, text

from app.models import ChangeRecord, CIIdentifier, ConfigurationItem
from app.models.ingest import IngestBatch
from app.services.bulk import insert_rows
from app.services.ingest import Shortcuts, StalenessPolicy, ingest
from tests.test_bulk import a_ci

CI = ConfigurationItem.__table__
IDENT = CIIdentifier.__table__
CHANGES = ChangeRecord.__table__
PLAIN = {"confirm_fingerprints": Shortcuts(confirm_fingerprints=False),
         "background_writes": Shortcuts(background_writes=False)}


def _runs(estate: str):
    """A scope's complete runs: a first load, the same twice, a change and a relationship dropped, a
    host no longer seen (stale after two runs), and the same again."""
    def host(n, **attributes):
        return {"ref": f"h{n}", "class": "server", "name": f"{estate}-h{n}",
                "identifiers": {"serial_number": f"{estate}-SN-{n}", "ip_address": [f"10.{ord(estate[0])}.0.{n}"]},
                "attributes": {"cpu_count": 4, **attributes}}

    def app(n):
        return {"ref": f"a{n}", "class": "application", "name": f"{estate}-a{n}",
                "identifiers": {"instance_key": f"{estate}/a{n}/80"}}

    first = ([host(1), host(2), host(3), app(1), app(2)],
             [("a1", "h1", "runs_on"), ("a2", "h2", "runs_on"), ("a1", "a2", "depends_on")])
    changed = ([host(1, cpu_count=8), host(2), host(3), app(1), app(2)], [("a1", "h1", "runs_on"), ("a2", "h2", "runs_on")])
    gone = ([host(1, cpu_count=8), host(2), app(1), app(2)], [("a1", "h1", "runs_on"), ("a2", "h2", "runs_on")])
    for step, (items, relationships) in enumerate([first, first, first, changed, changed, gone, gone, gone]):
        yield IngestBatch.model_validate({
            "source": "ssh", "run_id": f"{estate}-{step}", "scope": {"hosts": [estate]}, "complete": True,
            "items": items, "relationships": [{"source": s, "target": t, "type": y} for s, t, y in relationships]})


def _summary(outcome) -> dict:
    return {"counts": outcome.counts, "relationships": outcome.relationships, "stale": len(outcome.stale),
            "ended": outcome.ended_relationships, "errors": outcome.errors, "conflicts": outcome.conflicts}


def _stored(conn, estate: str) -> str:
    """What the API shows of an estate's CIs, relationships and history, times left out and the estate's
    name taken out, so two estates built alike compare equal."""
    cis = conn.execute(text("SELECT id, ci_class, name, status, attributes, provenance, version, first_seen IS NULL "
                            "FROM ci WHERE name LIKE :p ORDER BY name"), {"p": f"{estate}-%"}).all()
    names = {row.id: row.name for row in cis}
    rels = conn.execute(text("SELECT source_id, target_id, type, attributes FROM relationship")).all()
    changes = conn.execute(text("SELECT object_type, object_id, action, diff FROM change_record ORDER BY seq")).all()
    sightings = conn.execute(text("SELECT ci_id, missed_runs FROM ci_source")).all()
    rel_ids = conn.execute(text("SELECT id, source_id FROM relationship")).all()
    ours = set(names) | {rid for rid, source in rel_ids if source in names}

    def loads(value):
        return orjson.loads(value) if isinstance(value, str | bytes) else value

    summary = {
        "cis": [(r.ci_class, r.name, r.status, loads(r.attributes), sorted((k, v["source"]) for k, v in loads(r.provenance).items()),
                 r.version, r[7]) for r in cis],
        "relationships": sorted((names[s], names[t], y, loads(a)) for s, t, y, a in rels if s in names),
        "history": [(kind, action, sorted(k for k in loads(diff) if k not in ("first_seen", "last_seen")))
                    for kind, object_id, action, diff in changes if object_id in ours or kind == "relationship"
                    and any(str(n) in str(loads(diff)) for n in names)],
        "sightings": sorted((names[c], missed) for c, missed in sightings if c in names),
    }
    dumped = orjson.dumps(summary, default=str).decode()
    return dumped.replace(f"{estate}-", "").replace(f"{estate}/", "").replace(f"10.{ord(estate[0])}.", "10.x.")


@pytest.mark.parametrize("shortcut", sorted(PLAIN))
def test_ingest_with_a_shortcut_stores_what_the_plain_way_stores(app, engine, shortcut):
    registry, staleness = app.state.registry, StalenessPolicy(after_runs=2)
    fast = [_summary(ingest(engine, registry, batch, actor="t", staleness=staleness)) for batch in _runs("fast")]
    plain = [_summary(ingest(engine, registry, batch, actor="t", staleness=staleness, shortcuts=PLAIN[shortcut]))
             for batch in _runs("slow")]
    assert fast == plain
    assert [s["counts"]["unchanged"] for s in fast][:3] == [0, 5, 5] and [s["stale"] for s in fast] == [0] * 6 + [1, 0]
    with engine.connect() as conn:
        assert _stored(conn, "fast") == _stored(conn, "slow")
        if shortcut == "confirm_fingerprints":
            # and the shortcut was taken: a confirmed report moves the sighting only, not the CI's row
            moved = conn.execute(text("SELECT name, last_seen = (SELECT max(s.last_seen) FROM ci_source s "
                                      "WHERE s.ci_id = ci.id) FROM ci WHERE name IN ('fast-a2', 'slow-a2')")).all()
            assert dict(moved) == {"fast-a2": False, "slow-a2": True}


def test_bulk_inserts_store_what_a_plain_insert_stores(engine):
    # COPY on PostgreSQL (and a JSON document unpacked by the server when conflicts are skipped); SQLite
    # takes the plain way itself.
    rows = [a_ci(last_seen=None), a_ci(name="db-1", environment="prod", criticality=None, tags=[], attributes={})]
    bulk, plain = ([{**row, "id": uuid.uuid4()} for row in rows] for _ in range(2))
    with engine.begin() as conn:
        insert_rows(conn, CI, bulk)
        conn.execute(CI.insert(), plain)
        insert_rows(conn, IDENT, [{"family": "server", "key": "fqdn", "value": "a\x01", "ci_id": bulk[0]["id"]}],
                    on_conflict_do_nothing=True)
        conn.execute(IDENT.insert(), [{"family": "server", "key": "fqdn", "value": "b\x01", "ci_id": plain[0]["id"]}])
    with engine.connect() as conn:
        stored = {row["id"]: {k: v for k, v in row.items() if k != "id"} for row in conn.execute(select(CI)).mappings()}
        held = {row.ci_id: row.value for row in conn.execute(select(IDENT))}
    for fast, slow in zip(bulk, plain):
        assert stored[fast["id"]] == stored[slow["id"]]
    assert (held[bulk[0]["id"]], held[plain[0]["id"]]) == ("a\x01", "b\x01")
