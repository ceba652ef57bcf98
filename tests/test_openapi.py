"""/openapi.json describes the API exactly: it validates, every reference resolves, a client generated
from it by the real openapi-python-client has every operation and drives a real `karta serve`, and
what the document allows the API accepts (names, text, PATCH nulls, 64-bit integers)."""

import importlib
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from tests.server import karta, running_server

OPENAPI_PYTHON_CLIENT = Path(sys.executable).with_name("openapi-python-client")
INT64_MAX = 2**63 - 1


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A real `karta serve` on loopback over a fresh SQLite database, with an admin token."""
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'karta.db'}"
    assert karta("db", "upgrade", database_url=url).returncode == 0
    created = karta("token", "create", "--name", "openapi", "--scope", "admin", database_url=url)
    assert created.returncode == 0, created.stderr
    with running_server(url) as base:
        yield base, created.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def http(server):
    base, secret = server
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=10,
                      trust_env=False) as client:
        yield client


@pytest.fixture(scope="session")
def document(http) -> dict:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture(scope="session")
def generated(document, tmp_path_factory):
    """The client openapi-python-client generates from the served document (once), imported."""
    directory = tmp_path_factory.mktemp("client")
    (directory / "openapi.json").write_text(json.dumps(document))
    # No post hooks: they would run ruff over the code, which proves nothing about the document.
    # CSV and YAML bodies (POST /api/v1/import) are sent as the bytes of a file: the generator's own
    # way for a content type it has no model for.
    (directory / "config.yaml").write_text("post_hooks: []\ncontent_type_overrides:\n  text/csv: application/octet-stream\n"
                                           "  application/yaml: application/octet-stream\n")
    result = subprocess.run(
        [str(OPENAPI_PYTHON_CLIENT), "generate", "--path", "openapi.json", "--meta", "none",
         "--output-path", "karta_client", "--config", "config.yaml", "--fail-on-warning"],
        cwd=directory, capture_output=True, text=True, timeout=120,
    )
    # A warning means a piece of the document was skipped (as POST /ingest was, its $defs unresolved).
    assert result.returncode == 0 and "Warning" not in result.stdout, result.stdout + result.stderr
    sys.path.insert(0, str(directory))
    try:
        yield importlib.import_module("karta_client")
    finally:
        sys.path.remove(str(directory))
        for name in [name for name in sys.modules if name == "karta_client" or name.startswith("karta_client.")]:
            del sys.modules[name]


def _operations(document: dict) -> dict[str, tuple[str, str]]:
    return {operation["operationId"]: (method, path)
            for path, operations in document["paths"].items() for method, operation in operations.items()}


def _walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from _walk(child)


def _component(document: dict, name: str) -> dict:
    """A component as a standalone JSON Schema: the document's components as its definitions."""
    return {**document["components"]["schemas"][name], "components": document["components"]}


def test_document_is_valid_and_every_reference_resolves(document):
    validate_openapi(document)
    refs = [node["$ref"] for node in _walk(document) if isinstance(node, dict) and "$ref" in node]
    assert refs and all(ref.startswith("#/components/schemas/") for ref in refs), sorted(set(refs))
    assert {ref.rsplit("/", 1)[1] for ref in refs} <= set(document["components"]["schemas"])
    assert not [node for node in _walk(document) if isinstance(node, dict) and "$defs" in node]
    body = document["paths"]["/api/v1/ingest"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/IngestBatch"}
    batch = document["components"]["schemas"]["IngestBatch"]
    assert batch["properties"]["scope"]["$ref"] == "#/components/schemas/IngestScope"


def test_every_operation_is_in_the_generated_client(document, generated):
    api = Path(generated.__file__).parent / "api"
    modules = {path.stem for path in api.glob("*/*.py") if path.stem != "__init__"}
    # openapi-python-client names a module after its operationId, with runs of "_" made one
    assert modules == {re.sub("_+", "_", operation_id) for operation_id in _operations(document)}
    assert len(modules) == 48


def test_links_name_operations_and_their_parameters(document):
    operations = _operations(document)
    responses = {(method, path, status): response for path, methods in document["paths"].items()
                 for method, operation in methods.items() for status, response in operation["responses"].items()}
    linked = {}
    for (method, path, status), response in responses.items():
        for name, link in response.get("links", {}).items():
            target_method, target_path = operations[link["operationId"]]
            target = document["paths"][target_path][target_method]
            assert set(link["parameters"]) <= {p["name"] for p in target.get("parameters", [])}, name
            linked.setdefault((method, path), set()).add((target_method, target_path, *link["parameters"].values()))
    created_ci = {(m, "/api/v1/cis/{ci_id}" + tail, "$response.body#/id")
                  for m, tail in (("get", ""), ("patch", ""), ("delete", ""), ("get", "/history"),
                                  ("get", "/spof"), ("get", "/neighborhood"))}
    assert linked[("post", "/api/v1/cis")] == created_ci
    assert {("get", "/api/v1/relationships/{relationship_id}", "$response.body#/id"),
            ("delete", "/api/v1/relationships/{relationship_id}", "$response.body#/id")} <= \
        linked[("post", "/api/v1/relationships")]
    assert linked[("post", "/api/v1/tokens")] == {("delete", "/api/v1/tokens/{token_id}", "$response.body#/id")}
    assert ("get", "/api/v1/discovery/runs/{run_id}", "$response.body#/run_id") in linked[("post", "/api/v1/ingest")]


def test_a_tour_through_the_generated_client(generated, server):
    from karta_client.api.configuration_items import create_ci_api_v1_cis_post as create_ci
    from karta_client.api.configuration_items import get_ci_api_v1_cis_ci_id_get as get_ci
    from karta_client.api.discovery import ingest_batch_api_v1_ingest_post as ingest
    from karta_client.api.impact import impact_of_change_api_v1_impact_post as impact
    from karta_client.api.relationships import create_relationship_api_v1_relationships_post as relate
    from karta_client.models import CICreate, CIPublic, ImpactRequest, IngestBatch, Problem, RelationshipCreate

    base, secret = server
    client = generated.AuthenticatedClient(base_url=base, token=secret, httpx_args={"trust_env": False})
    created = {}
    for ci_class, name in (("service", "tour-shop"), ("application", "tour-shop-web")):
        response = create_ci.sync_detailed(client=client, body=CICreate.from_dict({"class": ci_class, "name": name}))
        assert response.status_code == 201 and isinstance(response.parsed, CIPublic), response.content
        assert (response.parsed.class_, response.parsed.name) == (ci_class, name)
        created[ci_class] = response.parsed
    service, application = created["service"], created["application"]
    related = relate.sync_detailed(client=client, body=RelationshipCreate.from_dict(
        {"source": str(service.id), "target": str(application.id), "type": "depends_on"}))
    assert related.status_code == 201, related.content
    assert (related.parsed.source, related.parsed.target) == (service.id, application.id)

    # a host and its database from discovery; the application depends on the database
    batch = IngestBatch.from_dict({
        "source": "ssh", "run_id": "tour-1", "items": [
            {"ref": "h", "class": "server", "name": "tour-host", "identifiers": {"fqdn": "tour-host.example.com"}},
            {"ref": "d", "class": "database", "name": "tour-db", "identifiers": {"instance_key": "tour-host/pg/5432"}}],
        "relationships": [{"source": "d", "target": "h", "type": "runs_on"},
                          {"source": str(application.id), "target": "d", "type": "depends_on"}]})
    outcome = ingest.sync_detailed(client=client, body=batch)
    assert outcome.status_code == 200, outcome.content
    assert outcome.parsed.errors == [] and outcome.parsed.conflicts == [], outcome.content
    refs = outcome.parsed.refs.additional_properties
    assert set(refs) == {"h", "d"}
    host = get_ci.sync_detailed(client=client, ci_id=refs["h"])
    assert (host.status_code, host.parsed.name, host.parsed.class_) == (200, "tour-host", "server")

    answer = impact.sync_detailed(client=client, body=ImpactRequest.from_dict({"ci_ids": [refs["h"]]}))
    assert answer.status_code == 200, answer.content
    impacted = {entry["id"]: entry for entry in answer.parsed["impacted"]}
    assert set(impacted) == {str(service.id), str(application.id), refs["d"]}

    blank = create_ci.sync_detailed(client=client, body=CICreate.from_dict({"class": "service", "name": " \t"}))
    assert blank.status_code == 422 and isinstance(blank.parsed, Problem)
    assert [error["field"] for error in blank.parsed.errors] == ["name"]


@pytest.mark.parametrize("name", ["   ", "\t\n", "\u3000", "a\x00b"])
def test_the_document_refuses_the_names_the_api_refuses(document, http, name):
    schema = _component(document, "CICreate")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"class": "server", "name": name}, schema)
    for method, url, body in (("POST", "/api/v1/cis", {"class": "server", "name": name}),
                              ("POST", "/api/v1/tokens", {"name": name, "scopes": ["read"]})):
        response = http.request(method, url, json=body)
        assert response.status_code == 422, response.text
        assert [error["field"] for error in response.json()["errors"]] == ["name"]
    ci = http.post("/api/v1/cis", json={"class": "server", "name": f"renamed-{uuid.uuid4()}"}).json()
    assert http.patch(f"/api/v1/cis/{ci['id']}", json={"name": name}).status_code == 422


def test_names_with_something_besides_whitespace_are_accepted(document, http):
    for name in (" padded ", "\u3000x", "ж"):
        jsonschema.validate({"class": "server", "name": name}, _component(document, "CICreate"))
        response = http.post("/api/v1/cis", json={"class": "server", "name": name})
        assert response.status_code == 201 and response.json()["name"] == name


@pytest.mark.parametrize("field", ["class", "name", "status", "tags", "attributes"])
def test_a_patch_field_that_cannot_be_null_is_not_documented_nullable(document, http, field):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({field: None}, _component(document, "CIUpdate"))
    ci = http.post("/api/v1/cis", json={"class": "server", "name": f"patch-null-{field}"}).json()
    assert http.patch(f"/api/v1/cis/{ci['id']}", json={field: None}).status_code == 422
    # the fields null clears are still documented nullable, and accepted
    jsonschema.validate({"owner": None}, _component(document, "CIUpdate"))
    assert http.patch(f"/api/v1/cis/{ci['id']}", json={"owner": None}).status_code == 200


def test_attributes_are_documented_as_the_api_stores_them(document, http):
    # (JSON Schema calls 1e300 an integer, so the document refuses it; the API stores it as a float.)
    schema = _component(document, "CICreate")
    assert "9223372036854775807" in json.dumps(document["components"]["schemas"]["StorableJSON"])
    for attributes, accepted in (({"n": INT64_MAX, "deep": [{"s": "text"}]}, True), ({"n": INT64_MAX + 1}, False),
                                 ({"s": ["a\x00"]}, False), ({"k\x00": 1}, False), ({"f": 2.5}, True)):
        body = {"class": "server", "name": f"attributes-{uuid.uuid4()}", "attributes": attributes}
        if accepted:
            jsonschema.validate(body, schema)
        else:
            with pytest.raises(jsonschema.ValidationError):
                jsonschema.validate(body, schema)
        assert http.post("/api/v1/cis", json=body).status_code == (201 if accepted else 422), attributes


def test_class_and_type_names_follow_the_registry_pattern(document, http):
    ci = http.post("/api/v1/cis", json={"class": "server", "name": "pattern-a"}).json()
    other = http.post("/api/v1/cis", json={"class": "server", "name": "pattern-b"}).json()
    for url, body, field, component in (
        ("/api/v1/cis", {"class": "Server", "name": "x"}, "class", "CICreate"),
        ("/api/v1/relationships", {"source": ci["id"], "target": other["id"], "type": "Depends On"}, "type",
         "RelationshipCreate"),
        ("/api/v1/impact", {"ci_ids": [ci["id"]], "types": ["x\x00"]}, "types.0", "ImpactRequest"),
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(body, _component(document, component))
        response = http.post(url, json=body)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == field, response.text
