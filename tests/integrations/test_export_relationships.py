"""GET /api/v1/relationships?format=csv: ends written as an identifier naming that CI alone (else its
id), attributes as cells, hostile cells neutralised, the list's filters, and the round trip: export ->
import dry run -> every row unchanged; CIs then relationships -> an empty database -> the same
relationships. Both databases."""

import json

from tests.integrations.test_export import export as export_cis
from tests.integrations.test_export import second_api, table  # noqa: F401 (a fixture)

CSV = {"Content-Type": "text/csv"}


def export(api, query: str = "") -> str:
    response = api.get(f"/api/v1/relationships?format=csv{query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "karta-relationships.csv" in response.headers["content-disposition"]
    return response.content.decode("utf-8")


def make_estate(api) -> dict[str, dict]:
    made = {
        "web": api.create_ci("server", "web-1", attributes={"fqdn": "web-1.example.com", "ip_address": "10.0.0.11"}),
        "db": api.create_ci("server", "db-1", attributes={"fqdn": "db-1.example.com"}),
        # Two CIs (of two identity families: not server and network_device, which share one) holding one
        # serial number: neither can be named by it.
        "twin_a": api.create_ci("server", "twin-a", attributes={"serial_number": "SN-SHARED"}),
        "bare": api.create_ci("service", "shop", environment="prod"),  # identified by name + environment only
        "hostile": api.create_ci("server", "=cmd|' /C calc'!A0", attributes={"fqdn": "h.example.com"}),
    }
    made["twin_b"] = api.create_ci("load_balancer", "twin-b", attributes={"serial_number": "SN-SHARED",
                                                                          "fqdn": "twin-b.example.com"})
    api.relate(made["web"]["id"], "depends_on", made["db"]["id"], port=5432, note="+SUM(A1)")
    api.relate(made["bare"]["id"], "depends_on", made["web"]["id"])
    api.relate(made["twin_a"]["id"], "runs_on", made["hostile"]["id"])
    api.relate(made["bare"]["id"], "depends_on", made["twin_b"]["id"], weight=1.5)
    return made


def named(api) -> set[tuple[str, str, str, str]]:
    names = {ci["id"]: ci["name"] for ci in api.get("/api/v1/cis?limit=1000").json()["items"]}
    items = api.get("/api/v1/relationships?limit=1000").json()["items"]
    return {(names[r["source"]], r["type"], names[r["target"]], json.dumps(r["attributes"], sort_keys=True))
            for r in items}


def test_ends_attributes_and_neutralised_cells(api):
    made = make_estate(api)
    rows = table(export(api))
    assert list(rows[0]) == ["source", "type", "target", "attribute.note", "attribute.port", "attribute.weight"]
    by_ends = {(row["source"], row["type"], row["target"]): row for row in rows}
    assert set(by_ends) == {
        ("fqdn=web-1.example.com", "depends_on", "fqdn=db-1.example.com"),
        (made["bare"]["id"], "depends_on", "fqdn=web-1.example.com"),
        (made["twin_a"]["id"], "runs_on", "fqdn=h.example.com"),
        (made["bare"]["id"], "depends_on", "fqdn=twin-b.example.com"),  # fqdn names it alone, its serial does not
    }
    web_db = by_ends[("fqdn=web-1.example.com", "depends_on", "fqdn=db-1.example.com")]
    assert (web_db["attribute.port"], web_db["attribute.note"]) == ("5432", "'+SUM(A1)")  # neutralised
    assert by_ends[(made["bare"]["id"], "depends_on", "fqdn=twin-b.example.com")]["attribute.weight"] == "1.5"


def test_filters_and_refused_paging(api):
    made = make_estate(api)
    assert [row["type"] for row in table(export(api, "&type=runs_on"))] == ["runs_on"]
    assert {row["target"] for row in table(export(api, f"&source={made['bare']['id']}"))} == {
        "fqdn=web-1.example.com", "fqdn=twin-b.example.com"}
    assert table(export(api, "&type=contains")) == []
    refused = api.get("/api/v1/relationships?format=csv&limit=10")
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in refused.json()["errors"]] == ["query.limit"]
    assert api.get("/api/v1/relationships?format=xml").status_code == 422


def test_round_trip_into_the_same_database_is_unchanged(api):
    make_estate(api)
    before = named(api)
    text = export(api)
    dry = api.post("/api/v1/import?relationships=true&dry_run=true", content=text.encode(), headers=CSV).json()
    assert dry["relationship_counts"] == {"create": 0, "update": 0, "unchanged": 4, "error": 0}, dry
    assert api.post("/api/v1/import?relationships=true", content=text.encode(), headers=CSV).status_code == 200
    assert named(api) == before


def test_round_trip_into_an_empty_database_by_identifiers(api, second_api):  # noqa: F811
    """CIs first, then relationships: an end written as an identifier finds the copy; one written as an id
    (it had no identifier naming it alone) names a CI the other database does not have, and that row is
    an error saying so, not a wrong link."""
    made = make_estate(api)
    cis = second_api.post("/api/v1/import", content=export_cis(api).encode(), headers=CSV)
    assert cis.status_code == 200, cis.text
    text = export(api)
    dry = second_api.post("/api/v1/import?relationships=true&dry_run=true", content=text.encode(), headers=CSV).json()
    actions = {row["row"]: row["action"] for row in dry["relationships"]}
    assert sorted(actions.values()) == ["create", "error", "error", "error"], dry
    portable = "\r\n".join(line for line in text.split("\r\n")
                           if made["bare"]["id"] not in line and made["twin_a"]["id"] not in line)
    assert second_api.post("/api/v1/import?relationships=true", content=portable.encode(),
                           headers=CSV).status_code == 200
    assert named(second_api) == {row for row in named(api) if row[0] == "web-1"}
