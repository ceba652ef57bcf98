"""Who may say what: tokens bound to the sources they report as, revocation that holds across workers,
a verifier cache that random secrets cannot flush, and the `karta token` commands."""

import json
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
import httpx
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.services.tokens import NOT_CACHED, TokenVerifier
from tests.server import karta, running_server


def _batch(source: str) -> dict:
    return {"source": source, "run_id": f"run-{source}", "scope": {"hosts": ["h1"]},
            "items": [{"ref": "h1", "class": "server", "name": "h1", "identifiers": {"serial_number": "SN-T1"}}]}


def _token(api, name: str, scopes: list[str], **fields) -> str:
    created = api.post("/api/v1/tokens", json={"name": name, "scopes": scopes, **fields})
    assert created.status_code == 201, created.text
    return created.json()["secret"]


def _bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize("scope", ["discovery", "write", "admin"])
def test_ingest_refuses_the_manual_source_whatever_the_token(api, scope):
    response = api.post("/api/v1/ingest", as_=scope, json=_batch("manual"))
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "manual" in response.json()["detail"] and response.json()["source"] == "manual"
    assert api.get("/api/v1/cis").json()["items"] == []  # nothing was applied


def test_a_token_reports_only_as_its_sources(api):
    secret = _token(api, "zone-a", ["discovery"], sources=["ssh", "nmap"])
    refused = api.post("/api/v1/ingest", as_=None, headers=_bearer(secret), json=_batch("snmp"))
    assert refused.status_code == 403
    assert "'snmp'" in refused.json()["detail"] and "nmap, ssh" in refused.json()["detail"]
    assert api.post("/api/v1/ingest", as_=None, headers=_bearer(secret), json=_batch("ssh")).status_code == 200
    listed = {t["name"]: t for t in api.get("/api/v1/tokens").json()}
    assert listed["zone-a"]["sources"] == ["nmap", "ssh"]
    assert listed["discovery-bot"]["sources"] is None  # any source but manual
    assert api.post("/api/v1/ingest", as_="discovery", json=_batch("snmp")).status_code == 200


def test_a_token_cannot_be_made_to_report_as_manual_or_to_expire_in_the_past(api):
    manual = api.post("/api/v1/tokens", json={"name": "m", "scopes": ["discovery"], "sources": ["ssh", "manual"]})
    assert manual.status_code == 422 and manual.json()["errors"][0]["field"] == "sources.1"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired = api.post("/api/v1/tokens", json={"name": "old", "scopes": ["read"], "expires_at": past})
    assert expired.status_code == 422 and expired.json()["errors"][0]["field"] == "expires_at"
    for name in ("", "   "):
        assert api.post("/api/v1/tokens", json={"name": name, "scopes": ["read"]}).status_code == 422
    assert {t["name"] for t in api.get("/api/v1/tokens").json()} == {"read-bot", "write-bot", "discovery-bot",
                                                                     "admin-bot"}


def test_revocation_holds_in_every_worker_once_it_answers(api, database_url):
    # A second worker on the same database, with its own verifier cache.
    other = create_app(Settings(database_url=database_url, token_cache_seconds=1.0, load_graph_at_startup=False))
    api.client.app.state.token_verifier._cache_seconds = 1.0  # noqa: SLF001 - the revoking worker waits this long
    try:
        with TestClient(other, raise_server_exceptions=False) as second:
            created = api.post("/api/v1/tokens", json={"name": "leaving", "scopes": ["read"]}).json()
            headers = _bearer(created["secret"])
            assert second.get("/api/v1/cis", headers=headers).status_code == 200  # now cached there
            assert other.state.token_verifier.cached(created["secret"]) is not NOT_CACHED
            started = time.monotonic()
            assert api.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
            assert time.monotonic() - started >= 1.0
            assert second.get("/api/v1/cis", headers=headers).status_code == 401
            assert api.get("/api/v1/cis", as_=None, headers=headers).status_code == 401
    finally:
        other.state.engine.dispose()


def test_random_secrets_cannot_evict_a_valid_token(api, engine):
    verifier = TokenVerifier(engine, 60)  # trusted long enough for the flood below
    valid = api.secrets["read"]
    assert verifier.verify(valid) is not None
    for _ in range(12_000):  # more than the cache holds
        assert verifier.verify("karta_" + secrets.token_urlsafe(32)) is None
    assert verifier.cached(valid) not in (None, NOT_CACHED)  # answered without the database


def test_token_changes_are_in_the_change_feed_without_the_secret(api):
    created = api.post("/api/v1/tokens", json={"name": "audited", "scopes": ["discovery"], "sources": ["ssh"]}).json()
    assert api.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    records = [r for r in api.get("/api/v1/changes?since=0").json()["items"] if r["object_id"] == created["id"]]
    assert [(r["object_type"], r["action"], r["actor"]) for r in records] == [
        ("token", "create", "admin-bot"), ("token", "update", "admin-bot")]
    assert records[0]["diff"]["name"] == [None, "audited"] and records[0]["diff"]["sources"] == [None, ["ssh"]]
    assert list(records[1]["diff"]) == ["revoked_at"]
    assert created["secret"] not in str(records)
    assert api.delete(f"/api/v1/tokens/{created['id']}").status_code == 204  # already revoked: no new record
    assert len([r for r in api.get("/api/v1/changes?since=0").json()["items"] if r["object_id"] == created["id"]]) == 2


def test_token_commands(database_url):
    made = karta("token", "create", "--name", "zone-b", "--scope", "discovery", "--source", "ssh",
                 "--source", "nmap", database_url=database_url)
    assert made.returncode == 0, made.stderr
    assert "sources: nmap,ssh" in made.stdout
    assert made.stdout.strip().splitlines()[-1].startswith("karta_")
    assert karta("token", "create", "--name", "old-bot", "--scope", "read", database_url=database_url).returncode == 0
    for name in ("", "  "):
        empty = karta("token", "create", "--name", name, "--scope", "read", database_url=database_url)
        assert empty.returncode == 1 and "name" in empty.stderr
    past = karta("token", "create", "--name", "p", "--scope", "read", "--expires", "2020-01-01T00:00:00",
                 database_url=database_url)
    assert past.returncode == 1 and "past" in past.stderr
    revoked = karta("token", "revoke", "old-bot", database_url=database_url)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
    assert karta("token", "revoke", "nobody", database_url=database_url).returncode == 1
    listed = karta("token", "list", database_url=database_url).stdout
    lines = {line.split()[1]: line for line in listed.splitlines()}
    assert " revoked " in lines["old-bot"] and "sources nmap,ssh" in lines["zone-b"] and " active " in lines["zone-b"]


def test_a_write_accepted_before_a_revocation_cannot_commit_after_it(database_url):
    """The token is checked again inside the write's transaction: an ingest whose body was still
    arriving when the token was revoked applies nothing (the auth dependency had let it in)."""
    admin = karta("token", "create", "--name", "admin", "--scope", "admin", database_url=database_url)
    leaked = karta("token", "create", "--name", "leaked", "--scope", "discovery", database_url=database_url)
    admin, leaked = (made.stdout.strip().splitlines()[-1] for made in (admin, leaked))
    env = {"KARTA_LOAD_GRAPH_AT_STARTUP": "false", "KARTA_TOKEN_CACHE_SECONDS": "0.5"}
    with running_server(database_url, env=env) as base:
        auth = {"Authorization": f"Bearer {admin}"}
        (token_id,) = [t["id"] for t in httpx.get(f"{base}/api/v1/tokens", headers=auth).json() if t["name"] == "leaked"]
        body = json.dumps({"source": "ssh", "run_id": "r1", "scope": {"hosts": ["h"]}, "items": [
            {"ref": "h", "class": "server", "name": "after-revocation", "identifiers": {"serial_number": "SN-R"}}]})
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {leaked}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body[:10]}".encode())
            time.sleep(0.5)  # accepted: the endpoint waits for the rest of its body
            assert httpx.delete(f"{base}/api/v1/tokens/{token_id}", headers=auth).status_code == 204
            sock.sendall(body[10:].encode())
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
        assert httpx.get(f"{base}/api/v1/cis", headers=auth).json()["items"] == []
