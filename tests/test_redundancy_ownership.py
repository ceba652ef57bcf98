"""What Karta finds its redundancy groups by stays Karta's (app.services.group_identity), whichever path
writes the CI: the CI API, ingest, the CI import. A person who changed a Karta group's cluster_id
orphaned it: Karta no longer found it, made another at its next pass, and the edited one hung around
beside it with Karta's memberships. Everything else of the group stays a person's to set, and a
person's own cluster (whatever its cluster_id) is theirs. Both databases.

The estate is test_service_map_redundancy's: nginx behind the shop's entry point depends on three
shop-app instances on three hosts, which Karta groups."""

import pytest

from tests.test_service_map import ingest
from tests.test_service_map_redundancy import CLUSTER_SCHEMA, estate_batch, groups, members_of, settle

PROBLEM = "application/problem+json"


@pytest.fixture
def group(api, app):
    estate = ingest(api, estate_batch())
    api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})
    settle(app)
    [made] = groups(api)
    assert len(members_of(api, made["id"])) == 3
    return {**made, "estate": estate}


def unchanged(api, app, group: dict) -> None:
    """The group is as Karta made it, still Karta's after the keeper's passes, and the only one."""
    settle(app)
    [still] = groups(api)
    assert still["id"] == group["id"] and still["attributes"]["cluster_id"] == group["attributes"]["cluster_id"]
    assert len(members_of(api, group["id"])) == 3


def test_a_person_cannot_change_or_remove_what_karta_finds_its_group_by(api, app, group):
    for body, field in (({"attributes": {"cluster_id": "web-pool"}}, "attributes.cluster_id"),
                        ({"attributes": {"cluster_id": None}}, "attributes.cluster_id"),
                        ({"class": "application"}, "class")):
        response = api.patch(f"/api/v1/cis/{group['id']}", json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        problem = response.json()
        assert [error["field"] for error in problem["errors"]] == [field], problem
        assert "Karta" in problem["errors"][0]["message"] and "cluster of your own" in problem["detail"], problem
    assert api.get(f"/api/v1/cis/{group['id']}").json()["version"] == group["version"]
    unchanged(api, app, group)
    # The rest is the person's: a name, min_members, a cluster_id sent unchanged beside them.
    response = api.patch(f"/api/v1/cis/{group['id']}", json={"name": "shop-app pool", "attributes": {
        "min_members": 2, "cluster_id": group["attributes"]["cluster_id"]}})
    assert response.status_code == 200, response.text
    settle(app)
    [kept] = groups(api)
    assert (kept["id"], kept["name"], kept["attributes"]["min_members"]) == (group["id"], "shop-app pool", 2)


def test_what_the_refusal_advises_a_cluster_of_ones_own_replaces_karta_group(api, app, group):
    """Karta's groups are the ones it made (its sighting), not any cluster_id of Karta's form; a cluster
    of one's own holding the instances, which the proxy depends on, retires Karta's group."""
    estate = group["estate"]
    mine = api.create_ci("cluster", "my pool", attributes={"cluster_id": "karta-redundancy:copied-by-hand"})
    assert api.patch(f"/api/v1/cis/{group['id']}", json={"attributes": {"cluster_id": "copied"}}).status_code == 422
    response = api.patch(f"/api/v1/cis/{mine['id']}", json={"attributes": {"cluster_id": "pool-2"}})
    assert response.status_code == 200, response.text
    for instance in ("app-1", "app-2", "app-3"):
        api.relate(estate[f"shop-app@{instance}"], "member_of", mine["id"])
    api.relate(estate["nginx"], "depends_on", mine["id"])
    settle(app)
    assert [g["id"] for g in groups(api)] == [mine["id"]]
    assert api.get(f"/api/v1/cis/{group['id']}").status_code == 404
    response = api.patch(f"/api/v1/cis/{mine['id']}", json={"attributes": {"cluster_id": None}})
    assert response.status_code == 200, response.text


def test_ingest_cannot_change_what_karta_finds_its_group_by(api, app, group):
    """An administrator identifies clusters by name first: a report of a cluster bearing the group's
    name is the group, and its other cluster_id would overwrite Karta's (no source ranks below any)."""
    response = api.patch("/api/v1/classes/cluster", json={"identification_rules": [["name"], ["cluster_id"]]})
    assert response.status_code == 200, response.text
    body = {"source": "cmdb-sync", "run_id": "run-pools", "scope": {"hosts": []}, "relationships": [], "items": [
        {"ref": "pool", "class": "cluster", "name": group["name"], "identifiers": {"cluster_id": "web-pool"},
         "attributes": {"min_members": 2}}]}
    response = api.post("/api/v1/ingest", json=body)
    assert response.status_code == 200, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "items.0.attributes.cluster_id" and "Karta" in error["message"], error
    assert response.json()["counts"]["updated"] == 0
    assert api.get(f"/api/v1/cis/{group['id']}").json()["version"] == group["version"]
    unchanged(api, app, group)


def test_the_ci_import_cannot_change_what_karta_finds_its_group_by(api, app, group):
    response = api.patch("/api/v1/classes/cluster", json={"identification_rules": [["name"], ["cluster_id"]]})
    assert response.status_code == 200, response.text
    sheet = f"name,identifier.cluster_id,attribute.min_members\n\"{group['name']}\",web-pool,2\n"
    response = api.post("/api/v1/import?class=cluster", content=sheet, headers={"Content-Type": "text/csv"})
    assert response.status_code == 422, response.text
    [row] = response.json()["report"]["rows"]
    assert [error["column"] for error in row["errors"]] == ["identifier.cluster_id"], row
    assert "Karta" in row["errors"][0]["reason"]
    unchanged(api, app, group)


def test_a_row_the_import_identifies_by_its_id_cannot_change_it_either(api, app, group):
    """Clusters identified by an attribute Karta's group lacks: a row without it is the CI its `id` names."""
    assert api.patch("/api/v1/classes/cluster", json={"attribute_schema": CLUSTER_SCHEMA}).status_code == 200
    assert api.patch("/api/v1/classes/cluster", json={"identification_rules": [["arn"]]}).status_code == 200
    bundle = {"cis": [{"id": group["id"], "class": "cluster", "name": group["name"],
                       "attributes": {"cluster_id": "web-pool"}}], "relationships": []}
    response = api.post("/api/v1/import", json=bundle)
    assert response.status_code == 422, response.text
    [row] = response.json()["report"]["rows"]
    assert [error["column"] for error in row["errors"]] == ["attributes.cluster_id"], row  # as the bundle names it
    unchanged(api, app, group)
