"""What ingest records must be true: provenance times, first sightings, and a scope's closing in
statements of bounded size (review findings of the "system of record people can trust" issue)."""

from datetime import datetime

from sqlalchemy import event

from app.models.ingest import IngestBatch
from app.services.ingest import StalenessPolicy, ingest
from tests.test_ingest import batch, host, push


def test_a_source_changing_its_own_value_stamps_the_provenance_anew(api):
    first = push(api, batch("ssh", [host("h", "web-1", serial_number="SN-1", attributes={"os_version": "12.1",
                                                                                          "cpu_count": 4})]))
    ci_id = first["refs"]["h"]
    before = api.get(f"/api/v1/cis/{ci_id}").json()["provenance"]
    push(api, batch("ssh", [host("h", "web-1", serial_number="SN-1", attributes={"os_version": "12.2",
                                                                                 "cpu_count": 4})]))
    after = api.get(f"/api/v1/cis/{ci_id}").json()["provenance"]
    assert after["os_version"]["source"] == "ssh"
    assert datetime.fromisoformat(after["os_version"]["at"]) > datetime.fromisoformat(before["os_version"]["at"])
    assert after["cpu_count"] == before["cpu_count"]  # the value it sent again unchanged keeps its time


def test_discovery_seeing_a_ci_made_by_hand_is_its_first_sighting(api):
    unchanged = api.create_ci("server", "db-1", attributes={"fqdn": "db-1.example.com"})
    updated = api.create_ci("server", "db-2", attributes={"fqdn": "db-2.example.com"})
    assert unchanged["first_seen"] is None and updated["first_seen"] is None
    outcome = push(api, batch("ssh", [host("a", "db-1", fqdn="db-1.example.com"),
                                      host("b", "db-2", fqdn="db-2.example.com", attributes={"cpu_count": 2})]))
    assert outcome["counts"]["unchanged"] == 1 and outcome["counts"]["updated"] == 1
    for made in (unchanged, updated):
        ci = api.get(f"/api/v1/cis/{made['id']}").json()
        assert ci["first_seen"] is not None and ci["first_seen"] == ci["last_seen"], ci
    seen_first = api.get(f"/api/v1/cis/{unchanged['id']}").json()["first_seen"]
    push(api, batch("ssh", [host("a", "db-1", fqdn="db-1.example.com")]))
    assert api.get(f"/api/v1/cis/{unchanged['id']}").json()["first_seen"] == seen_first  # kept, not moved


def _scope(size: int, *, complete: bool, run_id: str) -> IngestBatch:
    items = [{"ref": f"h{n}", "class": "server", "name": f"h{n}", "identifiers": {"serial_number": f"SN-{n}"}}
             for n in range(size)]
    return IngestBatch.model_validate({"source": "nmap", "run_id": run_id, "scope": {"subnets": ["10.9.0.0/16"]},
                                       "items": items, "complete": complete})


def test_closing_a_big_scope_sends_no_statement_with_a_value_per_ci(app, engine):
    registry, size = app.state.registry, 2000
    ingest(engine, registry, _scope(size, complete=True, run_id="all-seen"), actor="t")
    largest = []

    def measure(conn, cursor, statement, parameters, context, executemany):
        if not executemany:  # a bulk insert sends its rows as a batch, not as one statement's values
            largest.append((len(parameters or ()), statement[:80]))

    event.listen(engine, "before_cursor_execute", measure)
    try:
        outcome = ingest(engine, registry, _scope(0, complete=True, run_id="none-seen"), actor="t",
                         staleness=StalenessPolicy(after_runs=1))
    finally:
        event.remove(engine, "before_cursor_execute", measure)
    assert len(outcome.stale) == size
    assert max(largest)[0] <= 20, max(largest)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM ci WHERE status = 'stale'").scalar() == size
