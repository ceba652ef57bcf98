"""The inventory computed after a write from what the worker kept (app.api.ansible.InventoryCaches):
the hosts' rows brought up to date from the change feed, the services' walks while the graph's
relationships stand still, each host's rendered variables while the host is the same. Each test
changes the estate (tests/integrations/ansible_estate.py) between two requests and asserts the
second answer is exactly the one computed from nothing (the worker's caches dropped), that only
what changed was read and rendered again, and which hosts' variables changed."""

import pytest

from app.api.ansible import InventoryCaches
from app.integrations.ansible import RenderedHosts
from app.services.inventory import AnswerCache, HostRows, ServiceWalks
from tests.integrations.ansible_estate import build, plain

URL = "/api/v1/integrations/ansible/inventory"


@pytest.fixture
def estate(api):
    return build(api)


def answer(api, **params) -> dict:
    response = api.get(URL, params=params, as_="read")
    assert response.status_code == 200, response.text
    assert response.headers["X-Karta-Cached"] == "false"
    return response.json()


def from_nothing(app, api, **params) -> dict:
    """The answer a worker that kept nothing gives (its caches made again)."""
    del app.state.inventory_caches
    return answer(api, **params)


def kept(app) -> InventoryCaches:
    return app.state.inventory_caches


def changed_hostvars(before: dict, after: dict) -> set[str]:
    old, new = before["_meta"]["hostvars"], after["_meta"]["hostvars"]
    return {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}


def short(ci_id: str) -> str:
    return ci_id.replace("-", "")[-8:]


@pytest.mark.parametrize("edit, params", [
    ({"tags": ["db", "pci dss"]}, {}),
    ({"status": "maintenance"}, {}),
    ({"environment": "prod-eu"}, {}),
    ({"owner": "web-team"}, {}),
    ({"owner": None}, {}),
    ({"class": "server"}, {}),
    ({"attributes": {"ip_address": ["10.0.0.99"]}}, {}),
    ({"attributes": {"fqdn": "vm-2.example.com"}}, {"ansible_host": "fqdn"}),
], ids=["tags", "status", "environment", "owner", "no owner", "class", "ip_address", "fqdn"])
def test_one_write_reads_and_renders_that_host_again_and_changes_only_its_variables(app, api, estate, edit, params):
    before = answer(api, **params)
    full_reads, made = kept(app).rows.full_reads, kept(app).rendered.made
    assert api.patch(f"/api/v1/cis/{estate['vm-2']}", json=edit).status_code == 200
    after = answer(api, **params)
    assert (kept(app).rows.full_reads, kept(app).rendered.made) == (full_reads, made + 1)
    assert changed_hostvars(before, after) == {"vm-2"}
    assert after == from_nothing(app, api, **params)


def test_the_changed_variables_are_the_new_ones(app, api, estate):
    answer(api)
    api.patch(f"/api/v1/cis/{estate['vm-2']}", json={"tags": ["db"], "attributes": {"ip_address": "10.0.0.99"}})
    hostvars = answer(api)["_meta"]["hostvars"]
    assert plain(hostvars["vm-2"]["karta_tags"]) == ["db"]
    assert plain(hostvars["vm-2"]["ansible_host"]) == "10.0.0.99"
    assert plain(hostvars["vm-1"]["karta_tags"]) == ["web", "pci dss"]


def test_a_namesake_renames_both_hosts_and_renders_one(app, api, estate):
    # A name depends on the other hosts: vm-2 renamed hv-1 takes hv-1's plain name away, but hv-1's
    # variables (its karta_name included) are unchanged and not rendered again.
    before = answer(api)
    made = kept(app).rendered.made
    assert api.patch(f"/api/v1/cis/{estate['vm-2']}", json={"name": "hv-1"}).status_code == 200
    after = answer(api)
    assert kept(app).rendered.made == made + 1
    renamed = {f"hv-1_{short(estate['hv-1'])}", f"hv-1_{short(estate['vm-2'])}"}
    assert changed_hostvars(before, after) == {"hv-1", "vm-2", *renamed}
    assert after["_meta"]["hostvars"][f"hv-1_{short(estate['hv-1'])}"] == before["_meta"]["hostvars"]["hv-1"]
    assert after == from_nothing(app, api)
    # and back: the plain name returns
    assert api.patch(f"/api/v1/cis/{estate['vm-2']}", json={"name": "vm-2"}).status_code == 200
    assert answer(api) == before


def test_a_filtered_answer_gains_and_loses_the_hosts_a_write_moves(app, api, estate):
    params = {"environment": "prod", "status": "active"}
    before = answer(api, **params)
    full_reads = kept(app).rows.full_reads
    assert api.patch(f"/api/v1/cis/{estate['vm-2']}", json={"environment": "staging"}).status_code == 200
    assert api.patch(f"/api/v1/cis/{estate['dup#1']}", json={"environment": "prod"}).status_code == 200
    assert api.patch(f"/api/v1/cis/{estate['db-1']}", json={"status": "active"}).status_code == 200
    after = answer(api, **params)
    assert kept(app).rows.full_reads == full_reads
    # dup#1 alone in the answer takes the plain name; dup#2 is filtered out
    assert set(after["_meta"]["hostvars"]) == set(before["_meta"]["hostvars"]) - {"vm-2"} | {"dup", "db-1"}
    assert set(after["service_shop"]["hosts"]) == {"hv-1", "vm-1", "vm-3", "vm-4", "db-1", "dup"}
    assert after == from_nothing(app, api, **params)


def test_created_and_deleted_hosts_come_and_go(app, api, estate):
    answer(api)
    new = api.create_ci("server", "hv-2", environment="prod", attributes={"ip_address": ["10.0.0.2"]})
    assert api.delete(f"/api/v1/cis/{estate['old-1']}").status_code == 204
    after = answer(api)
    assert "hv-2" in after["_meta"]["hostvars"] and "old-1" not in after["_meta"]["hostvars"]
    assert after["_meta"]["hostvars"]["hv-2"]["karta_id"] == new["id"]
    assert after == from_nothing(app, api)


def test_a_relationship_moves_hosts_in_and_out_of_service_groups(app, api, estate):
    answer(api)
    graph = app.state.live_graph
    edges = graph.edges_version
    # A write to a CI alone keeps the services' walks.
    assert api.patch(f"/api/v1/cis/{estate['vm-1']}", json={"tags": []}).status_code == 200
    answer(api)
    assert graph.edges_version == edges
    # An existing host joins the shop through a new relationship.
    api.relate(estate["old-1"], "member_of", estate["web-cluster"])
    after = answer(api)
    assert graph.edges_version > edges
    assert "old-1" in after["service_shop"]["hosts"]
    assert after == from_nothing(app, api)
    # And leaves with the relationship to the database.
    relationships = api.get("/api/v1/relationships", params={"source": estate["shop-api"]}).json()["items"]
    (to_db,) = [r for r in relationships if r["type"] == "depends_on"]
    assert api.delete(f"/api/v1/relationships/{to_db['id']}").status_code == 204
    after = answer(api)
    assert "db-1" not in after["service_shop"]["hosts"] and "db-1" in after["service_reporting"]["hosts"]
    assert after == from_nothing(app, api)


def test_a_new_subclass_of_server_gives_a_class_group_under_class_server(app, api, estate):
    answer(api)
    answer(api, **{"class": "server"})
    full_reads = kept(app).rows.full_reads
    response = api.post("/api/v1/classes", json={"name": "bare_metal", "parent": "server"})
    assert response.status_code == 201, response.text
    app.state.registry.invalidate()
    api.create_ci("bare_metal", "bm-1", environment="prod", attributes={"ip_address": ["10.0.0.3"]})
    after = answer(api)
    assert after["class_server"]["children"] == ["class_bare_metal", "class_virtual_machine"]
    assert after["class_bare_metal"]["hosts"] == ["bm-1"]
    assert "bm-1" in answer(api, **{"class": "server"})["_meta"]["hostvars"]
    assert kept(app).rows.full_reads == full_reads + 2  # a class record: every host read again
    assert after == from_nothing(app, api)


def test_a_worker_keeping_nothing_gives_the_same_answers(app, api, estate):
    expected = answer(api)
    app.state.inventory_caches = InventoryCaches(AnswerCache(0), HostRows(0), ServiceWalks(), RenderedHosts(0))
    assert answer(api) == expected
    assert api.patch(f"/api/v1/cis/{estate['vm-2']}", json={"tags": ["db"]}).status_code == 200
    assert plain(answer(api)["_meta"]["hostvars"]["vm-2"]["karta_tags"]) == ["db"]
    assert (len(kept(app).rows), len(kept(app).rendered)) == (0, 0)
    assert kept(app).rows.full_reads == 2


def test_attributes_are_never_kept(app, api, estate):
    answer(api)
    made = kept(app).rendered.made
    first = answer(api, attributes="true")
    assert api.patch(f"/api/v1/cis/{estate['vm-1']}", json={"attributes": {"os_name": "trixie"}}).status_code == 200
    second = answer(api, attributes="true")
    assert plain(first["_meta"]["hostvars"]["vm-1"]["karta_attributes"])["os_name"] == "debian"
    assert plain(second["_meta"]["hostvars"]["vm-1"]["karta_attributes"])["os_name"] == "trixie"
    assert kept(app).rendered.made == made
