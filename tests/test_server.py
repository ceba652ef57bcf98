"""The real thing: `karta` commands and uvicorn with two workers, driven over HTTP like a user would."""

import httpx
import pytest

from tests.server import free_port, karta, running_server


@pytest.fixture
def empty_database_url(database_url):
    """The same fresh database, rolled back to nothing, as a new installation has it."""
    result = karta("db", "downgrade", "base", database_url=database_url)
    assert result.returncode == 0, result.stderr
    return database_url


def test_serve_refuses_a_database_that_is_behind(empty_database_url):
    result = karta("serve", "--port", str(free_port()), database_url=empty_database_url, timeout=30)
    assert result.returncode == 1
    assert "karta db upgrade" in result.stderr


def test_tour(empty_database_url):
    url = empty_database_url
    assert karta("db", "upgrade", database_url=url).returncode == 0
    created = karta("token", "create", "--name", "tour", "--scope", "read", "--scope", "write", database_url=url)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("karta_")
    with running_server(url, workers=2) as base, httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=10
    ) as http:
        service = http.post("/api/v1/cis", json={"class": "service", "name": "shop", "criticality": 1}).json()
        app = http.post("/api/v1/cis", json={"class": "application", "name": "shop-web"}).json()
        host = http.post("/api/v1/cis", json={"class": "virtual_machine", "name": "web-1",
                                               "attributes": {"fqdn": "web-1.example.com"}}).json()
        for source, rel_type, target in ((service, "depends_on", app), (app, "runs_on", host)):
            response = http.post("/api/v1/relationships", json={"source": source["id"], "target": target["id"],
                                                                 "type": rel_type})
            assert response.status_code == 201
        read = http.get(f"/api/v1/cis/{host['id']}")
        etag = read.headers["etag"]
        assert http.patch(f"/api/v1/cis/{host['id']}", json={"owner": "web-team"},
                          headers={"If-Match": etag}).status_code == 200
        stale = http.patch(f"/api/v1/cis/{host['id']}", json={"owner": "other"}, headers={"If-Match": etag})
        assert stale.status_code == 412
        assert stale.headers["content-type"] == "application/problem+json"
        history = [r for r in http.get(f"/api/v1/cis/{host['id']}/history").json()["items"] if r["object_type"] == "ci"]
        assert [r["action"] for r in history] == ["update", "create"]
        assert history[0]["diff"] == {"owner": [None, "web-team"]}
        assert history[0]["actor"] == "tour"
        feed = http.get("/api/v1/changes?since=0").json()
        assert len(feed["items"]) == 7  # the token, then 6 of CIs and relationships
        # many requests across both workers see the same data
        names = {http.get(f"/api/v1/cis/{app['id']}").json()["name"] for _ in range(20)}
        assert names == {"shop-web"}
        assert http.get("/api/v1/cis/" + app["id"], headers={"Authorization": "Bearer wrong"}).status_code == 401
