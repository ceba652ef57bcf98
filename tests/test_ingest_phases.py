"""The pure phases of ingest, without a database: planning items (identification rule 1), which
relationships a confirmed report carries, reconciling machines into creates and updates, and the
retry policy that runs a batch again."""

import uuid
from datetime import UTC, datetime, timedelta

import psycopg.errors
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from app.models.ingest import IngestItem
from app.services.errors import Unavailable
from app.services.ingest import fingerprints, pipeline
from app.services.ingest.batch import Batch
from app.services.ingest.identification import group_items, non_unique_held, plan_items, resolve
from app.services.ingest.outcome import ClassCounts, Outcome
from app.services.ingest.phases import Identification, LostRace, Plan, reconcile
from app.services.ingest.reconciliation import PrecedenceTable
from app.services.ingest.relationships import RelationshipReads
from app.services.registry import ClassInfo, Registry, compile_schema

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SCHEMA = {"type": "object", "properties": {"cpu_count": {"type": "integer"}}}
SERVER = ClassInfo(name="server", parent=None, label="Server", description="", attribute_schema=SCHEMA,
                   identification_rules=[["serial_number"], ["fqdn"]], effective_rules=[["serial_number"], ["fqdn"]],
                   held_identifiers=["ip_address"], effective_held=["ip_address"], family="server",
                   ancestors=("server",), descendants=frozenset({"server"}), validators=(compile_schema(SCHEMA),))
REGISTRY = Registry({"server": SERVER}, {})


def _items(*items: dict) -> list[tuple[int, IngestItem]]:
    return [(index, IngestItem.model_validate({"class": "server", **item})) for index, item in enumerate(items)]


def test_plan_items_reads_identifiers_and_refuses_what_cannot_be_planned():
    planned, errors = plan_items(REGISTRY, _items(
        {"ref": "a", "name": "a", "identifiers": {"serial_number": "SN-1", "ip_address": ["10.0.0.1"]}},
        {"ref": "a", "name": "again", "identifiers": {"serial_number": "SN-2"}},
        {"ref": "b", "class": "router", "name": "b", "identifiers": {"serial_number": "SN-3"}},
        {"ref": "c", "name": "c", "identifiers": {"serial_number": "To be filled by O.E.M."}},
        {"ref": "d", "name": "d", "identifiers": {"serial_number": "SN-4"}, "attributes": {"n": 2**64}},
    ), lambda index: False)
    assert [(item.ref, item.strong, item.held) for item in planned] == [
        ("a", [("server", "serial_number", "sn-1")], [("server", "ip_address", "10.0.0.1")])]  # normalized
    assert [(e.index, e.field, e.message.split(":")[0]) for e in errors] == [
        (1, "ref", "ref 'a' appears twice in the batch"), (2, "class", "unknown class 'router'"),
        (3, "identifiers", "no identifier usable for class 'server'"), (4, "attributes.n", "integer outside the 64-bit range")]


def _identify(planned, index, rows):
    groups = group_items(planned)
    ignored = non_unique_held(planned)
    resolutions = [resolve(group, index, {}, ignored) for group in groups]
    return Identification(resolutions, rows, index, ignored, RelationshipReads({}, {}))


def _plan(planned) -> Plan:
    return Plan("scope", False, PrecedenceTable.from_rows([]), fingerprints.BatchFingerprints(),
                fingerprints.Confirmation(), [], planned, ClassCounts())


def _stored(ci_id, **attributes):
    at = (NOW - timedelta(days=1)).isoformat()
    return {"id": ci_id, "ci_class": "server", "name": "old", "status": "stale", "attributes": attributes,
            "provenance": {"name": {"source": "ssh", "at": at}, **{k: {"source": "manual", "at": at} for k in attributes}},
            "version": 3, "updated_at": NOW - timedelta(days=1)}


def test_reconcile_creates_merges_and_reports_without_a_database():
    known, twin_a, twin_b = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    planned, _ = plan_items(REGISTRY, _items(
        {"ref": "new", "name": "n", "identifiers": {"serial_number": "SN-NEW"}, "attributes": {"cpu_count": 2}},
        {"ref": "known", "name": "k", "identifiers": {"serial_number": "SN-K"}, "attributes": {"cpu_count": 8, "os": "x"}},
        {"ref": "both", "name": "b", "identifiers": {"serial_number": "SN-A", "fqdn": "b.example.com"}},
        {"ref": "bad", "name": "bad", "identifiers": {"serial_number": "SN-BAD"}, "attributes": {"cpu_count": "many"}},
    ), lambda index: True)
    index = {("server", "serial_number", "sn-k"): known, ("server", "serial_number", "sn-a"): twin_a,
             ("server", "fqdn", "b.example.com"): twin_b}
    plan, outcome = _plan(planned), Outcome("r", "ssh", False)
    changes = reconcile(REGISTRY, plan, _identify(planned, index, {known: _stored(known, cpu_count=4)}), outcome,
                        source="ssh", now=NOW)
    [created] = changes.creates
    assert created["attributes"] == {"cpu_count": 2, "serial_number": "SN-NEW"} and created["version"] == 1
    [updated] = changes.updates
    # manual set cpu_count: ssh may not overwrite it, but fills what is empty; stale -> active
    assert updated["attributes"] == {"cpu_count": 4, "os": "x", "serial_number": "SN-K"}
    assert (updated["name"], updated["status"], updated["version"]) == ("k", "active", 4)
    assert updated["provenance"]["os"] == {"source": "ssh", "at": NOW.isoformat()}
    assert [(kind, action) for kind, _, action, _ in changes.records] == [("ci", "create"), ("ci", "update")]
    assert outcome.refs == {"new": created["id"], "known": known}
    assert [c["ref"] for c in outcome.conflicts] == ["both"]
    assert [(e["ref"], e["field"]) for e in outcome.errors] == [("bad", "items.3.attributes.cpu_count")]
    assert plan.counts.totals()["by_class"] == {"server": {"created": 1, "updated": 1, "conflicts": 1, "errors": 1}}
    assert changes.strong_claims == [(("server", "serial_number", "sn-new"), created["id"])]


def test_reconcile_of_a_ci_deleted_since_it_was_identified_is_a_lost_race():
    gone = uuid.uuid4()
    planned, _ = plan_items(REGISTRY, _items({"ref": "a", "name": "a", "identifiers": {"serial_number": "SN-GONE"}}),
                            lambda index: True)
    with pytest.raises(LostRace):
        reconcile(REGISTRY, _plan(planned), _identify(planned, {("server", "serial_number", "sn-gone"): gone}, {}),
                  Outcome("r", "ssh", False), source="ssh", now=NOW)


def test_a_confirmed_report_carries_its_relationships_only_when_none_is_derived():
    def batch_of(relationships):
        items = [b'{"ref": "%s", "class": "server", "name": "%s"}' % (ref, ref) for ref in (b"a", b"b", b"c")]
        return Batch("ssh", "r", None, False, False, items, [
            b'{"source": "%s", "target": "%s", "type": "connects_to"}' % (s.encode(), t.encode()) for s, t in relationships])

    ci = {"a": uuid.uuid4(), "b": uuid.uuid4()}
    kept = batch_of([("a", "b"), ("b", str(uuid.uuid4()))])
    assert fingerprints.carried_relationships(kept, fingerprints.of_batch(kept, b""), ci) == [0, 1]
    # a's other relationship ends at c, derived: all of a's are derived; b's still carried
    mixed = batch_of([("a", "b"), ("a", "c"), ("b", str(uuid.uuid4()))])
    assert fingerprints.carried_relationships(mixed, fingerprints.of_batch(mixed, b""), ci) == [2]


def _deadlock() -> OperationalError:
    return OperationalError("UPDATE ci", {}, psycopg.errors.DeadlockDetected("deadlock detected"))


def _unique_violation() -> IntegrityError:
    return IntegrityError("INSERT INTO ci_identifier", {}, psycopg.errors.UniqueViolation("duplicate key"))


def _failing(*errors):
    pending, attempts = list(errors), []

    def work():
        attempts.append(1)
        if pending:
            raise pending.pop(0)
        return "applied"
    return work, attempts


def test_lost_races_are_progress_and_retried_apart_from_the_database_aborting():
    # 4 aborts and 15 races, interleaved: within both budgets (5 aborts, 20 attempts in all)
    errors = [error for _ in range(4) for error in (_deadlock(), LostRace(), _unique_violation(), LostRace())]
    work, attempts = _failing(*errors, LostRace(), LostRace(), LostRace())
    assert pipeline.retry_policy("r")(work) == "applied" and len(attempts) == 20


def test_out_of_attempts_after_lost_races_is_503_with_retry_after():
    work, attempts = _failing(*[LostRace()] * 20)
    with pytest.raises(Unavailable) as raised:
        pipeline.retry_policy("r")(work)
    assert len(attempts) == 20 and raised.value.extensions["retry_after"] == pipeline.RETRY_AFTER_SECONDS


def test_the_database_aborting_a_batch_five_times_raises_its_error():
    work, attempts = _failing(LostRace(), *[_deadlock()] * 5)
    with pytest.raises(OperationalError):
        pipeline.retry_policy("r")(work)
    assert len(attempts) == 6


def test_other_errors_are_raised_at_once():
    not_unique = IntegrityError("INSERT", {}, psycopg.errors.NotNullViolation("null value"))
    for error in (not_unique, ValueError("a fault")):
        work, attempts = _failing(error)
        with pytest.raises(type(error)):
            pipeline.retry_policy("r")(work)
        assert len(attempts) == 1
