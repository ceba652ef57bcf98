"""Relationships: create, read, list with filters, delete, and every refusal."""

import pytest

from tests.conftest import new_id


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
