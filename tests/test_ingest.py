"""Discovery ingest: identification, reconciliation, idempotence, staleness, errors, runs."""

import pytest

from tests.conftest import dangling_rows

RUN = iter(range(1, 10_000))


def batch(source="ssh", items=(), relationships=(), complete=False, scope=None, run_id=None, **extra):
    return {"source": source, "run_id": run_id or f"run-{next(RUN)}", "scope": scope or {"subnets": ["10.0.0.0/24"]},
            "complete": complete, "items": list(items), "relationships": list(relationships), **extra}


def host(ref, name, **identifiers):
    attributes = identifiers.pop("attributes", {})
    return {"ref": ref, "class": identifiers.pop("ci_class", "server"), "name": name,
            "identifiers": identifiers, "attributes": attributes}


def push(api, body, *, as_="discovery", expect=200, **params):
    response = api.post("/api/v1/ingest", json=body, as_=as_, params=params)
    assert response.status_code == expect, response.text
    return response.json()


def test_one_ci_from_three_sources_with_different_identifiers(api):
    nmap = push(api, batch("nmap", [host("n1", "10.0.0.5", ip_address=["10.0.0.5"])]))
    ssh = push(api, batch("ssh", [host("s1", "web-1", machine_id="0f8e7a1b2c3d4e5f60718293a4b5c6d7",
                                       fqdn="web-1.example.com", ip_address=["10.0.0.5", "127.0.0.1"],
                                       attributes={"os_name": "debian"})]))
    manual = push(api, batch("import", [host("i1", "WEB-1", fqdn="web-1.example.com.", serial_number="CZ1234",
                                             attributes={"cpu_count": 8})]), as_="write")
    assert nmap["refs"]["n1"] == ssh["refs"]["s1"] == manual["refs"]["i1"]
    assert nmap["counts"]["created"] == 1 and ssh["counts"]["updated"] == 1 and manual["counts"]["updated"] == 1
    cis = api.get("/api/v1/cis?class=server").json()["items"]
    assert len(cis) == 1
    ci = api.get(f"/api/v1/cis/{cis[0]['id']}").json()
    assert ci["name"] == "web-1"  # ssh outranks import; nmap's address-name was overwritten by ssh
    assert ci["attributes"]["serial_number"] == "CZ1234"
    assert ci["attributes"]["os_name"] == "debian"
    assert ci["provenance"]["name"]["source"] == "ssh"
    assert ci["provenance"]["cpu_count"]["source"] == "import"
    # and the reverse order: SSH first, then an nmap sighting of its address
    ssh2 = push(api, batch("ssh", [host("s", "db-1", machine_id="1f8e7a1b2c3d4e5f60718293a4b5c6d7",
                                        ip_address=["10.0.0.9"])]))
    nmap2 = push(api, batch("nmap", [host("n", "10.0.0.9", ip_address=["10.0.0.9"])]))
    assert nmap2["refs"]["n"] == ssh2["refs"]["s"] and nmap2["counts"]["unchanged"] == 1


def test_server_and_virtual_machine_with_one_serial_are_one_ci_and_the_specific_class_wins(api):
    first = push(api, batch("nmap", [host("a", "h", serial_number="VMW-42")]))
    second = push(api, batch("ssh", [host("b", "h", serial_number="vmw-42", ci_class="virtual_machine")]))
    assert first["refs"]["a"] == second["refs"]["b"]
    assert api.get(f"/api/v1/cis/{first['refs']['a']}").json()["class"] == "virtual_machine"


def test_precedence_both_ways(api):
    ci = api.create_ci("server", "app-1", attributes={"fqdn": "app-1.example.com", "os_version": "12.1"})
    low = push(api, batch("nmap", [host("h", "app-1", fqdn="app-1.example.com",
                                        attributes={"os_version": "12", "os_name": "linux"})]))
    assert low["refs"]["h"] == ci["id"]
    after = api.get(f"/api/v1/cis/{ci['id']}").json()
    assert after["attributes"]["os_version"] == "12.1"  # manual beats nmap
    assert after["attributes"]["os_name"] == "linux"  # but nmap fills what is empty
    push(api, batch("ssh", [host("h", "app-1", fqdn="app-1.example.com", attributes={"os_name": "debian"})]))
    assert api.get(f"/api/v1/cis/{ci['id']}").json()["attributes"]["os_name"] == "debian"  # ssh beats nmap
    push(api, batch("nmap", [host("h", "app-1", fqdn="app-1.example.com", attributes={"os_name": "linux"})]))
    assert api.get(f"/api/v1/cis/{ci['id']}").json()["attributes"]["os_name"] == "debian"  # nmap never beats ssh
    api.patch(f"/api/v1/cis/{ci['id']}", json={"attributes": {"os_name": "debian-custom"}})
    push(api, batch("ssh", [host("h", "app-1", fqdn="app-1.example.com", attributes={"os_name": "debian"})]))
    assert api.get(f"/api/v1/cis/{ci['id']}").json()["attributes"]["os_name"] == "debian-custom"


def test_precedence_is_configurable_per_attribute(api):
    rules = [{"class": None, "attribute": None, "sources": ["manual", "ssh", "snmp", "nmap", "import"]},
             {"class": "server", "attribute": "os_name", "sources": ["nmap", "ssh"]}]
    assert api.request("PUT", "/api/v1/precedence", json=rules).status_code == 200
    push(api, batch("ssh", [host("h", "x", fqdn="x.example.com", attributes={"os_name": "debian"})]))
    out = push(api, batch("nmap", [host("h", "x", fqdn="x.example.com", attributes={"os_name": "linux"})]))
    assert api.get(f"/api/v1/cis/{out['refs']['h']}").json()["attributes"]["os_name"] == "linux"


def test_conflict_is_reported_not_merged(api):
    a = api.create_ci("server", "a", attributes={"serial_number": "S-A"})
    b = api.create_ci("server", "b", attributes={"fqdn": "b.example.com"})
    out = push(api, batch("ssh", [host("x", "confused", serial_number="S-A", fqdn="b.example.com"),
                                  host("ok", "fine", serial_number="S-C")]))
    assert out["counts"]["conflicts"] == 1 and out["counts"]["created"] == 1
    assert out["conflicts"][0]["ref"] == "x"
    assert sorted(out["conflicts"][0]["candidates"]) == sorted([a["id"], b["id"]])
    assert "x" not in out["refs"]
    assert api.get(f"/api/v1/cis/{a['id']}").json()["version"] == 1
    assert api.get(f"/api/v1/cis/{b['id']}").json()["version"] == 1
    run = api.get(f"/api/v1/discovery/runs/{out['run_id']}").json()
    assert run["conflicts"][0]["candidates"] == out["conflicts"][0]["candidates"]


def test_junk_identifiers_never_merge(api):
    junk = {"serial_number": "Default string", "product_uuid": "03000200-0400-0500-0006-000700080009"}
    out = push(api, batch("ssh", [host("a", "a", machine_id="2f8e7a1b2c3d4e5f60718293a4b5c6d7", **junk),
                                  host("b", "b", machine_id="3f8e7a1b2c3d4e5f60718293a4b5c6d7", **junk)]))
    assert out["counts"]["created"] == 2 and out["refs"]["a"] != out["refs"]["b"]
    only_junk = push(api, batch("ssh", [host("c", "c", ip_address=["127.0.0.1", "fe80::1"], **junk)]))
    assert only_junk["counts"]["errors"] == 1
    assert "no identifier usable" in only_junk["errors"][0]["message"]


def test_shared_docker_bridge_address_does_not_merge_hosts(api):
    out = push(api, batch("ssh", [host("a", "a", machine_id="4f8e7a1b2c3d4e5f60718293a4b5c6d7", ip_address=["172.17.0.1", "10.0.0.1"]),
                                  host("b", "b", machine_id="5f8e7a1b2c3d4e5f60718293a4b5c6d7", ip_address=["172.17.0.1", "10.0.0.2"])]))
    assert out["counts"]["created"] == 2
    nmap = push(api, batch("nmap", [host("n", "172.17.0.1", ip_address=["172.17.0.1"])]))
    assert nmap["refs"]["n"] not in (out["refs"]["a"], out["refs"]["b"])


def test_second_identical_batch_writes_nothing(api):
    items = [host("h", "web-1", machine_id="6f8e7a1b2c3d4e5f60718293a4b5c6d7", attributes={"cpu_count": 4}),
             {"ref": "a", "class": "database", "name": "postgres", "identifiers": {"instance_key": "6f8e/postgres/5432"},
              "attributes": {"port": 5432}}]
    rels = [{"source": "a", "target": "h", "type": "runs_on"}]
    first = push(api, batch("ssh", items, rels, run_id="r1"))
    before = api.get("/api/v1/changes").json()["last_seq"]
    ci_before = api.get(f"/api/v1/cis/{first['refs']['h']}").json()
    second = push(api, batch("ssh", items, rels, run_id="r2"))
    assert second["refs"] == first["refs"]
    assert second["counts"] == {"created": 0, "updated": 0, "unchanged": 2, "conflicts": 0, "errors": 0,
                                "by_class": {"database": {"unchanged": 1}, "server": {"unchanged": 1}}}
    assert second["relationships"] == {"created": 0, "updated": 0, "unchanged": 1, "errors": 0}
    assert api.get("/api/v1/changes").json()["last_seq"] == before
    ci_after = api.get(f"/api/v1/cis/{first['refs']['h']}").json()
    assert ci_after["version"] == ci_before["version"]
    assert ci_after["last_seen"] > ci_before["last_seen"]


def test_staleness_after_complete_runs_and_revival(api):
    scope = {"subnets": ["10.1.0.0/24"]}
    a = host("a", "a", machine_id="7f8e7a1b2c3d4e5f60718293a4b5c6d7")
    b = host("b", "b", machine_id="8f8e7a1b2c3d4e5f60718293a4b5c6d7")
    app_on_b = {"ref": "app", "class": "application", "name": "svc", "identifiers": {"instance_key": "8f8e/svc/80"}}
    first = push(api, batch("ssh", [a, b, app_on_b], [{"source": "app", "target": "b", "type": "runs_on"}],
                            complete=True, scope=scope))
    b_id = first["refs"]["b"]
    for run in range(3):
        out = push(api, batch("ssh", [a], complete=True, scope=scope))
        status = api.get(f"/api/v1/cis/{b_id}").json()["status"]
        assert status == ("stale" if run == 2 else "active"), run
    assert out["stale"] and b_id in out["stale"]
    assert first["refs"]["app"] in out["stale"]
    # the relationship ended on the first complete run that did not report it, and history keeps it
    assert api.get(f"/api/v1/relationships?source={first['refs']['app']}").json()["items"] == []
    # a run over another scope ages nothing here
    push(api, batch("ssh", [], complete=True, scope={"subnets": ["10.2.0.0/24"]}))
    revived = push(api, batch("ssh", [b], scope=scope))
    assert revived["counts"]["updated"] == 1
    ci = api.get(f"/api/v1/cis/{b_id}").json()
    assert ci["status"] == "active"
    assert [r["diff"].get("status") for r in api.get(f"/api/v1/cis/{b_id}/history").json()["items"][:2]] == [
        ["stale", "active"], ["active", "stale"]]


def test_not_stale_while_another_source_still_sees_it(api):
    scope = {"subnets": ["10.3.0.0/24"]}
    item = host("h", "h", machine_id="9f8e7a1b2c3d4e5f60718293a4b5c6d7", ip_address=["10.3.0.4"])
    push(api, batch("nmap", [host("n", "10.3.0.4", ip_address=["10.3.0.4"])], complete=True, scope=scope))
    out = push(api, batch("ssh", [item], complete=True, scope=scope))
    for _ in range(3):
        push(api, batch("nmap", [], complete=True, scope=scope))
        push(api, batch("ssh", [item], complete=True, scope=scope))
    assert api.get(f"/api/v1/cis/{out['refs']['h']}").json()["status"] == "active"


def test_manual_relationship_survives_discovery_forgetting_it(api):
    scope = {"hosts": ["h1"]}
    items = [host("h", "h", machine_id="af8e7a1b2c3d4e5f60718293a4b5c6d7"),
             {"ref": "a", "class": "application", "name": "a", "identifiers": {"instance_key": "af8e/a/1"}}]
    out = push(api, batch("ssh", items, [{"source": "a", "target": "h", "type": "runs_on"}], complete=True, scope=scope))
    manual = api.relate(out["refs"]["a"], "depends_on", out["refs"]["h"])
    push(api, batch("ssh", items, [{"source": "a", "target": "h", "type": "depends_on"}], complete=True, scope=scope))
    push(api, batch("ssh", items, [], complete=True, scope=scope))
    assert api.get(f"/api/v1/relationships/{manual['id']}").status_code == 200
    assert api.get(f"/api/v1/relationships?type=runs_on&source={out['refs']['a']}").json()["items"] == []


def test_per_item_errors_and_the_rest_applies(api):
    existing = api.create_ci("server", "existing")
    items = [
        {"ref": "bad-class", "class": "spaceship", "name": "x", "identifiers": {"serial_number": "1"}},
        {"ref": "no-id", "class": "server", "name": "x", "identifiers": {}},
        {"ref": "bad-schema", "class": "server", "name": "x", "identifiers": {"serial_number": "S-9"},
         "attributes": {"cpu_count": "many"}},
        host("good", "good", serial_number="S-10"),
    ]
    rels = [{"source": "good", "target": "nowhere", "type": "depends_on"},
            {"source": "good", "target": existing["id"], "type": "loves"},
            {"source": "good", "target": "bad-class", "type": "depends_on"},
            {"source": "good", "target": existing["id"], "type": "connects_to"},
            {"source": "bad-schema", "target": "good", "type": "depends_on"}]  # refused after identification
    out = push(api, batch("ssh", items, rels))
    by_ref = {e.get("ref"): e for e in out["errors"] if "ref" in e}
    assert set(by_ref) == {"bad-class", "no-id", "bad-schema"}
    assert by_ref["bad-schema"]["field"] == "items.2.attributes.cpu_count"
    rel_errors = sorted(e["field"] for e in out["errors"] if "relationship" in e)
    assert rel_errors == ["relationships.0.target", "relationships.1.type", "relationships.2.target",
                          "relationships.4.source"]
    assert "not applied" in next(e["message"] for e in out["errors"] if e.get("field") == "relationships.4.source")
    assert out["counts"]["created"] == 1 and out["relationships"]["created"] == 1


def test_atomic_applies_nothing_on_any_error(api):
    items = [host("good", "good", serial_number="S-11"), {"ref": "bad", "class": "spaceship", "name": "x"}]
    response = api.post("/api/v1/ingest", json=batch("ssh", items, atomic=True), as_="discovery")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert api.get("/api/v1/cis").json()["items"] == []


def test_dry_run_writes_nothing(api):
    out = push(api, batch("ssh", [host("h", "h", serial_number="S-12")]), dry_run="true")
    assert out["dry_run"] is True and out["counts"]["created"] == 1
    assert api.get("/api/v1/cis").json()["items"] == []
    assert api.get("/api/v1/changes?object_type=ci").json()["items"] == []
    assert api.get(f"/api/v1/discovery/runs/{out['run_id']}").status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"source": "ssh", "run_id": "r", "items": [{"ref": "a"}]}, "items.0.class"),
    ({"source": "SSH!", "run_id": "r"}, "source"),
    ({"source": "ssh", "run_id": "r", "scope": {"subnets": ["10.0.0.0/33"]}}, "scope.subnets"),
    ({"source": "ssh"}, "run_id"),
    ({"source": "ssh", "run_id": "r", "items": "x"}, "items"),
])
def test_malformed_batch_is_422_with_the_path(api, body, field):
    response = api.post("/api/v1/ingest", json=body, as_="discovery")
    assert response.status_code == 422
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()


def test_too_many_items_is_413(api):
    items = [{"ref": f"r{i}", "class": "ip_address", "name": "x", "identifiers": {"address": "10.0.0.1"}}
             for i in range(10_001)]
    response = api.post("/api/v1/ingest", json=batch("nmap", items), as_="discovery")
    assert response.status_code == 413
    assert "10000" in response.json()["detail"]


def test_scope_checks(api):
    assert api.post("/api/v1/ingest", json=batch(), as_="read").status_code == 403
    assert api.post("/api/v1/ingest", json=batch(), as_="write").status_code == 200
    assert api.request("PUT", "/api/v1/precedence", json=[], as_="write").status_code == 403


def test_runs_are_recorded_across_batches(api):
    push(api, batch("ssh", [host("a", "a", serial_number="S-20")], run_id="big-run"))
    out = push(api, batch("ssh", [host("b", "b", serial_number="S-21")], run_id="big-run", complete=True))
    run = api.get("/api/v1/discovery/runs/big-run", as_="read").json()
    assert run["batches"] == 2 and run["complete"] is True and run["finished_at"] is not None
    assert run["counts"]["created"] == 2 and run["source"] == "ssh" and run["actor"] == "discovery-bot"
    listed = api.get("/api/v1/discovery/runs?source=ssh").json()["items"]
    assert [r["id"] for r in listed] == ["big-run"]
    # a finished run takes no more batches, and a run id is one source's
    assert api.post("/api/v1/ingest", json=batch("ssh", [], run_id="big-run"), as_="discovery").status_code == 409
    # but the final batch sent again (its response was lost) is applied again without closing the scope twice
    again = push(api, batch("ssh", [host("b", "b", serial_number="S-21")], run_id="big-run", complete=True))
    assert again["counts"]["unchanged"] == 1 and again["stale"] == []
    assert api.post("/api/v1/ingest", json=batch("nmap", [], run_id=out["run_id"]), as_="discovery").status_code == 409


def test_staleness_by_age_as_well_as_by_missed_runs(app, engine):
    """D days since the source last saw it ages a CI even before N complete runs have missed it."""
    import time

    from app.models.ingest import IngestBatch
    from app.services.ingest import StalenessPolicy, ingest

    def run(run_id, items):
        body = batch("ssh", items, complete=True, scope={"hosts": ["age"]}, run_id=run_id)
        return ingest(engine, app.state.registry, IngestBatch.model_validate(body), actor="t",
                      staleness=StalenessPolicy(after_runs=100, after_days=0.5 / 86400))

    kept = host("k", "kept", machine_id="bf8e7a1b2c3d4e5f60718293a4b5c6d7")
    gone = host("g", "gone", machine_id="cf8e7a1b2c3d4e5f60718293a4b5c6d7")
    first = run("age-1", [kept, gone])
    time.sleep(0.6)
    second = run("age-2", [kept])
    assert second.stale == [str(first.refs["g"])]


def test_a_match_a_stronger_rule_contradicts_is_a_conflict(api):
    first = push(api, batch("ssh", [host("a", "a", serial_number="SER-A", mac_address=["52:54:00:00:00:aa"])]))
    clone = push(api, batch("ssh", [host("b", "b", serial_number="SER-B", mac_address=["52:54:00:00:00:aa"])]))
    assert clone["counts"]["conflicts"] == 1 and clone["conflicts"][0]["candidates"] == [first["refs"]["a"]]
    assert "serial_number" in clone["conflicts"][0]["message"]
    # a re-imaged server keeps its serial and gets a new machine-id: the same CI
    push(api, batch("ssh", [host("a", "a", serial_number="SER-A", machine_id="df8e7a1b2c3d4e5f60718293a4b5c6d7")]))
    again = push(api, batch("ssh", [host("a", "a", serial_number="SER-A", machine_id="ef8e7a1b2c3d4e5f60718293a4b5c6d7")]))
    assert again["refs"]["a"] == first["refs"]["a"] and again["counts"]["updated"] == 1


# An unchanged report is confirmed by its fingerprint instead of being derived again (fingerprints.py).
# Each test below changes something outside the CI's own row that the report depends on, and checks
# that sending the same report again has the effect a full derivation has.

def _app_on_host(suffix: str):
    items = [host("h", f"h{suffix}", machine_id=f"{suffix}f8e7a1b2c3d4e5f60718293a4b5c6d7"[:32]),
             {"ref": "a", "class": "application", "name": f"a{suffix}", "identifiers": {"instance_key": f"{suffix}/a/1"}}]
    return items, [{"source": "a", "target": "h", "type": "runs_on"}]


def test_confirmed_report_keeps_its_relationships_through_complete_runs(api):
    scope = {"hosts": ["confirm-1"]}
    items, rels = _app_on_host("c1")
    first = push(api, batch("ssh", items, rels, complete=True, scope=scope))
    for _ in range(4):  # more complete runs than the staleness threshold
        again = push(api, batch("ssh", items, rels, complete=True, scope=scope))
        assert again["counts"]["unchanged"] == 2 and again["relationships"]["unchanged"] == 1
        assert again["ended_relationships"] == 0 and again["stale"] == []
    listed = api.get(f"/api/v1/relationships?source={first['refs']['a']}").json()["items"]
    assert [r["type"] for r in listed] == ["runs_on"]
    # the relationship's last_seen follows the confirmed report's sighting
    sighting = api.get(f"/api/v1/cis/{first['refs']['a']}").json()["last_seen"]
    assert listed[0]["last_seen"] == sighting
    # dropping the relationship from an otherwise identical report ends it at the next complete run
    dropped = push(api, batch("ssh", items, [], complete=True, scope=scope))
    assert dropped["ended_relationships"] == 1
    assert api.get(f"/api/v1/relationships?source={first['refs']['a']}").json()["items"] == []


def test_relationship_deleted_through_the_api_is_reported_again(api):
    items, rels = _app_on_host("c2")
    first = push(api, batch("ssh", items, rels))
    [rel] = api.get(f"/api/v1/relationships?source={first['refs']['a']}").json()["items"]
    assert api.delete(f"/api/v1/relationships/{rel['id']}", as_="write").status_code == 204
    again = push(api, batch("ssh", items, rels))
    assert again["relationships"]["created"] == 1
    assert len(api.get(f"/api/v1/relationships?source={first['refs']['a']}").json()["items"]) == 1


def test_an_address_taken_by_another_host_returns_to_the_latest_reporter(api):
    a = host("a", "a", machine_id="c3f8e7a1b2c3d4e5f60718293a4b5c6d", ip_address=["10.9.0.7"])
    b = host("b", "b", machine_id="c4f8e7a1b2c3d4e5f60718293a4b5c6d", ip_address=["10.9.0.7"])
    first = push(api, batch("ssh", [a]))
    push(api, batch("ssh", [a]))  # its fingerprint is now stored and confirmed
    push(api, batch("ssh", [b]))  # the address moves to b
    push(api, batch("ssh", [a]))  # a reports it again: it moves back
    seen = push(api, batch("nmap", [host("n", "10.9.0.7", ip_address=["10.9.0.7"])]))
    assert seen["refs"]["n"] == first["refs"]["a"]


def test_a_precedence_change_applies_to_a_report_sent_again(api):
    ssh = push(api, batch("ssh", [host("s", "p1", fqdn="p1.example.com", attributes={"os_name": "debian"})]))
    nmap = [host("n", "p1", fqdn="p1.example.com", attributes={"os_name": "linux"})]
    push(api, batch("nmap", nmap))
    push(api, batch("nmap", nmap))
    ci_id = ssh["refs"]["s"]
    assert api.get(f"/api/v1/cis/{ci_id}").json()["attributes"]["os_name"] == "debian"
    rules = [{"class": None, "attribute": "os_name", "sources": ["nmap", "ssh"]}]
    assert api.request("PUT", "/api/v1/precedence", json=rules).status_code == 200
    out = push(api, batch("nmap", nmap))
    assert out["counts"]["updated"] == 1
    assert api.get(f"/api/v1/cis/{ci_id}").json()["attributes"]["os_name"] == "linux"


def test_an_api_edit_is_reconciled_against_the_report_sent_again(api):
    report = [host("s", "e1", fqdn="e1.example.com", attributes={"os_version": "12"})]
    first = push(api, batch("ssh", report))
    push(api, batch("ssh", report))
    ci_id = first["refs"]["s"]
    api.patch(f"/api/v1/cis/{ci_id}", json={"attributes": {"os_version": "11", "rack": "R1"}}, as_="write")
    out = push(api, batch("ssh", report))
    ci = api.get(f"/api/v1/cis/{ci_id}").json()
    assert ci["attributes"]["os_version"] == "11" and out["counts"]["unchanged"] == 1  # manual outranks ssh
    # a lower edit is not protected: an import value is overwritten by the ssh report sent again
    push(api, batch("import", [host("i", "e1", fqdn="e1.example.com", attributes={"cpu_count": 2})]), as_="write")
    push(api, batch("ssh", [host("s", "e1", fqdn="e1.example.com", attributes={"os_version": "12", "cpu_count": 4})]))
    push(api, batch("import", [host("i", "e1", fqdn="e1.example.com", attributes={"cpu_count": 2})]), as_="write")
    assert api.get(f"/api/v1/cis/{ci_id}").json()["attributes"]["cpu_count"] == 4


def test_a_confirmed_item_and_a_new_report_of_the_same_machine_reconcile_in_batch_order(api):
    old = host("a", "m1", serial_number="SN-OVERLAP-1", attributes={"rack": "R1"})
    first = push(api, batch("ssh", [old]))
    push(api, batch("ssh", [old]))
    newer = host("b", "m1", serial_number="SN-OVERLAP-1", attributes={"rack": "R2"})
    out = push(api, batch("ssh", [old, newer]))
    assert out["refs"]["a"] == out["refs"]["b"] == first["refs"]["a"]
    assert api.get(f"/api/v1/cis/{first['refs']['a']}").json()["attributes"]["rack"] == "R2"


def test_a_stale_ci_reported_unchanged_is_revived(api):
    scope = {"hosts": ["confirm-stale"]}
    item = host("h", "s1", machine_id="c7f8e7a1b2c3d4e5f60718293a4b5c6d")
    first = push(api, batch("ssh", [item], complete=True, scope=scope))
    push(api, batch("ssh", [item], complete=True, scope=scope))
    for _ in range(3):
        push(api, batch("ssh", [], complete=True, scope=scope))
    assert api.get(f"/api/v1/cis/{first['refs']['h']}").json()["status"] == "stale"
    out = push(api, batch("ssh", [item], complete=True, scope=scope))
    assert out["counts"]["updated"] == 1
    assert api.get(f"/api/v1/cis/{first['refs']['h']}").json()["status"] == "active"


def test_a_value_json_cannot_write_is_never_confirmed_as_another(api):
    item = host("n", "nan-1", serial_number="SN-NAN-1", attributes={"load": None})
    push(api, batch("ssh", [item]))
    push(api, batch("ssh", [item]))
    body = __import__("json").dumps(batch("ssh", [{**item, "attributes": {"load": float("nan")}}])).encode()
    out = api.post("/api/v1/ingest", content=body, headers={"content-type": "application/json"}, as_="discovery").json()
    assert out["counts"]["errors"] == 1 and out["counts"]["unchanged"] == 0, out


def test_a_carried_relationship_to_an_item_that_now_is_another_ci_ends(api):
    scope = {"hosts": ["moved-end"]}
    a = host("a", "a", serial_number="SN-MOVED-A")
    b = host("b", "10.0.5.9", ip_address=["10.0.5.9"])
    rels = [{"source": "a", "target": "b", "type": "depends_on"}]
    first = push(api, batch("scan", [a, b], rels, complete=True, scope=scope))
    push(api, batch("scan", [a, b], rels, complete=True, scope=scope))
    push(api, batch("ssh", [host("y", "y", machine_id="d1f8e7a1b2c3d4e5f60718293a4b5c6d")]))  # another machine
    moved = push(api, batch("ssh", [host("y", "y", machine_id="d1f8e7a1b2c3d4e5f60718293a4b5c6d", ip_address=["10.0.5.9"])]))
    again = push(api, batch("scan", [a, b], rels, complete=True, scope=scope))
    assert again["refs"]["b"] == moved["refs"]["y"]
    targets = {r["target"] for r in api.get(f"/api/v1/relationships?source={first['refs']['a']}").json()["items"]}
    assert targets == {moved["refs"]["y"]} and again["ended_relationships"] == 1


def test_a_report_moved_to_another_scope_takes_its_relationships_along(api):
    items, rels = _app_on_host("c8")
    first = push(api, batch("ssh", items, rels, complete=True, scope={"hosts": ["scope-one"]}))
    push(api, batch("ssh", items, rels, complete=True, scope={"hosts": ["scope-two"]}))
    out = push(api, batch("ssh", [], complete=True, scope={"hosts": ["scope-one"]}))
    assert out["ended_relationships"] == 0
    assert len(api.get(f"/api/v1/relationships?source={first['refs']['a']}").json()["items"]) == 1


def test_a_class_that_is_not_text_is_a_422_and_ci_class_is_accepted(api):
    bad = batch("ssh", [{"ref": "x", "class": ["server"], "name": "x", "identifiers": {"serial_number": "SN-LIST"}}])
    assert api.post("/api/v1/ingest", json=bad, as_="discovery").status_code == 422
    by_name = [{"ref": "x", "ci_class": "server", "name": "x", "identifiers": {"serial_number": "SN-BY-NAME"}},
               host("y", "y", serial_number="SN-BY-NAME-2")]
    push(api, batch("ssh", by_name))
    again = push(api, batch("ssh", by_name))
    assert again["counts"]["by_class"] == {"server": {"unchanged": 2}}


def test_an_address_two_hosts_report_in_one_batch_stays_where_it_was(api):
    a = host("a", "a", serial_number="SN-SHARED-A", ip_address=["10.0.6.6"])
    first = push(api, batch("ssh", [a]))
    push(api, batch("ssh", [a]))
    push(api, batch("ssh", [a, host("b", "b", serial_number="SN-SHARED-B", ip_address=["10.0.6.6"])]))
    seen = push(api, batch("nmap", [host("n", "10.0.6.6", ip_address=["10.0.6.6"])]))
    assert seen["refs"]["n"] == first["refs"]["a"]


def test_relationship_attributes_another_source_changed_are_reported_back(api):
    items, _ = _app_on_host("c9")
    rels = [{"source": "a", "target": "h", "type": "runs_on", "attributes": {"port": 80}}]
    first = push(api, batch("ssh", items, rels))
    push(api, batch("ssh", items, rels))
    ends = {"source": first["refs"]["a"], "target": first["refs"]["h"], "type": "runs_on", "attributes": {"port": 8080}}
    push(api, batch("snmp", [], [ends]))
    again = push(api, batch("ssh", items, rels))
    assert again["relationships"]["updated"] == 1
    [rel] = api.get(f"/api/v1/relationships?source={first['refs']['a']}").json()["items"]
    assert rel["attributes"] == {"port": 80}


def test_a_relationship_listed_twice_counts_once_when_confirmed(api):
    items, rels = _app_on_host("ca")
    push(api, batch("ssh", items, rels + rels))
    again = push(api, batch("ssh", items, rels + rels))
    assert again["relationships"] == {"created": 0, "updated": 0, "unchanged": 1, "errors": 0}


def test_a_deleted_ci_leaves_no_identifier_or_sighting_and_is_reported_anew(api, engine):
    # Neither the identifier index nor the sightings have a foreign key to ci (migration 0004):
    # deleting the CI must remove both, or its identifiers would point at nothing and its
    # fingerprint could confirm a report for a CI that is gone.
    item = host("h", "gone-1", machine_id="d1f8e7a1b2c3d4e5f60718293a4b5c6d", ip_address=["10.9.0.8"])
    first = push(api, batch("ssh", [item]))
    push(api, batch("ssh", [item]))  # confirmed by its fingerprint from now on
    ci_id = first["refs"]["h"]
    assert api.delete(f"/api/v1/cis/{ci_id}", as_="write").status_code == 204
    with engine.connect() as conn:
        for table in ("ci_identifier", "ci_source"):
            left = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()
            assert left == 0, table
    again = push(api, batch("ssh", [item]))
    assert again["counts"]["created"] == 1 and again["refs"]["h"] != ci_id
    assert api.get(f"/api/v1/cis/{again['refs']['h']}").status_code == 200


def _push_paused_before_commit(api, monkeypatch, body, delete_url: str) -> tuple[dict, int]:
    """Push `body`, and while its relationships and their sightings are written but not committed,
    DELETE `delete_url`: the deletion must wait for the batch. Returns the outcome and the status."""
    import threading

    from app.services.ingest import store

    reached, release = threading.Event(), threading.Event()
    record_ci_sightings = store.record_ci_sightings

    def paused(*args, **kwargs):  # the last write before the commit
        reached.set()
        release.wait(30)
        return record_ci_sightings(*args, **kwargs)

    monkeypatch.setattr(store, "record_ci_sightings", paused)
    pushed, deleted = {}, {}
    pusher = threading.Thread(target=lambda: pushed.setdefault("outcome", push(api, body)))
    pusher.start()
    try:
        assert reached.wait(30)
        deleter = threading.Thread(target=lambda: deleted.setdefault("status", api.delete(delete_url).status_code))
        deleter.start()
        deleter.join(1.0)
        assert deleter.is_alive(), "the deletion did not wait for the batch"
    finally:
        release.set()
        pusher.join(30)
    deleter.join(30)
    return pushed["outcome"], deleted["status"]


def test_a_ci_deleted_while_a_batch_relates_to_it_by_id_ends_that_relationship(api, engine, monkeypatch):
    # Relationships have no foreign keys (migration 0006): a batch locks the CIs it was sent by id
    # until it commits, so their deletion waits and then ends what the batch related to them.
    target = push(api, batch("ssh", [host("h", "db-host", serial_number="SN-DEL")]))["refs"]["h"]
    item = {"ref": "a", "class": "application", "name": "svc", "identifiers": {"instance_key": "del/svc/80"}}
    outcome, status = _push_paused_before_commit(
        api, monkeypatch, batch("ssh", [item], [{"source": "a", "target": target, "type": "runs_on"}]),
        f"/api/v1/cis/{target}")
    assert outcome["relationships"]["created"] == 1
    assert status == 204
    assert dangling_rows(engine) == {}


def test_a_relationship_ended_while_another_source_reports_it_loses_that_sighting_too(api, engine, monkeypatch):
    # Sightings have no foreign key either: ending the relationship waits for the batch writing one
    # (it holds the ends locked), then deletes it with the others.
    items = [host("h", "app-host", serial_number="SN-END"),
             {"ref": "a", "class": "application", "name": "svc", "identifiers": {"instance_key": "end/svc/80"}}]
    relationships = [{"source": "a", "target": "h", "type": "runs_on"}]
    first = push(api, batch("ssh", items, relationships))
    relationship = api.get(f"/api/v1/relationships?source={first['refs']['a']}").json()["items"][0]
    outcome, status = _push_paused_before_commit(api, monkeypatch, batch("snmp", items, relationships),
                                                 f"/api/v1/relationships/{relationship['id']}")
    assert outcome["relationships"]["unchanged"] == 1
    assert status == 204
    assert dangling_rows(engine) == {}


@pytest.mark.parametrize("host_report", ["changed", "the same"])
def test_a_ci_deleted_while_a_batch_relates_to_it_by_ref_ends_that_relationship(api, engine, monkeypatch, host_report):
    # The end is an item of the batch that is an existing CI: identified and updated (locked FOR
    # UPDATE) or confirmed unchanged by its fingerprint (locked FOR SHARE); either way its deletion
    # waits for the batch.
    first = push(api, batch("ssh", [host("h", "db-host", serial_number="SN-REF")], scope={"hosts": ["db-host"]}))
    again = host("h", "db-host", serial_number="SN-REF", attributes={"os_name": "debian"} if host_report == "changed" else {})
    item = {"ref": "a", "class": "application", "name": "svc", "identifiers": {"instance_key": "ref/svc/80"}}
    outcome, status = _push_paused_before_commit(
        api, monkeypatch, batch("ssh", [again, item], [{"source": "a", "target": "h", "type": "runs_on"}],
                                scope={"hosts": ["db-host"]}),
        f"/api/v1/cis/{first['refs']['h']}")
    assert outcome["counts"]["updated" if host_report == "changed" else "unchanged"] == 1
    assert outcome["relationships"]["created"] == 1
    assert status == 204
    assert dangling_rows(engine) == {}
