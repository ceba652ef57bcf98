"""The CI resource: create, read, update with optimistic concurrency, delete, list filters, pagination."""

from contextlib import contextmanager

import pytest

from tests.conftest import discovered_app_host_and_database, new_id

PROBLEM = "application/problem+json"


def test_create_and_read_back(api):
    created = api.create_ci("server", "web-1", environment="prod", criticality=2, owner="team-web",
                            tags=["web", "pci"], attributes={"serial_number": "SN-100", "cpu_count": 8})
    assert created["class"] == "server"
    assert created["version"] == 1
    response = api.get(f"/api/v1/cis/{created['id']}", as_="read")
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    body = response.json()
    for field in ("id", "class", "name", "status", "environment", "criticality", "owner", "tags", "attributes",
                  "first_seen", "last_seen", "version"):
        assert body[field] == created[field]
    assert body["status"] == "active"
    assert body["relationships"] == []


def test_create_returns_location(api):
    response = api.post("/api/v1/cis", json={"class": "database", "name": "pg-main"})
    assert response.status_code == 201
    assert response.headers["location"] == f"/api/v1/cis/{response.json()['id']}"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"class": "nonesuch", "name": "x"}, "class"),
        ({"class": "server", "name": "x", "attributes": {"cpu_count": "eight"}}, "attributes.cpu_count"),
        ({"class": "server", "name": "x", "attributes": {"cpu_count": 0}}, "attributes.cpu_count"),
        ({"class": "ip_address", "name": "x", "attributes": {"address": "not-an-ip"}}, "attributes.address"),
        ({"class": "ip_address", "name": "x", "attributes": {}}, "attributes"),
        ({"class": "server", "name": "x", "criticality": 7}, "criticality"),
        ({"class": "server", "name": "x", "status": "gone"}, "status"),
        ({"class": "server", "name": ""}, "name"),
        ({"class": "server"}, "name"),
        ({"class": "server", "name": "x", "bogus": 1}, "bogus"),
        ({"class": "server", "name": "x", "tags": "web"}, "tags"),
    ],
)
def test_create_refuses_bad_input_naming_the_field(api, body, field):
    response = api.post("/api/v1/cis", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 422
    assert field in [error["field"] for error in problem["errors"]]
    assert api.get("/api/v1/cis").json()["items"] == []


def test_subclass_inherits_parent_schema(api):
    response = api.post("/api/v1/cis", json={"class": "virtual_machine", "name": "vm", "attributes": {"memory_mb": -1}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "attributes.memory_mb"


def test_duplicate_identifier_is_refused_naming_the_existing_ci(api):
    first = api.create_ci("server", "web-1", attributes={"serial_number": "SN-42"})
    response = api.post("/api/v1/cis", json={"class": "virtual_machine", "name": "web-1-again",
                                              "attributes": {"serial_number": " sn-42 "}})
    assert response.status_code == 409
    problem = response.json()
    assert problem["existing_ci"] == first["id"]
    assert first["id"] in problem["detail"] and "serial_number" in problem["detail"]
    assert len(api.get("/api/v1/cis").json()["items"]) == 1


def test_junk_identifiers_never_clash(api):
    for name in ("a", "b", "c"):
        api.create_ci("server", name, attributes={"serial_number": "To be filled by O.E.M.",
                                                  "machine_id": "00000000-0000-0000-0000-000000000000",
                                                  "mac_address": ["00:00:00:00:00:00"], "fqdn": "localhost"})
    assert len(api.get("/api/v1/cis").json()["items"]) == 3


def test_same_identifier_in_another_family_is_no_clash(api):
    # (not network_device: hosts are one identity domain, tests/test_host_identity.py)
    api.create_ci("server", "host", attributes={"serial_number": "SN-1"})
    api.create_ci("load_balancer", "balancer", attributes={"serial_number": "SN-1"})


def test_patch_merges_attributes_and_bumps_version(api):
    ci = api.create_ci("server", "web-1", attributes={"cpu_count": 2, "os_name": "debian"})
    response = api.patch(f"/api/v1/cis/{ci['id']}", json={"attributes": {"cpu_count": 4, "os_name": None},
                                                          "owner": "ops"}, headers={"If-Match": '"1"'})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["attributes"] == {"cpu_count": 4}
    assert body["owner"] == "ops"
    assert body["version"] == 2
    assert response.headers["etag"] == '"2"'


def test_patch_with_stale_etag_is_412_and_changes_nothing(api):
    ci = api.create_ci("server", "web-1")
    assert api.patch(f"/api/v1/cis/{ci['id']}", json={"owner": "a"}, headers={"If-Match": '"1"'}).status_code == 200
    response = api.patch(f"/api/v1/cis/{ci['id']}", json={"owner": "b"}, headers={"If-Match": '"1"'})
    assert response.status_code == 412
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["current_version"] == 2
    assert api.get(f"/api/v1/cis/{ci['id']}").json()["owner"] == "a"


def test_patch_that_changes_nothing_keeps_the_version(api):
    ci = api.create_ci("server", "web-1", owner="ops")
    body = api.patch(f"/api/v1/cis/{ci['id']}", json={"owner": "ops"}).json()
    assert body["version"] == 1
    history = api.get(f"/api/v1/cis/{ci['id']}/history").json()["items"]
    assert [record["action"] for record in history] == ["create"]


def test_patch_refuses_null_for_required_fields_and_schema_violations(api):
    ci = api.create_ci("server", "web-1")
    assert api.patch(f"/api/v1/cis/{ci['id']}", json={"name": None}).status_code == 422
    response = api.patch(f"/api/v1/cis/{ci['id']}", json={"attributes": {"cpu_count": -3}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "attributes.cpu_count"
    assert api.get(f"/api/v1/cis/{ci['id']}").json()["version"] == 1


def test_patch_into_a_duplicate_identifier_is_409(api):
    api.create_ci("server", "a", attributes={"fqdn": "a.example.com"})
    b = api.create_ci("server", "b", attributes={"fqdn": "b.example.com"})
    response = api.patch(f"/api/v1/cis/{b['id']}", json={"attributes": {"fqdn": "A.example.com."}})
    assert response.status_code == 409
    assert api.get(f"/api/v1/cis/{b['id']}").json()["attributes"]["fqdn"] == "b.example.com"


def test_changed_identifier_frees_the_old_value(api):
    a = api.create_ci("server", "a", attributes={"fqdn": "a.example.com"})
    api.patch(f"/api/v1/cis/{a['id']}", json={"attributes": {"fqdn": "z.example.com"}})
    api.create_ci("server", "b", attributes={"fqdn": "a.example.com"})


def test_delete_ends_relationships_and_keeps_history(api):
    app_ci = api.create_ci("application", "shop")
    host = api.create_ci("server", "web-1")
    relationship = api.relate(app_ci["id"], "runs_on", host["id"])
    assert api.delete(f"/api/v1/cis/{host['id']}", headers={"If-Match": '"1"'}).status_code == 204
    assert api.get(f"/api/v1/cis/{host['id']}").status_code == 404
    assert api.get(f"/api/v1/relationships/{relationship['id']}").status_code == 404
    assert api.get(f"/api/v1/cis/{app_ci['id']}").json()["relationships"] == []
    history = api.get(f"/api/v1/cis/{host['id']}/history").json()["items"]
    # the relationship's records are in the CI's history too: it ended before the CI went
    assert [(record["object_type"], record["action"]) for record in history] == [
        ("ci", "delete"), ("relationship", "delete"), ("relationship", "create"), ("ci", "create")]
    assert history[0]["diff"]["name"] == ["web-1", None]
    feed = api.get("/api/v1/changes").json()["items"]
    ended = [r for r in feed if r["object_type"] == "relationship" and r["action"] == "delete"]
    assert ended[0]["diff"]["source"] == [app_ci["id"], None]
    assert ended[0]["diff"]["type"] == ["runs_on", None]
    # the identifier is free again
    api.create_ci("server", "web-1")


def test_delete_with_stale_etag_is_412(api):
    ci = api.create_ci("server", "web-1")
    api.patch(f"/api/v1/cis/{ci['id']}", json={"owner": "x"})
    assert api.delete(f"/api/v1/cis/{ci['id']}", headers={"If-Match": '"1"'}).status_code == 412
    assert api.get(f"/api/v1/cis/{ci['id']}").status_code == 200


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_id_is_404_problem(api, method):
    response = api.request(method, f"/api/v1/cis/{new_id()}", json={"owner": "x"} if method == "PATCH" else None)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


def test_malformed_id_is_422(api):
    response = api.get("/api/v1/cis/not-a-uuid")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "path.ci_id"


def _names(page):
    return sorted(item["name"] for item in page["items"])


def test_list_filters(api):
    api.create_ci("server", "web-1", environment="prod", owner="web", tags=["pci", "web"],
                  attributes={"os_name": "debian", "cpu_count": 4})
    api.create_ci("virtual_machine", "web-2", environment="prod", owner="web", tags=["web"],
                  attributes={"os_name": "ubuntu", "cpu_count": 2})
    api.create_ci("database", "pg-main", environment="stage", owner="dba", status="maintenance")
    api.create_ci("application", "Shop-Web", environment="prod", owner="web")
    get = lambda query: _names(api.get(f"/api/v1/cis?{query}", as_="read").json())  # noqa: E731
    assert get("class=server") == ["web-1", "web-2"]
    assert get("class=virtual_machine") == ["web-2"]
    assert get("class=application") == ["Shop-Web", "pg-main"]
    assert get("status=maintenance") == ["pg-main"]
    assert get("environment=prod&owner=web") == ["Shop-Web", "web-1", "web-2"]
    assert get("tag=pci") == ["web-1"]
    assert get("tag=web") == ["web-1", "web-2"]
    assert get("q=web") == ["Shop-Web", "web-1", "web-2"]
    assert get("q=%25") == []
    assert get("attr.os_name=debian") == ["web-1"]
    assert get("attr.cpu_count=2") == ["web-2"]
    assert get("class=server&attr.cpu_count=4&tag=pci") == ["web-1"]


def test_attribute_filter_matches_an_element_of_a_list(api):
    api.create_ci("server", "two-nics", attributes={"ip_address": ["10.0.0.5", "10.0.0.6"], "os_name": "debian"})
    api.create_ci("server", "one-ip", attributes={"ip_address": "10.0.0.7"})
    api.create_ci("server", "prefix-only", attributes={"ip_address": ["10.0.0.50"]})
    # Members of an object are not elements of a list.
    api.create_ci("application", "nested", attributes={"version": "10.0.0.5", "process": "x"})
    api.create_ci("container", "tagged", attributes={"container_id": "c1", "image": "x", "ports": [443, 8443],
                                                     "flags": [True], "labels": {"ip_address": "10.0.0.6"}})
    get = lambda query: _names(api.get(f"/api/v1/cis?{query}", as_="read").json())  # noqa: E731
    assert get("attr.ip_address=10.0.0.5") == ["two-nics"]
    assert get("attr.ip_address=10.0.0.6") == ["two-nics"]
    assert get("attr.ip_address=10.0.0.7") == ["one-ip"]  # a scalar matches as before
    assert get("attr.ip_address=10.0.0") == []
    assert get("attr.version=10.0.0.5") == ["nested"]
    assert get("attr.ports=443") == ["tagged"]  # a number in a list, spelled in the URL
    assert get("attr.ports=44") == []
    assert get("attr.flags=true") == ["tagged"]
    assert get("attr.flags=1") == []
    assert get("attr.labels=10.0.0.6") == []
    assert get("attr.ip_address=10.0.0.5&attr.os_name=debian") == ["two-nics"]
    assert get("attr.ip_address=10.0.0.5&attr.os_name=ubuntu") == []


def test_list_refuses_unknown_filters_and_classes(api):
    response = api.get("/api/v1/cis?clas=server")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "query.clas"
    assert api.get("/api/v1/cis?class=nonesuch").status_code == 422
    assert api.get("/api/v1/cis?limit=0").status_code == 422
    assert api.get("/api/v1/cis?cursor=@@@").status_code == 422


def test_cursor_pagination_is_stable_and_complete(api):
    created = {api.create_ci("server", f"host-{i:02}")["id"] for i in range(23)}
    seen, cursor, pages = [], None, 0
    while pages < 10:
        url = "/api/v1/cis?limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(url).json()
        seen.extend(item["id"] for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # a CI created mid-walk with an id before the cursor must not shift later pages
        api.create_ci("service", f"late-{pages}")
    assert cursor is None, "walk did not finish in 10 pages"
    assert len(seen) == len(set(seen)), "a CI was repeated"
    assert created <= set(seen), "a CI was skipped"
    assert seen == sorted(seen)


def _walk(api, query: str, limit: int = 2, max_pages: int = 20) -> list[dict]:
    """Every item of a sorted list, page by page with its cursors."""
    items, cursor = [], None
    for _ in range(max_pages):
        response = api.get(f"/api/v1/cis?{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else ""), as_="read")
        assert response.status_code == 200, response.text
        items.extend(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the walk did not end")


def test_sorted_lists_page_on_the_sort_value_and_the_id(api):
    # Equal names make the id decide; a page boundary falls inside the tie with limit 2.
    made = [api.create_ci("server", name, status=status, owner=owner) for name, status, owner in (
        ("b", "active", "web"), ("a", "stale", None), ("b", "maintenance", "web"), ("c", "active", None),
        ("b", "planned", "dba"))]
    by_name = sorted(made, key=lambda ci: (ci["name"], ci["id"]))
    assert [ci["id"] for ci in _walk(api, "sort=name")] == [ci["id"] for ci in by_name]
    assert [ci["id"] for ci in _walk(api, "sort=-name")] == [ci["id"] for ci in reversed(by_name)]
    assert [ci["status"] for ci in _walk(api, "sort=status")] == ["active", "active", "maintenance", "planned", "stale"]
    assert [ci["id"] for ci in _walk(api, "sort=-updated_at")] == [ci["id"] for ci in reversed(made)]
    assert [ci["name"] for ci in _walk(api, "sort=name&class=server&status=active")] == ["b", "c"]
    assert [ci["name"] for ci in _walk(api, "sort=-name&no_owner=true")] == ["c", "a"]
    # Without a sort the list is by id, its cursor as before.
    assert [ci["id"] for ci in _walk(api, "no_owner=false")] == sorted(ci["id"] for ci in made)


def test_sorting_by_last_seen_counts_sightings_and_puts_never_seen_last(api):
    old = api.create_ci("server", "old", last_seen="2024-01-01T00:00:00Z")
    never = api.create_ci("server", "never")
    new = api.create_ci("server", "new", last_seen="2024-06-01T00:00:00Z")
    refs = discovered_app_host_and_database(api)  # seen now, through ingest's sightings only
    newest_first = [ci["id"] for ci in _walk(api, "sort=-last_seen")]
    assert newest_first[3:] == [new["id"], old["id"], never["id"]]
    assert set(newest_first[:3]) == set(refs.values())
    assert [ci["id"] for ci in _walk(api, "sort=last_seen")] == list(reversed(newest_first))


def test_sort_and_cursor_mistakes_are_422(api, monkeypatch):
    from app.services import cis

    for n in range(3):
        api.create_ci("server", f"s{n}")
    first = api.get("/api/v1/cis?sort=name&limit=1").json()
    assert [ci["name"] for ci in first["items"]] == ["s0"]
    assert api.get(f"/api/v1/cis?sort=name&limit=1&cursor={first['next_cursor']}").json()["items"][0]["name"] == "s1"
    for query, field in ((f"sort=-name&cursor={first['next_cursor']}", "cursor"),  # made for another sort
                         (f"cursor={first['next_cursor']}", "cursor"), ("sort=name&cursor=bm9wZQ", "cursor"),
                         ("sort=size", "sort"), ("sort=" + "n" * 21, "query.sort"), ("no_owner=maybe", "query.no_owner")):
        response = api.get(f"/api/v1/cis?{query}")
        assert response.status_code == 422 and response.headers["content-type"] == PROBLEM, query
        assert response.json()["errors"][0]["field"] == field, query
    monkeypatch.setattr(cis, "LAST_SEEN_SORT_MAX", 2)
    refused = api.get("/api/v1/cis?sort=-last_seen")
    assert refused.status_code == 422 and "at most 2 CIs (these leave more)" in refused.json()["detail"]
    assert len(api.get("/api/v1/cis?sort=-last_seen&q=s1").json()["items"]) == 1


def test_detail_shows_relationships_both_ways_with_labels(api):
    shop = api.create_ci("application", "shop")
    db = api.create_ci("database", "pg")
    host = api.create_ci("server", "db-host")
    api.relate(shop["id"], "depends_on", db["id"], port=5432)
    api.relate(db["id"], "runs_on", host["id"])
    views = api.get(f"/api/v1/cis/{db['id']}").json()["relationships"]
    summary = sorted((v["direction"], v["type"], v["label"], v["ci_name"]) for v in views)
    assert summary == [("incoming", "depends_on", "used by", "shop"), ("outgoing", "runs_on", "runs on", "db-host")]
    incoming = next(v for v in views if v["direction"] == "incoming")
    assert incoming["attributes"] == {"port": 5432}
    assert incoming["ci"] == shop["id"]


def test_detail_lists_relationships_in_order_and_truncates_past_the_limit(api, monkeypatch):
    # PostgreSQL reads the CI and its relationships in one statement (a JSON array), SQLite in two: the
    # answers are the same, in the same order (outgoing first, then by type and id), ids as ids, attributes
    # as stored, and a CI with more relationships than the limit shows the first ones and says so.
    from app.services import cis

    hub = api.create_ci("server", "hub")
    peers = [api.create_ci("application", f"app-{n}") for n in range(3)]
    made = [api.relate(peers[0]["id"], "runs_on", hub["id"], note="x" * 3, nested={"a": [1, None, "é"]}),
            api.relate(hub["id"], "depends_on", peers[1]["id"]),
            api.relate(hub["id"], "connects_to", peers[2]["id"]),
            api.relate(peers[2]["id"], "depends_on", hub["id"])]
    views = api.get(f"/api/v1/cis/{hub['id']}").json()
    assert views["relationships_truncated"] is False
    expected = sorted((("outgoing" if r["source"] == hub["id"] else "incoming"), r["type"], r["id"]) for r in made)
    expected.sort(key=lambda item: item[0] != "outgoing")  # stable: by type and id within each direction
    assert [(v["direction"], v["type"], v["id"]) for v in views["relationships"]] == expected
    stored = next(v for v in views["relationships"] if v["type"] == "runs_on")
    assert stored["attributes"] == {"note": "xxx", "nested": {"a": [1, None, "é"]}}
    assert (stored["ci"], stored["ci_name"], stored["ci_class"], stored["label"]) == (peers[0]["id"], "app-0", "application",
                                                                                      "hosts")
    monkeypatch.setattr(cis, "DETAIL_RELATIONSHIP_LIMIT", 3)
    cut = api.get(f"/api/v1/cis/{hub['id']}").json()
    assert cut["relationships_truncated"] is True
    assert [(v["direction"], v["type"], v["id"]) for v in cut["relationships"]] == expected[:3]
    monkeypatch.setattr(cis, "DETAIL_RELATIONSHIP_LIMIT", 4)
    assert api.get(f"/api/v1/cis/{hub['id']}").json()["relationships_truncated"] is False


@contextmanager
def _sent_by_psycopg(monkeypatch):
    """(sent from this thread?, query) for every statement psycopg sends, SQLAlchemy's and those the
    detail read sends itself (app.core.db.driver_first) alike."""
    import threading

    import psycopg

    sent, me, execute = [], threading.get_ident(), psycopg.Cursor.execute

    def recording(cursor, query, *args, **kwargs):
        sent.append((threading.get_ident() == me, query if isinstance(query, str) else repr(query)))
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", recording)
    yield sent


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_the_detail_read_is_one_prepared_statement_on_postgresql(api, engine, monkeypatch):
    # #14: one statement per read, prepared. psycopg prepares a statement on the connection once it ran
    # five times there; the read's statement is built once, so its text is the same each time.
    from sqlalchemy import text

    from app.core.db import read_transaction
    from app.services import cis

    hub = api.create_ci("server", "hub")
    api.relate(api.create_ci("application", "app")["id"], "runs_on", hub["id"])
    with _sent_by_psycopg(monkeypatch) as sent, read_transaction(engine) as conn:
        for _ in range(6):
            assert len(cis.get_ci_detail(conn, api.client.app.state.registry, hub["id"])["relationships"]) == 1
        prepared = conn.execute(text("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%json_agg%'"))
        assert prepared.scalar() == 1
    reads = [query for own, query in sent if own and "UNION ALL" in query]  # not a registry reload
    assert len(reads) == 6 and all("json_agg" in query for query in reads)


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_the_detail_read_row_is_the_same_through_psycopg_as_through_sqlalchemy(api, engine):
    # driver_first runs the detail statement on psycopg alone: its row must be SQLAlchemy's, value for
    # value and type for type (UUIDs, aware datetimes, JSON, NULLs, non-ASCII text), found or not.
    from app.core.db import driver_first, read_transaction
    from app.services import cis

    hub = api.create_ci("server", "hub-é", environment="prod", tags=["a"], attributes={"n": 1, "x": None, "s": "ü"})
    bare = api.create_ci("server", "bare")
    api.relate(api.create_ci("application", "app")["id"], "runs_on", hub["id"], port=80, note="ß")
    api.relate(hub["id"], "depends_on", api.create_ci("database", "db")["id"])
    with read_transaction(engine) as conn:
        for ci_id in (hub["id"], bare["id"], new_id()):
            params = {"ci_id": ci_id, "rel_limit": 10, "inline_max": cis.DETAIL_INLINE_ATTRIBUTES_MAX}
            expected = conn.execute(cis._DETAIL, params).mappings().first()
            got = driver_first(conn, cis._DETAIL, params)
            if expected is None:
                assert got is None
                continue
            assert list(got) == list(expected.keys())
            for name, value in expected.items():
                assert got[name] == value and type(got[name]) is type(value), name
            if ci_id == hub["id"]:
                assert len(got["relationships"]) == 2 and got["last_seen"] is None and got["tags"] == ["a"]


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_the_detail_read_raises_database_errors_as_sqlalchemy_does(api, engine, monkeypatch):
    # A statement PostgreSQL refuses leaves driver_first as SQLAlchemy's error around psycopg's, so the
    # handlers classify it; a connection that breaks under it is handed to SQLAlchemy, which drops it
    # (connection_invalidated) and fails the read at once.
    import psycopg
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, ProgrammingError

    from app.core.db import driver_first, read_transaction

    with read_transaction(engine) as conn:
        with pytest.raises(ProgrammingError) as refused:
            driver_first(conn, text("SELECT no_such_column FROM ci WHERE id = :ci_id"), {"ci_id": new_id()})
        assert refused.value.orig.sqlstate == "42703" and not refused.value.connection_invalidated
        assert driver_first(conn, text("SELECT 1 AS one"), {}) == {"one": 1}  # the connection still serves
    with read_transaction(engine) as conn:
        pid = conn.connection.driver_connection.info.backend_pid
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(DBAPIError) as broken:
            driver_first(conn, text("SELECT 1 AS one"), {})
        assert broken.value.connection_invalidated and isinstance(broken.value.orig, psycopg.OperationalError)
        assert "the connection is closed" not in str(broken.value.orig)  # what broke it, not the retry's error
    with read_transaction(engine) as conn:
        assert driver_first(conn, text("SELECT 1 AS one"), {}) == {"one": 1}


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_driver_first_sends_only_what_it_can_send_as_sqlalchemy_would(api, engine):
    from sqlalchemy import JSON, bindparam, column, literal, select, text

    from app.core.db import driver_first, read_transaction

    with read_transaction(engine) as conn:
        # literals bound by the statement itself, a NULL among them; the caller's parameters
        assert driver_first(conn, select(literal("x").label("a"), literal(None).label("b"),
                                         bindparam("c", type_=column("c").type).label("c")), {"c": 3}) == \
            {"a": "x", "b": None, "c": 3}
        with pytest.raises(ValueError, match="converts or computes"):  # a JSON parameter: SQLAlchemy wraps it
            driver_first(conn, select(bindparam("j", type_=JSON).label("j")), {"j": {"a": 1}})
        with pytest.raises(ValueError, match="converts or computes"):  # a value computed at each execution
            driver_first(conn, select(bindparam("now", callable_=lambda: 1).label("now")), {})
        with pytest.raises(ValueError, match="IN lists"):
            driver_first(conn, select(literal(1).label("one")).where(literal(1).in_(bindparam("ids", expanding=True))),
                         {"ids": [1, 2]})
    with read_transaction(engine, begin=True) as conn, pytest.raises(ValueError, match="outside a transaction"):
        driver_first(conn, text("SELECT 1 AS one"), {})


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_the_detail_read_falls_back_to_two_statements_where_one_cannot_do(api, engine, monkeypatch):
    # Inside a transaction the read takes its two statements (a failed one would abort the transaction);
    # outside, relationships whose attributes pass a bound are read row by row, not built into one array
    # in the server's memory; and an array past PostgreSQL's bound for one value all the same
    # (program_limit_exceeded, here made by a real statement that asks PostgreSQL 15 for a 1.1 GB string)
    # is read again row by row, not a 500.
    from sqlalchemy import text

    from app.core.db import read_transaction
    from app.services import cis

    hub = api.create_ci("server", "hub")
    api.relate(api.create_ci("application", "app")["id"], "runs_on", hub["id"], port=80)
    expected = api.get(f"/api/v1/cis/{hub['id']}").json()
    registry = api.client.app.state.registry
    with _sent_by_psycopg(monkeypatch) as sent:
        with read_transaction(engine, begin=True) as conn:
            in_transaction = cis.get_ci_detail(conn, registry, hub["id"])
        mine = [query for own, query in sent if own]  # not the service's background threads
        assert not any("json_agg" in query for query in mine)
        assert len([query for query in mine if "UNION ALL" in query]) == 1
        monkeypatch.setattr(cis, "DETAIL_INLINE_ATTRIBUTES_MAX", 1)  # the relationship's attributes take more
        sent.clear()
        inline_bound = api.get(f"/api/v1/cis/{hub['id']}")
        tried = [query for _, query in sent if "UNION ALL" in query]
        assert len(tried) == 2 and "json_agg" in tried[0] and "json_agg" not in tried[1]  # then row by row
        monkeypatch.setattr(cis, "_DETAIL", text("SELECT repeat('x', 1100000000) AS relationships "
                                                 "WHERE CAST(:ci_id AS uuid) IS NOT NULL AND :rel_limit > 0"))
        sent.clear()
        too_big = api.get(f"/api/v1/cis/{hub['id']}")
        assert any("repeat(" in query for _, query in sent)  # the one statement was tried
    assert too_big.status_code == 200, too_big.text
    assert inline_bound.status_code == 200, inline_bound.text
    for answer in (too_big.json(), inline_bound.json(), in_transaction):
        answer = {**answer, "relationships": [{**v, "id": str(v["id"]), "ci": str(v["ci"])} for v in answer["relationships"]]}
        assert answer["relationships"] == expected["relationships"] and answer["relationships_truncated"] is False


def test_deleting_a_ci_while_its_family_is_reindexed_leaves_no_identifier_behind(api, engine):
    # ci_identifier has no foreign key to ci (migration 0004). Re-indexing (PATCH /classes with new
    # rules) rewrites every identifier of the family; a CI deleted meanwhile must not keep the new ones,
    # or the value would point at nothing and every later report of it would fail.
    import threading

    from sqlalchemy import text

    from app.core.db import WRITE_OPTION
    from app.services import classes
    from app.services.registry import load_registry

    ci = api.create_ci("container", "c1", attributes={"container_id": "abc123def"})
    # Write-locked from its first statement, as the service's writes are (app.core.db.write_transaction):
    # on SQLite a transaction that read first and writes later is refused at once (not waited for) when
    # another writer committed in between, which the service-map keeper, woken by the creation, may do.
    reindex = engine.connect().execution_options(**{WRITE_OPTION: True})
    reindex.begin()
    classes.reindex_family(reindex, load_registry(reindex), "container")
    deleted = {}
    deleter = threading.Thread(target=lambda: deleted.setdefault("status", api.delete(f"/api/v1/cis/{ci['id']}").status_code))
    deleter.start()
    deleter.join(1.0)  # it waits for the re-index (PostgreSQL: the CI's lock; SQLite: the write lock)
    reindex.commit()
    reindex.close()
    deleter.join(30)
    assert deleted == {"status": 204}
    with engine.connect() as conn:
        orphans = conn.execute(text("SELECT i.value FROM ci_identifier i LEFT JOIN ci ON ci.id = i.ci_id "
                                    "WHERE ci.id IS NULL")).all()
    assert orphans == []
    again = api.post("/api/v1/cis", json={"class": "container", "name": "c1", "attributes": {"container_id": "abc123def"}})
    assert again.status_code == 201, again.text


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_deleting_a_ci_waits_for_its_neighbours_before_it_takes_the_ci(api, engine):
    # PostgreSQL only: SQLite writers take one lock for the whole database. Ingest locks a batch's CIs
    # in id order. A deletion that locked its CI first and the CIs related to it afterwards deadlocked
    # with a batch that held a related CI of smaller id and waited for the deleted one.
    import threading
    import uuid

    from sqlalchemy import text

    first, second = api.create_ci("server", "n1"), api.create_ci("application", "a1")
    api.relate(second["id"], "runs_on", first["id"])
    neighbour, doomed = sorted((first, second), key=lambda ci: uuid.UUID(ci["id"]))
    batch = engine.connect()
    batch.begin()
    deleted = {}
    try:
        batch.execute(text("SELECT id FROM ci WHERE id = :id FOR UPDATE"), {"id": neighbour["id"]})
        deleter = threading.Thread(
            target=lambda: deleted.setdefault("status", api.delete(f"/api/v1/cis/{doomed['id']}").status_code))
        deleter.start()
        deleter.join(1.0)
        assert deleter.is_alive(), "the deletion did not wait for the related CI"
        # The batch can still take the CI being deleted: the deletion waits, holding nothing the batch needs.
        batch.execute(text("SELECT id FROM ci WHERE id = :id FOR UPDATE NOWAIT"), {"id": doomed["id"]})
    finally:
        batch.rollback()
        batch.close()
    deleter.join(30)
    assert deleted == {"status": 204}
