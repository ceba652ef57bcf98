"""Business services mapped from their entry points, through the API, on SQLite and PostgreSQL.

The estate, as discovery reports it (shapes of discovery/batch.py: hosts with ip_address
identifiers, applications with `listen` and a runs_on to their host, depends_on between them):

    web-1 10.0.0.5     nginx   listen 0.0.0.0:80      -> depends_on shop-app
    app-1 10.0.0.6     shop-app listen 10.0.0.6:8080  -> depends_on orders-db
    db-1  10.0.0.7     orders-db listen 0.0.0.0:5432     (runs_on db-1, db-1 connects_to switch-1)
"""

import threading
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from app.core import migrations
from app.models import (
    RelationshipSource,
    ServiceEntryKey,
    ServiceMapMember,
    ServiceMapState,
)
from app.models.token import Scope
from app.services import tokens as token_service
from app.services.history import UnitOfWork
from app.services.live_graph import LiveGraph
from app.services.service_map_keeper import ServiceMapKeeper
from tests.conftest import new_id
from tests.server import karta

LAYERS = ("entry", "applications", "data_stores", "hosts", "infrastructure")


def _host(ref: str, address: str) -> dict:
    return {"ref": ref, "class": "server", "name": ref, "identifiers": {"machine_id": f"m-{ref}", "ip_address": [address]}}


def _app(ref: str, ci_class: str, listen: list[str], **attributes) -> dict:
    return {"ref": ref, "class": ci_class, "name": ref, "identifiers": {"instance_key": f"k/{ref}"},
            "attributes": {"listen": listen, **attributes}}


def estate_batch(*, nginx_listen=("0.0.0.0:80",), extra_items=(), extra_relationships=()) -> dict:
    items = [_host("web-1", "10.0.0.5"), _host("app-1", "10.0.0.6"), _host("db-1", "10.0.0.7"),
             {"ref": "switch-1", "class": "network_device", "name": "switch-1", "identifiers": {"serial_number": "SW1"}},
             _app("nginx", "web_server", list(nginx_listen), port=80),
             _app("shop-app", "application", ["10.0.0.6:8080"], port=8080),
             _app("orders-db", "database", ["0.0.0.0:5432"], port=5432), *extra_items]
    relationships = [{"source": "nginx", "target": "web-1", "type": "runs_on"},
                     {"source": "shop-app", "target": "app-1", "type": "runs_on"},
                     {"source": "orders-db", "target": "db-1", "type": "runs_on"},
                     {"source": "db-1", "target": "switch-1", "type": "connects_to"},
                     {"source": "nginx", "target": "shop-app", "type": "depends_on", "attributes": {"port": 8080}},
                     {"source": "shop-app", "target": "orders-db", "type": "depends_on", "attributes": {"port": 5432}},
                     *extra_relationships]
    return {"source": "ssh", "run_id": f"run-{new_id()}", "scope": {"hosts": ["web-1", "app-1", "db-1"]},
            "items": items, "relationships": relationships}


def ingest(api, body: dict) -> dict[str, str]:
    response = api.post("/api/v1/ingest", json=body)
    assert response.status_code == 200 and not response.json()["errors"], response.text
    return response.json()["refs"]


def keep_in_step(app) -> None:
    app.state.service_maps.catch_up()


def the_map(api, service_id: str) -> dict:
    response = api.get(f"/api/v1/cis/{service_id}/service-map")
    assert response.status_code == 200, response.text
    return response.json()


def by_layer(answer: dict) -> dict[str, set[str]]:
    return {layer: {ci["name"] for ci in answer["layers"][layer]} for layer in LAYERS}


def map_records(api, service_id: str) -> list[dict]:
    response = api.get("/api/v1/changes", params={"object_type": "service_map", "object_id": service_id})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def joined_and_left(record: dict) -> tuple[set[str], set[str]]:
    members = {key: value for key, value in record["diff"].items() if key.startswith("members.")}
    return ({new["name"] for old, new in members.values() if old is None},
            {old["name"] for old, new in members.values() if new is None})


@pytest.fixture
def estate(api):
    return ingest(api, estate_batch())


@pytest.fixture
def shop(api, app, estate):
    service = api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})
    keep_in_step(app)
    return service


def test_the_map_of_an_entry_point_by_layer(api, shop, estate):
    answer = the_map(api, shop["id"])
    assert answer["status"] == "mapped"
    assert by_layer(answer) == {"entry": {"nginx"}, "applications": {"shop-app"}, "data_stores": {"orders-db"},
                                "hosts": {"web-1", "app-1", "db-1"}, "infrastructure": {"switch-1"}}
    assert answer["entry_points"] == [{"entry_point": "10.0.0.5:80", "status": "resolved", "reason": None,
                                       "host": estate["web-1"], "applications": [estate["nginx"]]}]
    edges = {(e["source"], e["target"], e["type"]) for e in answer["edges"]}
    assert (shop["id"], estate["nginx"], "depends_on") in edges
    assert (estate["shop-app"], estate["orders-db"], "depends_on") in edges
    assert (estate["db-1"], estate["switch-1"], "connects_to") in edges


def test_the_service_depends_on_its_entry_through_a_relationship_karta_owns(api, app, engine, shop, estate):
    rels = api.get("/api/v1/relationships", params={"source": shop["id"]}).json()["items"]
    assert [(r["target"], r["type"]) for r in rels] == [(estate["nginx"], "depends_on")]
    with engine.connect() as conn:
        sources = conn.execute(select(RelationshipSource.source).where(
            RelationshipSource.relationship_id == uuid.UUID(rels[0]["id"]))).scalars().all()
    assert sources == ["service_mapping"]
    created = api.get("/api/v1/changes", params={"object_id": rels[0]["id"]}).json()["items"]
    assert [(r["action"], r["actor"]) for r in created] == [("create", "service_mapping")]


def test_joining_the_map_is_a_change_record(api, app, shop):
    [created] = map_records(api, shop["id"])
    assert created["action"] == "create" and created["actor"] == "service_mapping"
    assert joined_and_left(created) == ({"nginx", "shop-app", "orders-db", "web-1", "app-1", "db-1", "switch-1"}, set())
    assert created["diff"]["status"] == [None, "mapped"]
    # a cache behind the shop's application joins; the record names it
    ingest(api, estate_batch(extra_items=[_app("cache", "database", ["0.0.0.0:6379"])],
                             extra_relationships=[{"source": "shop-app", "target": "cache", "type": "depends_on"},
                                                  {"source": "cache", "target": "app-1", "type": "runs_on"}]))
    keep_in_step(app)
    latest = map_records(api, shop["id"])[-1]
    assert latest["action"] == "update" and joined_and_left(latest) == ({"cache"}, set())
    assert latest["diff"][next(k for k in latest["diff"] if k.startswith("members."))][1]["layer"] == "data_stores"
    assert "cache" in by_layer(the_map(api, shop["id"]))["data_stores"]


def test_leaving_the_map_is_a_change_record(api, app, shop, estate):
    rel = api.get("/api/v1/relationships", params={"source": estate["shop-app"], "target": estate["orders-db"]}).json()
    assert api.delete(f"/api/v1/relationships/{rel['items'][0]['id']}").status_code == 204
    keep_in_step(app)
    latest = map_records(api, shop["id"])[-1]
    assert joined_and_left(latest) == (set(), {"orders-db", "db-1", "switch-1"})
    assert by_layer(the_map(api, shop["id"]))["data_stores"] == set()


def test_an_unchanged_batch_changes_no_map(api, app, shop):
    before = len(map_records(api, shop["id"]))
    ingest(api, estate_batch())
    keep_in_step(app)
    assert len(map_records(api, shop["id"])) == before


def test_an_entry_point_that_stops_resolving_keeps_its_map_flagged(api, app, shop, estate):
    ingest(api, estate_batch(nginx_listen=("0.0.0.0:8081",)))  # nginx moved off port 80
    keep_in_step(app)
    answer = the_map(api, shop["id"])
    assert answer["status"] == "stale"
    assert answer["entry_points"] == [{"entry_point": "10.0.0.5:80", "status": "stale",
                                       "reason": "nothing listens on port 80 of that host",
                                       "host": estate["web-1"], "applications": [estate["nginx"]]}]
    assert by_layer(answer)["entry"] == {"nginx"} and by_layer(answer)["data_stores"] == {"orders-db"}
    assert map_records(api, shop["id"])[-1]["diff"]["status"] == ["mapped", "stale"]
    assert api.get("/api/v1/relationships", params={"source": shop["id"]}).json()["items"]  # kept too
    ingest(api, estate_batch())  # back on port 80
    keep_in_step(app)
    assert the_map(api, shop["id"])["status"] == "mapped"


def test_a_stale_entry_whose_application_is_deleted_is_unresolved(api, app, shop, estate):
    ingest(api, estate_batch(nginx_listen=("0.0.0.0:8081",)))
    keep_in_step(app)
    assert the_map(api, shop["id"])["status"] == "stale"
    assert api.delete(f"/api/v1/cis/{estate['nginx']}").status_code == 204
    keep_in_step(app)
    answer = the_map(api, shop["id"])
    assert answer["status"] == "unresolved" and answer["entry_points"][0]["applications"] == []
    assert all(not cis for cis in answer["layers"].values())
    assert joined_and_left(map_records(api, shop["id"])[-1])[1] == {
        "nginx", "shop-app", "orders-db", "web-1", "app-1", "db-1", "switch-1"}


@pytest.mark.parametrize(("entry_point", "reason"), [
    ("10.9.9.9:80", "no host has that address (10.9.9.9), or more than one has"),
    ("10.0.0.5:9999", "nothing listens on port 9999 of that host"),
    ("10.0.0.6:8080", None),  # listens on that very address
    ("10.0.0.7:5432", None),  # on every address
    ("https://nowhere.example.com/", "no host has that name (nowhere.example.com), or more than one has"),
])
def test_each_entry_point_says_how_it_resolved(api, app, estate, entry_point, reason):
    service = api.create_ci("service", "s", attributes={"entry_points": [entry_point]})
    keep_in_step(app)
    answer = the_map(api, service["id"])
    [resolved] = answer["entry_points"]
    assert resolved["reason"] == reason
    assert answer["status"] == ("mapped" if reason is None else "unresolved")
    if reason is not None:
        assert all(not cis for cis in answer["layers"].values())
        assert api.get("/api/v1/relationships", params={"source": service["id"]}).json()["items"] == []


def test_a_host_named_by_its_hostname(api, app, estate):
    service = api.create_ci("service", "s", attributes={"entry_points": ["http://web-1/", "db-1:5432"]})
    keep_in_step(app)
    answer = the_map(api, service["id"])
    assert answer["status"] == "mapped" and by_layer(answer)["entry"] == {"nginx", "orders-db"}


def test_a_host_that_appears_later_resolves_the_entry_point(api, app):
    service = api.create_ci("service", "s", attributes={"entry_points": ["10.0.0.5:80"]})
    keep_in_step(app)
    assert the_map(api, service["id"])["status"] == "unresolved"
    ingest(api, estate_batch())  # the host index (service_entry_key) finds the service
    keep_in_step(app)
    assert the_map(api, service["id"])["status"] == "mapped"


def test_an_application_that_starts_listening_resolves_the_entry_point(api, app, estate):
    service = api.create_ci("service", "s", attributes={"entry_points": ["10.0.0.6:9090"]})
    keep_in_step(app)
    assert the_map(api, service["id"])["status"] == "unresolved"
    body = estate_batch()
    for item in body["items"]:
        if item["ref"] == "shop-app":
            item["attributes"]["listen"] = ["10.0.0.6:8080", "10.0.0.6:9090"]
    ingest(api, body)  # an update of the application alone: its host is found through runs_on
    keep_in_step(app)
    answer = the_map(api, service["id"])
    assert answer["status"] == "mapped" and by_layer(answer)["entry"] == {"shop-app"}


@pytest.mark.parametrize(("value", "field", "words"), [
    ("10.0.0.5:80", "attributes.entry_points", "must be a list"),
    (["10.0.0.5"], "attributes.entry_points.0", "is not host:port"),
    (["ok:1", "web-1:99999"], "attributes.entry_points.1", "1 to 65535"),
    (["https://user:pw@shop.example.com/"], "attributes.entry_points.0", "credentials"),
    (["<script>:80"], "attributes.entry_points.0", "neither an IP address nor a DNS name"),
    (["ftp://files.example.com/"], "attributes.entry_points.0", "names no port"),
    ([5], "attributes.entry_points.0", "not a string"),
    (["h:1"] * 65, "attributes.entry_points", "more than 64"),
])
def test_entry_points_are_checked_when_written(api, value, field, words):
    response = api.post("/api/v1/cis", json={"class": "service", "name": "s", "attributes": {"entry_points": value}})
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert any(e["field"] == field and words in e["message"] for e in errors), errors
    service = api.create_ci("service", "t")
    response = api.patch(f"/api/v1/cis/{service['id']}", json={"attributes": {"entry_points": value}})
    assert response.status_code == 422 and any(e["field"] == field for e in response.json()["errors"])


def test_only_a_service_has_a_map(api, estate):
    response = api.get(f"/api/v1/cis/{estate['web-1']}/service-map")
    assert response.status_code == 422 and response.json()["errors"] == [{"field": "ci_id", "message": "not a service"}]
    response = api.get(f"/api/v1/cis/{new_id()}/service-map")
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
    assert api.get(f"/api/v1/cis/{estate['web-1']}/service-map", as_=None).status_code == 401


def test_a_service_not_mapped_yet_is_pending(api, app):
    app.state.service_maps.stop()  # no pass in between
    service = api.create_ci("service", "s", attributes={"entry_points": ["10.0.0.5:80"]})
    answer = the_map(api, service["id"])
    assert answer["status"] == "pending" and answer["entry_points"] == []
    assert the_map(api, api.create_ci("service", "t")["id"])["status"] == "no_entry_points"


def test_a_persons_relationship_is_never_touched(api, app, estate):
    service = api.create_ci("service", "s")
    mine = api.relate(service["id"], "depends_on", estate["nginx"])
    api.patch(f"/api/v1/cis/{service['id']}", json={"attributes": {"entry_points": ["10.0.0.5:80"]}})
    keep_in_step(app)
    assert by_layer(the_map(api, service["id"]))["entry"] == {"nginx"}
    assert [r["id"] for r in api.get("/api/v1/relationships", params={"source": service["id"]}).json()["items"]] == [mine["id"]]
    api.patch(f"/api/v1/cis/{service['id']}", json={"attributes": {"entry_points": None}})  # no entry points: no map
    keep_in_step(app)
    assert [r["id"] for r in api.get("/api/v1/relationships", params={"source": service["id"]}).json()["items"]] == [mine["id"]]
    assert map_records(api, service["id"])[-1]["action"] == "delete"


def test_a_deleted_service_leaves_nothing_behind(api, app, engine, shop):
    assert api.delete(f"/api/v1/cis/{shop['id']}").status_code == 204
    keep_in_step(app)
    with engine.connect() as conn:
        for table in (ServiceMapMember, ServiceMapState, ServiceEntryKey):
            assert conn.execute(select(table).where(table.service_id == uuid.UUID(shop["id"]))).all() == []
    [*_, deleted] = map_records(api, shop["id"])
    assert deleted["action"] == "delete" and deleted["diff"]["status"] == ["mapped", None]


def test_a_deleted_member_leaves_the_map(api, app, shop, estate):
    assert api.delete(f"/api/v1/cis/{estate['switch-1']}").status_code == 204
    keep_in_step(app)
    assert joined_and_left(map_records(api, shop["id"])[-1]) == (set(), {"switch-1"})


def test_impact_of_the_database_host_reaches_the_service(api, shop, estate):
    response = api.post("/api/v1/impact", json={"ci_ids": [estate["db-1"]]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [(s["name"], s["state"]) for s in answer["services"]] == [("shop", "down")]
    [hit] = [ci for ci in answer["impacted"] if ci["id"] == shop["id"]]
    assert hit["path"] == [estate["db-1"], estate["orders-db"], estate["shop-app"], estate["nginx"], shop["id"]]


def test_a_full_rebuild_changes_nothing_in_step(api, app, shop):
    before = len(map_records(api, shop["id"]))
    assert app.state.service_maps.rebuild() == 0
    assert len(map_records(api, shop["id"])) == before


HOSTILE = "<script>alert(1)</script>\u202e\x07\"; label=\"x"


def hostile_shop(api, app, name: str) -> dict:
    """The estate with orders-db named `name`, and a service of that name mapped over it."""
    body = estate_batch()
    for item in body["items"]:
        if item["ref"] == "orders-db":
            item["name"] = name
    ingest(api, body)
    service = api.create_ci("service", name, attributes={"entry_points": ["10.0.0.5:80"]})
    keep_in_step(app)
    return service


def test_hostile_names_are_carried_exactly_and_drawn_escaped(api, app):
    service = hostile_shop(api, app, HOSTILE)
    assert HOSTILE in by_layer(the_map(api, service["id"]))["data_stores"]
    assert joined_and_left(map_records(api, service["id"])[-1])[0] >= {HOSTILE}
    dot = api.get(f"/api/v1/cis/{service['id']}/service-map", params={"format": "dot"})
    assert dot.status_code == 200 and dot.headers["content-type"].startswith("text/vnd.graphviz")
    assert "<script>" in dot.text and "\u202e" not in dot.text and '"; label="x' not in dot.text
    svg = api.get(f"/api/v1/cis/{service['id']}/service-map", params={"format": "svg"})
    if svg.status_code != 503:  # without Graphviz: graphviz-unavailable
        assert svg.status_code == 200 and "&lt;script&gt;" in svg.text and "<script" not in svg.text


def test_the_map_drawn_as_svg(api, shop):
    response = api.get(f"/api/v1/cis/{shop['id']}/service-map", params={"format": "svg"})
    if response.status_code == 503:
        pytest.skip("Graphviz dot is not installed")
    assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml"
    assert "orders-db" in response.text and "<script" not in response.text


def test_karta_db_map_services_maps_every_service_afresh(api, app, database_url, estate):
    app.state.service_maps.stop()  # the command alone maps it
    service = api.create_ci("service", "s", attributes={"entry_points": ["10.0.0.5:80"]})
    assert the_map(api, service["id"])["status"] == "pending"
    done = karta("db", "map-services", database_url=database_url)
    assert done.returncode == 0 and done.stdout.strip() == "1 service map(s) changed", done.stdout + done.stderr
    assert the_map(api, service["id"])["status"] == "mapped"
    again = karta("db", "map-services", database_url=database_url)
    assert again.stdout.strip() == "0 service map(s) changed"


def test_ingest_checks_entry_points_too(api):
    body = {"source": "cmdb-sync", "run_id": f"run-{new_id()}", "scope": {"hosts": []}, "items": [
        {"ref": "s", "class": "service", "name": "s", "identifiers": {"service_id": "S-1"},
         "attributes": {"entry_points": ["shop.example.com"]}}], "relationships": []}
    response = api.post("/api/v1/ingest", json=body)
    assert response.status_code == 200, response.text
    [error] = response.json()["errors"]
    assert "entry_points.0" in error["field"] and "host:port" in error["message"], error


def test_two_workers_keepers_map_a_service_once(api, app, engine, estate):
    """Every worker runs a keeper: two passes at once write one map, one owned relationship, one record."""
    app.state.service_maps.stop()
    service = api.create_ci("service", "s", attributes={"entry_points": ["10.0.0.5:80"]})
    keepers = [ServiceMapKeeper(engine, app.state.registry, LiveGraph(engine, app.state.registry)) for _ in range(2)]
    start, failures = threading.Barrier(2, timeout=30), []

    def run(keeper):
        start.wait()
        try:
            keeper.catch_up()
        except DBAPIError as exc:  # a unique violation on PostgreSQL, were the keepers not to take turns
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(keeper,)) for keeper in keepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    for keeper in keepers:
        keeper.catch_up()
    assert [r["action"] for r in map_records(api, service["id"])] == ["create"]
    assert len(api.get("/api/v1/relationships", params={"source": service["id"]}).json()["items"]) == 1
    assert by_layer(the_map(api, service["id"]))["entry"] == {"nginx"}


def test_a_map_through_another_service_follows_that_services_entry(api, app):
    """The portal's map goes through the payments service (a person's depends_on): when payments'
    entry moves, the relationships Karta keeps for payments change, and the portal's map follows."""
    refs = ingest(api, estate_batch(extra_items=[_app("portal", "application", ["0.0.0.0:9000"])],
                                    extra_relationships=[{"source": "portal", "target": "web-1", "type": "runs_on"}]))
    payments = api.create_ci("service", "payments", attributes={"entry_points": ["10.0.0.6:8080"]})  # shop-app
    keep_in_step(app)
    api.relate(refs["portal"], "depends_on", payments["id"])
    portal = api.create_ci("service", "portal-svc", attributes={"entry_points": ["10.0.0.5:9000"]})
    keep_in_step(app)
    assert by_layer(the_map(api, portal["id"])) == {
        "entry": {"portal"}, "applications": {"shop-app"}, "data_stores": {"orders-db"},
        "hosts": {"web-1", "app-1", "db-1"}, "infrastructure": {"payments", "switch-1"}}
    # Payments now starts at the database: shop-app is no longer below it, nor below the portal.
    response = api.patch(f"/api/v1/cis/{payments['id']}", json={"attributes": {"entry_points": ["10.0.0.7:5432"]}})
    assert response.status_code == 200, response.text
    keep_in_step(app)  # payments' map and its relationships
    keep_in_step(app)  # the maps through payments
    assert by_layer(the_map(api, portal["id"])) == {
        "entry": {"portal"}, "applications": set(), "data_stores": {"orders-db"},
        "hosts": {"web-1", "db-1"}, "infrastructure": {"payments", "switch-1"}}
    assert [app.state.service_maps.catch_up() for _ in range(2)] == [0, 0]  # and it ends there


@pytest.mark.parametrize("body, field", [
    ({"name": "service_mapping", "scopes": ["admin"]}, "name"),
    ({"name": "disc", "scopes": ["discovery"], "sources": ["ssh", "service_mapping"]}, "sources.1"),
])
def test_service_mapping_is_no_tokens_name_nor_source(api, body, field):
    response = api.post("/api/v1/tokens", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [(e["field"], e["message"]) for e in problem["errors"]] == [(field, "reserved")], problem
    assert "service_mapping" in problem["detail"], problem


def test_no_token_reports_as_service_mapping(api, engine):
    with UnitOfWork(engine, "tests") as uow:  # a token of any source (sources null) but the reserved ones
        api.secrets["any-source"] = token_service.create_token(uow, "any-source", [Scope.discovery])["secret"]
    body = {**estate_batch(), "source": "service_mapping"}
    response = api.post("/api/v1/ingest", json=body, as_="any-source")
    assert response.status_code == 403, response.text
    assert "service_mapping" in response.json()["detail"] and "no token may report as it" in response.json()["detail"]


def test_a_person_claims_a_relationship_karta_keeps(api, app, engine, shop, estate):
    [owned] = api.get("/api/v1/relationships", params={"source": shop["id"]}).json()["items"]
    response = api.post("/api/v1/relationships", json={"source": shop["id"], "target": estate["nginx"],
                                                       "type": "depends_on", "attributes": {"by": "ops"}})
    assert response.status_code == 201, response.text
    assert response.json()["id"] == owned["id"] and response.json()["attributes"] == {"by": "ops"}
    with engine.connect() as conn:
        sources = set(conn.execute(select(RelationshipSource.source).where(
            RelationshipSource.relationship_id == uuid.UUID(owned["id"]))).scalars())
    assert sources == {"service_mapping", "manual"}
    # The shop no longer starts at nginx: Karta leaves the person's relationship alone.
    api.patch(f"/api/v1/cis/{shop['id']}", json={"attributes": {"entry_points": ["10.0.0.7:5432"]}})
    keep_in_step(app)
    items = api.get("/api/v1/relationships", params={"source": shop["id"]}).json()["items"]
    assert {(r["target"], r["id"] == owned["id"]) for r in items} == {(estate["nginx"], True),
                                                                       (estate["orders-db"], False)}
    # A relationship another source reported is a conflict, as before.
    again = api.post("/api/v1/relationships", json={"source": estate["nginx"], "target": estate["shop-app"],
                                                    "type": "depends_on", "attributes": {}})
    assert again.status_code == 409, again.text


def test_downgrading_below_0013_is_refused_while_karta_keeps_relationships(app, engine, shop):
    with pytest.raises(RuntimeError, match="1 depends_on relationships are kept by Karta"):
        migrations.downgrade(engine, "0012")


def test_a_relationship_touches_only_the_maps_of_its_dependent_end(api, app, engine, shop, estate):
    """A map is what its entry applications depend on: `X depends_on orders-db` gives orders-db a
    dependent, not the shop a member, so no map is refreshed for it; `orders-db depends_on Y` does."""
    from app.core.db import read_transaction
    from app.services.changes import last_seq

    keeper = app.state.service_maps
    keep_in_step(app)

    def refreshed_by(write) -> set[str]:
        with read_transaction(engine) as conn:
            before = last_seq(conn)
        write()
        with read_transaction(engine) as conn:
            services = keeper._touched_services(conn, before, last_seq(conn))
        return {str(s) for s in services}

    outsider = api.create_ci("application", "reporting")
    helper = api.create_ci("application", "geo-lookup")
    assert refreshed_by(lambda: api.relate(outsider["id"], "depends_on", estate["orders-db"])) == set()
    assert refreshed_by(lambda: api.relate(estate["orders-db"], "depends_on", helper["id"])) == {shop["id"]}
    # contains: the target depends on the source (a host contains an address)
    assert refreshed_by(lambda: api.relate(estate["db-1"], "contains", outsider["id"])) == set()
    assert refreshed_by(lambda: api.relate(outsider["id"], "contains", estate["db-1"])) == {shop["id"]}


@pytest.mark.parametrize("keep", [True, False])
def test_an_api_only_worker_runs_no_keeper(database_url, keep):
    """KARTA_SERVICE_MAPS_KEEP=false: the worker answers and notifies, and runs no keeper thread (another
    host's workers keep the maps)."""
    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.main import create_app
    from app.services.service_map_keeper import THREAD_NAME

    app = create_app(Settings(database_url=database_url, service_maps_keep=keep))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        running = [t for t in threading.enumerate() if t.name == THREAD_NAME and t is app.state.service_maps._thread]
        assert bool(running) is keep
        app.state.service_maps.notify()  # a write's notification on a worker without a keeper is harmless
    app.state.engine.dispose()
