"""Auth: every endpoint but /healthz and /readyz needs a token; each needs its scope.

One contract table lists every route with the scope it needs; a test fails if a route is added
without an entry, so no endpoint can ship unprotected by accident.
"""

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import new_id

ANY_ID = "00000000-0000-4000-8000-000000000000"
# (method, path, minimal scope)
CONTRACT = [
    ("GET", "/api/v1/cis", "read"),
    ("POST", "/api/v1/cis", "write"),
    ("GET", "/api/v1/cis/{ci_id}", "read"),
    ("PATCH", "/api/v1/cis/{ci_id}", "write"),
    ("DELETE", "/api/v1/cis/{ci_id}", "write"),
    ("GET", "/api/v1/cis/{ci_id}/history", "read"),
    ("GET", "/api/v1/relationships", "read"),
    ("POST", "/api/v1/relationships", "write"),
    ("GET", "/api/v1/relationships/{relationship_id}", "read"),
    ("DELETE", "/api/v1/relationships/{relationship_id}", "write"),
    ("GET", "/api/v1/changes", "read"),
    ("GET", "/api/v1/classes", "read"),
    ("GET", "/api/v1/classes/{name}", "read"),
    ("POST", "/api/v1/classes", "admin"),
    ("PATCH", "/api/v1/classes/{name}", "admin"),
    ("GET", "/api/v1/relationship-types", "read"),
    ("POST", "/api/v1/relationship-types", "admin"),
    ("POST", "/api/v1/tokens", "admin"),
    ("GET", "/api/v1/tokens", "admin"),
    ("DELETE", "/api/v1/tokens/{token_id}", "admin"),
    ("POST", "/api/v1/ingest", "discovery|write"),
    ("GET", "/api/v1/discovery/runs", "read"),
    ("GET", "/api/v1/discovery/runs/{run_id}", "read"),
    ("GET", "/api/v1/precedence", "read"),
    ("PUT", "/api/v1/precedence", "admin"),
    ("POST", "/api/v1/impact", "read"),
    ("POST", "/api/v1/blast-radius", "read"),
    ("POST", "/api/v1/root-cause", "read"),
    ("GET", "/api/v1/cis/{ci_id}/spof", "read"),
    ("GET", "/api/v1/cis/{ci_id}/neighborhood", "read"),
    ("GET", "/api/v1/cis/{ci_id}/service-map", "read"),
    ("GET", "/api/v1/search", "read"),
    ("POST", "/api/v1/webhooks", "admin"),
    ("GET", "/api/v1/webhooks", "admin"),
    ("GET", "/api/v1/webhooks/{webhook_id}", "admin"),
    ("PATCH", "/api/v1/webhooks/{webhook_id}", "admin"),
    ("DELETE", "/api/v1/webhooks/{webhook_id}", "admin"),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries", "admin"),
    ("POST", "/api/v1/integrations/alertmanager", "write"),
    ("POST", "/api/v1/integrations/alerts", "write"),
    ("GET", "/api/v1/incidents", "read"),
    ("GET", "/api/v1/incidents/{incident_id}", "read"),
    ("GET", "/metrics", "read"),
    ("GET", "/api/v1/integrations/prometheus/targets", "read"),
    ("GET", "/api/v1/integrations/ansible/inventory", "read"),
    ("POST", "/api/v1/import", "discovery|write"),
]
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz")}
GRANTS = {"read": {"read"}, "write": {"read", "write"}, "discovery": {"read", "discovery"},
          "admin": {"read", "write", "discovery", "admin"}}


def _url(path: str) -> str:
    return path.replace("{ci_id}", ANY_ID).replace("{relationship_id}", ANY_ID).replace(
        "{token_id}", ANY_ID).replace("{webhook_id}", ANY_ID).replace("{incident_id}", ANY_ID).replace(
        "{name}", "server").replace("{run_id}", "r1")


def test_contract_covers_every_route(app):
    routes = {(method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations}
    assert routes == {(m, p) for m, p, _ in CONTRACT} | PUBLIC


@pytest.mark.parametrize(("method", "path", "needed"), CONTRACT)
def test_scopes(api, method, path, needed):
    url = _url(path)
    no_token = api.request(method, url, as_=None, json={})
    assert no_token.status_code == 401
    assert no_token.headers["content-type"] == "application/problem+json"
    bad_token = api.request(method, url, as_=None, json={}, headers={"Authorization": "Bearer karta_nope"})
    assert bad_token.status_code == 401
    for scope, grants in GRANTS.items():
        status = api.request(method, url, as_=scope, json={}).status_code
        if grants & set(needed.split("|")):
            assert status not in (401, 403) and status < 500, (scope, status)
        else:
            assert status == 403, (scope, status)


def test_health_needs_no_token(api):
    assert api.get("/healthz", as_=None).json() == {"status": "ok"}
    assert api.get("/readyz", as_=None).json()["status"] == "ready"


def test_token_lifecycle(api):
    created = api.post("/api/v1/tokens", json={"name": "ci-bot", "scopes": ["read"]})
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("karta_")
    headers = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/v1/cis", as_=None, headers=headers).status_code == 200
    listed = {t["name"]: t for t in api.get("/api/v1/tokens").json()}
    assert "secret" not in listed["ci-bot"] and "secret_hash" not in listed["ci-bot"]
    assert listed["ci-bot"]["last_used_at"] is not None
    assert api.post("/api/v1/tokens", json={"name": "ci-bot", "scopes": ["read"]}).status_code == 409
    assert api.delete(f"/api/v1/tokens/{created.json()['id']}").status_code == 204
    assert api.get("/api/v1/cis", as_=None, headers=headers).status_code == 401
    assert api.delete(f"/api/v1/tokens/{new_id()}").status_code == 404


def test_secret_is_stored_only_as_hash(api, engine):
    secret = api.post("/api/v1/tokens", json={"name": "h", "scopes": ["read"]}).json()["secret"]
    with engine.connect() as conn:
        dump = str(conn.exec_driver_sql("SELECT * FROM api_token").all())
    assert secret not in dump


def test_expired_token_is_refused(api):
    soon = datetime.now(UTC) + timedelta(seconds=1)
    secret = api.post("/api/v1/tokens", json={"name": "old", "scopes": ["read"],
                                             "expires_at": soon.isoformat()}).json()["secret"]
    headers = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/v1/cis", as_=None, headers=headers).status_code == 200  # cached from here on
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.05)
    assert api.get("/api/v1/cis", as_=None, headers=headers).status_code == 401
    assert {t["name"]: t["state"] for t in api.get("/api/v1/tokens").json()}["old"] == "expired"


def test_token_scopes_are_validated(api):
    response = api.post("/api/v1/tokens", json={"name": "x", "scopes": ["root"]})
    assert response.status_code == 422
    assert api.post("/api/v1/tokens", json={"name": "x", "scopes": []}).status_code == 422
