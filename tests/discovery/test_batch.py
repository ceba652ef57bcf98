"""Batch building (the ingest contract) and splitting into requests."""

from __future__ import annotations

import json

import orjson
import pytest

from discovery.batch import build_scan_batch, build_ssh_batch, host_identifiers, host_key, split_batch
from discovery.facts import facts_from_output
from discovery.models import HostFacts, HostResult, Interface, InterfaceAddress, Listener
from discovery.nmapscan import parse_nmap, parse_nmap_xml

TOKEN = "0123456789abcdef"
RUN = "6f1c1c3e-5a4b-4f7e-9d55-3a3b2f1e0c01"
LAB = (("web-1", "10.77.0.11"), ("db-1", "10.77.0.12"), ("app-1", "10.77.0.13"))


@pytest.fixture()
def lab_results(data_dir):
    results = []
    for name, address in LAB:
        facts, _ = facts_from_output(address, (data_dir / f"reply_{name}.txt").read_bytes(), TOKEN)
        results.append(HostResult(address, "ok", "", facts))
    results.append(HostResult("10.77.0.99", "unreachable", "connect timed out after 3s"))
    results.append(HostResult("10.77.0.20", "partial", "reply incomplete", HostFacts("10.77.0.20", hostname="half")))
    return results


def test_ssh_batch_from_recorded_replies(lab_results):
    # refs name what each item is (its target, address or instance key), never its place in the batch
    R = {
        "h1": "h:10.77.0.11",
        "ip1": "ip:10.77.0.11",
        "a1": "a:9514a130521e1b23b3f94074d8b33026/nginx/80",
        "a2": "a:9514a130521e1b23b3f94074d8b33026/orders_api/8080",
        "h2": "h:10.77.0.12",
        "ip2": "ip:10.77.0.12",
        "a3": "a:226ea11ed6c5225df34ceae5a27e5df3/postgresql/5432",
        "a4": "a:226ea11ed6c5225df34ceae5a27e5df3/redis/6379",
        "h3": "h:10.77.0.13",
        "ip3": "ip:10.77.0.13",
        "a5": "a:5e1c09b265482f8337bb1d5798234cb7/psql/0",
        "h4": "h:10.77.0.20",
    }
    batch = build_ssh_batch(lab_results, run_id=RUN)
    assert set(batch) == {"source", "run_id", "scope", "complete", "items", "relationships"}
    # Every target is in scope, read or not: a host that is down keeps the scope (and its key) stable,
    # so the service can count its misses and age it after the configured number of runs.
    assert (batch["source"], batch["run_id"], batch["complete"]) == ("ssh", RUN, True)
    assert batch["scope"] == {"subnets": [], "hosts": ["10.77.0.11", "10.77.0.12", "10.77.0.13", "10.77.0.20",
                                                        "10.77.0.99"]}
    items = {i["ref"]: i for i in batch["items"]}
    assert [(i["ref"], i["class"], i["name"]) for i in batch["items"]] == [
        (R["h1"], "virtual_machine", "web-1"), (R["ip1"], "ip_address", "10.77.0.11"),
        (R["a1"], "web_server", "nginx@web-1:80"), (R["a2"], "application", "orders_api@web-1:8080"),
        (R["h2"], "virtual_machine", "db-1"), (R["ip2"], "ip_address", "10.77.0.12"),
        (R["a3"], "database", "postgresql@db-1:5432"), (R["a4"], "database", "redis@db-1:6379"),
        (R["h3"], "virtual_machine", "app-1"), (R["ip3"], "ip_address", "10.77.0.13"),
        (R["a5"], "application", "psql@app-1"),
        (R["h4"], "server", "half"),
    ]
    rels = {(r["source"], r["target"], r["type"], json.dumps(r["attributes"])) for r in batch["relationships"]}
    assert rels == {
        (R["h1"], R["ip1"], "contains", "{}"), (R["h2"], R["ip2"], "contains", "{}"), (R["h3"], R["ip3"], "contains", "{}"),
        (R["a1"], R["h1"], "runs_on", "{}"), (R["a2"], R["h1"], "runs_on", "{}"), (R["a3"], R["h2"], "runs_on", "{}"),
        (R["a4"], R["h2"], "runs_on", "{}"), (R["a5"], R["h3"], "runs_on", "{}"),
        (R["a2"], R["a4"], "depends_on", '{"port": 6379}'), (R["a5"], R["a3"], "depends_on", '{"port": 5432}'),
    }
    assert items[R["h2"]]["identifiers"] == {"machine_id": "226ea11ed6c5225df34ceae5a27e5df3", "fqdn": "db-1.lab",
                                          "mac_address": ["52:54:00:77:00:0c"], "ip_address": ["10.77.0.12"]}
    assert items[R["a3"]]["identifiers"] == {"instance_key": "226ea11ed6c5225df34ceae5a27e5df3/postgresql/5432"}
    assert items[R["a3"]]["attributes"] == {"kind": "postgresql", "engine": "postgresql", "process": "postgres",
                                         "port": 5432,
                                         "ports": [5432], "listen": ["10.77.0.12:5432", "127.0.0.1:5432"]}
    assert items[R["a5"]]["attributes"] == {"kind": "psql", "process": "psql", "client_only": True}
    assert items[R["ip2"]] == {"ref": R["ip2"], "class": "ip_address", "name": "10.77.0.12",
                            "identifiers": {"address": "10.77.0.12"},
                            "attributes": {"family": "ipv4", "prefix_length": 24, "interface": "eth0"}}
    db = items[R["h2"]]["attributes"]
    assert (db["os_name"], db["os_version"], db["cpu_count"], db["memory_mb"]) == ("ubuntu", "24.04", 2, 24105)
    assert (db["virtualization"], db["hypervisor"]) == ("kvm", "kvm")
    assert db["interfaces"] == [{"name": "eth0", "mac_address": "52:54:00:77:00:0c", "state": "UP", "mtu": 1500,
                                 "addresses": ["10.77.0.12/24"]}]
    assert len(db["packages"]) == 790


def test_nothing_secret_or_raw_leaves_the_agent(lab_results):
    text = orjson.dumps(build_ssh_batch(lab_results, run_id=RUN)).decode()
    assert "/tmp/karta-lab" not in text  # command lines (paths, arguments) are never sent
    assert "orders_api.py" not in text and "select pg_sleep" not in text


def test_host_key_falls_back_from_machine_id_to_uuid_fqdn_then_ip():
    facts = HostFacts("10.0.0.5", machine_id="a" * 32, product_uuid="4c4c4544-0042-3510-8051-b4c04f4b4e32",
                      fqdn="h.example.org")
    assert host_key(facts) == "a" * 32
    facts.machine_id = None
    assert host_key(facts) == "4c4c4544-0042-3510-8051-b4c04f4b4e32"
    facts.product_uuid = None
    assert host_key(facts) == "h.example.org"
    facts.fqdn = None
    assert host_key(facts) == "10.0.0.5"
    named = HostFacts("web-1.lab", addresses=[InterfaceAddress("eth0", "10.0.0.7", 24, "inet")])
    assert host_key(named) == "10.0.0.7"


def test_identifiers_skip_loopback_link_local_and_host_local_interfaces():
    interfaces = [Interface("lo", None, kind="loopback"), Interface("bond0", "3c:ec:ef:10:20:30"),
                  Interface("eno1", "3c:ec:ef:10:20:30"), Interface("docker0", "02:42:8a:11:22:33"),
                  Interface("veth9", "6e:11:22:33:44:55")]
    facts = HostFacts("h", interfaces=interfaces,
                      addresses=[InterfaceAddress("lo", "127.0.0.1", 8, "inet"),
                                 InterfaceAddress("bond0", "10.1.2.3", 24, "inet"),
                                 InterfaceAddress("bond0", "fe80::1", 64, "inet6"),
                                 InterfaceAddress("bond0", "2001:db8::3", 64, "inet6"),
                                 InterfaceAddress("docker0", "172.17.0.1", 16, "inet")])
    assert host_identifiers(facts) == {"mac_address": ["3c:ec:ef:10:20:30"],
                                       "ip_address": ["10.1.2.3", "2001:db8::3"]}


def test_scan_batch_from_the_recorded_lab_scan(data_dir, nmap_program):
    hosts = parse_nmap(parse_nmap_xml((data_dir / "nmap_lab.xml").read_text()))
    batch = build_scan_batch(hosts, run_id=RUN, subnets=["10.77.0.0/24"])
    assert batch["scope"] == {"subnets": ["10.77.0.0/24"], "hosts": []}
    assert (batch["source"], batch["complete"]) == ("nmap", True)
    assert len(batch["items"]) == 16 and len(batch["relationships"]) == 8
    web = next(i for i in batch["items"] if i["name"] == "web-1.lab")
    assert web == {
        "ref": "h:10.77.0.11", "class": "server", "name": "web-1.lab",
        "identifiers": {"mac_address": ["52:54:00:77:00:0b"], "ip_address": ["10.77.0.11"]},
        "attributes": {"listening": [{"port": 22, "protocol": "tcp", "service": "ssh"},
                                     {"port": 80, "protocol": "tcp", "service": "http"},
                                     {"port": 8080, "protocol": "tcp", "service": "http-proxy"}],
                       "os_family": "Linux", "mac_vendor": "QEMU virtual NIC"}}
    [address] = [i for i in batch["items"] if i["class"] == "ip_address" and i["name"] == "10.77.0.11"]
    assert address["attributes"]["dns_name"] == "web-1.lab"  # the PTR name is the address's


def test_scan_batch_network_device_and_a_hostile_ptr_name(data_dir, nmap_program):
    hosts = parse_nmap(parse_nmap_xml((data_dir / "nmap_router.xml").read_text()))
    batch = build_scan_batch(hosts, run_id=RUN, subnets=["192.0.2.0/29"])
    hosts_out = [i for i in batch["items"] if i["class"] != "ip_address"]
    assert [(i["class"], i["name"], i["identifiers"]) for i in hosts_out] == [
        ("network_device", "core-rtr-1.example.net",
         {"mac_address": ["00:1b:54:aa:bb:01"], "ip_address": ["192.0.2.1"]}),
        ("server", "192.0.2.5", {"mac_address": ["52:54:00:12:34:05"], "ip_address": ["192.0.2.5"]}),
    ]
    addresses = {i["name"]: i["attributes"] for i in batch["items"] if i["class"] == "ip_address"}
    assert addresses["192.0.2.1"]["dns_name"] == "core-rtr-1.example.net"
    assert hosts_out[1]["attributes"]["ptr_name"] == "app;rm -rf /.example.net"
    assert "dns_name" not in addresses["192.0.2.5"]
    assert [p["port"] for p in hosts_out[0]["attributes"]["listening"]] == [22, 23]  # closed 80 left out


def _big_batch(hosts: int, apps_per_host: int, edges: list[tuple[int, int]]) -> dict:
    items, rels = [], []
    for h in range(hosts):
        items.append({"ref": f"h{h}", "class": "server", "name": f"h{h}", "identifiers": {}, "attributes": {}})
        for a in range(apps_per_host):
            items.append({"ref": f"a{h}.{a}", "class": "application", "name": f"a{h}.{a}", "identifiers": {},
                          "attributes": {}})
            rels.append({"source": f"a{h}.{a}", "target": f"h{h}", "type": "runs_on", "attributes": {}})
    for source, target in edges:
        rels.append({"source": f"a{source}.0", "target": f"a{target}.0", "type": "depends_on",
                     "attributes": {"port": 5432}})
    return {"source": "ssh", "run_id": RUN, "scope": {"subnets": [], "hosts": []}, "complete": True,
            "items": items, "relationships": rels}


def _check_requests(batch: dict, requests: list[dict], limit: int) -> None:
    assert all(r["run_id"] == RUN and r["source"] == "ssh" for r in requests)
    assert [r["complete"] for r in requests] == [False] * (len(requests) - 1) + [True]
    for request in requests:
        assert len(request["items"]) <= limit
        refs = {i["ref"] for i in request["items"]}
        for rel in request["relationships"]:
            assert rel["source"] in refs and rel["target"] in refs
    # every item and relationship travels at least once; copies are identical
    sent = {}
    for request in requests:
        for item in request["items"]:
            assert sent.setdefault(item["ref"], item) == item
    assert set(sent) == {i["ref"] for i in batch["items"]}
    assert sorted(map(json.dumps, (r for q in requests for r in q["relationships"]))) == sorted(
        map(json.dumps, batch["relationships"]))


def test_a_small_batch_is_one_request():
    batch = _big_batch(3, 2, [(0, 1)])
    assert split_batch(batch) == [batch]


def test_split_keeps_hosts_whole_and_copies_the_far_end_of_cross_request_edges():
    batch = _big_batch(30, 9, [(0, 29), (5, 6), (29, 0)])
    requests = split_batch(batch, limit=25)
    _check_requests(batch, requests, 25)
    for h in range(30):  # a host's 10 items travel together (copies of far ends aside)
        group = {f"h{h}"} | {f"a{h}.{a}" for a in range(9)}
        assert any(group <= {i["ref"] for i in r["items"]} for r in requests)


def test_split_a_group_larger_than_the_limit():
    batch = _big_batch(2, 40, [(0, 1)])
    requests = split_batch(batch, limit=10)
    _check_requests(batch, requests, 10)


def test_split_keeps_complete_false_when_the_run_was_not_complete():
    batch = _big_batch(30, 9, [])
    batch["complete"] = False
    assert all(r["complete"] is False for r in split_batch(batch, limit=25))
    assert len(split_batch(batch, limit=10_000)) == 1
    with pytest.raises(ValueError):
        split_batch(batch, limit=1)


def test_split_respects_the_relationship_limit_and_never_copies_existing_ci_ids():
    batch = _big_batch(4, 3, [(0, 1), (1, 2), (2, 3)])
    batch["relationships"].append({"source": "a0.0", "target": "0b0f6a52-6f4c-4f57-9d0c-5d1f1f6c2a11",
                                   "type": "depends_on", "attributes": {"port": 443}})
    requests = split_batch(batch, limit=100, rel_limit=5)
    assert all(len(r["relationships"]) <= 5 for r in requests)
    sent = [r for q in requests for r in q["relationships"]]
    assert sorted(map(json.dumps, sent)) == sorted(map(json.dumps, batch["relationships"]))
    for request in requests:
        refs = {i["ref"] for i in request["items"]}
        assert "0b0f6a52-6f4c-4f57-9d0c-5d1f1f6c2a11" not in refs
        for rel in request["relationships"]:
            assert rel["source"] in refs
            assert rel["target"] in refs or rel["target"].startswith("0b0f6a52")


def test_names_and_identifier_lists_fit_the_ingest_limits():
    many = [InterfaceAddress("eth0", f"10.1.{n // 250}.{n % 250 + 1}", 16, "inet") for n in range(300)]
    facts = HostFacts("10.1.0.1", hostname="h" * 255, addresses=many,
                      listeners=[Listener("0.0.0.0", 5432, "postgres", (7,))])
    batch = build_ssh_batch([HostResult("10.1.0.1", "ok", "", facts)], run_id=RUN)
    host, app = batch["items"][0], next(i for i in batch["items"] if i["class"] == "database")
    assert len(host["name"]) == 255 and len(host["identifiers"]["ip_address"]) == 256
    assert app["name"] == "postgresql@" + "h" * 239 + ":5432"  # 255 characters, port kept


def test_a_hosts_items_do_not_change_when_other_hosts_come_or_go(lab_results):
    # The service confirms a report sent again unchanged by a hash of its bytes, refs included: what one
    # host reports must not depend on which hosts came before it in the batch.
    def items_of(results, address):
        batch = build_ssh_batch(results, run_id=RUN)
        return [i for i in batch["items"] if i["ref"].endswith(address) or address in str(i["identifiers"])]

    db = next(r for r in lab_results if r.target == "10.77.0.12")
    assert items_of([db], "10.77.0.12") == items_of(lab_results, "10.77.0.12") != []
