"""Impact analysis through the API, on a web shop built with the CI and relationship endpoints.

    shop (service, crit 1) ─depends_on→ lb ─depends_on→ webc (cluster, min_members 2)
    web1, web2, web3 ─member_of→ webc;  web1..3 ─depends_on→ app ─runs_on→ appvm
    app ─depends_on→ dbp ─runs_on→ dbhost1;  dbr ─depends_on→ dbp (replica);  dbr ─runs_on→ dbhost2
    reporting (service, crit 3) ─depends_on→ dbr
    every host ─connects_to→ switch;  every host ─depends_on→ dns (itself on the switch)
"""

import xml.etree.ElementTree as ElementTree

import httpx
import pytest

from tests.conftest import create_tokens, new_id
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


def test_impact_pictures(api, shop):
    dot = api.post("/api/v1/impact?format=dot", json={"ci_ids": [shop["web1"], shop["web2"]]})
    assert dot.status_code == 200 and dot.text.startswith("digraph")
    assert "shop" in dot.text
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
