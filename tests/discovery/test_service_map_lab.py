"""A business service mapped from its entry point on the discovery lab, no mocks: the real agents
(``karta discover scan`` and ``ssh``, as cron runs them) push to a real ``karta serve``, whose
keeper maps the service; everything is read back through the API.

The lab (lab_services.standard_hosts): nginx on web-1:80 is the shop's front end; orders_api on
web-1:8080 holds a connection to redis on db-1:6379, which discovery reports as orders_api
depends_on redis. The hop from nginx to orders_api stays inside web-1, which discovery does not
turn into an edge (discovery/dependencies.py, rule 2: chatter inside one host), so a person draws
it, as people do: the map follows people's relationships as it follows discovered ones.

The shop is then defined by one entry point, web-1's address and port 80, and must map to the web
server, the application behind it, the database behind that and their two hosts; the failure of
db-1 (the host) must take the shop down along that path.

The estate is shared by the module's tests (one discovery round is slow): a test that changes it
puts it back in a finally and waits for the map to follow, so that any test passes alone or in any
order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import fresh_database
from tests.discovery.test_end_to_end import Estate, karta_for_lab

pytestmark = pytest.mark.lab

MAP_WAIT_SECONDS = 30  # the keeper polls every 2 s; a write of this test wakes it at once


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def lab_database(request, tmp_path_factory) -> Iterator[str]:
    yield from fresh_database(request, request.param, tmp_path_factory.mktemp("service-map-lab"))


@pytest.fixture(scope="module")
def mapped(lab, lab_database):
    """One discovery round, the person's hop, the shop; yields (the round, the admin client, the shop)."""
    with karta_for_lab(lab, lab_database) as (api, agent_env):
        first = Estate(lab, api, agent_env).discover()
        hop = api.post("/api/v1/relationships", json={"source": first.named("nginx@web-1:80")["id"], "type": "depends_on",
                                                      "target": first.named("orders_api@web-1:8080")["id"]})
        assert hop.status_code == 201, hop.text
        shop = api.post("/api/v1/cis", json={"class": "service", "name": "shop", "attributes": {
            "entry_points": [f"{lab.hosts['web-1'].address}:80"]}})
        assert shop.status_code == 201, shop.text
        yield first, api, shop.json()


def wait_for_map(api: httpx.Client, service_id: str) -> dict:
    deadline = time.monotonic() + MAP_WAIT_SECONDS
    while True:
        response = api.get(f"/api/v1/cis/{service_id}/service-map")
        assert response.status_code == 200, response.text
        if response.json()["status"] != "pending" or time.monotonic() > deadline:
            return response.json()
        time.sleep(0.2)


def map_records(api: httpx.Client, service_id: str) -> list[dict]:
    response = api.get("/api/v1/changes", params={"object_type": "service_map", "object_id": service_id})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def wait_for_records(api: httpx.Client, service_id: str, count: int) -> list[dict]:
    """The shop's map records once there are `count` of them (or the wait is over)."""
    deadline = time.monotonic() + MAP_WAIT_SECONDS
    while len(records := map_records(api, service_id)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return records


def test_the_front_ends_entry_point_maps_the_shop(mapped):
    first, api, shop = mapped
    answer = wait_for_map(api, shop["id"])
    assert answer["status"] == "mapped", answer
    layers = {layer: {first.label(ci["id"]) for ci in cis} for layer, cis in answer["layers"].items()}
    assert layers == {"entry": {"nginx@web-1:80"}, "applications": {"orders_api@web-1:8080"},
                      "data_stores": {"redis@db-1:6379"}, "hosts": {"web-1", "db-1"}, "infrastructure": set()}
    [entry] = answer["entry_points"]
    assert (entry["status"], entry["host"], entry["applications"]) == (
        "resolved", first.host("web-1")["id"], [first.named("nginx@web-1:80")["id"]])
    # The shop depends_on its entry through a relationship Karta owns, recorded as any other.
    owned = api.get("/api/v1/relationships", params={"source": shop["id"]}).json()["items"]
    assert [(r["type"], r["target"]) for r in owned] == [("depends_on", first.named("nginx@web-1:80")["id"])]
    # The first record creates the map (another test may have changed it since, and put it back).
    records = map_records(api, shop["id"])
    assert (records[0]["action"], records[0]["actor"]) == ("create", "service_mapping")
    assert {r["actor"] for r in records} == {"service_mapping"}
    joined = {value[1]["name"] for key, value in records[0]["diff"].items() if key.startswith("members.")}
    assert joined == {"nginx@web-1:80", "orders_api@web-1:8080", "redis@db-1:6379", "web-1", "db-1"}


def test_the_database_hosts_failure_takes_the_shop_down_and_names_the_path(mapped):
    first, api, shop = mapped
    assert wait_for_map(api, shop["id"])["status"] == "mapped"
    response = api.post("/api/v1/impact", json={"ci_ids": [first.host("db-1")["id"]]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [(s["name"], s["state"]) for s in answer["services"]] == [("shop", "down")]
    [hit] = [ci for ci in answer["impacted"] if ci["id"] == shop["id"]]
    assert [first.label(ci) if ci in first.cis else ci for ci in hit["path"]] == [
        "db-1", "redis@db-1:6379", "orders_api@web-1:8080", "nginx@web-1:80", shop["id"]]


def test_a_hop_taken_away_shrinks_the_map_and_the_feed_says_what_left(mapped):
    first, api, shop = mapped
    assert wait_for_map(api, shop["id"])["status"] == "mapped"
    nginx, orders_api = first.named("nginx@web-1:80")["id"], first.named("orders_api@web-1:8080")["id"]
    [hop] = api.get("/api/v1/relationships", params={"source": nginx, "target": orders_api}).json()["items"]
    before = len(map_records(api, shop["id"]))
    assert api.delete(f"/api/v1/relationships/{hop['id']}").status_code == 204
    try:
        records = wait_for_records(api, shop["id"], before + 1)
        assert [r["action"] for r in records[before:]] == ["update"]
        left = {old["name"] for key, (old, new) in records[before]["diff"].items()
                if key.startswith("members.") and new is None}
        assert left == {"orders_api@web-1:8080", "redis@db-1:6379", "db-1"}
        layers = {layer: {first.label(ci["id"]) for ci in cis}
                  for layer, cis in wait_for_map(api, shop["id"])["layers"].items()}
        assert layers == {"entry": {"nginx@web-1:80"}, "applications": set(), "data_stores": set(),
                          "hosts": {"web-1"}, "infrastructure": set()}
    finally:  # the person draws the hop again, and the map follows: the estate as the other tests expect it
        again = api.post("/api/v1/relationships", json={"source": nginx, "type": "depends_on", "target": orders_api})
        assert again.status_code == 201, again.text
        records = wait_for_records(api, shop["id"], before + 2)
        assert [r["action"] for r in records[before:]] == ["update", "update"], records
