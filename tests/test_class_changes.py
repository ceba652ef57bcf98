"""Changing a class never leaves its CIs un-editable, and its rules name only attributes it can have."""


def test_a_schema_that_existing_cis_break_is_refused_naming_them(api):
    big = api.create_ci("virtual_machine", "big", attributes={"cpu_count": 64})  # a subclass of server
    api.create_ci("server", "small", attributes={"cpu_count": 2})
    before = api.get("/api/v1/classes/server").json()
    tighter = {**before["attribute_schema"],
               "properties": {**before["attribute_schema"]["properties"],
                              "cpu_count": {"type": "integer", "minimum": 1, "maximum": 32}}}
    refused = api.patch("/api/v1/classes/server", json={"attribute_schema": tighter})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["violations"] == 1
    assert [(e["id"], e["field"]) for e in body["examples"]] == [(big["id"], "attributes.cpu_count")]
    assert "1 existing CI" in body["detail"] and "big" in body["detail"]
    assert api.get("/api/v1/classes/server").json()["attribute_schema"] == before["attribute_schema"]
    # the CI stays editable, and once it fits, the schema can tighten
    fixed = api.patch(f"/api/v1/cis/{big['id']}", json={"attributes": {"cpu_count": 16}})
    assert fixed.status_code == 200, fixed.text
    assert api.patch("/api/v1/classes/server", json={"attribute_schema": tighter}).status_code == 200
    assert api.patch(f"/api/v1/cis/{big['id']}", json={"owner": "team-a"}).status_code == 200


def test_identification_rules_name_only_declared_attributes(api):
    refused = api.patch("/api/v1/classes/server", json={"identification_rules": [["serial_numbr"]]})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "identification_rules.0"
    assert "serial_numbr" in refused.json()["detail"]
    held = api.patch("/api/v1/classes/server", json={"held_identifiers": ["ip_adress"]})
    assert held.status_code == 422 and held.json()["errors"][0]["field"] == "held_identifiers.0"
    created = api.post("/api/v1/classes", json={"name": "appliance", "identification_rules": [["asset_tag"]]})
    assert created.status_code == 422
    ok = api.post("/api/v1/classes", json={
        "name": "appliance", "identification_rules": [["asset_tag"], ["name", "environment"]],
        "attribute_schema": {"type": "object", "properties": {"asset_tag": {"type": "string"}}}})
    assert ok.status_code == 201, ok.text
    # a subclass inherits the rules: its own schema may not drop what they name (it cannot: schemas add up)
    assert api.post("/api/v1/classes", json={"name": "appliance_x", "parent": "appliance"}).status_code == 201


def test_a_worker_with_an_older_cache_cannot_write_what_a_new_schema_refuses(api, database_url):
    """Two workers on one database: the second tightens a schema while the first still caches the old
    one. The first's next write is checked against the schema as it stands in the database."""
    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.main import create_app
    from tests.conftest import Api

    api.create_ci("service", "warm-up", attributes={"sla": "gold"})  # the first worker's cache is loaded
    other = create_app(Settings(database_url=database_url, load_graph_at_startup=False))
    try:
        with TestClient(other, raise_server_exceptions=False) as client:
            second = Api(client, api.secrets)
            schema = api.get("/api/v1/classes/service").json()["attribute_schema"]
            tighter = {**schema, "properties": {**schema["properties"], "sla": {"enum": ["gold", "silver"]}}}
            assert second.patch("/api/v1/classes/service", json={"attribute_schema": tighter}).status_code == 200
    finally:
        other.state.engine.dispose()
    refused = api.post("/api/v1/cis", json={"class": "service", "name": "late", "attributes": {"sla": "bronze"}})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "attributes.sla"
    batch = {"source": "import", "run_id": "r", "items": [
        {"ref": "s", "class": "service", "name": "late", "identifiers": {"service_id": "S-9"},
         "attributes": {"sla": "bronze"}}]}
    ingested = api.post("/api/v1/ingest", json=batch).json()
    assert ingested["counts"]["errors"] == 1 and ingested["counts"]["created"] == 0
