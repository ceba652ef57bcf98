"""A switch's forwarding entry attaches the host SSH or nmap found, through a real `karta serve`.

Most servers run no LLDP agent: what a switch knows of them is the one MAC its access port learned. The
SNMP agent asks the service which host CI holds that MAC (discovery.remote.ApiHostLookup, over HTTP) and
attaches that CI by id, sending no item for it: the host's name and facts stay what SSH or nmap said,
and a MAC nobody knows (a phone, a printer) makes no CI. Once per database backend.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from discovery.batch import build_scan_batch
from discovery.models import ScanHost
from discovery.remote import ApiHostLookup
from discovery.snmp.batch import build_snmp_batch
from discovery.snmp.models import ArpEntry, DeviceFacts, DeviceResult, ForwardingEntry, LldpNeighbour
from tests.conftest import fresh_database, tokens_for
from tests.server import running_server

SW = "02:00:00:55:00:01"
KNOWN = "52:54:00:55:00:0a"  # nmap found it (server "db-7")
TWICE = "52:54:00:55:00:0b"  # on two switches' access ports: a bond over both
ON_UPLINK = "52:54:00:55:00:0c"  # known, but only behind a port with several MACs
PHONE = "00:04:f2:55:00:0d"  # nobody knows it
SW2 = "02:00:00:55:00:02"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def served(request, tmp_path) -> Iterator[tuple[str, dict[str, str]]]:
    for url in fresh_database(request, request.param, tmp_path):
        secrets = tokens_for(url)
        with running_server(url) as base:
            yield base, secrets


def client(base: str, secret: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30, trust_env=False)


def push(http: httpx.Client, batch: dict) -> dict:
    response = http.post("/api/v1/ingest", content=orjson.dumps(batch), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


def switches() -> list[DeviceResult]:
    sw1 = DeviceFacts("192.0.2.1", system_name="sw1", chassis_mac=SW, vendor="Cisco", services=6,
                      lldp=[LldpNeighbour("swp9", SW2, SW2, None, "swp9", "sw2", None, ("bridge",))],
                      forwarding=[ForwardingEntry(KNOWN, "swp1"), ForwardingEntry(PHONE, "swp2"),
                                  ForwardingEntry(TWICE, "swp3"),
                                  # an unmanaged switch on swp4: several MACs, one of them a known host
                                  ForwardingEntry(ON_UPLINK, "swp4"), ForwardingEntry("52:54:00:55:00:99", "swp4"),
                                  ForwardingEntry(KNOWN, "swp9")],  # behind the cable to sw2 as well
                      arp=[ArpEntry("198.51.100.7", KNOWN, "vlan10")])
    sw2 = DeviceFacts("192.0.2.2", system_name="sw2", chassis_mac=SW2, vendor="Cisco", services=6,
                      lldp=[LldpNeighbour("swp9", SW, SW, None, "swp9", "sw1", None, ("bridge",))],
                      forwarding=[ForwardingEntry(TWICE, "swp3")])
    return [DeviceResult("192.0.2.1", "ok", sw1), DeviceResult("192.0.2.2", "ok", sw2)]


def test_a_forwarding_entry_attaches_the_host_karta_holds(served):
    base, secrets = served
    with client(base, secrets["discovery"]) as agent, client(base, secrets["read"]) as reader:
        scan = build_scan_batch([ScanHost("198.51.100.7", mac=KNOWN, hostname="db-7.example.com"),
                                 ScanHost("198.51.100.8", mac=TWICE), ScanHost("198.51.100.9", mac=ON_UPLINK)],
                                run_id="scan-1", subnets=["198.51.100.0/24"])
        refs = push(agent, scan)["refs"]
        known, twice, on_uplink = refs["h:198.51.100.7"], refs["h:198.51.100.8"], refs["h:198.51.100.9"]
        before = {ci["id"]: ci for ci in reader.get("/api/v1/cis", params={"limit": 1000}).json()["items"]}

        lookup = ApiHostLookup(agent)  # the discovery token reads (the service implies read)
        batch, notes = build_snmp_batch(switches(), run_id="snmp-1", known_hosts=lookup)
        assert notes == [] and lookup.problem is None
        # asked only for MACs alone on a port no LLDP names: not the phone's twice, not the uplinks' MACs
        assert set(lookup._by_mac) == {KNOWN, PHONE, TWICE}
        # no item for a host the switches only know by MAC
        assert sorted((i["class"], i["name"]) for i in batch["items"]) == [
            ("cluster", "network attachment of 198.51.100.8"), ("ip_address", "198.51.100.7"),
            ("network_device", "sw1"), ("network_device", "sw2")]
        answer = push(agent, batch)
        assert set(answer["refs"]) == {i["ref"] for i in batch["items"]}

        cis = {ci["id"]: ci for ci in reader.get("/api/v1/cis", params={"limit": 1000}).json()["items"]}
        name = {ci_id: ci["name"] for ci_id, ci in cis.items()}
        rels = reader.get("/api/v1/relationships", params={"limit": 1000}).json()["items"]
        edges = {(name[r["source"]], r["type"], name[r["target"]], r["attributes"].get("port")) for r in rels}
        assert ("db-7.example.com", "connects_to", "sw1", "swp1") in edges
        assert ("198.51.100.8", "connects_to", "network attachment of 198.51.100.8", None) in edges
        assert {("sw1", "member_of", "network attachment of 198.51.100.8", "swp3"),
                ("sw2", "member_of", "network attachment of 198.51.100.8", "swp3")} <= edges
        assert ("db-7.example.com", "contains", "198.51.100.7", None) in edges  # ARP's address, on the CI nmap made
        assert not [e for e in edges if e[0] == "198.51.100.9" and e[1] == "connects_to"], \
            "a host behind a port of several MACs is not attached"
        assert PHONE not in {v for ci in cis.values() for v in (ci.get("identifiers") or {}).get("mac_address", [])}
        assert not [ci for ci in cis.values() if ci["name"] == PHONE]
        # the hosts are the CIs nmap made, unchanged: same name, same version, no SNMP sighting of them
        for host in (known, twice, on_uplink):
            assert [cis[host][k] for k in ("name", "version", "last_seen")] == [
                before[host][k] for k in ("name", "version", "last_seen")]

        # the next run is the same map: no change record
        seq = reader.get("/api/v1/changes", params={"since": 0, "limit": 10000}).json()["last_seq"]
        again, _ = build_snmp_batch(switches(), run_id="snmp-2", known_hosts=ApiHostLookup(agent))
        push(agent, again)
        assert reader.get("/api/v1/changes", params={"since": seq, "limit": 100}).json()["items"] == []

        # the host moves to another port: the edge follows
        moved = switches()
        moved[0].facts.forwarding[0] = ForwardingEntry(KNOWN, "swp7")
        third, _ = build_snmp_batch(moved, run_id="snmp-3", known_hosts=ApiHostLookup(agent))
        push(agent, third)
        rels = reader.get("/api/v1/relationships", params={"limit": 1000, "source": known}).json()["items"]
        assert [(r["type"], name[r["target"]], r["attributes"].get("port")) for r in rels
                if r["type"] == "connects_to"] == [("connects_to", "sw1", "swp7")]


def test_the_lookup_stops_at_the_first_refusal(served):
    base, _ = served
    with client(base, "not-a-token") as agent:
        lookup = ApiHostLookup(agent)
        batch, _ = build_snmp_batch(switches(), run_id="snmp-x", known_hosts=lookup)
    assert lookup.problem == "lookup stopped: HTTP 401 (the token may not read CIs)"
    assert len(lookup._by_mac) == 0  # asked once, then no more
    assert not [r for r in batch["relationships"] if r["type"] == "connects_to"]


def test_the_lookup_is_bounded(served):
    base, secrets = served
    with client(base, secrets["discovery"]) as agent:
        lookup = ApiHostLookup(agent, max_macs=1)
        build_snmp_batch(switches(), run_id="snmp-y", known_hosts=lookup)
    assert len(lookup._by_mac) == 1 and lookup.capped and lookup.problem is None
