"""GET /metrics on the API port, in one process (TestClient), on both databases: what each metric
counts. Counters live as long as the test process, so these tests compare before and after."""

import pytest

from tests.conftest import discovered_app_host_and_database, new_id
from tests.integrations.metrics_text import samples, series, value

REQUESTS = "karta_http_request_duration_seconds_count"


def scrape(api) -> dict:
    response = api.get("/metrics", as_="read")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(response.text)


def test_needs_a_token_with_scope_read(api):
    assert api.get("/metrics", as_=None).status_code == 401
    for scope in ("read", "write", "discovery", "admin"):
        assert api.get("/metrics", as_=scope).status_code == 200


def test_requests_by_route_template_and_status_never_the_raw_path(api):
    before = scrape(api)
    ids = [new_id(), new_id()]
    for ci_id in ids:
        assert api.get(f"/api/v1/cis/{ci_id}").status_code == 404
    assert api.get(f"/no/such/{new_id()}").status_code == 404
    assert api.post("/api/v1/cis", json={"class": "server"}).status_code == 422
    after = scrape(api)
    template = "/api/v1/cis/{ci_id}"
    assert value(after, REQUESTS, method="GET", route=template, status="404") - value(
        before, REQUESTS, method="GET", route=template, status="404") == 2
    assert value(after, REQUESTS, method="GET", route="unmatched", status="404") - value(
        before, REQUESTS, method="GET", route="unmatched", status="404") == 1
    assert value(after, REQUESTS, method="POST", route="/api/v1/cis", status="422") - value(
        before, REQUESTS, method="POST", route="/api/v1/cis", status="422") == 1
    routes = {dict(labels)["route"] for labels in series(after, REQUESTS)}
    assert not any(ci_id in route for route in routes for ci_id in ids)
    assert all(route == "unmatched" or route.startswith("/") for route in routes)


def test_ingest_items_by_outcome_dry_runs_not_counted(api):
    def counts(found):
        return ({outcome: value(found, "karta_ingest_items_total", outcome=outcome)
                 for outcome in ("created", "updated", "unchanged")},
                value(found, "karta_ingest_relationships_total", outcome="created"))

    (items0, rels0) = counts(scrape(api))
    discovered_app_host_and_database(api)
    (items1, rels1) = counts(scrape(api))
    assert {k: items1[k] - items0[k] for k in items1} == {"created": 3, "updated": 0, "unchanged": 0}
    assert rels1 - rels0 == 2
    body = {"source": "ssh", "run_id": f"dry-{new_id()}", "items": [
        {"ref": "x", "class": "server", "name": "x", "identifiers": {"serial_number": "SN-X"}}]}
    assert api.post("/api/v1/ingest?dry_run=true", json=body).status_code == 200
    assert counts(scrape(api)) == (items1, rels1)


def test_cis_by_class_discovery_runs_and_the_graph(app, api):
    discovered_app_host_and_database(api)
    complete = {"source": "nmap", "run_id": f"full-{new_id()}", "complete": True, "scope": {"subnets": ["10.9.0.0/24"]},
                "items": [{"ref": "n", "class": "server", "name": "n", "identifiers": {"serial_number": "SN-N"}}]}
    assert api.post("/api/v1/ingest", json=complete).status_code == 200
    # The impact graph catches up before an answer; metrics read it as it is.
    assert api.post("/api/v1/impact", json={"ci_ids": [api.get("/api/v1/cis?class=database").json()["items"][0]["id"]]},
                    as_="read").status_code == 200
    found = scrape(api)
    assert series(found, "karta_cis") == {frozenset({("class", "server")}): 2, frozenset({("class", "application")}): 1,
                                          frozenset({("class", "database")}): 1}
    assert series(found, "karta_discovery_runs") == {
        frozenset({("source", "ssh"), ("result", "incomplete")}): 1,
        frozenset({("source", "nmap"), ("result", "complete")}): 1}
    finished = api.get(f"/api/v1/discovery/runs/{complete['run_id']}").json()["finished_at"]
    from datetime import datetime
    assert value(found, "karta_discovery_last_complete_run_timestamp_seconds", source="nmap") == pytest.approx(
        datetime.fromisoformat(finished).timestamp(), abs=0.001)
    head = value(found, "karta_change_feed_head_sequence")
    assert head > 0
    assert (value(found, "karta_graph_cis"), value(found, "karta_graph_related_pairs")) == (4, 2)
    assert value(found, "karta_graph_applied_sequence") == head
    assert value(found, "karta_graph_lag_sequences") == 0
    # Four CIs: under KARTA_GRAPH_COMPACT_MIN_CIS, the Python loop answers and there is no overlay to count.
    assert value(found, "karta_graph_compact") == 0 and series(found, "karta_graph_compact_overlay_rows") == {}


def test_database_counts_are_cached(api):
    discovered_app_host_and_database(api)
    assert series(scrape(api), "karta_cis")[frozenset({("class", "server")})] == 1
    api.create_ci("server", "another")
    # KARTA_METRICS_CACHE_SECONDS (10 s by default): the second scrape does not read the database.
    assert series(scrape(api), "karta_cis")[frozenset({("class", "server")})] == 1


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_database_errors_by_kind(api):
    # PostgreSQL cannot hold a NUL in text: a 'value' database error, answered 422.
    before = value(scrape(api), "karta_database_errors_total", kind="value")
    assert api.get("/api/v1/cis", params={"owner": "a\x00b"}).status_code == 422
    assert value(scrape(api), "karta_database_errors_total", kind="value") - before == 1
