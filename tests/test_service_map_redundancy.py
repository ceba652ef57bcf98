"""Redundancy inferred from discovered connections (app.services.redundancy), through the API, on
SQLite and PostgreSQL.

The estate, as discovery reports it: a proxy (nginx on web-1, the shop's entry point) connects to
three instances of one application on three hosts, each of which connects to the database:

    nginx (web-1 10.0.0.5:80) -> depends_on port 8080 -> shop-app on app-1, app-2, app-3
    shop-app (each)           -> depends_on port 5432 -> orders-db on db-1
"""

import uuid

import pytest
from sqlalchemy import select

from app.models import RelationshipSource
from tests.conftest import new_id
from tests.test_service_map import ingest, keep_in_step

INSTANCES = ("app-1", "app-2", "app-3")


def _host(ref: str, address: str) -> dict:
    return {"ref": ref, "class": "server", "name": ref, "identifiers": {"machine_id": f"m-{ref}", "ip_address": [address]}}


def _app(ref: str, name: str, ci_class: str, listen: list[str]) -> dict:
    return {"ref": ref, "class": ci_class, "name": name, "identifiers": {"instance_key": f"k/{ref}"},
            "attributes": {"listen": listen}}


def estate_batch(instances=INSTANCES, *, host_of=None) -> dict:
    host_of = host_of or {}
    hosts = {"web-1": "10.0.0.5", "db-1": "10.0.0.7", **{h: f"10.0.1.{n + 1}" for n, h in enumerate(INSTANCES)}}
    items = [_host(ref, address) for ref, address in hosts.items()]
    items += [_app("nginx", "nginx", "web_server", ["0.0.0.0:80"]), _app("orders-db", "orders-db", "database",
                                                                          ["0.0.0.0:5432"])]
    relationships = [{"source": "nginx", "target": "web-1", "type": "runs_on"},
                     {"source": "orders-db", "target": "db-1", "type": "runs_on"}]
    for instance in instances:
        ref = f"shop-app@{instance}"
        items.append(_app(ref, "shop-app", "application", ["0.0.0.0:8080"]))
        relationships += [{"source": ref, "target": host_of.get(instance, instance), "type": "runs_on"},
                          {"source": "nginx", "target": ref, "type": "depends_on", "attributes": {"port": 8080}},
                          {"source": ref, "target": "orders-db", "type": "depends_on", "attributes": {"port": 5432}}]
    return {"source": "ssh", "run_id": f"run-{new_id()}", "scope": {"hosts": sorted(hosts)},
            "items": items, "relationships": relationships}


def settle(app, passes: int = 3) -> None:
    """The keeper's passes until nothing changes: a group made in one pass joins the map in the next."""
    for _ in range(passes):
        keep_in_step(app)


def groups(api) -> list[dict]:
    response = api.get("/api/v1/cis", params={"class": "cluster", "limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def members_of(api, group_id: str) -> set[str]:
    items = api.get("/api/v1/relationships", params={"target": group_id, "type": "member_of"}).json()["items"]
    return {r["source"] for r in items}


def state_of(api, failed: list[str], ci_id: str) -> str | None:
    response = api.post("/api/v1/blast-radius", json={"failed": failed})
    assert response.status_code == 200, response.text
    return next((ci["state"] for ci in response.json()["impacted"] if ci["id"] == ci_id), None)


@pytest.fixture
def estate(api):
    return ingest(api, estate_batch())


@pytest.fixture
def shop(api, app, estate):
    service = api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})
    settle(app)
    return service


def test_three_instances_behind_the_proxy_become_one_group(api, app, engine, shop, estate):
    [group] = groups(api)
    assert group["name"] == "shop-app:8080 instances behind nginx"
    assert group["attributes"]["min_members"] == 1
    assert group["attributes"]["redundancy_of"] == {"dependent": estate["nginx"], "class": "application",
                                                    "kind": "shop-app", "port": 8080}
    assert members_of(api, group["id"]) == {estate[f"shop-app@{i}"] for i in INSTANCES}
    deps = api.get("/api/v1/relationships", params={"source": estate["nginx"], "target": group["id"]}).json()["items"]
    assert [r["type"] for r in deps] == ["depends_on"]
    owned = [r["id"] for r in deps] + [r["id"] for r in api.get(
        "/api/v1/relationships", params={"target": group["id"]}).json()["items"]]
    with engine.connect() as conn:
        sources = set(conn.execute(select(RelationshipSource.source).where(
            RelationshipSource.relationship_id.in_([uuid.UUID(r) for r in owned]))).scalars())
    assert sources == {"service_mapping"}
    created = api.get("/api/v1/changes", params={"object_id": group["id"]}).json()["items"]
    assert [(r["action"], r["actor"]) for r in created] == [("create", "service_mapping")]
    # the group is part of the shop's map; settling again changes nothing
    answer = api.get(f"/api/v1/cis/{shop['id']}/service-map").json()
    assert group["id"] in {ci["id"] for cis in answer["layers"].values() for ci in cis}
    before = api.get("/api/v1/changes", params={"limit": 1000}).json()["items"]
    settle(app)
    assert api.get("/api/v1/changes", params={"limit": 1000}).json()["items"] == before


def test_losing_one_instance_degrades_the_service_all_of_them_take_it_down(api, shop, estate):
    [group] = groups(api)
    assert state_of(api, [estate["app-2"]], group["id"]) == "degraded"
    assert state_of(api, [estate["app-2"]], estate["nginx"]) == "at_risk"
    assert state_of(api, [estate["app-2"]], shop["id"]) == "at_risk"
    assert state_of(api, [estate["app-1"], estate["app-2"]], shop["id"]) == "at_risk"
    assert state_of(api, [estate[h] for h in INSTANCES], shop["id"]) == "down"
    assert state_of(api, [estate["db-1"]], shop["id"]) == "down"  # the one database is still one
    spof = {ci["id"] for ci in api.get(f"/api/v1/cis/{shop['id']}/spof").json()["single_points_of_failure"]}
    assert {estate["db-1"], estate["orders-db"], estate["nginx"], estate["web-1"]} <= spof
    assert not spof & ({estate[h] for h in INSTANCES} | {estate[f"shop-app@{h}"] for h in INSTANCES})


def test_without_inference_one_instance_takes_the_proxy_down(api, app, estate):
    """The same estate with no service mapped: nothing is grouped, and the direct edges decide."""
    assert groups(api) == []
    assert state_of(api, [estate["app-2"]], estate["nginx"]) == "down"


def test_a_person_raises_min_members_and_karta_keeps_it(api, app, shop, estate):
    [group] = groups(api)
    response = api.patch(f"/api/v1/cis/{group['id']}", json={"attributes": {"min_members": 2}})
    assert response.status_code == 200, response.text
    settle(app)
    assert state_of(api, [estate["app-2"]], shop["id"]) == "at_risk"
    assert state_of(api, [estate["app-1"], estate["app-2"]], shop["id"]) == "down"
    assert groups(api)[0]["attributes"]["min_members"] == 2


def test_an_instance_leaving_leaves_the_group_and_the_last_but_one_ends_it(api, app, shop, estate):
    [group] = groups(api)
    assert api.delete(f"/api/v1/cis/{estate['shop-app@app-3']}").status_code == 204
    settle(app)
    assert members_of(api, group["id"]) == {estate["shop-app@app-1"], estate["shop-app@app-2"]}
    assert api.delete(f"/api/v1/cis/{estate['shop-app@app-2']}").status_code == 204
    settle(app)
    assert groups(api) == []  # one instance is no group: its CI is deleted, recorded
    deleted = api.get("/api/v1/changes", params={"object_id": group["id"]}).json()["items"]
    assert [(r["action"], r["actor"]) for r in deleted][-1] == ("delete", "service_mapping")
    assert state_of(api, [estate["app-1"]], shop["id"]) == "down"


def test_instances_on_one_host_are_no_group(api, app):
    ingest(api, estate_batch(host_of={"app-2": "app-1", "app-3": "app-1"}))
    api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})
    settle(app)
    assert groups(api) == []


def test_a_persons_own_group_is_never_replaced(api, app, estate):
    mine = api.create_ci("cluster", "shop-app pool", attributes={"cluster_id": "pool-1", "min_members": 2})
    for instance in INSTANCES:
        response = api.post("/api/v1/relationships", json={"source": estate[f"shop-app@{instance}"],
                                                           "target": mine["id"], "type": "member_of"})
        assert response.status_code == 201, response.text
    response = api.post("/api/v1/relationships", json={"source": estate["nginx"], "target": mine["id"],
                                                       "type": "depends_on"})
    assert response.status_code == 201, response.text
    service = api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})
    settle(app)
    assert [g["id"] for g in groups(api)] == [mine["id"]]
    assert state_of(api, [estate["app-2"]], service["id"]) == "at_risk"
    assert state_of(api, [estate["app-1"], estate["app-2"]], service["id"]) == "down"


def test_the_group_ends_when_its_dependent_leaves_every_map(api, app, shop, estate):
    [group] = groups(api)
    assert api.delete(f"/api/v1/cis/{shop['id']}").status_code == 204
    settle(app)
    assert groups(api) == []
    assert api.get(f"/api/v1/cis/{group['id']}").status_code == 404


def test_a_group_a_person_relates_to_is_kept_when_it_no_longer_holds(api, app, shop, estate):
    [group] = groups(api)
    watcher = api.create_ci("application", "pool-watcher")
    response = api.post("/api/v1/relationships", json={"source": watcher["id"], "target": group["id"],
                                                       "type": "depends_on"})
    assert response.status_code == 201, response.text
    assert api.delete(f"/api/v1/cis/{shop['id']}").status_code == 204
    settle(app)
    assert api.get(f"/api/v1/cis/{group['id']}").status_code == 200
    assert members_of(api, group["id"]) == set()  # Karta's memberships ended, the person's relationship kept
    assert [r["source"] for r in api.get("/api/v1/relationships", params={"target": group["id"]}).json()["items"]] \
        == [watcher["id"]]


CLUSTER_SCHEMA = {"type": "object", "properties": {"cluster_id": {"type": "string"},
                                                    "min_members": {"type": "integer", "minimum": 1},
                                                    "arn": {"type": "string"}}}


def test_a_group_that_cannot_be_made_never_stops_the_maps(api, app, estate):
    """An administrator identifies clusters by name too, and a person's cluster bears the name Karta
    picks: that group is skipped (logged), and the maps written beside it still commit."""
    response = api.patch("/api/v1/classes/cluster", json={"identification_rules": [["cluster_id"], ["name"]]})
    assert response.status_code == 200, response.text
    mine = api.create_ci("cluster", "shop-app:8080 instances behind nginx", attributes={"cluster_id": "mine"})
    service = api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})
    settle(app)
    assert api.get(f"/api/v1/cis/{service['id']}/service-map").json()["status"] == "mapped"
    assert [g["id"] for g in groups(api)] == [mine["id"]]


def test_karta_finds_its_groups_whatever_the_identification_rules(api, app, shop, estate):
    [group] = groups(api)
    assert api.patch("/api/v1/classes/cluster", json={"attribute_schema": CLUSTER_SCHEMA}).status_code == 200
    assert api.patch("/api/v1/classes/cluster", json={"identification_rules": [["arn"]]}).status_code == 200
    settle(app)
    for instance in ("shop-app@app-2", "shop-app@app-3"):
        assert api.delete(f"/api/v1/cis/{estate[instance]}").status_code == 204
    settle(app)
    assert groups(api) == []
    assert api.get(f"/api/v1/cis/{group['id']}").status_code == 404


def test_a_persons_min_members_outlives_a_dip_below_two_instances(api, app, shop, estate):
    [group] = groups(api)
    assert api.patch(f"/api/v1/cis/{group['id']}", json={"attributes": {"min_members": 2}}).status_code == 200
    for instance in ("shop-app@app-2", "shop-app@app-3"):  # a discovery run that saw one instance, say
        assert api.delete(f"/api/v1/cis/{estate[instance]}").status_code == 204
    settle(app)
    assert members_of(api, group["id"]) == set()  # ended, but the group the person tuned is kept
    ingest(api, estate_batch())  # they are back
    settle(app)
    [again] = groups(api)
    assert again["id"] == group["id"] and again["attributes"]["min_members"] == 2
    assert len(members_of(api, group["id"])) == 3


def test_a_group_a_person_deletes_is_made_again(api, app, shop):
    """Documented: to say "these are not alike", raise min_members or draw a cluster of your own."""
    [group] = groups(api)
    assert api.delete(f"/api/v1/cis/{group['id']}").status_code == 204
    settle(app)
    [again] = groups(api)
    assert again["id"] != group["id"] and again["attributes"]["min_members"] == 1


def test_a_karta_group_its_sighting_does_not_name_is_taken_back(api, app, engine, shop, estate):
    """A group whose sighting lost its scope (or never had it) is found by its exact cluster_id and
    taken back, never made again (its own identifier would refuse that at every pass)."""
    from sqlalchemy import text

    [group] = groups(api)
    with engine.begin() as conn:
        conn.execute(text("UPDATE ci_source SET scope_key = '' WHERE source = 'service_mapping'"))
    assert api.delete(f"/api/v1/cis/{estate['shop-app@app-3']}").status_code == 204
    settle(app)
    assert [g["id"] for g in groups(api)] == [group["id"]]
    assert members_of(api, group["id"]) == {estate["shop-app@app-1"], estate["shop-app@app-2"]}
    with engine.connect() as conn:
        scopes = conn.execute(text("SELECT scope_key FROM ci_source WHERE source = 'service_mapping'")).scalars().all()
    assert scopes == [estate["nginx"]]


def test_instances_named_by_their_host_are_alike_by_their_kind(api, app):
    """Discovery names each instance after its host (`orders_api@app-1:8080`) and says what it is in
    `kind`: instances of one kind group, whatever their names."""
    body = estate_batch()
    for item in body["items"]:
        if item["name"] == "shop-app":
            item["name"] = f"orders_api@{item['ref'].split('@')[1]}:8080"
            item["attributes"]["kind"] = "orders_api"
    ingest(api, body)
    api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})
    settle(app)
    [group] = groups(api)
    assert group["name"] == "orders_api:8080 instances behind nginx"
    assert group["attributes"]["redundancy_of"]["kind"] == "orders_api"
    assert len(members_of(api, group["id"])) == 3


def test_data_stores_are_never_grouped(api, app):
    """Two PostgreSQL servers an application uses at 5432 are two databases, not two copies of one."""
    body = estate_batch()
    for item in body["items"]:
        if item["name"] == "shop-app":
            item["class"], item["attributes"]["kind"] = "database", "postgresql"
    ingest(api, body)
    api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})
    settle(app)
    assert groups(api) == []


def test_a_port_learnt_later_makes_the_group(api, app):
    """The proxy's relationships first come without a port (a person drew them, say): no group; when
    discovery reports them with the port, the relationships are updated and the group follows."""
    body = estate_batch()
    for rel in body["relationships"]:
        if rel["source"] == "nginx" and rel["type"] == "depends_on":
            rel.pop("attributes")
    ingest(api, body)
    api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})
    settle(app)
    assert groups(api) == []
    ingest(api, estate_batch())
    settle(app)
    assert len(groups(api)) == 1
