"""GET /api/v1/integrations/ansible/inventory on a known estate (tests/integrations/ansible_estate.py),
on SQLite and PostgreSQL: exact groups, hosts and host variables, filters, and hostile names."""

import pytest

from tests.integrations.ansible_estate import (
    EVIL_HOST,
    EVIL_NAME,
    EVIL_OWNER,
    VALID_GROUP,
    build,
    dup_names,
    expected_groups,
    plain,
    top_groups,
)

URL = "/api/v1/integrations/ansible/inventory"


@pytest.fixture
def estate(api):
    return build(api)


def inventory(api, **params) -> dict:
    response = api.get(URL, params=params, as_="read")
    assert response.status_code == 200, response.text
    return response.json()


def groups_of(answer: dict) -> dict[str, set[str]]:
    return {name: set(group.get("hosts", [])) for name, group in answer.items() if name not in ("_meta", "all")}


def test_the_whole_estate_gives_exact_groups_and_hosts(api, estate):
    answer = inventory(api)
    expected = expected_groups(estate)
    assert groups_of(answer) == expected
    assert answer["class_server"]["children"] == ["class_virtual_machine"]
    assert set(answer["all"]["children"]) == top_groups(expected)
    assert all(VALID_GROUP.match(name) for name in answer if name != "_meta")
    dup1, dup2 = dup_names(estate)
    assert set(answer["_meta"]["hostvars"]) == {"hv-1", "vm-1", "vm-2", "vm-3", "vm-4", "db-1", "old-1", dup1, dup2,
                                                EVIL_HOST}


def test_host_variables_are_marked_unsafe_and_hold_the_primary_address(api, estate):
    hostvars = inventory(api)["_meta"]["hostvars"]
    assert hostvars["vm-1"] == {
        "ansible_host": {"__ansible_unsafe": "10.0.0.11"},  # the link-local fe80::1 is skipped
        "karta_id": estate["vm-1"],
        "karta_name": {"__ansible_unsafe": "vm-1"},
        "karta_class": {"__ansible_unsafe": "virtual_machine"},
        "karta_status": {"__ansible_unsafe": "active"},
        "karta_environment": {"__ansible_unsafe": "prod"},
        "karta_owner": {"__ansible_unsafe": "shop-team"},
        "karta_tags": [{"__ansible_unsafe": "web"}, {"__ansible_unsafe": "pci dss"}],
    }
    assert {name: plain(hostvars[name].get("ansible_host")) for name in hostvars} == {
        "hv-1": "10.0.0.1", "vm-1": "10.0.0.11", "vm-2": "10.0.0.12", "vm-3": "10.0.0.13", "vm-4": "10.0.0.14",
        "db-1": "db-1.example.com", "old-1": "10.0.3.1", **dict(zip(dup_names(estate), ("10.0.1.1", "10.0.1.2"))),
        EVIL_HOST: "10.0.2.1"}
    assert plain(hostvars[EVIL_HOST]["karta_name"]) == EVIL_NAME
    assert hostvars[EVIL_HOST]["karta_owner"] == {"__ansible_unsafe": EVIL_OWNER}


def test_fqdn_and_attributes_when_asked(api, estate):
    hostvars = inventory(api, ansible_host="fqdn", attributes="true")["_meta"]["hostvars"]
    assert plain(hostvars["vm-1"]["ansible_host"]) == "vm-1.example.com"
    assert plain(hostvars["hv-1"]["ansible_host"]) == "10.0.0.1"  # no fqdn: the address
    assert plain(hostvars[EVIL_HOST]["ansible_host"]) == "10.0.2.1"  # not a DNS name: the address
    assert plain(hostvars["vm-1"]["karta_attributes"]) == HOSTS_ATTRIBUTES["vm-1"]
    assert hostvars["vm-1"]["karta_attributes"]["ip_address"] == [{"__ansible_unsafe": "fe80::1"},
                                                                   {"__ansible_unsafe": "10.0.0.11"}]
    assert "karta_attributes" not in inventory(api)["_meta"]["hostvars"]["vm-1"]


def test_the_ci_list_filters_narrow_hosts_and_every_group(api, estate):
    answer = inventory(api, environment="prod", status="active")
    assert set(answer["_meta"]["hostvars"]) == {"hv-1", "vm-1", "vm-2", "vm-3", "vm-4"}
    assert groups_of(answer) == {
        "class_server": {"hv-1"}, "class_virtual_machine": {"vm-1", "vm-2", "vm-3", "vm-4"},
        "env_prod": {"hv-1", "vm-1", "vm-2", "vm-3", "vm-4"}, "status_active": {"hv-1", "vm-1", "vm-2", "vm-3", "vm-4"},
        "owner_infra": {"hv-1"}, "owner_shop_team": {"vm-1", "vm-2", "vm-3", "vm-4"}, "tag_hypervisor": {"hv-1"},
        "tag_web": {"vm-1"}, "tag_pci_dss": {"vm-1"}, "service_shop": {"hv-1", "vm-1", "vm-2", "vm-3", "vm-4"},
        "ungrouped": set()}
    assert set(inventory(api, **{"class": "virtual_machine"})["_meta"]["hostvars"]) == {"vm-1", "vm-2", "vm-3", "vm-4"}
    assert set(inventory(api, **{"attr.os_name": "debian"})["_meta"]["hostvars"]) == {"hv-1", "vm-1"}
    assert set(inventory(api, tag="web")["_meta"]["hostvars"]) == {"vm-1"}
    assert set(inventory(api, q="VM-")["_meta"]["hostvars"]) == {"vm-1", "vm-2", "vm-3", "vm-4"}
    # A class outside the server family has no hosts.
    assert inventory(api, **{"class": "network_device"}) == {
        "_meta": {"hostvars": {}}, "all": {"children": ["ungrouped"]}, "ungrouped": {"hosts": []}}


def test_a_duplicate_filtered_out_gives_the_plain_name_back(api, estate):
    hostvars = inventory(api, environment="staging", **{"attr.ip_address": "10.0.1.1"})["_meta"]["hostvars"]
    assert set(hostvars) == {"dup"}


def test_service_groups_follow_the_live_graph(api, estate):
    # A new host under the shop joins its group at once: the graph catches up before answering.
    vm5 = api.create_ci("virtual_machine", "vm-5", environment="prod", attributes={"ip_address": ["10.0.0.15"]})
    api.relate(vm5["id"], "member_of", estate["web-cluster"])
    assert set(inventory(api)["service_shop"]["hosts"]) == expected_groups(estate)["service_shop"] | {"vm-5"}
    relationships = api.get("/api/v1/relationships", params={"source": estate["shop-api"]}).json()["items"]
    (to_db,) = [r for r in relationships if r["type"] == "depends_on"]
    assert api.delete(f"/api/v1/relationships/{to_db['id']}").status_code == 204
    assert "db-1" not in inventory(api)["service_shop"]["hosts"]


@pytest.mark.parametrize("params, field", [
    ({"limit": "10"}, "query.limit"), ({"attr.": "x"}, "query.attr."), ({"status": "gone"}, "query.status"),
    ({"ansible_host": "mac"}, "query.ansible_host"), ({"attr.a\"b": "x"}, "query.attr.a\"b"),
])
def test_bad_queries_are_422_naming_the_parameter(api, params, field):
    response = api.get(URL, params=params, as_="read")
    assert response.status_code == 422, response.text
    assert field in {error["field"] for error in response.json()["errors"]}


def test_a_token_is_needed(api):
    assert api.get(URL, as_=None).status_code == 401


HOSTS_ATTRIBUTES = {"vm-1": {"ip_address": ["fe80::1", "10.0.0.11"], "fqdn": "vm-1.example.com", "hypervisor": "kvm",
                             "os_name": "debian"}}


def test_the_address_shortcut_agrees_with_normalize_address():
    from app.integrations.ansible import _address
    from app.services.identifiers import normalize_address

    values = [f"{a}.{b}.{c}.{d}" for a in (0, 1, 9, 10, 99, 126, 127, 128, 169, 172, 192, 223, 224, 239, 240, 255)
              for b in (0, 1, 168, 254, 255) for c in (0, 255) for d in (0, 1, 255)]
    values += ["010.0.0.1", "1.2.3", "1.2.3.4.5", "256.1.1.1", " 10.0.0.1", "10.0.0.1/24", "10.0.0.1%eth0", "fe80::1",
               "2001:db8::1", "::ffff:10.0.0.1", "::1", "", "10.0.0.1\n", "١٠.0.0.1", "١.0.0.1", "1.٢.3.4"]
    assert {value: _address(value) for value in values} == {value: normalize_address(value) for value in values}


def test_an_answer_is_served_again_until_anything_changes(api, estate):
    first = api.get(URL, params={"environment": "prod"}, as_="read")
    again = api.get(URL, params={"environment": "prod"}, as_="read")
    assert (first.headers["X-Karta-Cached"], again.headers["X-Karta-Cached"]) == ("false", "true")
    assert again.content == first.content
    assert api.get(URL, params={"environment": "staging"}, as_="read").headers["X-Karta-Cached"] == "false"
    assert api.patch(f"/api/v1/cis/{estate['vm-2']}", json={"owner": "web-team"}).status_code == 200
    after = api.get(URL, params={"environment": "prod"}, as_="read")
    assert after.headers["X-Karta-Cached"] == "false"
    assert plain(after.json()["_meta"]["hostvars"]["vm-2"]["karta_owner"]) == "web-team"
    assert set(after.json()["owner_web_team"]["hosts"]) == {"vm-2"}
