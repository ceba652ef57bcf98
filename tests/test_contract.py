"""The resource contract, for every mutating endpoint (as NetBox's API test mixins give every resource
the same tests): a success writes exactly one change record per object it changed; bad input is a
problem+json 4xx that changes nothing and writes no record; nothing answers 500.

A mutating route added without an entry in CONTRACT fails test_contract_covers_every_mutating_route.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import pytest

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@dataclass
class Operation:
    method: str
    path: str
    # api -> (url, json body, expected {(object_type, action): count})
    make: Callable[..., tuple[str, object, dict[tuple[str, str], int]]]
    status: int


def _ci(api, name="c", ci_class="server", **fields):
    return api.create_ci(ci_class, name, **fields)["id"]


def _create_ci(api):
    return "/api/v1/cis", {"class": "server", "name": "new"}, {("ci", "create"): 1}


def _patch_ci(api):
    return f"/api/v1/cis/{_ci(api)}", {"owner": "team-x"}, {("ci", "update"): 1}


def _delete_ci(api):
    host, other = _ci(api, "h"), _ci(api, "o")
    api.relate(other, "connects_to", host)
    api.relate(host, "connects_to", other)
    return f"/api/v1/cis/{host}", None, {("ci", "delete"): 1, ("relationship", "delete"): 2}


def _create_relationship(api):
    return "/api/v1/relationships", {"source": _ci(api, "a"), "target": _ci(api, "b"), "type": "depends_on"}, {
        ("relationship", "create"): 1}


def _delete_relationship(api):
    rel = api.relate(_ci(api, "a"), "depends_on", _ci(api, "b"))["id"]
    return f"/api/v1/relationships/{rel}", None, {("relationship", "delete"): 1}


def _create_class(api):
    return "/api/v1/classes", {"name": "kafka", "parent": "application"}, {("class", "create"): 1}


def _update_class(api):
    return "/api/v1/classes/service", {"description": "What people use"}, {("class", "update"): 1}


def _create_type(api):
    return "/api/v1/relationship-types", {"name": "backs_up", "forward_label": "backs up", "reverse_label": "backed up by",
                                          "impact_direction": "none"}, {("relationship_type", "create"): 1}


def _replace_precedence(api):
    return "/api/v1/precedence", [{"sources": ["manual", "nmap", "ssh"]}], {("precedence", "update"): 1}


def _create_token(api):
    return "/api/v1/tokens", {"name": "new-bot", "scopes": ["read"]}, {("token", "create"): 1}


def _revoke_token(api):
    made = api.post("/api/v1/tokens", json={"name": "old-bot", "scopes": ["read"]}).json()["id"]
    return f"/api/v1/tokens/{made}", None, {("token", "update"): 1}


def _ingest(api):
    known = _ci(api, "known", attributes={"serial_number": "SN-K"})
    body = {"source": "ssh", "run_id": "contract", "scope": {"hosts": ["h1"]},
            "items": [{"ref": "h1", "class": "server", "name": "h1", "identifiers": {"serial_number": "SN-1"}},
                      {"ref": "k", "class": "server", "name": "known", "identifiers": {"serial_number": "SN-K"},
                       "attributes": {"os_name": "debian"}},
                      {"ref": "a1", "class": "application", "name": "web", "identifiers": {"instance_key": "h1/web"}}],
            "relationships": [{"source": "a1", "target": "h1", "type": "runs_on"},
                              {"source": "a1", "target": known, "type": "depends_on"}]}
    return "/api/v1/ingest", body, {("ci", "create"): 2, ("ci", "update"): 1, ("relationship", "create"): 2}


def _create_webhook(api):
    return "/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "secret": "a-secret-of-16-chars"}, {
        ("webhook", "create"): 1}


def _webhook(api):
    made = api.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "secret": "a-secret-of-16-chars"})
    return made.json()["id"]


def _update_webhook(api):
    return f"/api/v1/webhooks/{_webhook(api)}", {"filters": {"classes": ["server"]}}, {("webhook", "update"): 1}


def _delete_webhook(api):
    return f"/api/v1/webhooks/{_webhook(api)}", None, {("webhook", "delete"): 1}


def _alertmanager(api):
    alert = {"status": "firing", "labels": {"alertname": "Down", "instance": "10.0.0.1:9100"}, "annotations": {},
             "startsAt": "2026-12-02T15:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "f1"}
    return "/api/v1/integrations/alertmanager", {"version": "4", "groupKey": "{}:{}", "status": "firing",
                                                 "receiver": "karta", "alerts": [alert]}, {("incident", "create"): 1}


def _generic_alert(api):
    return "/api/v1/integrations/alerts", {"host": "db-1", "service": "PostgreSQL", "state": "CRITICAL"}, {
        ("incident", "create"): 1}


def _import(api):
    _ci(api, "known", attributes={"serial_number": "SN-K"})
    body = {"cis": [{"class": "server", "name": "h1", "identifiers": {"serial_number": "SN-1"}, "owner": "ops"},
                    {"class": "server", "name": "known", "identifiers": {"serial_number": "SN-K"}, "criticality": 2}],
            "relationships": [{"source": "serial_number=SN-1", "type": "depends_on", "target": "name=known"}]}
    return "/api/v1/import", body, {("ci", "create"): 1, ("ci", "update"): 1, ("relationship", "create"): 1}


CONTRACT = [
    Operation("POST", "/api/v1/cis", _create_ci, 201),
    Operation("PATCH", "/api/v1/cis/{ci_id}", _patch_ci, 200),
    Operation("DELETE", "/api/v1/cis/{ci_id}", _delete_ci, 204),
    Operation("POST", "/api/v1/relationships", _create_relationship, 201),
    Operation("DELETE", "/api/v1/relationships/{relationship_id}", _delete_relationship, 204),
    Operation("POST", "/api/v1/classes", _create_class, 201),
    Operation("PATCH", "/api/v1/classes/{name}", _update_class, 200),
    Operation("POST", "/api/v1/relationship-types", _create_type, 201),
    Operation("PUT", "/api/v1/precedence", _replace_precedence, 200),
    Operation("POST", "/api/v1/tokens", _create_token, 201),
    Operation("DELETE", "/api/v1/tokens/{token_id}", _revoke_token, 204),
    Operation("POST", "/api/v1/ingest", _ingest, 200),
    Operation("POST", "/api/v1/webhooks", _create_webhook, 201),
    Operation("PATCH", "/api/v1/webhooks/{webhook_id}", _update_webhook, 200),
    Operation("DELETE", "/api/v1/webhooks/{webhook_id}", _delete_webhook, 204),
    Operation("POST", "/api/v1/integrations/alertmanager", _alertmanager, 200),
    Operation("POST", "/api/v1/integrations/alerts", _generic_alert, 200),
    Operation("POST", "/api/v1/import", _import, 200),
]
# Mutating routes that change nothing stored: questions asked with a body.
READ_ONLY_POSTS = {("POST", "/api/v1/impact"), ("POST", "/api/v1/blast-radius"), ("POST", "/api/v1/root-cause")}
IDS = [f"{op.method} {op.path}" for op in CONTRACT]
DEEP = b'{"a":' * 1200 + b"null" + b"}" * 1200  # deeper than any decoder's default recursion
BAD_BODIES = [b"", b"{", b"[]", b'"text"', b"null", b'{"name": 5, "class": []}', b"\xff\xfe", DEEP,
              b'[{"a":' * 1000 + b"1" + b"}]" * 1000]


def _head(api) -> int:
    return api.get("/api/v1/changes?limit=1").json()["head_seq"]


def _records_since(api, seq: int) -> Counter:
    items = api.get(f"/api/v1/changes?since={seq}&limit=10000").json()["items"]
    return Counter((r["object_type"], r["action"]) for r in items)


def test_contract_covers_every_mutating_route(app):
    routes = {(method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations
              if method.upper() in ("POST", "PUT", "PATCH", "DELETE")}
    assert routes == {(op.method, op.path) for op in CONTRACT} | READ_ONLY_POSTS


@pytest.mark.parametrize("op", CONTRACT, ids=IDS)
def test_a_change_writes_one_record_per_object_changed(api, op):
    url, body, expected = op.make(api)
    before = _head(api)
    response = api.request(op.method, url, json=body)
    assert response.status_code == op.status, response.text
    assert _records_since(api, before) == Counter(expected)


@pytest.mark.parametrize("op", CONTRACT, ids=IDS)
def test_bad_input_is_a_problem_that_changes_nothing(api, op):
    url, _, _ = op.make(api)
    before = _head(api)
    parent = url.rsplit("/", 1)[0]
    missing = parent + "/" + ("no_such_class" if op.path.endswith("{name}") else UNKNOWN)
    malformed = parent + "/not%20an%20id"
    if op.method == "DELETE":  # no body: only what it names can be wrong
        attempts = [(missing, None), (malformed, None)]
    else:
        bodies = [body for body in BAD_BODIES if not (body == b"[]" and op.path == "/api/v1/precedence")]  # no rules
        attempts = [(target, body) for target in ([url, missing] if "{" in op.path else [url]) for body in bodies]
    for target, body in attempts:
        response = api.request(op.method, target, content=body, headers={"Content-Type": "application/json"})
        shown = body[:40] if body else body
        assert 400 <= response.status_code < 500, (target, shown, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json", (target, shown)
        assert {"type", "title", "status", "detail"} <= response.json().keys()
    assert _records_since(api, before) == Counter()
