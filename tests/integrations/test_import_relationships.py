"""POST /api/v1/import with relationships (CSV) and with JSON/YAML bundles of several classes. Both databases."""

import json

CSV = {"Content-Type": "text/csv"}


def relationships_of(api) -> set[tuple[str, str, str]]:
    names = {ci["id"]: ci["name"] for ci in api.get("/api/v1/cis?limit=1000").json()["items"]}
    items = api.get("/api/v1/relationships?limit=1000").json()["items"]
    return {(names[r["source"]], r["type"], names[r["target"]]) for r in items}


def test_relationship_rows_by_identifier_name_and_id(api):
    web = api.create_ci("server", "web-1", attributes={"fqdn": "web-1.example.com"})
    api.create_ci("server", "db-1", attributes={"fqdn": "db-1.example.com", "ip_address": "10.0.0.5"})
    shop = api.create_ci("service", "shop", environment="prod")
    api.create_ci("service", "twin", environment="prod")
    api.create_ci("service", "twin", environment="test")
    sheet = ("source,type,target,attribute.port\n"
             f"{shop['id']},depends_on,fqdn=WEB-1.example.com.,\n"
             "fqdn=web-1.example.com,depends_on,ip_address=10.0.0.5,5432\n"
             "name=twin,depends_on,fqdn=web-1.example.com,\n"
             "fqdn=nowhere.example.com,runs_on,name=shop,\n"
             "name=shop,flies_to,name=shop,\n"
             "web-1,depends_on,,\n")
    dry = api.post("/api/v1/import?relationships=true&dry_run=true", content=sheet, headers=CSV).json()
    assert {r["row"]: (r["action"], r.get("errors", [])) for r in dry["relationships"]} == {
        2: ("create", []),
        3: ("create", []),
        4: ("error", [{"column": "source", "reason": "several CIs have name=twin"}]),
        5: ("error", [{"column": "source", "reason": "no CI has fqdn=nowhere.example.com"}]),
        6: ("error", [{"column": "type", "reason": "unknown relationship type 'flies_to'"}]),
        7: ("error", [{"column": "source", "reason": "'web-1' is neither a CI id nor key=value (fqdn=web-1.example.com, name=shop)"},
                      {"column": "target", "reason": "required: a CI id, key=value of an identifier or name=..."}]),
    }
    assert dry["relationship_counts"] == {"create": 2, "update": 0, "unchanged": 0, "error": 4}
    good = "\n".join(sheet.splitlines()[:3]) + "\n"
    assert api.post("/api/v1/import?relationships=true", content=good, headers=CSV).status_code == 200
    assert relationships_of(api) == {("shop", "depends_on", "web-1"), ("web-1", "depends_on", "db-1")}
    again = api.post("/api/v1/import?relationships=true&dry_run=true", content=good.replace(",5432", ",5433"),
                     headers=CSV).json()
    assert [r["action"] for r in again["relationships"]] == ["unchanged", "update"]
    assert web["id"]


BUNDLE = {
    "cis": [
        {"class": "server", "name": "web-1", "identifiers": {"fqdn": "web-1.example.com"}, "owner": "web-team",
         "tags": ["web"], "criticality": 2, "attributes": {"cpu_count": 4}},
        {"class": "database", "name": "orders-db", "identifiers": {"instance_key": "db-1/pg/5432"},
         "attributes": {"engine": "postgresql"}, "environment": "prod"},
        {"class": "service", "name": "shop", "environment": "prod", "attributes": {"service_id": "SHOP"}},
    ],
    "relationships": [
        {"source": "service_id=SHOP", "type": "depends_on", "target": "instance_key=db-1/pg/5432"},
        {"source": "name=orders-db", "type": "runs_on", "target": "fqdn=web-1.example.com"},
    ],
}

BUNDLE_YAML = """
cis:
  - class: server
    name: web-1
    identifiers: {fqdn: web-1.example.com}
    owner: web-team
    tags: [web]
    criticality: 2
    attributes: {cpu_count: 4}
  - class: database
    name: orders-db
    environment: prod
    identifiers: {instance_key: db-1/pg/5432}
    attributes: {engine: postgresql}
  - class: service
    name: shop
    environment: prod
    attributes: {service_id: SHOP}
relationships:
  - {source: service_id=SHOP, type: depends_on, target: instance_key=db-1/pg/5432}
  - {source: name=orders-db, type: runs_on, target: fqdn=web-1.example.com}
"""


def test_a_json_bundle_of_several_classes_and_its_relationships(api):
    response = api.post("/api/v1/import", content=json.dumps(BUNDLE), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert [(r["row"], r["action"]) for r in report["rows"]] == [(0, "create"), (1, "create"), (2, "create")]
    assert [(r["row"], r["action"]) for r in report["relationships"]] == [(0, "create"), (1, "create")]
    assert relationships_of(api) == {("shop", "depends_on", "orders-db"), ("orders-db", "runs_on", "web-1")}
    web = {ci["name"]: ci for ci in api.get("/api/v1/cis").json()["items"]}["web-1"]
    assert (web["owner"], web["tags"], web["criticality"]) == ("web-team", ["web"], 2)
    yaml_report = api.post("/api/v1/import?dry_run=true", content=BUNDLE_YAML,
                           headers={"Content-Type": "application/yaml"}).json()
    assert yaml_report["counts"] == {"create": 0, "update": 0, "unchanged": 3, "error": 0}
    assert yaml_report["relationship_counts"] == {"create": 0, "update": 0, "unchanged": 2, "error": 0}


# The "billion laughs": 13 lines that would expand to 9 * 5**12 values.
LAUGHS = ("cis: [{class: server, name: l, identifiers: {fqdn: l.example.com}, attributes: {a: &a [x, x, x, x, x, x, x, x, x], "
          + ", ".join(f"{chr(98 + n)}: &{chr(98 + n)} [" + ", ".join([f"*{chr(97 + n)}"] * 5) + "]" for n in range(12))
          + "}}]\n")


def test_bundle_errors_per_row_and_refusals(api):
    bundle = {"cis": [{"class": "server", "name": "x", "colour": "red", "identifiers": {"fqdn": "x.example.com"}},
                      {"class": "server", "name": 5, "criticality": "high", "tags": "web"},
                      "not an object"],
              "relationships": [{"source": "name=x", "type": "runs_on", "target": 7}]}
    report = api.post("/api/v1/import?dry_run=true", content=json.dumps(bundle),
                      headers={"Content-Type": "application/json"}).json()
    assert {r["row"]: sorted(e["column"] for e in r.get("errors", [])) for r in report["rows"]} == {
        0: ["colour"], 1: ["criticality", "name", "tags"], 2: ["row"]}
    assert [r["errors"] for r in report["relationships"]] == [[
        {"column": "target", "reason": "text is expected"},
        {"column": "source", "reason": "name=x is row 0 of this import, which has errors"}]]
    for body, media_type in (("[1]", "application/json"), ("{", "application/json"), ("a: [", "application/yaml"),
                             ('{"cis": {}}', "application/json"), ('{"servers": []}', "application/json"),
                             ("when: !!python/object:os.system {}", "application/yaml"), (LAUGHS, "application/yaml")):
        response = api.post("/api/v1/import", content=body, headers={"Content-Type": media_type})
        assert response.status_code == 422, (body, response.text)
    laughs = api.post("/api/v1/import", content=LAUGHS, headers={"Content-Type": "application/yaml"})
    assert laughs.json()["errors"] == [{"field": "body", "message": "YAML alias"}]
    dated = api.post("/api/v1/import?dry_run=true", headers={"Content-Type": "application/yaml"}, content=(
        "cis: [{class: server, name: d, identifiers: {fqdn: d.example.com}, attributes: {bought: 2024-01-31}}]"))
    assert dated.json()["rows"][0]["diff"]["attributes.bought"] == [None, "2024-01-31"]


def test_hostile_files_are_answered_never_with_a_500(api):
    deep = "[" * 300 + "]" * 300
    cases = [
        ("class=server", "name,identifier.fqdn,attribute.x\nn\x00ul,a.example.com,1\n"),
        ("class=server", "name,identifier.fqdn,attribute.k\x00ey\nh,b.example.com,1\n"),
        ("class=server", f"name,identifier.fqdn,attribute.deep\nh,c.example.com,{deep}\n"),
        ("class=server", "name,identifier.fqdn,attribute.big\nh,d.example.com,99999999999999999999999\n"),
        ("class=server", "name,identifier.fqdn,class\nh,e.example.com,ser\x00ver\n"),
        ("class=server", "name,identifier.fqdn,id\nh,f.example.com,not-an-id\n"),
        ("class=server", "name,identifier.fqdn\n" + "x" * 300 + ",g.example.com\n"),
        ("class=server", "name,identifier.fqdn\r\rh,h.example.com\r"),
        ("class=nope", "name,identifier.fqdn\nh,i.example.com\n"),
        ("class=server", "name,identifier.fqdn,attribute.v\nh,j.example.com,\"" + "v" * (2 * 1024 * 1024) + "\"\n"),
        ("relationships=true", "source,type,target\nname=a,ty\x00pe,name=b\n"),
        ("relationships=true", "source,type,target\nname=a," + "t" * 100 + ",name=b\n"),
        ("relationships=true", "source,type,target\nfqdn=\x00,runs_on,mac_address=zz\n"),
    ]
    for query, body in cases:
        response = api.post(f"/api/v1/import?{query}&dry_run=true", content=body.encode(), headers=CSV)
        assert response.status_code in (200, 413, 422), (body[:80], response.status_code, response.text[:500])
        assert response.status_code == 200 or response.headers["content-type"] == "application/problem+json"
        if response.status_code == 200 and "99999" not in body and "\r\r" not in body:  # those two are fine
            report = response.json()
            assert report["errors"] == report["counts"]["error"] + report["relationship_counts"]["error"] >= 1, body[:80]
    # An integer beyond 64 bits is not JSON Karta stores: the cell is that text.
    big = api.post("/api/v1/import?class=server&dry_run=true", content=cases[3][1], headers=CSV).json()
    assert big["rows"][0]["diff"]["attributes.big"] == [None, "99999999999999999999999"]
