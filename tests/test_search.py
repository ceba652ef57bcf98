"""GET /api/v1/search: ranking, identifiers in any notation, limits, classes, and indexes kept exact by
every write path (CI API, ingest), on SQLite and PostgreSQL."""

import pytest
from sqlalchemy import event, text

from app.core.db import make_engine
from tests.conftest import fresh_database, new_id

PROBLEM = "application/problem+json"


def search(api, q, **params):
    response = api.get("/api/v1/search", params={"q": q, **params}, as_="read")
    assert response.status_code == 200, response.text
    return response.json()


def found(api, q, **params):
    """(name, matched field, matched value) of each result, in order."""
    return [(r["name"], r["matched"]["field"], r["matched"]["value"]) for r in search(api, q, **params)["results"]]


def test_best_matches_first(api):
    api.create_ci("application", "Web01", owner="team-web")
    api.create_ci("server", "web01-backup")
    api.create_ci("application", "shop-web01")
    api.create_ci("application", "unrelated", attributes={"process": "/usr/bin/WEB01d", "version": "1"})
    api.create_ci("application", "nothing", attributes={"process": "web0"})
    answer = search(api, "  web01 ")
    assert answer["query"] == "web01" and answer["truncated"] is False
    assert [(r["name"], r["matched"]["field"], r["matched"]["value"]) for r in answer["results"]] == [
        ("Web01", "name", "Web01"),
        ("web01-backup", "name", "web01-backup"),
        ("shop-web01", "name", "shop-web01"),
        ("unrelated", "attributes.process", "/usr/bin/WEB01d"),
    ]
    exact = answer["results"][0]
    assert set(exact) == {"id", "name", "class", "status", "owner", "matched"}
    assert (exact["class"], exact["status"], exact["owner"]) == ("application", "active", "team-web")
    # An exact identifier comes first, and then names only: parts of names and values are not searched.
    api.create_ci("server", "db-main", attributes={"serial_number": "WEB01"})
    assert found(api, "web01") == [("db-main", "identifier.serial_number", "web01"), ("Web01", "name", "Web01"),
                                    ("web01-backup", "name", "web01-backup")]


def test_identifiers_in_any_notation_and_case(api):
    host = api.create_ci("server", "h1", attributes={
        "mac_address": ["52:54:00:ab:cd:ef", "52:54:00:00:00:02"], "ip_address": ["10.0.0.5", "10.0.0.6"],
        "fqdn": "h1.prod.example.com", "machine_id": "4C4C4544-0042-3510-8052-B4C04F4E3732"})
    address = api.create_ci("ip_address", "10.1.2.3", attributes={"address": "10.1.2.3"})
    assert found(api, "52-54-00-AB-CD-EF") == [("h1", "identifier.mac_address", "52:54:00:ab:cd:ef")]
    assert found(api, "5254.0000.0002") == [("h1", "identifier.mac_address", "52:54:00:00:00:02")]
    assert found(api, "10.0.0.6") == [("h1", "identifier.ip_address", "10.0.0.6")]
    assert found(api, "H1.Prod.Example.COM.") == [("h1", "identifier.fqdn", "h1.prod.example.com")]
    assert found(api, "4c4c4544-0042-3510-8052-b4c04f4e3732") == [
        ("h1", "identifier.machine_id", "4c4c4544-0042-3510-8052-b4c04f4e3732")]
    assert found(api, "10.1.2.3") == [("10.1.2.3", "identifier.address", "10.1.2.3")]
    # A part of an address is found in the attribute values, after every exact match.
    assert found(api, "10.0.0") == [("h1", "attributes.ip_address", "10.0.0.5")]
    assert {r["id"] for r in search(api, "10.")["results"]} == {host["id"], address["id"]}


def test_limit_truncation_and_prefix_order(api):
    for name in ("host-3", "Host-1", "host-5", "host-2", "host-4"):
        api.create_ci("server", name)
    three = search(api, "host", limit=3)
    assert [r["name"] for r in three["results"]] == ["Host-1", "host-2", "host-3"] and three["truncated"] is True
    five = search(api, "HOST", limit=5)
    assert len(five["results"]) == 5 and five["truncated"] is False
    assert search(api, "host-4", limit=1) == {"query": "host-4", "truncated": False, "results": [
        {**search(api, "host-4")["results"][0]}]}


def test_class_includes_subclasses(api):
    api.create_ci("server", "web-a")
    api.create_ci("virtual_machine", "web-b")
    api.create_ci("application", "web-c", attributes={"process": "web-x"})
    assert [name for name, _, _ in found(api, "web", **{"class": "server"})] == ["web-a", "web-b"]
    assert [name for name, _, _ in found(api, "web", **{"class": "virtual_machine"})] == ["web-b"]
    assert [name for name, _, _ in found(api, "web-x", **{"class": "application"})] == ["web-c"]
    assert found(api, "web-x", **{"class": "server"}) == []


def test_short_queries_find_identifiers_names_and_prefixes_only(api):
    api.create_ci("server", "Q")
    api.create_ci("server", "qa-1")
    api.create_ci("server", "shop-qa", attributes={"os_name": "qa"})
    assert found(api, "q") == [("Q", "name", "Q"), ("qa-1", "name", "qa-1")]
    assert found(api, "qa") == [("qa-1", "name", "qa-1")]
    assert found(api, "p-q") == [("shop-qa", "name", "shop-qa")]


def test_hostile_text_is_matched_literally(api):
    api.create_ci("application", 'a%b_c"d\\e', attributes={"process": 'say "hi" \\o/ 100%'})
    api.create_ci("application", "axbxc", attributes={"process": "say hi"})
    assert found(api, '%b_c"d\\') == [('a%b_c"d\\e', "name", 'a%b_c"d\\e')]
    assert found(api, '"hi" \\o') == [('a%b_c"d\\e', "attributes.process", 'say "hi" \\o/ 100%')]
    assert found(api, "00%") == [('a%b_c"d\\e', "attributes.process", 'say "hi" \\o/ 100%')]
    assert found(api, "b_c") == [('a%b_c"d\\e', "name", 'a%b_c"d\\e')]
    assert found(api, "<script>alert(1)</script>") == []
    assert found(api, "name : x OR y") == []  # FTS5 query syntax is text here


def test_numbers_and_nested_values_match_but_keys_and_booleans_do_not(api):
    api.create_ci("container", "c1", attributes={"container_id": "abc", "image": "nginx:1.25",
                                                 "ports": [8443, 9000], "labels": {"team": "payments"},
                                                 "privileged": True})
    assert found(api, "8443") == [("c1", "attributes.ports", "8443")]
    assert found(api, "payments") == [("c1", "attributes.labels", "payments")]
    assert found(api, "nginx:1") == [("c1", "attributes.image", "nginx:1.25")]
    assert found(api, "labels") == [] and found(api, "true") == [] and found(api, "image") == []


def test_every_write_through_the_api_keeps_the_index_exact(api):
    ci = api.create_ci("server", "alpha-node", attributes={"os_name": "debian", "kernel": "6.1.0-18-amd64"})
    assert found(api, "pha-no") == [("alpha-node", "name", "alpha-node")]
    assert found(api, "1.0-18") == [("alpha-node", "attributes.kernel", "6.1.0-18-amd64")]
    patched = api.patch(f"/api/v1/cis/{ci['id']}", json={"name": "omega-node", "attributes": {"kernel": "6.5.0-1"}})
    assert patched.status_code == 200, patched.text
    assert found(api, "pha-no") == [] and found(api, "1.0-18") == []
    assert found(api, "ega-no") == [("omega-node", "name", "omega-node")]
    assert found(api, "6.5.0") == [("omega-node", "attributes.kernel", "6.5.0-1")]
    assert api.patch(f"/api/v1/cis/{ci['id']}", json={"status": "maintenance"}).status_code == 200
    assert found(api, "ega-no") == [("omega-node", "name", "omega-node")]
    assert api.delete(f"/api/v1/cis/{ci['id']}").status_code == 204
    assert found(api, "ega-no") == [] and found(api, "6.5.0") == [] and found(api, "omega-node") == []


def test_ingest_writes_keep_the_index_exact(api):
    def push(items):
        body = {"source": "ssh", "run_id": f"r-{new_id()}", "items": items}
        response = api.post("/api/v1/ingest", json=body)
        assert response.status_code == 200, response.text

    def server(ref, name, serial, kernel, mac):
        return {"ref": ref, "class": "server", "name": name,
                "identifiers": {"serial_number": serial, "mac_address": [mac]}, "attributes": {"kernel": kernel}}

    push([server("a", "ing-alpha", "SN-A1", "5.10.0-9", "52:54:00:00:00:0a"),
          server("b", "ing-beta", "SN-B1", "5.10.0-9", "52:54:00:00:00:0b")])
    assert found(api, "SN-A1") == [("ing-alpha", "identifier.serial_number", "sn-a1")]
    assert found(api, "52:54:00:00:00:0B") == [("ing-beta", "identifier.mac_address", "52:54:00:00:00:0b")]
    assert [name for name, *_ in found(api, "5.10.0")] == ["ing-alpha", "ing-beta"]
    # The same again (confirmed, only sightings move), then changed: the index follows the change.
    push([server("a", "ing-alpha", "SN-A1", "5.10.0-9", "52:54:00:00:00:0a")])
    push([server("a", "ing-alpha-2", "SN-A1", "6.1.0-1", "52:54:00:00:00:0a")])
    assert found(api, "5.10.0") == [("ing-beta", "attributes.kernel", "5.10.0-9")]
    assert found(api, "6.1.0") == [("ing-alpha-2", "attributes.kernel", "6.1.0-1")]
    assert found(api, "ing-alpha") == [("ing-alpha-2", "name", "ing-alpha-2")]


def test_bad_queries_are_problems(api):
    for params, field in (({"q": ""}, "query.q"), ({"q": "   "}, "query.q"), ({"q": "x" * 201}, "query.q"),
                          ({"q": "x", "limit": 0}, "query.limit"), ({"q": "x", "limit": 101}, "query.limit"),
                          ({}, "query.q")):
        response = api.get("/api/v1/search", params=params, as_="read")
        assert response.status_code == 422 and response.headers["content-type"] == PROBLEM, (params, response.text)
        assert [error["field"] for error in response.json()["errors"]] == [field], (params, response.text)
    unknown = api.get("/api/v1/search", params={"q": "x", "class": "nonesuch"}, as_="read")
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "class"
    assert api.get("/api/v1/search", params={"q": "x" * 200}, as_="read").status_code == 200
    # No stored text holds a NUL (storable.py), and SQLite's FTS5 cannot parse one: a 422, not a 500.
    for q in ("\x00\x00\x00", "ab\x00", "\x00"):
        response = api.get("/api/v1/search", params={"q": q}, as_="read")
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "q", (q, response.text)


def test_openapi_documents_the_answer(api):
    operation = api.get("/openapi.json").json()["paths"]["/api/v1/search"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/SearchPage"}
    assert {p["name"] for p in operation["parameters"]} == {"q", "limit", "class", "identifiers_only"}


# PostgreSQL's choice for the identifier join depends on statistics a near-empty table does not have
# (bench/search_bench.py shows its primary-key probes at scale); SQLite's planner does not guess.
TIER_INDEXES = {
    "postgresql": {"ix_ci_name_search", "ix_ci_name_trgm", "ix_ci_attribute_values_trgm"},
    "sqlite": {"sqlite_autoindex_ci_identifier_1", "ix_ci_name_search", "fts VIRTUAL TABLE"},
}


def test_every_tier_reads_its_index(api, engine):
    # The planner uses an expression index only for the very expression it was built on: a query
    # written differently would scan a million rows and still answer right. With sequential scans
    # priced out (PostgreSQL) or as planned (SQLite), each statement must name its index.
    api.create_ci("server", "plan-host", attributes={"serial_number": "SN-PLAN", "os_name": "debian"})
    from app.services.registry import RegistryCache
    from app.services.search import search_cis

    statements = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        statements.append((statement, parameters))

    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", capture)
        result = search_cis(conn, RegistryCache(engine, 60), "zz-nothing-here")
        event.remove(conn, "before_cursor_execute", capture)
        assert result["results"] == []
        plans = []
        if postgres:
            conn.execute(text("SET enable_seqscan = off"))
        for statement, parameters in statements:
            if ("FROM ci_class" in statement) or not statement.lstrip().upper().startswith("SELECT"):
                continue  # the registry's own read; settings
            explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            plans.append(" ".join(str(row) for row in conn.exec_driver_sql(explain + statement, parameters)))
    used = {index for index in TIER_INDEXES[engine.dialect.name] if any(index in plan for plan in plans)}
    assert used == TIER_INDEXES[engine.dialect.name], plans
    assert not any("SCAN ci " in plan or plan.endswith("SCAN ci") for plan in plans), plans


@pytest.fixture
def sqlite_engine(request, tmp_path):
    """For what exists on SQLite only (PostgreSQL's indexes keep themselves; its statistics are its own)."""
    for url in fresh_database(request, "sqlite", tmp_path):
        engine = make_engine(url)
        yield engine
        engine.dispose()


@pytest.mark.parametrize("trigger", ["ci_search_insert", "ci_search_update_name", "ci_search_update_values",
                                     "ci_search_delete"])
def test_sqlite_keeps_the_search_triggers(sqlite_engine, trigger):
    engine = sqlite_engine
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = :n"),
                            {"n": trigger}).scalar() == 1


def test_sqlite_statistics_leave_the_search_index_out(sqlite_engine):
    # Counted while small, FTS5's shadow tables would make SQLite plan FTS5's own deletes as scans, and
    # the next big load would slow down quadratically (app.core.db.refresh_statistics).
    engine = sqlite_engine
    from app.core.db import refresh_statistics

    assert refresh_statistics(engine, force=True)
    with engine.connect() as conn:
        analyzed = set(conn.execute(text("SELECT DISTINCT tbl FROM sqlite_stat1")).scalars())
    assert "ci_class" in analyzed and not {name for name in analyzed if name.startswith("ci_fts_")}


def test_a_search_out_of_time_says_truncated(api, monkeypatch):
    api.create_ci("application", "shop-web01")
    api.create_ci("application", "web01-api")
    monkeypatch.setattr("app.services.search.SEARCH_BUDGET_SECONDS", 0.0)
    answer = search(api, "web01")
    assert [r["name"] for r in answer["results"]] == ["web01-api"] and answer["truncated"] is True


def test_a_slow_trigram_statement_is_cancelled_and_the_connection_stays_usable(engine):
    import time

    from app.services.search import _bounded_rows, _OutOfTime

    postgres = engine.dialect.name == "postgresql"
    slow = text("SELECT pg_sleep(5)" if postgres else
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) SELECT count(*) FROM n")
    # As the API reads (PostgreSQL: autocommit) and inside a transaction (which must survive it).
    for options in ({"isolation_level": "AUTOCOMMIT"} if postgres else {}, {}):
        with engine.connect().execution_options(**options) as conn:
            before = conn.exec_driver_sql("SHOW statement_timeout").scalar() if postgres else None
            started = time.monotonic()
            with pytest.raises(_OutOfTime):
                _bounded_rows(conn, slow, time.monotonic() + 0.1)
            assert time.monotonic() - started < 2
            if postgres:
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == before
                assert conn.exec_driver_sql("SHOW enable_seqscan").scalar() == "on"
            assert conn.execute(text("SELECT 1")).scalar() == 1


def test_identifiers_only_answers_exact_identifiers_and_nothing_else(api):
    """What a program asks (the SNMP agent: which host holds this MAC): an identifier or nothing, never a
    CI whose name or attribute merely holds the text."""
    api.create_ci("server", "web-9", attributes={"mac_address": ["52:54:00:aa:bb:cc"]})
    api.create_ci("server", "52:54:00:aa:bb:dd-named", attributes={"note": "52:54:00:aa:bb:dd"})
    assert found(api, "52-54-00-AA-BB-CC", identifiers_only="true") == [
        ("web-9", "identifier.mac_address", "52:54:00:aa:bb:cc")]
    assert found(api, "52:54:00:aa:bb:dd", identifiers_only="true") == []
    # the full search finds the name that starts with it
    assert [name for name, _, _ in found(api, "52:54:00:aa:bb:dd")] == ["52:54:00:aa:bb:dd-named"]
