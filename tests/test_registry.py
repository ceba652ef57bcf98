"""The class and relationship-type registry: seeded by migration, extended by admins."""


def test_seeded_classes_and_families(api):
    classes = {c["name"]: c for c in api.get("/api/v1/classes", as_="read").json()}
    assert {"server", "virtual_machine", "container", "network_device", "load_balancer", "ip_address", "subnet",
            "application", "database", "web_server", "service", "cluster"} <= set(classes)
    assert classes["database"]["parent"] == "application"
    assert classes["virtual_machine"]["family"] == "server"
    assert classes["virtual_machine"]["effective_identification_rules"][:3] == [
        ["serial_number"], ["product_uuid"], ["machine_id"]]
    assert classes["ip_address"]["identification_rules"] == [["address"]]


def test_seeded_relationship_types(api):
    types = {t["name"]: t for t in api.get("/api/v1/relationship-types").json()}
    assert (types["depends_on"]["forward_label"], types["depends_on"]["reverse_label"]) == ("depends on", "used by")
    assert types["depends_on"]["impact_direction"] == "target_to_source"
    assert types["member_of"]["membership"] is True
    assert types["contains"]["reverse_label"] == "contained in"


def test_new_class_with_schema_inherits_parent_rules(api):
    response = api.post("/api/v1/classes", json={
        "name": "kafka_broker", "parent": "application",
        "attribute_schema": {"type": "object", "properties": {"broker_id": {"type": "integer"}}}})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["family"] == "application"
    assert body["effective_identification_rules"] == [["instance_key"]]
    bad = api.post("/api/v1/cis", json={"class": "kafka_broker", "name": "k1",
                                        "attributes": {"broker_id": "one", "port": 0}})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"attributes.broker_id", "attributes.port"}
    api.create_ci("kafka_broker", "k1", attributes={"broker_id": 1})
    assert [c["name"] for c in api.get("/api/v1/cis?class=application").json()["items"]] == ["k1"]


def test_class_refusals(api):
    assert api.post("/api/v1/classes", json={"name": "server"}).status_code == 409
    assert api.post("/api/v1/classes", json={"name": "x", "parent": "nope"}).status_code == 422
    assert api.post("/api/v1/classes", json={"name": "Bad Name"}).status_code == 422
    response = api.post("/api/v1/classes", json={"name": "x", "attribute_schema": {"type": "nonsense"}})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "attribute_schema.type"
    assert api.post("/api/v1/classes", json={"name": "x", "identification_rules": [[]]}).status_code == 422
    assert api.patch("/api/v1/classes/nope", json={"label": "x"}).status_code == 404


def test_changing_identification_rules_reindexes_or_refuses(api):
    api.create_ci("service", "payments", environment="prod", attributes={"sla": "gold"})
    api.create_ci("service", "billing", environment="prod", attributes={"sla": "gold"})
    clash = api.patch("/api/v1/classes/service", json={"identification_rules": [["sla"]]})
    assert clash.status_code == 409
    # refused: the old rules still hold
    assert api.post("/api/v1/cis", json={"class": "service", "name": "payments", "environment": "prod"}).status_code == 409
    assert api.patch("/api/v1/classes/service", json={"identification_rules": [["service_id"]]}).status_code == 200
    api.create_ci("service", "payments", environment="prod")  # name+environment no longer identifies


def test_new_relationship_type(api):
    response = api.post("/api/v1/relationship-types", json={
        "name": "replicates_to", "forward_label": "replicates to", "reverse_label": "replica of",
        "impact_direction": "none"})
    assert response.status_code == 201
    a, b = api.create_ci("database", "a"), api.create_ci("database", "b")
    api.relate(a["id"], "replicates_to", b["id"])
    assert api.post("/api/v1/relationship-types", json={
        "name": "replicates_to", "forward_label": "x", "reverse_label": "y", "impact_direction": "none"}).status_code == 409
    assert api.post("/api/v1/relationship-types", json={
        "name": "y", "forward_label": "x", "reverse_label": "y", "impact_direction": "sideways"}).status_code == 422


def test_a_new_relationship_type_is_not_served_before_it_commits(app, engine):
    # relationship.type has no foreign key (migration 0004): no request may see a type that another
    # transaction has not committed yet, so the worker's registry cache must not pick it up early.
    from app.models.relationship import RelationshipTypeCreate
    from app.services import classes
    from app.services.history import UnitOfWork

    cache = app.state.registry
    cache.get()
    with UnitOfWork(engine, "tests") as uow:
        info = classes.create_relationship_type(uow, RelationshipTypeCreate(
            name="mirrors", forward_label="mirrors", reverse_label="mirrored by", impact_direction="none"))
        assert info.name == "mirrors"
        assert "mirrors" not in cache.get().relationship_types
    assert "mirrors" in cache.reload().relationship_types
