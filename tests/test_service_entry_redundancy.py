"""Several addresses behind one service: its entry applications on several hosts become a redundancy
group (app.services.redundancy, `_entry_instances`), through the API, on SQLite and PostgreSQL.

Two front ends serve the shop:

    nginx on web-1 (10.0.0.5) and nginx on web-2 (10.0.0.6), both listening on 0.0.0.0:443,
    each depending (port 8080) on shop-app on app-1, which depends on orders-db on db-1.

The person lists both addresses (the A records of shop.example.com) as the shop's entry points.
"""

import pytest

from tests.conftest import new_id
from tests.test_service_map import ingest
from tests.test_service_map_redundancy import groups, members_of, settle, state_of


def _host(ref: str, *addresses: str) -> dict:
    return {"ref": ref, "class": "server", "name": ref, "identifiers": {"machine_id": f"m-{ref}", "ip_address": list(addresses)}}


def _app(ref: str, name: str, ci_class: str, listen: list[str], kind: str | None = None) -> dict:
    return {"ref": ref, "class": ci_class, "name": name, "identifiers": {"instance_key": f"k/{ref}"},
            "attributes": {"listen": listen, **({"kind": kind} if kind else {})}}


def front_ends(*, second_kind: str = "nginx") -> dict:
    items = [_host("web-1", "10.0.0.5"), _host("web-2", "10.0.0.6"), _host("app-1", "10.0.1.1"),
             _host("db-1", "10.0.0.7"),
             _app("nginx@web-1", "nginx@web-1:443", "web_server", ["0.0.0.0:443"], "nginx"),
             _app("nginx@web-2", f"{second_kind}@web-2:443", "web_server", ["0.0.0.0:443"], second_kind),
             _app("shop-app", "shop-app", "application", ["0.0.0.0:8080"]),
             _app("orders-db", "orders-db", "database", ["0.0.0.0:5432"])]
    relationships = [{"source": "nginx@web-1", "target": "web-1", "type": "runs_on"},
                     {"source": "nginx@web-2", "target": "web-2", "type": "runs_on"},
                     {"source": "shop-app", "target": "app-1", "type": "runs_on"},
                     {"source": "orders-db", "target": "db-1", "type": "runs_on"},
                     {"source": "nginx@web-1", "target": "shop-app", "type": "depends_on", "attributes": {"port": 8080}},
                     {"source": "nginx@web-2", "target": "shop-app", "type": "depends_on", "attributes": {"port": 8080}},
                     {"source": "shop-app", "target": "orders-db", "type": "depends_on", "attributes": {"port": 5432}}]
    return {"source": "ssh", "run_id": f"run-{new_id()}", "scope": {"hosts": ["web-1", "web-2", "app-1", "db-1"]},
            "items": items, "relationships": relationships}


def service_map(api, service_id: str) -> dict:
    response = api.get(f"/api/v1/cis/{service_id}/service-map")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("entry_points", [["10.0.0.5:443", "10.0.0.6:443"], ["https://10.0.0.5/", "10.0.0.6:443"]],
                         ids=["host-port", "url-and-host-port"])
def test_front_ends_behind_one_service_become_one_group(api, app, entry_points):
    estate = ingest(api, front_ends())
    shop = api.create_ci("service", "shop", attributes={"entry_points": entry_points})
    settle(app)
    answer = service_map(api, shop["id"])
    assert answer["status"] == "mapped", answer["entry_points"]
    [group] = groups(api)
    assert group["name"] == "nginx:443 instances behind shop"
    assert group["attributes"]["redundancy_of"] == {"dependent": shop["id"], "class": "web_server",
                                                    "kind": "nginx", "port": 443}
    assert members_of(api, group["id"]) == {estate["nginx@web-1"], estate["nginx@web-2"]}
    deps = api.get("/api/v1/relationships", params={"source": shop["id"], "type": "depends_on"}).json()["items"]
    assert {r["target"] for r in deps} == {estate["nginx@web-1"], estate["nginx@web-2"], group["id"]}
    # one front end's host failing leaves the shop at risk; both take it down; the one app server is one
    assert state_of(api, [estate["web-1"]], group["id"]) == "degraded"
    assert state_of(api, [estate["web-1"]], shop["id"]) == "at_risk"
    assert state_of(api, [estate["web-1"], estate["web-2"]], shop["id"]) == "down"
    assert state_of(api, [estate["app-1"]], shop["id"]) == "down"
    spof = {ci["id"] for ci in api.get(f"/api/v1/cis/{shop['id']}/spof").json()["single_points_of_failure"]}
    assert estate["app-1"] in spof and not spof & {estate["web-1"], estate["web-2"]}
    # settled: another pass changes nothing
    before = api.get("/api/v1/changes", params={"limit": 1000}).json()["items"]
    settle(app)
    assert api.get("/api/v1/changes", params={"limit": 1000}).json()["items"] == before


def test_one_front_end_left_ends_the_group(api, app):
    estate = ingest(api, front_ends())
    shop = api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:443", "10.0.0.6:443"]})
    settle(app)
    [group] = groups(api)
    response = api.patch(f"/api/v1/cis/{shop['id']}", json={"attributes": {"entry_points": ["10.0.0.5:443"]}})
    assert response.status_code == 200, response.text
    settle(app)
    assert groups(api) == []  # Karta's alone: deleted with its relationships
    assert state_of(api, [estate["web-1"]], shop["id"]) == "down"
    assert api.get(f"/api/v1/cis/{group['id']}").status_code == 404


def test_front_ends_of_two_kinds_are_no_group(api, app):
    """An nginx and an haproxy behind the service's addresses are not alike: each stays a dependency."""
    estate = ingest(api, front_ends(second_kind="haproxy"))
    shop = api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:443", "10.0.0.6:443"]})
    settle(app)
    assert groups(api) == []
    assert state_of(api, [estate["web-1"]], shop["id"]) == "down"


def test_entry_points_at_other_ports_are_no_group(api, app):
    """The shop at 443 on web-1 and its back office at 8443 on web-2: two front doors, not copies."""
    batch = front_ends()
    for item in batch["items"]:
        if item["ref"] == "nginx@web-2":
            item["attributes"]["listen"] = ["0.0.0.0:8443"]
    estate = ingest(api, batch)
    shop = api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:443", "10.0.0.6:8443"]})
    settle(app)
    assert service_map(api, shop["id"])["status"] == "mapped"
    assert groups(api) == []
    assert state_of(api, [estate["web-2"]], shop["id"]) == "down"


def test_a_persons_cluster_of_the_front_ends_is_theirs(api, app):
    estate = ingest(api, front_ends())
    shop = api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:443", "10.0.0.6:443"]})
    mine = api.create_ci("cluster", "web tier", attributes={"cluster_id": "web-tier", "min_members": 2})
    for member in ("nginx@web-1", "nginx@web-2"):
        api.relate(estate[member], "member_of", mine["id"])
    api.relate(shop["id"], "depends_on", mine["id"])
    settle(app)
    assert [g["id"] for g in groups(api)] == [mine["id"]]  # Karta infers nothing beside it
    assert state_of(api, [estate["web-1"]], shop["id"]) == "down"  # their min_members 2


def test_entry_points_named_by_host_name_are_two_front_doors(api, app):
    """`web-1:443` and `web-2:443` by name (the shop and its admin site, say) are not the addresses of one
    name: each front end stays a dependency of its own."""
    estate = ingest(api, front_ends())
    shop = api.create_ci("service", "shop", attributes={"entry_points": ["web-1:443", "https://web-2/"]})
    settle(app)
    assert service_map(api, shop["id"])["status"] == "mapped"
    assert groups(api) == []
    assert state_of(api, [estate["web-1"]], shop["id"]) == "down"
