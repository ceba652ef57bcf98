"""The page of one CI (/ui/cis/{id}) and its edit form, with the real app on both databases (no
browser): what it shows, the history's pages, the edit's If-Match semantics (a stale form shows what
changed and keeps the input), schema errors by field, scopes and CSRF, and hostile text as text."""

import json
import re

import pytest

from tests.conftest import new_id
from tests.web.html_text import elements, texts
from tests.web.test_session import page_csrf, sign_in

HOSTILE = ['<img src=x onerror=alert(1)>', '"><script>alert(1)</script>']


def web_shop(api) -> dict[str, str]:
    """A small web shop: a service `shop` (created by hand) that depends on `shop-app`, which runs
    on the cluster `web-pool` of web-1 and web-2 and depends on `shop-db` on db-1 (discovered by
    ssh). Its ids by name."""
    body = {"source": "ssh", "run_id": f"shop-{new_id()}", "scope": {"hosts": ["web-1", "web-2", "db-1"]},
            "items": [
                {"ref": "web-1", "class": "server", "name": "web-1", "identifiers": {"serial_number": "SN-WEB-1"},
                 "attributes": {"os_name": "debian", "ip_address": ["10.0.0.11"]}},
                {"ref": "web-2", "class": "server", "name": "web-2", "identifiers": {"serial_number": "SN-WEB-2"},
                 "attributes": {"os_name": "debian"}},
                {"ref": "db-1", "class": "server", "name": "db-1", "identifiers": {"serial_number": "SN-DB-1"}},
                {"ref": "web-pool", "class": "cluster", "name": "web-pool", "identifiers": {"cluster_id": "web-pool"},
                 "attributes": {"min_members": 1}},
                {"ref": "shop-app", "class": "application", "name": "shop-app",
                 "identifiers": {"instance_key": "web-pool/shop/443"}},
                {"ref": "shop-db", "class": "database", "name": "shop-db", "identifiers": {"instance_key": "db-1/pg/5432"}}],
            "relationships": [{"source": "web-1", "target": "web-pool", "type": "member_of"},
                              {"source": "web-2", "target": "web-pool", "type": "member_of"},
                              {"source": "shop-app", "target": "web-pool", "type": "runs_on"},
                              {"source": "shop-app", "target": "shop-db", "type": "depends_on"},
                              {"source": "shop-db", "target": "db-1", "type": "runs_on"}]}
    answer = api.post("/api/v1/ingest", json=body)
    assert answer.status_code == 200, answer.text
    ids = dict(answer.json()["refs"])
    shop = api.create_ci("service", "shop", criticality=1, owner="team-shop", environment="prod",
                         tags=["customer-facing"], attributes={"service_id": "SHOP", "sla": "gold"})
    api.relate(shop["id"], "depends_on", ids["shop-app"])
    return {"shop": shop["id"], **ids}


@pytest.fixture
def client(api):
    return api.client


def signed_in(api, scope: str = "write"):
    assert sign_in(api.client, api.secrets[scope]).status_code == 303
    return api.client


def fields(html: str) -> dict[str, str]:
    """The CI's fields as shown: {"Owner": "team-shop", ...}."""
    return dict(zip(texts(html, "dt"), texts(html, "dd")))


def test_the_page_shows_the_ci_its_attributes_identifiers_and_relationships(api):
    ids = web_shop(api)
    assert api.patch(f"/api/v1/cis/{ids['web-1']}", json={"attributes": {"os_name": "ubuntu"}}).status_code == 200
    client = signed_in(api, "read")
    page = client.get(f"/ui/cis/{ids['web-1']}")
    assert page.status_code == 200
    assert texts(page.text, "h1") == ["web-1"]
    shown = fields(page.text)
    assert (shown["Class"], shown["Status"], shown["Owner"], shown["Tags"]) == ("server", "active", "nobody", "none")
    assert shown["Name set by"].startswith("ssh, ") and shown["Version"].startswith("2, ")
    rows = [(texts(row, "th")[0], *texts(row, "td")) for row in _rows(page.text, "ci-attributes")]
    assert [(key, value, source) for key, value, source, _ in rows] == [
        ("ip_address", '["10.0.0.11"]', "ssh"), ("os_name", "ubuntu", "manual"), ("serial_number", "SN-WEB-1", "ssh")]
    identifiers = texts(page.text, "section")[3]
    assert identifiers == "Identifiers Identifier Value (as matched) ip_address 10.0.0.11 serial_number sn-web-1"
    assert texts(page.text, "h3.ci-group") == ["web-1 member of 1"]
    assert "Single points of failure" not in page.text and "ci-service" not in page.text  # not a service

    app_page = client.get(f"/ui/cis/{ids['shop-app']}").text
    assert texts(app_page, "h3.ci-group") == ["shop-app depends on 1", "shop-app runs on 1", "shop-app used by 1"]
    assert texts(app_page, "ul.ci-related") == ["shop-db database", "web-pool cluster", "shop service"]
    assert f'href="/ui/cis/{ids["shop-db"]}"' in app_page
    assert 'class="button ci-edit-link"' not in app_page  # a read token sees no edit controls


def _rows(html: str, table_class: str) -> list[str]:
    table = re.search(rf'<table class="{table_class}">(.*?)</table>', html, re.DOTALL).group(1)
    return re.findall(r"<tr>(.*?)</tr>", table, re.DOTALL)[1:]


def test_a_service_shows_its_single_points_of_failure_and_what_it_depends_on(api):
    ids = web_shop(api)
    client = signed_in(api)
    whole = client.get(f"/ui/cis/{ids['shop']}").text
    shown = fields(whole)
    assert (shown["Owner"], shown["Environment"], shown["Tags"]) == ("team-shop", "prod", "customer-facing")
    assert shown["Criticality"] == "1 (1 = most critical)"
    loader = elements(whole, "#ci-service")[0]["attrs"]
    assert (loader["hx-get"], loader["hx-trigger"]) == (f"/ui/cis/{ids['shop']}/dependencies", "load")
    page = client.get(loader["hx-get"], headers={"HX-Request": "true"}).text
    assert "<html" not in page
    assert [e["text"] for e in elements(page, "ul.ci-spof")[0:1]] == [
        "shop-app application web-pool cluster shop-db database db-1 server"]
    tree = texts(page, "div.ci-tree")[0]
    assert tree == ("depends on shop-app application depends on shop-db database runs on db-1 server "
                    "runs on web-pool cluster has member web-1 server has member web-2 server")
    assert texts(page, "div.ci-tree li")[0].startswith("depends on shop-app")
    alone = client.get(loader["hx-get"]).text  # without JavaScript: a page of its own
    assert texts(alone, "h1") == ["Dependencies of shop"] and texts(alone, "div.ci-tree") == [tree]
    assert client.get(f"/ui/cis/{ids['web-1']}/dependencies").status_code == 404  # not a service


def test_history_shows_field_diffs_and_relationships_and_loads_older_pages(api):
    ids = web_shop(api)
    for n in range(22):
        assert api.patch(f"/api/v1/cis/{ids['shop']}", json={"owner": f"team-{n}"}).status_code == 200
    relation = api.relate(ids["shop"], "depends_on", ids["shop-db"])
    assert api.delete(f"/api/v1/relationships/{relation['id']}").status_code == 204
    client = signed_in(api)
    page = client.get(f"/ui/cis/{ids['shop']}").text
    items = texts(page, "p.ci-when")
    assert len(items) == 20
    assert items[0].endswith("admin-bot · relationship ended") and items[1].endswith("admin-bot · related")
    assert texts(page, "p.ci-rel-change")[:2] == ["shop depends on shop-db", "shop depends on shop-db"]
    assert texts(page, "ul.diff")[0] == "owner: team-20 → team-21"
    older = elements(page, "li.ci-older")
    assert len(older) == 1
    link = re.search(r'hx-get="([^"]+)"', page[page.index('class="ci-older"'):]).group(1).replace("&amp;", "&")
    fragment = client.get(link, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    # the creation, the first relationship, 22 owner changes, a relationship and its end: 20 on the first page
    assert [t.split(" · ")[-1] for t in texts(fragment.text, "p.ci-when")] == ["changed"] * 4 + ["related", "created"]
    assert texts(fragment.text, "ul.diff")[:4] == ["owner: team-2 → team-3", "owner: team-1 → team-2",
                                                   "owner: team-0 → team-1", "owner: team-shop → team-0"]
    assert elements(fragment.text, "li.ci-older") == []
    whole = client.get(link)
    assert "<html" in whole.text and texts(whole.text, "h1") == ["Older changes of shop"]
    assert client.get(f"/ui/cis/{ids['shop']}/history?cursor=%21%21").status_code == 422


def _edit_form(client, ci_id: str) -> tuple[str, dict[str, str]]:
    page = client.get(f"/ui/cis/{ci_id}/edit")
    assert page.status_code == 200
    return _edit_form_from(page.text)


def _edit_form_from(html: str) -> tuple[str, dict[str, str]]:
    """What a browser would send from the edit form in `html`."""
    values = {e["attrs"]["name"]: e["attrs"].get("value", "") for e in elements(html, "input") if e["attrs"].get("name")}
    for area in ("tags", "attributes"):
        values[area] = _textarea(html, area)
    for select in ("status", "criticality"):
        chosen = re.search(rf'<select id="{select}".*?<option value="([^"]*)" selected', html, re.DOTALL)
        values[select] = chosen.group(1)
    return html, values


def _textarea(html: str, name: str) -> str:
    import html as html_module

    return html_module.unescape(re.search(rf'<textarea id="{name}"[^>]*>(.*?)</textarea>', html, re.DOTALL).group(1))


def test_an_edit_is_saved_through_the_service_as_the_token(api):
    ids = web_shop(api)
    client = signed_in(api)
    _, values = _edit_form(client, ids["shop"])
    assert values["version"] == "1" and values["tags"] == "customer-facing"
    assert values["attributes"] == '{\n  "service_id": "SHOP",\n  "sla": "gold"\n}'
    values.update(owner="team-checkout", tags="customer-facing\n pci \n", criticality="2", environment="",
                  attributes='{"service_id": "SHOP", "sla": "platinum"}')
    answer = client.post(f"/ui/cis/{ids['shop']}/edit", data=values, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == f"/ui/cis/{ids['shop']}"
    ci = api.get(f"/api/v1/cis/{ids['shop']}").json()
    assert (ci["owner"], ci["tags"], ci["criticality"], ci["environment"], ci["version"]) == (
        "team-checkout", ["customer-facing", "pci"], 2, None, 2)
    assert ci["attributes"] == {"service_id": "SHOP", "sla": "platinum"}
    record = api.get(f"/api/v1/cis/{ids['shop']}/history?limit=1").json()["items"][0]
    assert record["actor"] == "write-bot"
    assert record["diff"] == {"owner": ["team-shop", "team-checkout"], "tags": [["customer-facing"], ["customer-facing", "pci"]],
                              "criticality": [1, 2], "environment": ["prod", None], "attributes.sla": ["gold", "platinum"]}
    # removing an attribute: a key left out of the JSON goes
    _, values = _edit_form(client, ids["shop"])
    values["attributes"] = '{"service_id": "SHOP"}'
    assert client.post(f"/ui/cis/{ids['shop']}/edit", data=values, follow_redirects=False).status_code == 303
    assert api.get(f"/api/v1/cis/{ids['shop']}").json()["attributes"] == {"service_id": "SHOP"}
    # sending the form unchanged writes nothing
    _, values = _edit_form(client, ids["shop"])
    assert client.post(f"/ui/cis/{ids['shop']}/edit", data=values, follow_redirects=False).status_code == 303
    assert api.get(f"/api/v1/cis/{ids['shop']}").json()["version"] == 3


def test_a_stale_form_shows_what_changed_since_and_keeps_the_input(api):
    ids = web_shop(api)
    client = signed_in(api)
    _, values = _edit_form(client, ids["shop"])
    assert api.patch(f"/api/v1/cis/{ids['shop']}", json={"owner": "team-ops", "attributes": {"sla": "silver"}}).status_code == 200
    assert api.patch(f"/api/v1/cis/{ids['shop']}", json={"status": "maintenance", "tags": ["b2c"]}).status_code == 200
    values.update(name="shop (renamed)", owner="team-mine", attributes='{"service_id": "SHOP", "sla": "bronze", "tier": 1}')
    answer = client.post(f"/ui/cis/{ids['shop']}/edit", data=values)
    assert answer.status_code == 409
    notice = texts(answer.text, "div.ci-conflict")[0]
    assert notice.startswith("Someone changed this CI since you opened it You opened it at version 1; it is now at version 3.")
    assert texts(answer.text, "ul.ci-conflict-fields") == [
        ('attributes.sla: gold → silver owner: team-shop → team-ops status: active → maintenance '
         'tags: ["customer-facing"] → ["b2c"]')]
    assert [t.split(" · ")[1:] for t in texts(answer.text, "div.ci-conflict p.ci-when")] == [
        ["admin-bot", "changed"], ["admin-bot", "changed"]]
    assert texts(answer.text, "p.ci-conflict-mine") == [
        ("Your edits are kept in the form below: name, owner, attributes.sla, attributes.tier. "
         "Every other field now shows the current value.")]
    assert texts(answer.text, "p.ci-conflict-both") == [
        "You both changed owner, attributes.sla: the form holds your value; check it before saving."]
    kept = {e["attrs"]["name"]: e["attrs"].get("value") for e in elements(answer.text, "input") if e["attrs"].get("name")}
    assert (kept["name"], kept["owner"], kept["version"]) == ("shop (renamed)", "team-mine", "3")
    assert re.search(r'<option value="maintenance" selected>', answer.text) and _textarea(answer.text, "tags") == "b2c"
    assert json.loads(_textarea(answer.text, "attributes")) == {"service_id": "SHOP", "sla": "bronze", "tier": 1}
    ci = api.get(f"/api/v1/cis/{ids['shop']}").json()
    assert (ci["name"], ci["owner"], ci["version"]) == ("shop", "team-ops", 3)  # nothing of the stale form written
    # having seen the changes, saving the form applies the user's edits on top of them
    _, again = _edit_form_from(answer.text)
    assert client.post(f"/ui/cis/{ids['shop']}/edit", data=again, follow_redirects=False).status_code == 303
    ci = api.get(f"/api/v1/cis/{ids['shop']}").json()
    assert (ci["name"], ci["owner"], ci["status"], ci["tags"], ci["attributes"], ci["version"]) == (
        "shop (renamed)", "team-mine", "maintenance", ["b2c"], {"service_id": "SHOP", "sla": "bronze", "tier": 1}, 4)


def test_a_stale_form_the_user_did_not_change_takes_the_new_values(api):
    ids = web_shop(api)
    client = signed_in(api)
    _, values = _edit_form(client, ids["web-1"])
    assert api.patch(f"/api/v1/cis/{ids['web-1']}", json={"attributes": {"os_name": None, "cpu_count": 8}}).status_code == 200
    values["attributes"] = values["attributes"].replace('"SN-WEB-1"', '"SN-WEB-1B"')
    answer = client.post(f"/ui/cis/{ids['web-1']}/edit", data=values)
    assert answer.status_code == 409
    assert json.loads(_textarea(answer.text, "attributes")) == {
        "cpu_count": 8, "ip_address": ["10.0.0.11"], "serial_number": "SN-WEB-1B"}
    assert texts(answer.text, "p.ci-conflict-both") == []


def test_invalid_input_comes_back_with_the_errors_by_field(api):
    ids = web_shop(api)
    client = signed_in(api)
    _, values = _edit_form(client, ids["web-1"])
    values["attributes"] = '{"cpu_count": "many", "os_name": "debian"}'
    answer = client.post(f"/ui/cis/{ids['web-1']}/edit", data=values)
    assert answer.status_code == 422
    assert texts(answer.text, "#attributes-error") == ['attributes.cpu_count: "many" is not of type "integer"']
    assert 'aria-describedby="attributes-error"' in answer.text
    assert _textarea(answer.text, "attributes") == '{"cpu_count": "many", "os_name": "debian"}'
    for field, value, message in [("attributes", "[1, 2]", 'must be a JSON object: {"key": value, ...}'),
                                  ("criticality", "9", "Input should be less than or equal to 4"),
                                  ("name", "", "String should have at least 1 character"),
                                  ("status", "gone", "Input should be 'planned', 'active', 'maintenance', 'stale' or 'retired'")]:
        answer = client.post(f"/ui/cis/{ids['web-1']}/edit", data={**_edit_form(client, ids["web-1"])[1], field: value})
        assert answer.status_code == 422, field
        assert texts(answer.text, f"#{field}-error") == [message]
    answer = client.post(f"/ui/cis/{ids['web-1']}/edit", data={**values, "attributes": "{not json"})
    assert texts(answer.text, "#attributes-error")[0].startswith("not valid JSON: ")
    assert api.get(f"/api/v1/cis/{ids['web-1']}").json()["version"] == 1


def test_a_read_token_sees_no_edit_controls_and_cannot_post(api):
    ids = web_shop(api)
    client = signed_in(api, "read")
    page = client.get(f"/ui/cis/{ids['shop']}")
    assert "/edit" not in page.text and "<form method=\"post\" action=\"/ui/cis" not in page.text
    assert client.get(f"/ui/cis/{ids['shop']}/edit").status_code == 403
    forged = client.post(f"/ui/cis/{ids['shop']}/edit",
                         data={"csrf_token": page_csrf(page.text), "version": "1", "name": "taken", "status": "active"})
    assert forged.status_code == 403
    assert api.get(f"/api/v1/cis/{ids['shop']}").json()["name"] == "shop"


def test_an_edit_without_the_session_csrf_token_is_refused(api):
    ids = web_shop(api)
    client = signed_in(api)
    _, values = _edit_form(client, ids["shop"])
    for token in ("", "wrong"):
        answer = client.post(f"/ui/cis/{ids['shop']}/edit", data={**values, "csrf_token": token, "owner": "x"})
        assert answer.status_code == 403
    assert api.get(f"/api/v1/cis/{ids['shop']}").json()["owner"] == "team-shop"


def test_hostile_text_renders_as_text_everywhere_on_the_page(api):
    ids = web_shop(api)
    bad = api.create_ci("server", HOSTILE[0], owner=HOSTILE[1], environment=HOSTILE[1], tags=HOSTILE,
                        attributes={"os_name": HOSTILE[1], HOSTILE[0]: HOSTILE[1]})
    api.relate(bad["id"], "connects_to", ids["web-1"], note=HOSTILE[0])
    client = signed_in(api)
    for url in (f"/ui/cis/{bad['id']}", f"/ui/cis/{bad['id']}/edit", f"/ui/cis/{ids['web-1']}",
                f"/ui/cis/{bad['id']}/picture?depth=2"):
        html = client.get(url).text
        assert "<img src=x" not in html and "<script>alert" not in html, url
        assert 'onerror=alert(1)"' not in html and "&lt;img src=x onerror=alert(1)&gt;" in html, url
    page = client.get(f"/ui/cis/{bad['id']}").text
    assert texts(page, "h1") == [HOSTILE[0]]
    shown = fields(page)
    assert (shown["Owner"], shown["Environment"], shown["Tags"]) == (HOSTILE[1], HOSTILE[1], " ".join(HOSTILE))
    hrefs = [e["attrs"]["href"] for e in elements(page, "a") if e["attrs"].get("href", "").startswith("/ui/cis?")]
    assert "/ui/cis?owner=%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in hrefs
    assert "/ui/cis?tag=%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E" in hrefs
    assert texts(page, "table.ci-attributes tbody th") == [HOSTILE[0], "os_name"]


def test_a_missing_ci_or_a_bad_depth_is_an_error_page(api):
    client = signed_in(api)
    for url, status in ((f"/ui/cis/{new_id()}", 404), ("/ui/cis/not-an-id", 422), (f"/ui/cis/{new_id()}/edit", 404),
                        (f"/ui/cis/{new_id()}/picture", 404)):
        answer = client.get(url)
        assert answer.status_code == status and answer.headers["content-type"].startswith("text/html"), url
    ids = web_shop(api)
    assert client.get(f"/ui/cis/{ids['shop']}/picture?depth=4").status_code == 422
    assert client.get(f"/ui/cis/{ids['shop']}?depth=0").status_code == 422
