"""Relationships: create, read, list with filters, delete, and every refusal."""

import pytest

from tests.conftest import dangling_rows, discovered_app_host_and_database, new_id


@pytest.fixture
def trio(api):
    return (api.create_ci("application", "shop"), api.create_ci("database", "pg"), api.create_ci("server", "host"))


def test_create_read_delete(api, trio):
    shop, db, _ = trio
    created = api.relate(shop["id"], "depends_on", db["id"], port=5432)
    assert (created["source"], created["target"], created["type"]) == (shop["id"], db["id"], "depends_on")
    assert api.get(f"/api/v1/relationships/{created['id']}", as_="read").json() == created
    assert api.delete(f"/api/v1/relationships/{created['id']}", as_="write").status_code == 204
    assert api.get(f"/api/v1/relationships/{created['id']}").status_code == 404
    assert api.delete(f"/api/v1/relationships/{created['id']}").status_code == 404


def test_unique_per_source_target_type(api, trio):
    shop, db, _ = trio
    first = api.relate(shop["id"], "depends_on", db["id"])
    response = api.post("/api/v1/relationships", json={"source": shop["id"], "target": db["id"], "type": "depends_on"})
    assert response.status_code == 409
    assert response.json()["existing_relationship"] == first["id"]
    # another type between the same pair is a different relationship
    api.relate(shop["id"], "runs_on", db["id"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "loves"}, "type"),
        ({"source": "__missing__"}, "source"),
        ({"target": "__missing__"}, "target"),
        ({"target": "__self__"}, "target"),
        ({"source": "not-a-uuid"}, "source"),
        ({"attributes": "a string"}, "attributes"),
    ],
)
def test_refusals_name_the_field(api, trio, change, field):
    shop, db, _ = trio
    body = {"source": shop["id"], "target": db["id"], "type": "depends_on"}
    for key, value in change.items():
        body[key] = {"__missing__": new_id(), "__self__": shop["id"]}.get(value, value)
    response = api.post("/api/v1/relationships", json=body)
    assert response.status_code == 422, response.text
    assert field in [error["field"] for error in response.json()["errors"]]
    assert api.get("/api/v1/relationships").json()["items"] == []


def test_list_filters_and_pagination(api, trio):
    shop, db, host = trio
    a = api.relate(shop["id"], "depends_on", db["id"])
    b = api.relate(db["id"], "runs_on", host["id"])
    c = api.relate(shop["id"], "runs_on", host["id"])
    ids = lambda query: sorted(r["id"] for r in api.get(f"/api/v1/relationships?{query}").json()["items"])  # noqa: E731
    assert ids("type=runs_on") == sorted([b["id"], c["id"]])
    assert ids(f"source={shop['id']}") == sorted([a["id"], c["id"]])
    assert ids(f"target={host['id']}&source={db['id']}") == [b["id"]]
    first = api.get("/api/v1/relationships?limit=2").json()
    second = api.get(f"/api/v1/relationships?limit=2&cursor={first['next_cursor']}").json()
    assert second["next_cursor"] is None
    assert sorted(r["id"] for r in first["items"] + second["items"]) == sorted([a["id"], b["id"], c["id"]])


def test_a_ci_deleted_while_a_relationship_to_it_is_created_ends_that_relationship(api, app, trio):
    # Relationships have no foreign keys (migration 0006): creating one locks both ends until commit,
    # so a deletion of an end waits and then ends the new relationship with the CI's others.
    import threading

    from app.models.relationship import RelationshipCreate
    from app.services import relationships
    from app.services.history import UnitOfWork

    shop, db, _ = trio
    deleted = {}
    with UnitOfWork(app.state.engine, "test") as uow:
        created = relationships.create_relationship(
            uow, app.state.registry, RelationshipCreate(source=shop["id"], target=db["id"], type="depends_on"))
        deleter = threading.Thread(
            target=lambda: deleted.setdefault("status", api.delete(f"/api/v1/cis/{db['id']}").status_code))
        deleter.start()
        deleter.join(1.0)
        assert deleter.is_alive(), "the deletion did not wait for the relationship's transaction"
    deleter.join(30)
    assert deleted == {"status": 204}
    assert api.get(f"/api/v1/relationships/{created['id']}").status_code == 404
    assert dangling_rows(app.state.engine) == {}


def test_ending_a_relationship_deletes_its_sightings(api, engine):
    refs = discovered_app_host_and_database(api)
    runs_on = api.get(f"/api/v1/relationships?source={refs['a']}&type=runs_on").json()["items"][0]
    assert api.delete(f"/api/v1/relationships/{runs_on['id']}").status_code == 204
    assert api.delete(f"/api/v1/cis/{refs['d']}").status_code == 204  # ends depends_on
    assert dangling_rows(engine) == {}


def test_membership_only_towards_a_redundancy_group(api):
    web, app_ci = api.create_ci("server", "web-1")["id"], api.create_ci("application", "shop")["id"]
    refused = api.post("/api/v1/relationships", json={"source": web, "target": app_ci, "type": "member_of"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "target"
    assert "redundancy group" in refused.json()["detail"]
    cluster = api.create_ci("cluster", "web")["id"]
    api.relate(web, "member_of", cluster)
    pool = api.create_ci("application", "pool", attributes={"min_members": 1})["id"]  # a group by its attribute
    api.relate(web, "member_of", pool)
