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
