"""Cross-run dependencies against the real Karta API (the ``api`` fixture of tests/conftest.py).

db-1 is discovered in one run; web-1 and app-1 in a later one. Their
connections to db-1 must land on the database CIs the first run created.
"""

from __future__ import annotations

import uuid

import pytest

from discovery.batch import build_ssh_batch
from discovery.facts import facts_from_output
from discovery.models import HostResult
from discovery.remote import ApiApplicationLookup

TOKEN = "0123456789abcdef"


def recorded(data_dir, name: str, address: str) -> HostResult:
    facts, _ = facts_from_output(address, (data_dir / f"reply_{name}.txt").read_bytes(), TOKEN)
    facts.packages = None
    return HostResult(address, "ok", "", facts)


def ingest(api, batch: dict) -> dict:
    response = api.post("/api/v1/ingest", json=batch, as_="discovery")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["errors"] == [] and body["conflicts"] == []
    return body


@pytest.fixture()
def first_run(api, data_dir):
    return ingest(api, build_ssh_batch([recorded(data_dir, "db-1", "10.77.0.12")], run_id=str(uuid.uuid4())))


def test_connections_to_hosts_of_an_earlier_run_reach_their_applications(api, data_dir, first_run):
    api.client.headers["Authorization"] = f"Bearer {api.secrets['discovery']}"  # discovery implies read
    lookup = ApiApplicationLookup(api.client)
    later = [recorded(data_dir, "web-1", "10.77.0.11"), recorded(data_dir, "app-1", "10.77.0.13")]
    batch = build_ssh_batch(later, run_id=str(uuid.uuid4()), remote_lookup=lookup)
    assert lookup.problem is None
    names = {item["ref"]: item["name"] for item in batch["items"]}
    edges = {(names[r["source"]], api.get(f"/api/v1/cis/{r['target']}").json()["name"], r["attributes"]["port"])
             for r in batch["relationships"] if r["type"] == "depends_on"}
    assert edges == {("orders_api@web-1:8080", "redis@db-1:6379", 6379),
                     ("psql@app-1", "postgresql@db-1:5432", 5432)}
    assert ingest(api, batch)["relationships"]["errors"] == 0
    stored = api.get("/api/v1/relationships", params={"type": "depends_on"}).json()["items"]
    assert {(r["target"], r["attributes"]["port"]) for r in stored} == {
        (first_run["refs"]["a:226ea11ed6c5225df34ceae5a27e5df3/postgresql/5432"], 5432),
        (first_run["refs"]["a:226ea11ed6c5225df34ceae5a27e5df3/redis/6379"], 6379)}


def test_a_refused_lookup_switches_itself_off_and_keeps_outbound_facts(api, data_dir, first_run):
    api.client.headers["Authorization"] = "Bearer revoked-or-mistyped"
    lookup = ApiApplicationLookup(api.client)
    batch = build_ssh_batch([recorded(data_dir, "web-1", "10.77.0.11")], run_id=str(uuid.uuid4()),
                            remote_lookup=lookup)
    assert lookup.problem == "lookup stopped: HTTP 401 (the token may not read CIs)"
    assert [r for r in batch["relationships"] if r["type"] == "depends_on"] == []
    web = batch["items"][0]
    assert web["attributes"]["outbound"] == [{"process": "python3", "address": "10.77.0.12", "port": 6379}]
