"""What ingest records must be true: provenance times, first sightings, and a scope's closing in
statements of bounded size (review findings of the "system of record people can trust" issue)."""

from datetime import datetime

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
