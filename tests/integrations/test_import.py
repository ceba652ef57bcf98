"""POST /api/v1/import with CSV of CIs: per-row outcomes, every error at once, all or nothing, the
source `import` and its precedence, encodings, the change feed. Both databases."""

import codecs

from app.models.token import Scope
from app.services import tokens as token_service
from app.services.history import UnitOfWork

CSV = {"Content-Type": "text/csv"}


def post_csv(api, text: str | bytes, query: str = "class=server", **kwargs):
    return api.post(f"/api/v1/import?{query}", content=text, headers=CSV, **kwargs)


def rows_by_number(report: dict) -> dict[int, dict]:
    return {row["row"]: row for row in report["rows"]}


def cis_named(api, *names: str) -> dict[str, dict]:
    items = api.get("/api/v1/cis?limit=1000").json()["items"]
    return {ci["name"]: ci for ci in items if ci["name"] in names}


GOOD = ("name,identifier.fqdn,environment,owner,criticality,tags,status,attribute.cpu_count,attribute.note\n"
        "web-1,web-1.example.com,prod,web-team,2,\"web,pci\",active,8,=1+1\n"
        "db-1,db-1.example.com,prod,,,,maintenance,16,\n")


def test_dry_run_answers_every_row_and_writes_nothing(api):
    existing = api.create_ci("server", "old-name", attributes={"fqdn": "db-1.example.com", "cpu_count": 16})
    report = post_csv(api, GOOD, "class=server&dry_run=true").json()
    assert report["dry_run"] is True and report["applied"] is False
    assert report["counts"] == {"create": 1, "update": 1, "unchanged": 0, "error": 0}
    rows = rows_by_number(report)
    assert rows[2]["action"] == "create"
    assert {k: v for k, v in rows[2]["diff"].items() if k not in ("first_seen", "last_seen")} == {
        "class": [None, "server"], "name": [None, "web-1"], "status": [None, "active"], "environment": [None, "prod"],
        "criticality": [None, 2], "owner": [None, "web-team"], "tags": [None, ["web", "pci"]],
        "attributes.cpu_count": [None, 8], "attributes.fqdn": [None, "web-1.example.com"],
        "attributes.note": [None, "=1+1"]}
    # The manual name outranks the import; the fields have no provenance and follow the sheet.
    assert rows[3] == {"row": 3, "action": "update", "ci": existing["id"],
                       "diff": {"environment": [None, "prod"], "status": ["active", "maintenance"]}}
    assert set(cis_named(api, "web-1", "db-1", "old-name")) == {"old-name"}
    assert api.get(f"/api/v1/cis/{existing['id']}").json()["version"] == 1


def test_import_applies_as_source_import_and_a_second_time_changes_nothing(api):
    first = post_csv(api, GOOD)
    assert first.status_code == 200, first.text
    assert first.json()["counts"] == {"create": 2, "update": 0, "unchanged": 0, "error": 0}
    cis = cis_named(api, "web-1", "db-1")
    web, db = cis["web-1"], cis["db-1"]
    assert (web["environment"], web["owner"], web["criticality"], web["tags"], web["status"]) == (
        "prod", "web-team", 2, ["web", "pci"], "active")
    assert web["attributes"] == {"fqdn": "web-1.example.com", "cpu_count": 8, "note": "=1+1"}
    assert (db["owner"], db["criticality"], db["tags"], db["status"], db["attributes"]) == (
        None, None, [], "maintenance", {"fqdn": "db-1.example.com", "cpu_count": 16})
    detail = api.get(f"/api/v1/cis/{web['id']}").json()
    assert {k: v["source"] for k, v in detail["provenance"].items()} == {
        "name": "import", "fqdn": "import", "cpu_count": "import", "note": "import"}
    second = post_csv(api, GOOD).json()
    assert second["counts"] == {"create": 0, "update": 0, "unchanged": 2, "error": 0}
    assert api.get(f"/api/v1/cis/{web['id']}").json()["version"] == 1
    history = api.get(f"/api/v1/cis/{web['id']}/history").json()["items"]
    assert [(h["action"], h["actor"]) for h in history] == [("create", "admin-bot")]
    # The second time each row was confirmed by its fingerprint (ingest's shortcut); the fields beside
    # the report are still compared: a changed criticality is an update.
    third = GOOD.replace("web-team,2,", "web-team,3,")
    rows = rows_by_number(post_csv(api, third, "class=server&dry_run=true").json())
    assert (rows[2]["action"], rows[2]["diff"], rows[3]["action"]) == ("update", {"criticality": [2, 3]}, "unchanged")
    assert post_csv(api, third).json()["counts"] == {"create": 0, "update": 1, "unchanged": 1, "error": 0}
    assert api.get(f"/api/v1/cis/{web['id']}").json()["criticality"] == 3
    assert post_csv(api, third).json()["counts"] == {"create": 0, "update": 0, "unchanged": 2, "error": 0}


NO_IDENTIFIER = ("no identifier usable for class 'server': give one of serial_number, product_uuid, machine_id, fqdn, "
                 "mac_address, ip_address (placeholder values such as 'Default string' or loopback addresses do not count)")


def test_every_error_of_every_row_at_once(api):
    sheet = ("name,class,identifier.fqdn,criticality,status,tags,attribute.cpu_count\n"
             "ok-1,,ok-1.example.com,1,,,2\n"
             ",,nameless.example.com,9,sleeping,,\n"
             "bad-class,rack,bad.example.com,,,,\n"
             "no-id,,,,,,4\n"
             "bad-schema,,schema.example.com,,,\"[\"\"a\"\",1]\",0\n"
             "vm-1,virtual_machine,vm-1.example.com,,,,\n"
             "svc,service,svc.example.com,,,,\n")
    report = post_csv(api, sheet, "class=server&dry_run=true").json()
    rows = rows_by_number(report)
    assert {n: (r["action"], sorted((e["column"], e["reason"]) for e in r.get("errors", []))) for n, r in rows.items()} == {
        2: ("create", []),
        3: ("error", [("criticality", "9 is not from 1 (most critical) to 4"), ("name", "a name is required"),
                      ("status", "'sleeping' is not one of planned, active, maintenance, stale, retired")]),
        4: ("error", [("class", "unknown class 'rack'")]),
        5: ("error", [("identifiers", NO_IDENTIFIER)]),
        6: ("error", [("tags", "a JSON array of texts is expected")]),
        7: ("create", []),
        8: ("error", [("class", "'service' is not 'server' or one of its subclasses (class=)")]),
    }
    assert report["counts"] == {"create": 2, "update": 0, "unchanged": 0, "error": 5}
    # The schema violation shows once the tags are right, named by its column.
    fixed = sheet.replace('"[""a"",1]"', "")
    rows = rows_by_number(post_csv(api, fixed, "class=server&dry_run=true").json())
    assert rows[6]["errors"] == [{"column": "attribute.cpu_count", "reason": "0 is less than the minimum of 1"}]


def test_with_any_error_nothing_is_applied_unless_asked(api):
    sheet = "name,identifier.fqdn,criticality\ngood,good.example.com,1\nbad,bad.example.com,7\n"
    response = post_csv(api, sheet)
    assert response.status_code == 422
    body = response.json()
    assert body["errors"] == [{"field": "row 3: criticality", "message": "7 is not from 1 (most critical) to 4"}]
    assert body["report"]["applied"] is False and body["report"]["counts"]["create"] == 1
    assert cis_named(api, "good", "bad") == {}
    partial = post_csv(api, sheet, "class=server&all_or_nothing=false")
    assert partial.status_code == 200 and partial.json()["applied"] is True
    assert set(cis_named(api, "good", "bad")) == {"good"}


def test_an_import_larger_than_one_ingest_batch_is_still_all_or_nothing(api):
    lines = ["name,identifier.serial_number"] + [f"host-{n},SN-{n:06d}" for n in range(10_001)]
    broken = "\n".join(lines + ["host-x,"]) + "\n"  # the last row has no identifier
    response = post_csv(api, broken)
    assert response.status_code == 422
    assert [(r["row"], r["action"]) for r in response.json()["report"]["rows"] if r["action"] != "create"] == [
        (10_003, "error")]
    assert api.get("/api/v1/cis?limit=1").json()["items"] == []
    applied = post_csv(api, "\n".join(lines) + "\n")
    assert applied.status_code == 200 and applied.json()["counts"]["create"] == 10_001


def test_precedence_of_the_import_source(api):
    ingest = {"source": "ssh", "run_id": "ssh-1", "items": [
        {"ref": "h", "class": "server", "name": "web-1", "identifiers": {"fqdn": "web-1.example.com"},
         "attributes": {"cpu_count": 4}}]}
    assert api.post("/api/v1/ingest", json=ingest).status_code == 200
    sheet = "name,identifier.fqdn,attribute.cpu_count,attribute.rack\nweb-1,web-1.example.com,8,R12\n"
    rows = rows_by_number(post_csv(api, sheet, "class=server&dry_run=true").json())
    # ssh outranks import: cpu_count stays 4; the rack nobody reported is filled.
    assert rows[2]["action"] == "update" and rows[2]["diff"] == {"attributes.rack": [None, "R12"]}
    applied = post_csv(api, sheet).json()["rows"]
    assert applied == [{"row": 2, "action": "update", "ci": rows[2]["ci"]}]  # the diff is in the change feed
    ci = cis_named(api, "web-1")["web-1"]
    assert ci["attributes"] == {"fqdn": "web-1.example.com", "cpu_count": 4, "rack": "R12"}


def test_an_id_is_checked_against_the_identified_ci(api):
    web = api.create_ci("server", "web-1", attributes={"fqdn": "web-1.example.com"})
    other = api.create_ci("server", "web-2", attributes={"fqdn": "web-2.example.com"})
    sheet = f"id,name,identifier.fqdn\n{web['id']},web-1,web-1.example.com\n{other['id']},web-1,web-1.example.com\n"
    rows = rows_by_number(post_csv(api, sheet, "class=server&dry_run=true").json())
    assert rows[2]["action"] == "unchanged"
    assert rows[3]["errors"] == [{"column": "id", "reason": f"the row's identifiers are CI {web['id']}, not {other['id']}"}]


def test_unknown_and_repeated_columns_refuse_the_file(api):
    response = post_csv(api, "name,colour,attribute.fqdn,identifier.fqdn,owner,owner\nx,red,a,a,b,b\n")
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "column 'colour'", "message": "unknown column"},
        {"field": "column 'owner'", "message": "given twice"},
        {"field": "column 'identifier.fqdn and attribute.fqdn'", "message": "given twice"}]
    assert post_csv(api, "owner\nx\n").json()["errors"] == [{"field": "column 'name'", "message": "required"}]


def test_encodings_and_separators(api):
    sheet = "name;identifier.fqdn;owner\nzürich-1;z1.example.com;Équipe\n"
    for body in (codecs.BOM_UTF8 + sheet.encode(), codecs.BOM_UTF16_LE + sheet.encode("utf-16-le"),
                 sheet.replace(";", "\t").encode()):
        report = post_csv(api, body, "class=server&dry_run=true").json()
        assert report["rows"][0]["diff"]["owner"] == [None, "Équipe"], report
        assert report["rows"][0]["diff"]["name"] == [None, "zürich-1"]
    latin1 = post_csv(api, sheet.encode("latin-1"))
    assert latin1.status_code == 422 and "not UTF-8 (byte 28)" in latin1.json()["detail"]
    assert post_csv(api, b"").status_code == 422
    assert post_csv(api, 'name,identifier.fqdn\n"open,x\n').status_code == 422


def test_who_may_import(api, engine):
    assert post_csv(api, GOOD, as_="read").status_code == 403
    with UnitOfWork(engine, "tests") as uow:
        ssh_only = token_service.create_token(uow, "ssh-agent", [Scope.discovery], sources=["ssh"])["secret"]
    response = api.post("/api/v1/import?class=server", content=GOOD,
                        headers={**CSV, "Authorization": f"Bearer {ssh_only}"}, as_=None)
    assert response.status_code == 403 and "not as source 'import'" in response.json()["detail"]
    assert api.post("/api/v1/import", content=b"<x/>", headers={"Content-Type": "application/xml"}).status_code == 415


def test_body_is_bounded(database_url):
    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.main import create_app

    app = create_app(Settings(database_url=database_url, max_import_body_bytes=2048))
    with TestClient(app) as client:
        response = client.post("/api/v1/import?class=server", content=b"name\n" + b"x\n" * 2000, headers=CSV)
    app.state.engine.dispose()
    assert response.status_code == 413 and response.json()["limit"] == 2048


def test_a_number_in_a_cell_is_text_where_the_class_declares_text(api):
    sheet = 'name,identifier.fqdn,attribute.os_version,attribute.cpu_count,attribute.build\nh,h.example.com,12,4,"""12"""\n'
    diff = post_csv(api, sheet, "class=virtual_machine&dry_run=true").json()["rows"][0]["diff"]
    assert (diff["attributes.os_version"], diff["attributes.cpu_count"], diff["attributes.build"]) == (
        [None, "12"], [None, 4], [None, "12"])


def test_a_row_whose_identifiers_lead_to_two_cis_is_an_error(api):
    a = api.create_ci("server", "a", attributes={"serial_number": "SN-A"})
    b = api.create_ci("server", "b", attributes={"fqdn": "b.example.com"})
    sheet = "name,identifier.serial_number,identifier.fqdn\nab,SN-A,b.example.com\n"
    row = post_csv(api, sheet, "class=server&dry_run=true").json()["rows"][0]
    assert row["action"] == "error" and row["ci"] is None
    assert row["errors"] == [{"column": "identifiers", "reason": "its identifiers match several CIs; nothing was merged "
                                                                 f"(CIs {', '.join(sorted([a['id'], b['id']]))})"}]


def test_a_row_answered_as_an_error_writes_nothing_even_when_the_good_rows_are_applied(api):
    web = api.create_ci("server", "web-1", attributes={"fqdn": "web-1.example.com"})
    other = api.create_ci("server", "web-2", attributes={"fqdn": "web-2.example.com"})
    sheet = (f"id,name,identifier.fqdn,attribute.rack\n{other['id']},web-1,web-1.example.com,R1\n"
             ",db-1,db-1.example.com,R2\n")
    report = post_csv(api, sheet, "class=server&all_or_nothing=false").json()
    assert [(row["row"], row["action"]) for row in report["rows"]] == [(2, "error"), (3, "create")], report
    assert report["rows"][0]["errors"] == [
        {"column": "id", "reason": f"the row's identifiers are CI {web['id']}, not {other['id']}"}]
    assert api.get(f"/api/v1/cis/{web['id']}").json()["attributes"] == {"fqdn": "web-1.example.com"}
    assert api.get(f"/api/v1/cis/{web['id']}").json()["version"] == 1
    bundle = {"cis": [{"id": other["id"], "class": "server", "name": "web-1", "identifiers": {"fqdn": "web-1.example.com"}},
                      {"class": "server", "name": "db-2", "identifiers": {"fqdn": "db-2.example.com"}}],
              "relationships": [{"source": "fqdn=web-1.example.com", "type": "depends_on", "target": "fqdn=db-2.example.com"}]}
    report = api.post("/api/v1/import?all_or_nothing=false", json=bundle).json()
    assert [row["action"] for row in report["rows"]] == ["error", "create"], report
    assert report["relationships"][0]["action"] == "error", report
    assert api.get("/api/v1/relationships?limit=100").json()["items"] == []
    assert api.get(f"/api/v1/cis/{web['id']}").json()["version"] == 1


def test_a_discovery_token_imports_names_identifiers_and_attributes_but_not_the_fields_of_an_edit(api, engine):
    existing = api.create_ci("server", "db-1", owner="dba", environment="prod", criticality=1, tags=["pci"],
                             attributes={"fqdn": "db-1.example.com"})
    with UnitOfWork(engine, "tests") as uow:
        importer = token_service.create_token(uow, "importer", [Scope.discovery], sources=["import"])["secret"]
    as_importer = {**CSV, "Authorization": f"Bearer {importer}"}
    assert api.patch(f"/api/v1/cis/{existing['id']}", json={"owner": "x"}, headers={"Authorization": f"Bearer {importer}"},
                     as_=None).status_code == 403
    response = api.post("/api/v1/import?class=server", content=GOOD, headers=as_importer, as_=None)
    assert response.status_code == 422
    rows = rows_by_number(response.json()["report"])
    assert [e["column"] for e in rows[2]["errors"]] == ["environment", "owner", "criticality", "tags", "status"]
    assert "needs a token with scope 'write'" in rows[2]["errors"][0]["reason"]
    assert [e["column"] for e in rows[3]["errors"]] == ["environment", "status"]
    # Empty cells leave the fields alone; names, identifiers and attributes are imported.
    sheet = "name,identifier.fqdn,environment,owner,criticality,tags,status,attribute.rack\ndb-1,db-1.example.com,,,,,,R7\n"
    applied = api.post("/api/v1/import?class=server", content=sheet, headers=as_importer, as_=None)
    assert applied.status_code == 200 and applied.json()["counts"]["update"] == 1, applied.text
    ci = api.get(f"/api/v1/cis/{existing['id']}").json()
    assert (ci["owner"], ci["environment"], ci["criticality"], ci["tags"], ci["status"]) == ("dba", "prod", 1, ["pci"], "active")
    assert ci["attributes"] == {"fqdn": "db-1.example.com", "rack": "R7"}


def test_an_id_is_the_identity_of_a_row_without_identifiers_when_it_names_a_ci_of_the_class(api):
    hand = api.create_ci("server", "hand-made")
    web = api.create_ci("server", "web-1", attributes={"fqdn": "web-1.example.com"})
    service = api.create_ci("service", "shop", attributes={"sla": "gold"})
    missing = "01a237cc-34ca-7622-a134-106c26312a05"
    sheet = (f"id,name,identifier.fqdn,attribute.rack\n{hand['id']},hand-made,,R1\n{service['id']},shop,,\n"
             f"{missing},ghost,,\n{hand['id']},web-1,web-1.example.com,\n{web['id']},again,,\n,web-1,web-1.example.com,\n")
    rows = rows_by_number(post_csv(api, sheet, "class=server&all_or_nothing=false").json())
    assert (rows[2]["action"], rows[2]["ci"]) == ("update", hand["id"])
    assert rows[3]["errors"] == [{"column": "id", "reason": f"CI {service['id']} is a service, not a server or one of its subclasses (nor a class identified with it)"}]
    assert rows[4]["errors"][0]["column"] == "identifiers" and "no identifier usable" in rows[4]["errors"][0]["reason"]
    assert rows[5]["errors"] == [{"column": "id", "reason": f"the row's identifiers are CI {web['id']}, not {hand['id']}"}]
    assert rows[6]["errors"] == [{"column": "id", "reason": f"CI {web['id']} is also the CI of another row of this import"}]
    assert (rows[7]["action"], rows[7]["ci"]) == ("unchanged", web["id"])
    assert api.get(f"/api/v1/cis/{hand['id']}").json()["attributes"] == {"rack": "R1"}
    assert api.get(f"/api/v1/cis/{web['id']}").json()["name"] == "web-1"
    bundle = {"cis": [{"id": hand["id"], "class": "server", "name": "hand-made", "attributes": {"rack": "R1"}}],
              "relationships": [{"source": "name=hand-made", "type": "depends_on", "target": service["id"]}]}
    linked = api.post("/api/v1/import", json=bundle)
    assert linked.status_code == 200, linked.text
    assert linked.json()["rows"] == [{"row": 0, "action": "unchanged", "ci": hand["id"]}]
    assert linked.json()["relationships"] == [{"row": 0, "action": "create"}]
    assert [(r["source"], r["target"]) for r in api.get("/api/v1/relationships?limit=10").json()["items"]] == [
        (hand["id"], service["id"])]
    assert post_csv(api, sheet.splitlines()[0] + "\n" + sheet.splitlines()[1] + "\n").json()["counts"]["unchanged"] == 1


def test_a_row_identified_by_its_id_is_not_confirmed_as_that_ci_without_it(api):
    first, second = api.create_ci("server", "twin"), api.create_ci("server", "twin")
    for ci in (first, second, first):
        rows = post_csv(api, f"id,name,attribute.rack\n{ci['id']},twin,R1\n").json()["rows"]
        assert (rows[0]["action"], rows[0]["ci"]) in {("update", ci["id"]), ("unchanged", ci["id"])}, rows
    report = post_csv(api, "id,name,attribute.rack\n,twin,R1\n", "class=server&dry_run=true").json()
    assert report["rows"][0]["action"] == "error" and report["rows"][0]["errors"][0]["column"] == "identifiers"
