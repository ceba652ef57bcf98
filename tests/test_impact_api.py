"""Impact analysis through the API, on a web shop built with the CI and relationship endpoints.

    shop (service, crit 1) ─depends_on→ lb ─depends_on→ webc (cluster, min_members 2)
    web1, web2, web3 ─member_of→ webc;  web1..3 ─depends_on→ app ─runs_on→ appvm
    app ─depends_on→ dbp ─runs_on→ dbhost1;  dbr ─depends_on→ dbp (replica);  dbr ─runs_on→ dbhost2
    reporting (service, crit 3) ─depends_on→ dbr
    every host ─connects_to→ switch;  every host ─depends_on→ dns (itself on the switch)
"""

import random
import shutil
import subprocess
import threading
import time
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager

import httpx
import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.conftest import Api, create_tokens, missing_requirement, new_id
from tests.server import running_server

HOSTS = ["web1", "web2", "web3", "appvm", "dbhost1", "dbhost2"]


def build_shop(create, relate) -> dict[str, str]:
    ids = {}
    specs = {
        "shop": ("service", {"criticality": 1, "owner": "team-shop"}),
        "reporting": ("service", {"criticality": 3, "owner": "team-bi"}),
        "lb": ("load_balancer", {"owner": "team-net"}),
        "webc": ("cluster", {"attributes": {"min_members": 2}, "owner": "team-web"}),
        "app": ("application", {"owner": "team-app"}),
        "dbp": ("database", {"owner": "team-dba"}),
        "dbr": ("database", {"owner": "team-dba"}),
        "switch": ("network_device", {"owner": "team-net"}),
        "dns": ("server", {"owner": "team-net"}),
        **{name: ("server", {"owner": "team-ops"}) for name in HOSTS},
    }
    for name, (ci_class, fields) in specs.items():
        ids[name] = create(ci_class, name, fields)
    edges = [("shop", "depends_on", "lb"), ("lb", "depends_on", "webc"), ("app", "runs_on", "appvm"),
             ("app", "depends_on", "dbp"), ("dbp", "runs_on", "dbhost1"), ("dbr", "depends_on", "dbp"),
             ("dbr", "runs_on", "dbhost2"), ("reporting", "depends_on", "dbr"), ("dns", "connects_to", "switch")]
    edges += [(web, rel, target) for web in ("web1", "web2", "web3") for rel, target in
              (("member_of", "webc"), ("depends_on", "app"))]
    edges += [(h, rel, target) for h in HOSTS for rel, target in (("connects_to", "switch"), ("depends_on", "dns"))]
    for source, rel, target in edges:
        relate(ids[source], rel, ids[target])
    return ids


@pytest.fixture
def shop(api):
    return build_shop(lambda c, n, f: api.create_ci(c, n, **f)["id"], lambda s, r, t: api.relate(s, r, t))


def names(ids, answer_items, key="id"):
    by_id = {v: k for k, v in ids.items()}
    return {by_id[item[key]] for item in answer_items}


def test_one_web_node_degrades_the_cluster(api, shop):
    answer = api.post("/api/v1/impact", json={"ci_ids": [shop["web1"]]}, as_="read").json()
    states = {item["name"]: item["state"] for item in answer["impacted"]}
    assert states == {"webc": "degraded", "lb": "at_risk", "shop": "at_risk"}
    lb = next(item for item in answer["impacted"] if item["name"] == "lb")
    assert lb["distance"] == 2 and lb["path"] == [shop["web1"], shop["webc"], shop["lb"]]
    assert answer["services"] == [{"id": shop["shop"], "name": "shop", "criticality": 1, "owner": "team-shop",
                                   "state": "at_risk"}]
    assert answer["risk"] == "low"
    assert answer["owners"] == ["team-net", "team-shop", "team-web"]
    assert answer["counts"]["by_state"] == {"down": 0, "degraded": 1, "at_risk": 2}


def test_two_web_nodes_down_take_the_shop_down(api, shop):
    answer = api.post("/api/v1/blast-radius", json={"failed": [shop["web1"], shop["web2"]]}).json()
    assert {item["name"]: item["state"] for item in answer["impacted"]} == {
        "webc": "down", "lb": "down", "shop": "down"}
    assert answer["risk"] == "critical"
    assert answer["counts"]["by_class"] == {"cluster": 1, "load_balancer": 1, "service": 1}


def test_primary_database_change(api, shop):
    answer = api.post("/api/v1/impact", json={"ci_ids": [shop["dbp"]]}).json()
    down = {item["name"] for item in answer["impacted"] if item["state"] == "down"}
    assert down == {"app", "web1", "web2", "web3", "webc", "lb", "shop", "dbr", "reporting"}
    assert {s["name"] for s in answer["services"]} == {"shop", "reporting"}
    assert answer["risk"] == "critical"
    limited = api.post("/api/v1/impact", json={"ci_ids": [shop["dbp"]], "max_depth": 1}).json()
    assert {item["name"] for item in limited["impacted"]} == {"app", "dbr"}
    runs_on_only = api.post("/api/v1/impact", json={"ci_ids": [shop["dbhost1"]], "types": ["runs_on"]}).json()
    assert {item["name"] for item in runs_on_only["impacted"]} == {"dbp"}


def test_root_cause_prefers_the_most_specific_explanation(api, shop):
    answer = api.post("/api/v1/root-cause", json={"symptoms": [shop["shop"], shop["reporting"]]}).json()
    ranked = [c["name"] for c in answer["candidates"]]
    assert ranked[:2] == ["dbp", "dbhost1"]
    assert set(answer["candidates"][0]["explains"]) == {shop["shop"], shop["reporting"]}
    assert answer["candidates"][0]["extra_down"] < answer["candidates"][1]["extra_down"]


def test_single_points_of_failure(api, shop):
    answer = api.get(f"/api/v1/cis/{shop['shop']}/spof").json()
    assert names(shop, answer["single_points_of_failure"]) == {"lb", "webc", "app", "appvm", "dbp", "dbhost1",
                                                               "switch", "dns"}


def test_deleting_a_relationship_changes_the_next_answer(api, shop):
    before = api.post("/api/v1/impact", json={"ci_ids": [shop["dbp"]]}).json()
    assert "app" in {item["name"] for item in before["impacted"]}
    link = api.get(f"/api/v1/relationships?source={shop['app']}&target={shop['dbp']}").json()["items"][0]
    assert api.delete(f"/api/v1/relationships/{link['id']}").status_code == 204
    after = api.post("/api/v1/impact", json={"ci_ids": [shop["dbp"]]}).json()
    assert {item["name"] for item in after["impacted"]} == {"dbr", "reporting"}


def test_neighborhood_exports(api, shop):
    base = f"/api/v1/cis/{shop['app']}/neighborhood"
    as_json = api.get(f"{base}?depth=1&direction=up").json()
    assert names(shop, as_json["nodes"]) == {"app", "appvm", "dbp"}
    assert {(e["source"], e["type"], e["target"]) for e in as_json["edges"]} == {
        (shop["app"], "runs_on", shop["appvm"]), (shop["app"], "depends_on", shop["dbp"])}
    down = api.get(f"{base}?depth=1&direction=down").json()
    assert names(shop, down["nodes"]) == {"app", "web1", "web2", "web3"}
    graphml = api.get(f"{base}?format=graphml").text
    assert len(ElementTree.fromstring(graphml).findall(".//{http://graphml.graphdrawing.org/xmlns}node")) == 6
    assert "digraph" in api.get(f"{base}?format=dot").text
    assert api.get(f"{base}?format=cytoscape").json()["elements"]


def require_dot() -> None:
    if shutil.which("dot") is None:
        missing_requirement("the Graphviz `dot` program is not installed (apt-get install graphviz)")


def test_impact_pictures(api, shop):
    dot = api.post("/api/v1/impact?format=dot", json={"ci_ids": [shop["web1"], shop["web2"]]})
    assert dot.status_code == 200 and dot.text.startswith("digraph")
    assert "shop" in dot.text
    require_dot()
    svg = api.post("/api/v1/impact?format=svg", json={"ci_ids": [shop["web1"]]})
    assert svg.status_code == 200, svg.text
    assert "<svg" in svg.text


@pytest.mark.parametrize(("url", "body", "field"), [
    ("/api/v1/impact", {"ci_ids": []}, "ci_ids"),
    ("/api/v1/impact", {"ci_ids": ["nope"]}, "ci_ids.0"),
    ("/api/v1/impact", {"ci_ids": ["__unknown__"]}, "ci_ids.0"),
    ("/api/v1/impact", {"ci_ids": ["__web1__"], "types": ["loves"]}, "types.0"),
    ("/api/v1/impact", {"ci_ids": ["__web1__"], "max_depth": -1}, "max_depth"),
    ("/api/v1/blast-radius", {"ci_ids": ["__web1__"]}, "failed"),
    ("/api/v1/root-cause", {"symptoms": ["__unknown__"]}, "symptoms.0"),
])
def test_refusals(api, shop, url, body, field):
    body = {k: [shop["web1"] if v == "__web1__" else new_id() if v == "__unknown__" else v for v in value]
            if isinstance(value, list) else value for k, value in body.items()}
    response = api.post(url, json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


def test_every_worker_sees_a_deleted_relationship_at_once(app, engine, database_url):
    secrets = create_tokens(engine)
    with running_server(database_url, workers=2) as base, httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {secrets['admin']}"}, timeout=30
    ) as http:
        def create(ci_class, name, fields):
            return http.post("/api/v1/cis", json={"class": ci_class, "name": name, **fields}).json()["id"]

        def relate(source, rel, target):
            assert http.post("/api/v1/relationships", json={"source": source, "target": target,
                                                            "type": rel}).status_code == 201

        shop = build_shop(create, relate)
        ask = lambda: frozenset(i["name"] for i in http.post(  # noqa: E731
            "/api/v1/impact", json={"ci_ids": [shop["dbp"]]}).json()["impacted"])
        assert {ask() for _ in range(12)} == {frozenset({"app", "web1", "web2", "web3", "webc", "lb", "shop",
                                                         "dbr", "reporting"})}
        link = http.get(f"/api/v1/relationships?source={shop['app']}&target={shop['dbp']}").json()["items"][0]
        assert http.delete(f"/api/v1/relationships/{link['id']}").status_code == 204
        assert {ask() for _ in range(12)} == {frozenset({"dbr", "reporting"})}




@contextmanager
def picture_api(database_url: str, secrets: dict[str, str] | None = None, **limits):
    """An Api on an app with these drawing limits; `secrets` of another one on the same database."""
    application = create_app(Settings(database_url=database_url, **limits))
    try:
        with TestClient(application, raise_server_exceptions=False) as client:
            yield Api(client, secrets or create_tokens(application.state.engine))
    finally:
        application.state.engine.dispose()


def shop_in(api) -> dict[str, str]:
    return build_shop(lambda c, n, f: api.create_ci(c, n, **f)["id"], lambda s, r, t: api.relate(s, r, t))


def assert_problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == f"urn:karta:problem:{slug}" and problem["status"] == status
    return problem


def test_svg_past_the_limits_is_refused_with_the_counts_before_dot_runs(database_url):
    # An absent dot would answer 503: the refusal comes first.
    with picture_api(database_url, svg_max_nodes=3, svg_max_edges=4, graphviz_dot="karta-no-such-dot") as api:
        shop = shop_in(api)
        body = {"ci_ids": [shop["dbp"]]}
        problem = assert_problem(api.post("/api/v1/impact?format=svg", json=body), 422, "picture-too-large")
        assert (problem["nodes"], problem["edges"], problem["max_nodes"], problem["max_edges"]) == (10, None, 3, 4)
        assert "10 CIs; SVG is drawn for at most 3 CIs and 4 relationships" in problem["detail"]
        assert "max_depth" in problem["detail"] and "format=dot" in problem["detail"]
        assert problem["errors"] == [{"field": "format", "message": "svg is drawn for at most 3 CIs and 4 relationships"}]
        body = {"failed": [shop["web1"], shop["web2"]]}  # web1, web2; webc, lb, shop down: 5 CIs, 4 relationships among them
        with picture_api(database_url, api.secrets, svg_max_nodes=5, svg_max_edges=3,
                         graphviz_dot="karta-no-such-dot") as tight:
            problem = assert_problem(tight.post("/api/v1/blast-radius?format=svg", json=body), 422, "picture-too-large")
            assert (problem["nodes"], problem["edges"]) == (5, 4)
        # as suggested, a smaller max_depth (dbp, app, dbr: 3 CIs, 2 relationships) goes on to dot, absent here
        assert_problem(api.post("/api/v1/impact?format=svg", json={"ci_ids": [shop["dbp"]], "max_depth": 1}), 503,
                       "graphviz-unavailable")
        assert api.post("/api/v1/impact?format=dot", json={"ci_ids": [shop["dbp"]]}).status_code == 200


def slow_estate(api, n: int = 500) -> str:
    """n servers depending on one another at random, all on s0: a picture dot takes ~9 s to lay out."""
    rng = random.Random(1)
    links = {(i, rng.randrange(i), "depends_on") for i in range(1, n)}
    links |= {(rng.randrange(1, n), rng.randrange(n), "connects_to") for _ in range(n // 2)}
    body = {"source": "import", "run_id": f"slow-{new_id()}",
            "items": [{"ref": f"s{i}", "class": "server", "name": f"host-{i}.example.com",
                       "identifiers": {"serial_number": f"SN-{i}"}} for i in range(n)],
            "relationships": [{"source": f"s{a}", "target": f"s{b}", "type": t} for a, b, t in sorted(links) if a != b]}
    response = api.post("/api/v1/ingest", json=body)
    assert response.status_code == 200, response.text
    return response.json()["refs"]["s0"]


def test_svg_dot_cannot_draw_in_time_is_refused_and_the_server_keeps_answering(database_url):
    require_dot()
    with picture_api(database_url, svg_timeout_seconds=2.0) as api:
        root = slow_estate(api)
        drawing: dict = {}

        def draw():
            started = time.monotonic()
            drawing["response"] = api.post("/api/v1/impact?format=svg", json={"ci_ids": [root]}, as_="read")
            drawing["seconds"] = time.monotonic() - started

        thread = threading.Thread(target=draw)
        thread.start()
        time.sleep(0.5)
        for _ in range(5):  # dot runs in the endpoint's thread: the event loop serves others meanwhile
            started = time.monotonic()
            assert api.get("/healthz").status_code == 200
            assert time.monotonic() - started < 0.5
            assert thread.is_alive()
            time.sleep(0.1)
        thread.join(timeout=60)
        problem = assert_problem(drawing["response"], 422, "picture-too-large")
        assert "within 2 s" in problem["detail"] and problem["timeout_seconds"] == 2.0
        assert 2.0 <= drawing["seconds"] < 10


def test_svg_without_graphviz_is_a_problem(database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine set up with pip alone: no dot on PATH
    with picture_api(database_url) as api:
        shop = shop_in(api)
        problem = assert_problem(api.post("/api/v1/impact?format=svg", json={"ci_ids": [shop["web1"]]}), 503,
                                 "graphviz-unavailable")
        assert "'dot' is not installed" in problem["detail"] and "format=dot" in problem["detail"]
        assert api.post("/api/v1/impact?format=dot", json={"ci_ids": [shop["web1"]]}).status_code == 200


def test_curl_fail_writes_no_picture_when_the_server_has_no_graphviz(app, engine, database_url, tmp_path):
    curl = shutil.which("curl")
    if curl is None:
        missing_requirement("curl is not installed")
    secrets = create_tokens(engine)
    no_dot = tmp_path / "bin"
    no_dot.mkdir()
    with running_server(database_url, env={"PATH": str(no_dot)}) as base, httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {secrets['admin']}"}, timeout=30
    ) as http:
        db = http.post("/api/v1/cis", json={"class": "database", "name": "db"}).json()["id"]
        picture = tmp_path / "impact.svg"
        done = subprocess.run([curl, "-fsS", "-H", f"Authorization: Bearer {secrets['read']}", "-H",
                               "Content-Type: application/json", f"{base}/api/v1/impact?format=svg",
                               "-d", f'{{"ci_ids": ["{db}"]}}', "-o", str(picture)],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 22 and "503" in done.stderr
        assert not picture.exists()


def test_openapi_documents_the_picture_answers(app):
    paths = app.openapi()["paths"]
    for path in ("/api/v1/impact", "/api/v1/blast-radius"):
        responses = paths[path]["post"]["responses"]
        assert set(responses["200"]["content"]) == {"application/json", "text/vnd.graphviz", "image/svg+xml"}
        assert "X-Karta-As-Of-Seq" in responses["200"]["headers"]
        for status, words in (("503", "Graphviz"), ("422", "picture-too-large")):
            assert words in responses[status]["description"]
            assert responses[status]["content"]["application/problem+json"]["schema"] == {
                "$ref": "#/components/schemas/Problem"}
    assert "X-Karta-As-Of-Seq" in paths["/api/v1/cis/{ci_id}/neighborhood"]["get"]["responses"]["200"]["headers"]


def test_discovered_hostile_names_come_out_intact(api):
    """A name is whatever a discovered host reported: each export keeps it inside its own text."""
    name = 'web\r1\x1b[31m "quoted" \\N\ufffe & <b>'
    body = {"source": "ssh", "run_id": f"hostile-{new_id()}",
            "items": [{"ref": "h", "class": "server", "name": name, "identifiers": {"serial_number": "SN-H"}},
                      {"ref": "a", "class": "application", "name": "a\u202egnp", "identifiers": {"instance_key": "h/a"}}],
            "relationships": [{"source": "a", "target": "h", "type": "runs_on"}]}
    refs = api.post("/api/v1/ingest", json=body).json()["refs"]
    graphml = api.get(f"/api/v1/cis/{refs['h']}/neighborhood?format=graphml")
    nodes = {n.get("id"): [d.text for d in n] for n in ElementTree.fromstring(graphml.text).iter(
        "{http://graphml.graphdrawing.org/xmlns}node")}
    assert nodes[refs["h"]][0] == name.replace("\x1b", "\ufffd").replace("\ufffe", "\ufffd")
    assert nodes[refs["a"]][0] == "a\u202egnp"
    require_dot()
    svg = api.post("/api/v1/impact?format=svg", json={"ci_ids": [refs["h"]]})
    assert svg.status_code == 200, svg.text
    texts = [t.text for t in ElementTree.fromstring(svg.content).iter("{http://www.w3.org/2000/svg}text")]
    assert sorted(texts) == sorted(['web\u240d1\u241b[31m "quoted" \\N\ufffd & <b>', "server", "a\ufffdgnp",
                                    "application", "runs_on"])
