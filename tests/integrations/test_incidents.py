"""Incidents from alerts, through the API on SQLite and PostgreSQL: binding rules, the computed blast
radius and root cause on a known topology, the open/resolved/reopened life, the change feed, lists.

The topology (built through the API, as an operator would):

    service shop (criticality 1, shop-team) --depends_on--> app shop-web --runs_on--> server web-1
    service reports (criticality 3, bi-team) --depends_on--> db shop-db --runs_on--> server db-1 (infra)
    shop-web --depends_on--> shop-db
"""

import json
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

HOSTS = {
    "web-1": {"fqdn": "web-1.example.com", "ip_address": "10.0.0.11"},
    "db-1": {"fqdn": "db-1.example.com", "ip_address": ["10.0.0.21", "2001:db8::21"]},
}


def readme_block(language: str, containing: str) -> str:
    """A code block of the README's alerts section, as an operator pastes it."""
    text = README.read_text()
    section = text[text.index("### Alerts become incidents"):text.index("### Ansible inventory")]
    blocks, block, opened = [], [], None
    for line in section.splitlines():
        if line.startswith("```"):
            if opened is None:
                opened, block = line[3:], []
            else:
                blocks.append((opened, "\n".join(block) + "\n"))
                opened = None
        elif opened is not None:
            block.append(line)
    return next(text for kind, text in blocks if kind == language and containing in text)


def build_topology(api) -> dict[str, str]:
    """The CIs above; their ids by name."""
    ids = {}
    ids["web-1"] = api.create_ci("server", "web-1", owner="infra", attributes=HOSTS["web-1"])["id"]
    ids["db-1"] = api.create_ci("server", "db-1", owner="infra", attributes=HOSTS["db-1"])["id"]
    ids["shop-web"] = api.create_ci("application", "shop-web", owner="web-team")["id"]
    ids["shop-db"] = api.create_ci("database", "shop-db", owner="dba")["id"]
    ids["shop"] = api.create_ci("service", "shop", owner="shop-team", criticality=1)["id"]
    ids["reports"] = api.create_ci("service", "reports", owner="bi-team", criticality=3)["id"]
    api.relate(ids["shop-web"], "runs_on", ids["web-1"])
    api.relate(ids["shop-db"], "runs_on", ids["db-1"])
    api.relate(ids["shop-web"], "depends_on", ids["shop-db"])
    api.relate(ids["shop"], "depends_on", ids["shop-web"])
    api.relate(ids["reports"], "depends_on", ids["shop-db"])
    return ids


def am_alert(fingerprint: str, status: str = "firing", **labels) -> dict:
    return {"status": status, "labels": {"alertname": "HostDown", **labels}, "annotations": {"summary": fingerprint},
            "startsAt": "2026-12-02T15:00:00.123456789Z",
            "endsAt": "2026-12-02T16:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph", "fingerprint": fingerprint}


def am_payload(group_key: str, alerts: list[dict]) -> dict:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {"version": "4", "groupKey": group_key, "truncatedAlerts": 0, "status": status, "receiver": "karta",
            "groupLabels": {"alertname": "HostDown"}, "commonLabels": {"alertname": "HostDown"},
            "commonAnnotations": {}, "externalURL": "http://alertmanager.example:9093", "alerts": alerts}


def post_am(api, payload: dict, as_: str = "write"):
    return api.post("/api/v1/integrations/alertmanager", json=payload, as_=as_)


def names(entries, key="name") -> set:
    return {entry[key] for entry in entries}


def blast_radius_of_db_1(ids: dict[str, str]) -> dict:
    """What db-1 going down takes with it (every CI above it depends on it without redundancy)."""
    return {"failed": {"db-1"}, "impacted": {("shop-db", "down", 1), ("shop-web", "down", 2),
                                             ("reports", "down", 2), ("shop", "down", 3)},
            "services": [("shop", 1, "shop-team", "down"), ("reports", 3, "bi-team", "down")],
            "risk": "critical", "owners": ["bi-team", "infra", "shop-team"]}


def radius_view(incident: dict) -> dict:
    radius = incident["blast_radius"]
    return {"failed": names(incident["failed"]),
            "impacted": {(e["name"], e["state"], e["distance"]) for e in radius["impacted"]},
            "services": [(s["name"], s["criticality"], s["owner"], s["state"]) for s in radius["services"]],
            "risk": radius["risk"], "owners": incident["owners"]}


def test_each_binding_rule_binds_and_an_unknown_alert_is_kept_unbound(api):
    ids = build_topology(api)
    alerts = [am_alert("a-cmdb", cmdb_ci=ids["web-1"], instance="10.0.0.21:9100"),  # cmdb_ci comes first
              am_alert("a-v6", instance="[2001:db8::21]:9100"),
              am_alert("a-ip", instance="10.0.0.11:9100"),
              am_alert("a-fqdn", instance="DB-1.Example.COM:443"),
              am_alert("a-host", instance="Web-1:9100"),  # its name, and the fqdn web-1.example.com
              am_alert("a-service", instance="ghost:9100", service="Shop"),
              am_alert("a-job", job="reports"),
              am_alert("a-unknown", instance="ghost.example.com:9100", job="nothing"),
              am_alert("a-none")]
    response = post_am(api, am_payload("{}:{alertname=\"HostDown\"}", alerts))
    assert response.status_code == 200, response.text
    detail = api.get(f"/api/v1/incidents/{response.json()['id']}", as_="read").json()
    bound = {a["fingerprint"]: (a["ci"] and a["ci"]["name"], a["bound_by"]) for a in detail["alerts"]}
    assert bound == {"a-cmdb": ("web-1", "cmdb_ci:ci_id"), "a-v6": ("db-1", "instance:host"),
                     "a-ip": ("web-1", "instance:host"), "a-fqdn": ("db-1", "instance:host"),
                     "a-host": ("web-1", "instance:host"), "a-service": ("shop", "service:service"),
                     "a-job": ("reports", "job:service"), "a-unknown": (None, None), "a-none": (None, None)}
    assert detail["counts"] == {"firing": 9, "resolved": 0, "unbound": 2}
    assert names(detail["failed"]) == {"web-1", "db-1", "shop", "reports"}
    unknown = next(a for a in detail["alerts"] if a["fingerprint"] == "a-unknown")
    assert unknown["labels"] == {"alertname": "HostDown", "instance": "ghost.example.com:9100", "job": "nothing"}
    assert unknown["annotations"] == {"summary": "a-unknown"} and unknown["status"] == "firing"
    assert unknown["starts_at"].startswith("2026-12-02T15:00:00.123456") and unknown["ends_at"] is None


def test_configured_rules_replace_the_defaults(database_url):
    from fastapi.testclient import TestClient

    from app.core.config import Settings
    from app.main import create_app
    from tests.conftest import Api, create_tokens

    app = create_app(Settings(database_url=database_url, alert_bindings=[{"label": "node", "match": "host"}]))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            api = Api(client, create_tokens(app.state.engine))
            ids = build_topology(api)
            alerts = [am_alert("by-node", node="db-1"), am_alert("by-cmdb-ci", cmdb_ci=ids["web-1"])]
            incident = post_am(api, am_payload("g", alerts)).json()
            detail = api.get(f"/api/v1/incidents/{incident['id']}", as_="read").json()
            assert {a["fingerprint"]: a["bound_by"] for a in detail["alerts"]} == {"by-node": "node:host",
                                                                                  "by-cmdb-ci": None}
    finally:
        app.state.engine.dispose()


def test_incident_computes_blast_radius_root_cause_and_owners_then_resolves_and_reopens(api):
    ids = build_topology(api)
    group = "{}/{severity=\"critical\"}:{instance=\"10.0.0.21:9100\"}"
    firing = [am_alert("db-node", instance="10.0.0.21:9100"), am_alert("db-pg", instance="db-1.example.com:9187")]
    response = post_am(api, am_payload(group, firing))
    assert response.status_code == 200, response.text
    incident = response.json()
    assert incident["status"] == "open" and incident["source"] == "alertmanager" and incident["group_key"] == group
    assert radius_view(incident) == blast_radius_of_db_1(ids)
    assert [(c["name"], c["explains_count"]) for c in incident["root_cause"]] == [("db-1", 1)]
    assert incident["counts"] == {"firing": 2, "resolved": 0, "unbound": 0}

    # Alertmanager repeats the group: nothing changed, nothing written.
    head = api.get("/api/v1/changes", as_="read").json()["head_seq"]
    assert post_am(api, am_payload(group, firing)).status_code == 200
    assert api.get("/api/v1/changes", as_="read").json()["head_seq"] == head

    # One of the two resolves: still open, same radius.
    half = [am_alert("db-node", "resolved", instance="10.0.0.21:9100"), firing[1]]
    incident = post_am(api, am_payload(group, half)).json()
    assert incident["status"] == "open" and incident["counts"] == {"firing": 1, "resolved": 1, "unbound": 0}
    assert radius_view(incident) == blast_radius_of_db_1(ids)

    both = [half[0], am_alert("db-pg", "resolved", instance="db-1.example.com:9187")]
    incident = post_am(api, am_payload(group, both)).json()
    assert incident["status"] == "resolved" and incident["resolved_at"] is not None
    assert incident["failed"] == [] and incident["blast_radius"]["impacted"] == [] and incident["owners"] == []
    assert api.get("/api/v1/incidents?status=open", as_="read").json()["items"] == []

    incident = post_am(api, am_payload(group, [firing[0], both[1]])).json()  # fires again: reopens
    assert incident["status"] == "open" and incident["resolved_at"] is None
    assert radius_view(incident) == blast_radius_of_db_1(ids)

    feed = api.get(f"/api/v1/changes?since={head}", as_="read").json()["items"]
    assert [(r["object_type"], r["object_id"], r["action"], r["actor"]) for r in feed] == \
        [("incident", incident["id"], "update", "write-bot")] * 3
    owners, services = ["bi-team", "infra", "shop-team"], [ids["shop"], ids["reports"]]
    assert [r["diff"] for r in feed] == [
        {"alerts_firing": [2, 1], "alerts_resolved": [0, 1]},
        {"status": ["open", "resolved"], "alerts_firing": [1, 0], "alerts_resolved": [1, 2],
         "failed_cis": [[ids["db-1"]], []], "impacted": [4, 0], "risk": ["critical", None],
         "owners": [owners, []], "services": [services, []]},
        {"status": ["resolved", "open"], "alerts_firing": [0, 1], "alerts_resolved": [2, 1],
         "failed_cis": [[], [ids["db-1"]]], "impacted": [0, 4], "risk": [None, "critical"],
         "owners": [[], owners], "services": [[], services]},
    ]
    created = api.get(f"/api/v1/changes?since={head - 1}", as_="read").json()["items"][0]
    assert created["object_type"] == "incident" and created["action"] == "create"
    assert created["diff"]["failed_cis"] == [None, [ids["db-1"]]] and created["diff"]["status"] == [None, "open"]


def test_lists_page_and_filter_and_reads_need_read_scope(api):
    build_topology(api)
    first = post_am(api, am_payload("g1", [am_alert("x", instance="10.0.0.11:1")])).json()
    second = post_am(api, am_payload("g2", [am_alert("y", "resolved", instance="10.0.0.21:1")])).json()
    assert (first["status"], second["status"]) == ("open", "resolved")
    page1 = api.get("/api/v1/incidents?limit=1", as_="read").json()
    assert [i["id"] for i in page1["items"]] == [second["id"]] and page1["next_cursor"]
    page2 = api.get(f"/api/v1/incidents?limit=1&cursor={page1['next_cursor']}", as_="read").json()
    assert [i["id"] for i in page2["items"]] == [first["id"]] and page2["next_cursor"] is None
    assert [i["id"] for i in api.get("/api/v1/incidents?status=open", as_="read").json()["items"]] == [first["id"]]
    assert [i["id"] for i in api.get("/api/v1/incidents?status=resolved", as_="read").json()["items"]] == [second["id"]]
    listed = page2["items"][0]
    assert (listed["risk"], listed["impacted"], listed["owners"]) == ("critical", 2, ["infra", "shop-team"])
    assert (names(listed["failed"]), listed["failed_count"], names(listed["services"])) == ({"web-1"}, 1, {"shop"})
    assert api.get("/api/v1/incidents?status=closed", as_="read").status_code == 422
    assert api.get("/api/v1/incidents?cursor=!!", as_="read").status_code == 422
    assert api.get(f"/api/v1/incidents/{'0' * 8}-0000-0000-0000-{'0' * 12}", as_="read").status_code == 404
    assert api.get("/api/v1/incidents", as_=None).status_code == 401
    assert post_am(api, am_payload("g3", [am_alert("z")]), as_="read").status_code == 403


@pytest.mark.parametrize("change, field", [
    (lambda p: p.update(version="3"), "version"),
    (lambda p: p.pop("groupKey"), "groupKey"),
    (lambda p: p.update(groupKey=""), "groupKey"),
    (lambda p: p["alerts"][0].pop("fingerprint"), "fingerprint"),
    (lambda p: p["alerts"][0].update(status="pending"), "status"),
    (lambda p: p["alerts"][0].update(labels={"a": 1}), "labels"),
    (lambda p: p["alerts"][0].update(startsAt="yesterday"), "startsAt"),
    (lambda p: p.update(alerts="none"), "alerts"),
])
def test_malformed_payloads_are_422_naming_the_field(api, change, field):
    payload = am_payload("g", [am_alert("a")])
    change(payload)
    response = post_am(api, payload)
    assert response.status_code == 422, response.text
    assert any(field in e["field"] for e in response.json()["errors"]), response.json()


def test_odd_but_valid_payloads_are_accepted(api):
    build_topology(api)
    odd = am_alert("odd", instance="10.0.0.11:9100", note="nul \x00 and \ud800 surrogate")
    odd["annotations"] = {"summary": "<script>alert(1)</script>"}
    odd["startsAt"] = "9999-12-31T23:00:00-05:00"  # past what UTC holds: kept without a start
    payload = {**am_payload("k" * 20_000, [odd, am_alert("new-field")]), "newField": {"x": 1}}
    payload["alerts"][1]["somethingNew"] = True
    response = api.post("/api/v1/integrations/alertmanager", content=json.dumps(payload).encode(),  # \ud800 escaped
                        headers={"Content-Type": "application/json"}, as_="write")
    assert response.status_code == 200, response.text
    detail = api.get(f"/api/v1/incidents/{response.json()['id']}", as_="read").json()
    stored = next(a for a in detail["alerts"] if a["fingerprint"] == "odd")
    assert stored["labels"]["note"] == "nul \ufffd and ? surrogate" and stored["starts_at"] is not None
    assert detail["group_key"] == "k" * 20_000


def test_generic_alerts_raise_and_resolve_per_host(api):
    ids = build_topology(api)
    body = {"host": "db-1.example.com", "service": "PostgreSQL", "state": "CRITICAL", "output": "refused"}
    response = api.post("/api/v1/integrations/alerts", json=body, as_="write")
    assert response.status_code == 200, response.text
    incident = response.json()
    assert (incident["status"], incident["group_key"], incident["source"]) == ("open", "host:db-1.example.com", "alerts")
    assert radius_view(incident) == blast_radius_of_db_1(ids)
    detail = api.get(f"/api/v1/incidents/{incident['id']}", as_="read").json()
    assert [(a["ci"]["name"], a["bound_by"], a["annotations"]) for a in detail["alerts"]] == \
        [("db-1", "instance:host", {"output": "refused"})]
    started = detail["alerts"][0]["starts_at"]
    again = api.post("/api/v1/integrations/alerts", json={**body, "state": "WARNING"}, as_="write").json()
    assert again["id"] == incident["id"] and again["status"] == "open"
    resolved = api.post("/api/v1/integrations/alerts", json={**body, "state": "OK", "output": "ok"}, as_="write").json()
    assert resolved["id"] == incident["id"] and resolved["status"] == "resolved"
    alert = api.get(f"/api/v1/incidents/{incident['id']}", as_="read").json()["alerts"][0]
    assert alert["starts_at"] == started and alert["ends_at"] is not None and alert["status"] == "resolved"
    host_down = api.post("/api/v1/integrations/alerts", json={"host": "web-1", "state": "DOWN", "group": "web"},
                         as_="write").json()
    assert (host_down["group_key"], names(host_down["failed"])) == ("web", {"web-1"})
    assert api.post("/api/v1/integrations/alerts", json={**body, "state": "BROKEN"}, as_="write").status_code == 422
    assert api.post("/api/v1/integrations/alerts", json={**body, "extra": 1}, as_="write").status_code == 422


def test_a_repeated_group_is_recomputed_once_the_map_changed(api):
    ids = build_topology(api)
    payload = am_payload("g", [am_alert("db", instance="10.0.0.21:9100")])
    first = post_am(api, payload).json()
    assert post_am(api, payload).json()["as_of_seq"] == first["as_of_seq"]  # nothing changed: kept as computed
    audit = api.create_ci("service", "audit", owner="audit-team", criticality=2)["id"]
    api.relate(audit, "depends_on", ids["shop-db"])
    again = post_am(api, payload).json()
    assert again["as_of_seq"] > first["as_of_seq"]
    assert {s["name"] for s in again["blast_radius"]["services"]} == {"shop", "reports", "audit"}
    assert again["owners"] == ["audit-team", "bi-team", "infra", "shop-team"]
    feed = api.get(f"/api/v1/changes?since={again['as_of_seq'] - 1}", as_="read").json()["items"]
    assert [(r["object_type"], r["diff"]) for r in feed if r["object_type"] == "incident"] == [
        ("incident", {"impacted": [4, 5], "owners": [["bi-team", "infra", "shop-team"], again["owners"]],
                      "services": [[ids["shop"], ids["reports"]], [ids["shop"], audit, ids["reports"]]]})]


def test_a_repeat_stores_what_changed_on_the_map_even_when_the_counts_did_not(api):
    # An owner changed: same CIs down, same counts, but whom to call is not the same any more.
    ids = build_topology(api)
    payload = am_payload("g", [am_alert("db", instance="10.0.0.21:9100")])
    first = post_am(api, payload).json()
    assert first["owners"] == ["bi-team", "infra", "shop-team"]
    api.patch(f"/api/v1/cis/{ids['shop']}", json={"owner": "web-team"})
    again = post_am(api, payload).json()
    assert again["owners"] == ["bi-team", "infra", "web-team"] and again["as_of_seq"] > first["as_of_seq"]
    assert api.get(f"/api/v1/incidents/{first['id']}", as_="read").json()["owners"] == again["owners"]
    feed = api.get(f"/api/v1/changes?since={first['as_of_seq']}&object_type=incident", as_="read").json()["items"]
    assert [(r["action"], r["diff"]) for r in feed][1:] == [("update", {"owners": [first["owners"], again["owners"]]})]
    # The same answer on a newer map: nothing recorded, and the next repeat reuses it.
    head = api.get("/api/v1/changes?since=0&limit=1", as_="read").json()["head_seq"]
    other = api.create_ci("server", "unrelated", attributes={"serial_number": "SN-U"})["id"]
    third = post_am(api, payload).json()
    assert third["owners"] == again["owners"] and third["as_of_seq"] > again["as_of_seq"]
    assert api.get(f"/api/v1/changes?since={head}&object_type=incident", as_="read").json()["items"] == []
    assert post_am(api, payload).json()["as_of_seq"] == third["as_of_seq"] and other


def test_a_failed_service_is_among_the_services_and_sets_the_risk(api):
    # An alert bound to the service itself (the `service` label): the shop, criticality 1, is down.
    build_topology(api)
    incident = post_am(api, am_payload("s", [am_alert("ShopDown", service="shop")])).json()
    assert [(s["name"], s["criticality"], s["state"]) for s in incident["blast_radius"]["services"]] == [
        ("shop", 1, "down")]
    assert incident["blast_radius"]["risk"] == "critical" and "shop-team" in incident["owners"]


def test_a_group_of_thousands_of_alerts_is_taken_whole(api):
    ids = build_topology(api)
    alerts = [am_alert(f"n{n}", instance=f"10.1.{n // 250}.{n % 250}:9100") for n in range(3000)]
    alerts += [am_alert("db", instance="10.0.0.21:9100"), am_alert("web", instance="web-1.example.com:9100")]
    response = post_am(api, am_payload("big", alerts))
    assert response.status_code == 200, response.text[:500]
    incident = response.json()
    assert incident["counts"] == {"firing": 3002, "resolved": 0, "unbound": 3000}
    assert {ci["id"] for ci in incident["failed"]} == {ids["db-1"], ids["web-1"]}


def test_an_incident_keeps_its_latest_alerts(api, monkeypatch):
    from app.services import incidents

    monkeypatch.setattr(incidents, "MAX_ALERTS", 3)
    build_topology(api)
    post_am(api, am_payload("g", [am_alert("a", "resolved"), am_alert("b", "resolved")]))
    incident = post_am(api, am_payload("g", [am_alert("c"), am_alert("d")])).json()
    assert incident["counts"] == {"firing": 2, "resolved": 1, "unbound": 3}
    kept = api.get(f"/api/v1/incidents/{incident['id']}", as_="read").json()["alerts"]
    assert {a["fingerprint"] for a in kept} == {"b", "c", "d"}  # a and b ended together: a goes first (by name)


def test_a_repeat_writes_nothing_whatever_time_zone_the_database_speaks(database_url):
    # PostgreSQL hands timestamptz back in the session's zone; an alert read back in Berlin time is
    # the same alert, not a change to write again (SQLite's naive UTC is the same case without a zone).
    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine, make_url, text

    from app.core.config import Settings
    from app.main import create_app
    from tests.conftest import Api, create_tokens

    if database_url.startswith("postgresql"):
        url = make_url(database_url)
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{url.database}" SET timezone TO \'Europe/Berlin\''))
        admin.dispose()
    app = create_app(Settings(database_url=database_url))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            api = Api(client, create_tokens(app.state.engine))
            build_topology(api)
            payload = am_payload("tz", [am_alert("db", instance="10.0.0.21:9100")])
            first = post_am(api, payload).json()
            head = api.get("/api/v1/changes?since=0&limit=1", as_="read").json()["head_seq"]
            again = post_am(api, payload).json()
            assert again["updated_at"] == first["updated_at"]
            assert api.get(f"/api/v1/changes?since={head}", as_="read").json()["items"] == []
    finally:
        app.state.engine.dispose()


def test_a_radius_past_what_is_stored_agrees_with_the_blast_radius_api(api, app, monkeypatch):
    # The incident lists only the nearest impacted CIs and names the services from the graph's tally;
    # the blast-radius API names every CI: services, counts, risk and the nearest must agree.
    monkeypatch.setattr(app.state.settings, "incident_impacted_max", 4)
    core = api.create_ci("network_device", "core", owner="net")["id"]
    for n in range(5):
        host = api.create_ci("server", f"h{n}", owner="infra")["id"]
        application = api.create_ci("application", f"a{n}", owner=f"app-{n}")["id"]
        service = api.create_ci("service", f"s{n}", owner=f"team-{n % 3}", criticality=n % 4 + 1)["id"]
        api.relate(host, "depends_on", core)
        api.relate(application, "runs_on", host)
        api.relate(service, "depends_on", application)
    incident = post_am(api, am_payload("core", [am_alert("core", cmdb_ci=core)])).json()
    full = api.post("/api/v1/blast-radius", json={"failed": [core]}, as_="read").json()
    radius = incident["blast_radius"]
    assert radius["counts"] == full["counts"] and radius["counts"]["total"] == 15
    assert radius["services"] == full["services"] and radius["risk"] == full["risk"] == "critical"
    nearest = sorted(full["impacted"], key=lambda e: (e["distance"], e["id"]))[:4]
    assert radius["impacted"] == nearest and radius["impacted_truncated"] is True
    assert {e["name"] for e in nearest} < {"h0", "h1", "h2", "h3", "h4"}  # one hop away, 4 of 5 by id
    assert incident["owners"] == ["net", "team-0", "team-1", "team-2"]
    assert [(c["name"], c["explains_count"]) for c in incident["root_cause"]] == [("core", 1)]


def _router_estate(api, services: int) -> tuple[str, list[str]]:
    """A core device, and per n a host on it, an application on the host and a service on the
    application (criticality n % 4 + 1, owner team-(n % 3)); the core's id and the services' ids."""
    core = api.create_ci("network_device", "core", owner="net")["id"]
    ids = []
    for n in range(services):
        host = api.create_ci("server", f"h{n}", owner="infra")["id"]
        application = api.create_ci("application", f"a{n}", owner=f"app-{n}")["id"]
        ids.append(api.create_ci("service", f"s{n}", owner=f"team-{n % 3}", criticality=n % 4 + 1)["id"])
        api.relate(host, "depends_on", core)
        api.relate(application, "runs_on", host)
        api.relate(ids[-1], "depends_on", application)
    return core, ids


def test_an_incident_lists_the_most_critical_services_and_notifies_the_owners_of_all(api, app, monkeypatch):
    # A datacenter's router takes thousands of services down: the incident lists the most critical
    # (incident_services_max) and says how many there are; the risk and the owners cover them all.
    monkeypatch.setattr(app.state.settings, "incident_services_max", 2)
    core, _ = _router_estate(api, 5)
    incident = post_am(api, am_payload("core", [am_alert("core", cmdb_ci=core)])).json()
    full = api.post("/api/v1/blast-radius", json={"failed": [core]}, as_="read").json()
    radius = incident["blast_radius"]
    # s0 and s4 are criticality 1; s2 (team-2, criticality 3) is not listed, and its owner is told.
    assert [s["name"] for s in radius["services"]] == ["s0", "s4"] == [s["name"] for s in full["services"][:2]]
    assert radius["services"] == full["services"][:2]
    assert radius["services_count"] == 5 and radius["services_truncated"] is True
    assert radius["risk"] == full["risk"] == "critical"
    assert incident["owners"] == ["net", "team-0", "team-1", "team-2"]
    listed = api.get("/api/v1/incidents", as_="read").json()["items"][0]
    assert [s["name"] for s in listed["services"]] == ["s0", "s4"]
    from tests.web.test_session import sign_in
    sign_in(api.client, api.secrets["read"])
    page = api.client.get(f"/ui/incidents/{incident['id']}").text
    assert "The 2 most critical of 5 affected services." in page and ">s4<" in page and ">s2<" not in page
    monkeypatch.setattr(app.state.settings, "incident_services_max", 0)  # none listed: the page still says how many
    api.patch(f"/api/v1/cis/{core}", json={"owner": "net-ops"}, as_="write")  # the map changed: the repeat recomputes
    none_listed = post_am(api, am_payload("core", [am_alert("core", cmdb_ci=core)])).json()
    assert none_listed["blast_radius"]["services"] == [] and none_listed["blast_radius"]["services_count"] == 5
    page = api.client.get(f"/ui/incidents/{incident['id']}").text
    assert "No service is affected." not in page and "5 services are affected (none listed" in page


def test_the_services_an_incident_names_follow_the_map(api, app):
    # Services are named from memory (app.services.service_directory), kept in step by the change feed:
    # a service renamed, re-owned, made more critical or deleted is told right by the next computation.
    core, services = _router_estate(api, 4)
    first = post_am(api, am_payload("core", [am_alert("core", cmdb_ci=core)])).json()
    assert [(s["name"], s["owner"]) for s in first["blast_radius"]["services"]] == [
        ("s0", "team-0"), ("s1", "team-1"), ("s2", "team-2"), ("s3", "team-0")]
    assert api.patch(f"/api/v1/cis/{services[2]}", json={"name": "payroll", "owner": "pay-team", "criticality": 1},
                     as_="write").status_code == 200
    assert api.delete(f"/api/v1/cis/{services[3]}", as_="write").status_code == 204
    again = post_am(api, am_payload("core", [am_alert("core", cmdb_ci=core)])).json()  # a repeat on a changed map
    radius = again["blast_radius"]
    assert [(s["name"], s["owner"], s["criticality"]) for s in radius["services"]] == [
        ("payroll", "pay-team", 1), ("s0", "team-0", 1), ("s1", "team-1", 2)]
    assert radius["services_count"] == 3 and radius["services_truncated"] is False
    assert again["owners"] == ["net", "pay-team", "team-0", "team-1"]
    assert app.state.service_directory.reloads == 1  # caught up record by record, not reloaded


def test_the_service_directory_reloads_when_far_behind_or_the_service_classes_change(api, app):
    from app.services.service_directory import ServiceDirectory

    core, services = _router_estate(api, 3)
    directory = ServiceDirectory(app.state.engine, catch_up_max=1)
    assert {k: v.name for k, v in directory.lookup(frozenset({"service"}), [*services, core]).items()} == {
        services[0]: "s0", services[1]: "s1", services[2]: "s2"}
    for n in (0, 1):
        api.patch(f"/api/v1/cis/{services[n]}", json={"owner": "moved"}, as_="write")
    found = directory.lookup(frozenset({"service"}), services)
    assert [found[s].owner for s in services] == ["moved", "moved", "team-2"] and directory.reloads == 2
    # Another set of service classes (a class added to the family): everything is read again.
    found = directory.lookup(frozenset({"service", "network_device"}), [core])
    assert found[core].name == "core" and directory.reloads == 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_service_the_graph_holds_is_named_however_old_the_callers_snapshot(api, app):
    # On SQLite a read transaction keeps the snapshot of its first statement; the graph catches up on
    # its own connection since. A service created in between is in the graph: the directory, reading
    # after the graph on a connection of its own, names it (through the caller's, it was taken for deleted).
    from sqlalchemy import text

    from app.core.db import read_transaction
    from app.services import incidents

    core = api.create_ci("network_device", "core", owner="net")["id"]
    host = api.create_ci("server", "h0", owner="infra")["id"]
    application = api.create_ci("application", "a0", owner="app-0")["id"]
    service = api.create_ci("service", "s0", owner="team-0", criticality=3)["id"]
    api.relate(host, "depends_on", core)
    api.relate(application, "runs_on", host)
    api.relate(service, "depends_on", application)
    assert post_am(api, am_payload("core", [am_alert("core", cmdb_ci=core)])).status_code == 200  # the directory is warm
    with read_transaction(app.state.engine) as conn:
        conn.execute(text("SELECT count(*) FROM ci")).scalar()  # the snapshot starts, as receive's binding does
        new = api.create_ci("service", "s-new", owner="new-team", criticality=1)["id"]
        api.relate(new, "depends_on", application)
        summary, as_of_seq = incidents.compute(incidents.context(app.state), conn, [core])
    with app.state.live_graph.reading() as graph:
        assert new in graph and as_of_seq == graph.applied_seq
    radius = summary["blast_radius"]
    assert [(s["name"], s["owner"]) for s in radius["services"]] == [("s-new", "new-team"), ("s0", "team-0")]
    assert radius["services_count"] == 2 and "new-team" in summary["owners"]
