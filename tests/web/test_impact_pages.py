"""The change review, incident and root-cause pages and their downloads, with the real app (no
browser): exact services, owners, paths and counts on the web shop, errors on the page for bad
input, hostile names as text, CSV cells neutralised.

The web shop (also built by test_browser_impact.py, through a running server's API):

    shop (service, crit 1, team-shop) -depends_on-> lb -depends_on-> web (cluster, min_members 2)
    web-1, web-2, web-3 -member_of-> web;  web-1..3 -depends_on-> app -runs_on-> app-host
    app -depends_on-> db -runs_on-> db-host;  reporting (service, crit 3, team-bi) -depends_on-> db
    web-1..3 -runs_on-> web-host-1..3
"""

import csv
import html
import io
import re
import shutil

import pytest

from app.services.impact_views import TABLE_LIMIT
from tests.conftest import create_tokens
from tests.web.test_session import sign_in

HOSTILE_IMG = "<img src=x onerror=alert(1)>"
HOSTILE_SCRIPT = '"><script>alert(1)</script>'

SPECS = {
    "shop": ("service", {"criticality": 1, "owner": "team-shop"}),
    "reporting": ("service", {"criticality": 3, "owner": "team-bi"}),
    "lb": ("load_balancer", {"owner": "team-net"}),
    "web": ("cluster", {"attributes": {"min_members": 2}, "owner": "team-web"}),
    "web-1": ("server", {"owner": "team-web"}),
    "web-2": ("server", {"owner": "team-web"}),
    "web-3": ("server", {"owner": "team-web"}),
    "app": ("application", {"owner": "team-app"}),
    "db": ("database", {"owner": "team-dba"}),
    "app-host": ("server", {}),
    "db-host": ("server", {"owner": "team-ops"}),
    "web-host-1": ("server", {}),
    "web-host-2": ("server", {}),
    "web-host-3": ("server", {}),
}
EDGES = [("shop", "depends_on", "lb"), ("lb", "depends_on", "web"), ("app", "runs_on", "app-host"),
         ("app", "depends_on", "db"), ("db", "runs_on", "db-host"), ("reporting", "depends_on", "db")]
EDGES += [(f"web-{n}", rel, target) for n in (1, 2, 3)
          for rel, target in (("member_of", "web"), ("depends_on", "app"), ("runs_on", f"web-host-{n}"))]


def build_shop(post) -> dict[str, str]:
    """`post(path, json)` -> the answer's JSON; returns the CIs' ids by name."""
    ids = {name: post("/api/v1/cis", {"class": ci_class, "name": name, **fields})["id"]
           for name, (ci_class, fields) in SPECS.items()}
    for source, rel, target in EDGES:
        post("/api/v1/relationships", {"source": ids[source], "target": ids[target], "type": rel})
    return ids


def add_hostile(post, ids: dict[str, str]) -> dict[str, str]:
    """An application named like an attack, owned and tagged like another, that depends on the db;
    and one named like a spreadsheet formula, owned by "@evil", that depends on it."""
    hostile = post("/api/v1/cis", {"class": "application", "name": HOSTILE_IMG, "owner": HOSTILE_SCRIPT,
                                   "tags": [HOSTILE_SCRIPT]})["id"]
    formula = post("/api/v1/cis", {"class": "application", "name": '=HYPERLINK("http://x")', "owner": "@evil"})["id"]
    post("/api/v1/relationships", {"source": hostile, "target": ids["db"], "type": "depends_on"})
    post("/api/v1/relationships", {"source": formula, "target": hostile, "type": "depends_on"})
    return {**ids, "hostile": hostile, "formula": formula}


@pytest.fixture
def client(api):
    sign_in(api.client, api.secrets["read"])
    return api.client


def poster(api):
    def post(path, body):
        answer = api.post(path, json=body)
        assert answer.status_code == 201, answer.text
        return answer.json()

    return post


@pytest.fixture
def shop(api):
    return build_shop(poster(api))


def cells(page: str, table_id: str) -> list[list[str]]:
    """The text of each row of a table, tags stripped and entities decoded."""
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell)).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
            for row in rows]


def owners(page: str) -> list[str]:
    block = re.search(r'<ul class="owners" id="impact-owners">(.*?)</ul>', page, re.S).group(1)
    return [html.unescape(o) for o in re.findall(r"<li>(.*?)</li>", block)]


def test_change_review_of_the_database(client, shop):
    page = client.get(f"/ui/impact?ci={shop['db']}")
    assert page.status_code == 200
    assert 'class="state risk-critical">critical<' in page.text
    assert cells(page.text, "impacted-services") == [
        ["shop", "1", "team-shop", "down", "5", "db -> app -> web-1 -> web -> lb -> shop"],
        ["reporting", "3", "team-bi", "down", "1", "db -> reporting"],
    ]
    assert owners(page.text) == ["team-app", "team-bi", "team-net", "team-shop", "team-web"]
    assert 'data-copy="impact-owners"' in page.text
    assert cells(page.text, "counts-by-class") == [["application", "1"], ["cluster", "1"], ["load_balancer", "1"],
                                                   ["server", "3"], ["service", "2"]]
    assert cells(page.text, "counts-by-state") == [["down", "8"], ["degraded", "0"], ["at risk", "0"]]
    rows = cells(page.text, "impacted-cis")
    assert [row[0] for row in rows[:2]] == ["app", "reporting"] and len(rows) == 8
    assert ["app", "application", "down", "1", "team-app", "db -> app"] in rows
    # the chosen CI stays ticked in the form; the permalink and downloads carry the question
    assert f'name="ci" value="{shop["db"]}" checked' in page.text
    assert f'id="permalink" href="/ui/impact?ci={shop["db"]}"' not in page.text  # attribute order: href first
    assert f'href="/ui/impact?ci={shop["db"]}" id="permalink"' in page.text
    assert f'href="/ui/impact.csv?ci={shop["db"]}"' in page.text
    assert 'figure class="picture"' in page.text


def test_depth_and_relationship_types_narrow_the_answer(client, shop):
    page = client.get(f"/ui/impact?ci={shop['db']}&max_depth=1")
    assert {row[0] for row in cells(page.text, "impacted-cis")} == {"app", "reporting"}
    assert 'name="max_depth" min="0" max="1000" value="1"' in page.text
    page = client.get(f"/ui/impact?ci={shop['db-host']}&type=runs_on")
    assert [row[0] for row in cells(page.text, "impacted-cis")] == ["db"]
    assert 'value="runs_on" checked' in page.text and 'value="depends_on" checked' not in page.text
    assert f'href="/ui/impact.json?ci={shop["db-host"]}&amp;type=runs_on"' in page.text


def test_incident_two_web_nodes_of_three_take_the_shop_down(client, shop):
    page = client.get(f"/ui/blast-radius?failed={shop['web-1']}&failed={shop['web-2']}")
    assert page.status_code == 200 and "<h1>Incident</h1>" in page.text
    assert cells(page.text, "impacted-services") == [["shop", "1", "team-shop", "down", "3", "web-1 -> web -> lb -> shop"]]
    assert {row[0]: row[2] for row in cells(page.text, "impacted-cis")} == {"web": "down", "lb": "down", "shop": "down"}
    assert owners(page.text) == ["team-net", "team-shop", "team-web"]
    one = client.get(f"/ui/blast-radius?failed={shop['web-3']}")
    assert {row[0]: row[2] for row in cells(one.text, "impacted-cis")} == {
        "web": "degraded", "lb": "at risk", "shop": "at risk"}
    assert 'class="state risk-low">low<' in one.text


def test_root_cause_ranks_the_most_specific_explanation_first(client, shop):
    page = client.get(f"/ui/root-cause?symptom={shop['shop']}&symptom={shop['reporting']}")
    assert page.status_code == 200
    rows = cells(page.text, "root-causes")
    assert [row[1] for row in rows[:2]] == ["db", "db-host"]
    assert rows[0][3] == "2 of 2: shop, reporting"
    assert f'href="/ui/blast-radius?failed={shop["db"]}"' in page.text


def test_bad_ids_are_named_on_the_page(client, shop):
    unknown = "00000000-0000-4000-8000-000000000000"
    for path, field in [("/ui/impact", "ci"), ("/ui/blast-radius", "failed"), ("/ui/root-cause", "symptom")]:
        page = client.get(f"{path}?{field}={shop['db']}&{field}=not-an-id")
        assert page.status_code == 422
        assert f"<code>{field}.1</code>: &#39;not-an-id&#39; is not a CI id (a UUID)" in page.text
        assert f'name="{field}" value="not-an-id" checked' in page.text  # kept in the form, to untick
        page = client.get(f"{path}?{field}={shop['db']}&{field}={unknown}")
        assert page.status_code == 422 and f"<code>{field}.1</code>: no CI with id {unknown}" in page.text
        assert f'value="{shop["db"]}" checked> db' in page.text


def test_bad_depth_and_type_are_named_on_the_page(client, shop):
    page = client.get(f"/ui/impact?ci={shop['db']}&max_depth=deep")
    assert page.status_code == 422 and "<code>max_depth</code>: &#39;deep&#39; is not a depth from 0 to 1000" in page.text
    for depth in ("-1", "1001", "9" * 5000, "１"):
        page = client.get(f"/ui/impact?ci={shop['db']}&max_depth={depth}")
        assert page.status_code == 422 and "<code>max_depth</code>" in page.text
    many = "&".join(f"ci={shop['db']}" for _ in range(1001))
    page = client.get(f"/ui/impact?{many}")
    assert page.status_code == 422 and "At most 1000 CIs at once" in page.text
    page = client.get(f"/ui/impact?ci={shop['db']}&type=<b>x</b>")
    assert page.status_code == 422 and "Unknown relationship type &#39;&lt;b&gt;x&lt;/b&gt;&#39;" in page.text
    assert "<code>type.0</code>: unknown type" in page.text


def test_an_empty_question_shows_the_form(client):
    for path in ("/ui/impact", "/ui/blast-radius", "/ui/root-cause"):
        page = client.get(path)
        assert page.status_code == 200 and "None chosen yet" in page.text and "Risk:" not in page.text


def test_downloads_hold_the_same_answer(client, shop, api):
    query = f"ci={shop['db']}&max_depth=2"
    expected = api.post("/api/v1/impact", json={"ci_ids": [shop["db"]], "max_depth": 2}).json()
    answer = client.get(f"/ui/impact.json?{query}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.headers["content-disposition"] == 'attachment; filename="karta-impact.json"'
    assert answer.json() == expected
    table = list(csv.reader(io.StringIO(client.get(f"/ui/impact.csv?{query}").text)))
    assert table[0] == ["id", "name", "class", "state", "distance", "owner", "criticality", "path"]
    assert table[1] == [shop["db"], "db", "database", "changed", "0", "team-dba", "", "db"]
    assert sorted(row[1] for row in table[2:]) == ["app", "reporting", "web-1", "web-2", "web-3"]
    dot = client.get(f"/ui/blast-radius.dot?failed={shop['web-1']}&failed={shop['web-2']}")
    assert dot.headers["content-type"].startswith("text/vnd.graphviz")
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)" \[label="(\w+)"\];$', dot.text, re.M)
    by_id = {ci_id: name for name, ci_id in shop.items()}
    assert sorted((by_id[a], rel, by_id[b]) for a, b, rel in edges) == [
        ("lb", "depends_on", "web"), ("shop", "depends_on", "lb"), ("web-1", "member_of", "web"),
        ("web-2", "member_of", "web")]


def test_downloads_need_a_session_and_a_ci(api, shop):
    assert api.client.get(f"/ui/impact.csv?ci={shop['db']}", follow_redirects=False).status_code == 303
    sign_in(api.client, api.secrets["read"])
    answer = api.client.get("/ui/impact.csv")
    assert answer.status_code == 422 and "Name at least one CI" in answer.text
    assert answer.headers["content-type"].startswith("text/html")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_svg_download_is_the_picture(client, shop):
    answer = client.get(f"/ui/impact.svg?ci={shop['db']}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/svg+xml"
    assert answer.text.startswith("<svg") and ">reporting<" in answer.text


def test_svg_download_without_dot_says_to_use_dot(tmp_path, database_url):
    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.main import create_app
    from tests.conftest import Api

    application = create_app(Settings(database_url=database_url, graphviz_dot=str(tmp_path / "no-dot")))
    try:
        with TestClient(application, raise_server_exceptions=False) as test_client:
            api = Api(test_client, create_tokens(application.state.engine))
            ids = build_shop(poster(api))
            sign_in(test_client, api.secrets["read"])
            answer = test_client.get(f"/ui/impact.svg?ci={ids['db']}")
            assert answer.status_code == 503 and answer.headers["content-type"].startswith("text/html")
            assert "This server cannot draw SVG" in answer.text and "Download the DOT instead (/ui/impact.dot" in answer.text
    finally:
        application.state.engine.dispose()


def test_hostile_names_are_text_everywhere(client, api, shop):
    ids = add_hostile(poster(api), shop)
    for path in (f"/ui/impact?ci={ids['db']}", f"/ui/blast-radius?failed={ids['hostile']}",
                 f"/ui/root-cause?symptom={ids['formula']}"):
        page = client.get(path)
        assert page.status_code == 200
        assert HOSTILE_IMG not in page.text and HOSTILE_SCRIPT not in page.text and "<script>alert" not in page.text
        assert html.escape(HOSTILE_IMG, quote=True) in page.text  # shown, as text
    page = client.get(f"/ui/impact?ci={ids['db']}")
    rows = {row[0]: row for row in cells(page.text, "impacted-cis")}
    assert rows[HOSTILE_IMG][4:] == [HOSTILE_SCRIPT, f"db -> {HOSTILE_IMG}"]
    assert rows['=HYPERLINK("http://x")'][5] == f'db -> {HOSTILE_IMG} -> =HYPERLINK("http://x")'
    assert owners(page.text) == [HOSTILE_SCRIPT, "@evil", "team-app", "team-bi", "team-net", "team-shop", "team-web"]
    table = list(csv.reader(io.StringIO(client.get(f"/ui/impact.csv?ci={ids['db']}").text)))
    by_id = {row[0]: row for row in table[1:]}
    assert by_id[ids["formula"]][1] == "'=HYPERLINK(\"http://x\")" and by_id[ids["formula"]][5] == "'@evil"
    assert by_id[ids["formula"]][7] == f'db -> {HOSTILE_IMG} -> =HYPERLINK("http://x")'  # starts with "d": as is
    assert by_id[ids["hostile"]][1:2] + by_id[ids["hostile"]][5:6] == [HOSTILE_IMG, HOSTILE_SCRIPT]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in table for cell in row)
    assert client.get(f"/ui/blast-radius.json?failed={ids['hostile']}").json()["failed"][0]["name"] == HOSTILE_IMG


def test_a_big_answer_is_bounded_and_grouped(client, api):
    apps = range(TABLE_LIMIT + 30)
    body = {"source": "bench", "run_id": "big", "scope": {"hosts": ["x"]},
            "items": [{"ref": "hub", "class": "database", "name": "hub", "identifiers": {"instance_key": "x/hub"}}]
            + [{"ref": f"a{n}", "class": "application", "name": f"app-{n:03}",
                "identifiers": {"instance_key": f"x/app/{n}"}} for n in apps],
            "relationships": [{"source": f"a{n}", "target": "hub", "type": "depends_on"} for n in apps]}
    answer = api.post("/api/v1/ingest", json=body)
    assert answer.status_code == 200, answer.text
    hub = answer.json()["refs"]["hub"]
    page = client.get(f"/ui/impact?ci={hub}")
    assert len(cells(page.text, "impacted-cis")) == TABLE_LIMIT
    assert "and 30 more: the CSV and JSON downloads hold them all." in page.text
    assert "grouped by class and state" in page.text
    assert len(client.get(f"/ui/impact.csv?ci={hub}").text.strip().split("\r\n")) == TABLE_LIMIT + 30 + 2


def test_suggest_answers_a_fragment_of_checkboxes(client, api, shop):
    ids = add_hostile(poster(api), shop)
    answer = client.get("/ui/search/suggest?q=db&field=failed", headers={"HX-Request": "true"})
    assert answer.status_code == 200 and "<html" not in answer.text
    boxes = re.findall(r'<input type="checkbox" name="(\w+)" value="([^"]+)" data-choose="\w+"> ([^<]*?) <span', answer.text)
    assert boxes[0] == ("failed", shop["db"], "db")  # the exact name first
    assert {name for _, _, name in boxes} == {"db", "db-host"}
    hostile = client.get("/ui/search/suggest?q=onerror&field=ci").text
    assert HOSTILE_IMG not in hostile and f'value="{ids["hostile"]}"' in hostile
    assert html.escape(HOSTILE_IMG, quote=False) in hostile
    assert "No CI matches “zzz-nothing”." in client.get("/ui/search/suggest?q=zzz-nothing").text
    assert client.get("/ui/search/suggest?q=").text.strip() == ""
    bad = client.get("/ui/search/suggest?q=db&field=<x>")
    assert bad.status_code == 422 and "field must be one of ci, failed, symptom" in bad.text


def test_without_javascript_the_search_box_reloads_the_page_with_matches(client, shop):
    page = client.get(f"/ui/impact?ci={shop['db']}&q=reporting")
    assert page.status_code == 200 and 'value="reporting"' in page.text
    assert f'<input type="checkbox" name="ci" value="{shop["reporting"]}" data-choose="ci"> reporting' in page.text
    assert f'name="ci" value="{shop["db"]}" checked' in page.text  # the question stays
    root = client.get("/ui/root-cause?q=shop")
    assert f'<input type="checkbox" name="symptom" value="{shop["shop"]}" data-choose="symptom"> shop' in root.text


def test_the_pages_need_a_session(api):
    for path in ("/ui/impact", "/ui/blast-radius", "/ui/root-cause", "/ui/search/suggest?q=x"):
        assert api.client.get(path, follow_redirects=False).status_code == 303
    answer = api.client.get("/ui/search/suggest?q=x", headers={"HX-Request": "true"}, follow_redirects=False)
    assert answer.headers["HX-Redirect"].startswith("/ui/login?next=")
