"""SNMP discovery end to end, no mocks: nmap and ``karta discover snmp`` push to a real ``karta serve``.

The SNMP lab (snmp_lab.py): switches sw1 and sw2 (real snmpd + lldpd) cabled to each other, h1 on sw1 and
h2 on sw2 announcing themselves with lldpd, h3 on sw1 silent, h4 cabled to both switches (lldpd on both). ``karta serve`` binds this machine's side of
sw1's management link, so an agent in sw1's namespace (nmap, which sees the LAN's MACs there) and one in
this machine's namespace (the SNMP walk of both switches) push to the same service. Rounds:

1. nmap scans the hosts' LAN, the switches' own addresses included (nmap's sighting of a switch and
   SNMP's walk of it are one CI: hosts are one identity domain), then ``karta discover snmp`` walks both
   switches with v2c;
2. ``karta discover snmp`` again, with v3 authPriv: the same facts, so no change record at all;
3. h1's cable is pulled (h1's end goes down): after the next walk h1 is no longer attached to sw1;
4. the cable is back: after the next walk the map is what it was, and the impact of a switch failure
   is asked of it.

Runs once per database backend.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_database, tokens_for
from tests.discovery.conftest import REPO, require
from tests.discovery.lab import wait_until
from tests.discovery.snmp_lab import (
    COMMUNITY,
    V3_AUTH_KEY,
    V3_PRIV_KEY,
    V3_USER,
    SnmpLab,
    missing_requirements,
)
from tests.server import running_server

pytestmark = pytest.mark.lab

KARTA = Path(sys.executable).with_name("karta")
RUN_ID = re.compile(r"run_id=(\S+)")


class Estate:
    def __init__(self, lab: SnmpLab, api: httpx.Client, env: dict[str, str]) -> None:
        self.lab, self.api, self.env = lab, api, env
        self.seq = 0
        self.rounds: list[dict] = []

    def get(self, url: str, **params) -> dict:
        response = self.api.get(url, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def nmap(self) -> str:
        # The switches' own addresses too: nmap's sightings of them (sw2 by its MAC, sw1 from its own
        # namespace by its address alone) must be the CIs SNMP makes of them (hosts are one identity domain).
        result = self.lab.switch_run("sw1", [str(KARTA), "discover", "scan", "--subnet", "10.78.0.0/24",
                                             "--ports", "22", "--names", "off", "--insecure"],
                                     env=self.env, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stderr.strip().splitlines()[-1]

    def snmp(self, credentials: dict[str, str]) -> str:
        import subprocess

        result = subprocess.run([str(KARTA), "discover", "snmp", "--targets", ",".join(self.lab.targets()),
                                 "--timeout", "2", "--insecure"], env={**self.env, **credentials},
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert "hosts=2/2 ok" in line and "pushed=1 request(s)" in line and "ingest_errors" not in line, line
        return line

    def snapshot(self, summary: str) -> dict:
        cis = self.get("/api/v1/cis", limit=1000)
        relationships = self.get("/api/v1/relationships", limit=1000)
        changes = self.get("/api/v1/changes", since=self.seq, limit=10000)
        self.seq = changes["last_seq"]
        by_id = {ci["id"]: ci for ci in cis["items"]}
        state = {"cis": by_id, "relationships": relationships["items"], "changes": changes["items"],
                 "run": self.get(f"/api/v1/discovery/runs/{RUN_ID.search(summary).group(1)}")}
        self.rounds.append(state)
        return state


def label(state: dict, ci_id: str) -> str:
    ci = state["cis"][ci_id]
    return ci["name"]


def edges(state: dict) -> set[tuple]:
    return {(label(state, r["source"]), r["type"], label(state, r["target"]), tuple(sorted(r["attributes"].items())))
            for r in state["relationships"]}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def karta_database(request, tmp_path_factory) -> Iterator[str]:
    yield from fresh_database(request, request.param, tmp_path_factory.mktemp("snmp-e2e"))


@pytest.fixture(scope="module")
def estate(karta_database) -> Iterator[Estate]:
    require(missing_requirements() + (["nmap"] if not os.path.exists("/usr/bin/nmap") else []))
    assert KARTA.exists(), f"the karta console script is not installed next to {sys.executable}"
    secrets = tokens_for(karta_database)
    with SnmpLab() as lab, \
            running_server(karta_database, host=lab.switches["sw1"].agent_side) as base, \
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secrets['read']}"}, timeout=30,
                         trust_env=False) as api:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
               "PYTHONPATH": str(REPO), "KARTA_API_URL": base, "KARTA_TOKEN": secrets["discovery"]}
        scenario = Estate(lab, api, env)
        scenario.nmap()
        scenario.snapshot(scenario.snmp({"KARTA_SNMP_COMMUNITY": COMMUNITY}))
        scenario.snapshot(scenario.snmp({"KARTA_SNMP_USER": V3_USER, "KARTA_SNMP_AUTH_KEY": V3_AUTH_KEY,
                                         "KARTA_SNMP_PRIV_KEY": V3_PRIV_KEY}))
        lab.cable("h1", False)
        try:
            wait_until(lambda: "h1" not in lab.lldp_neighbours("sw1") and lab.oper_status("sw1") != {"1"}, 30,
                       "sw1 to see h1's port down")
            scenario.snapshot(scenario.snmp({"KARTA_SNMP_COMMUNITY": COMMUNITY}))
        finally:
            lab.cable("h1", True)
        wait_until(lambda: "h1" in lab.lldp_neighbours("sw1") and lab.oper_status("sw1") == {"1"}, 30,
                   "sw1 to see h1 again")
        scenario.snapshot(scenario.snmp({"KARTA_SNMP_COMMUNITY": COMMUNITY}))
        yield scenario


def test_devices_hosts_and_addresses_are_one_ci_each(estate):
    first = estate.rounds[0]
    lab = estate.lab
    cis = first["cis"].values()
    devices = {ci["name"]: ci for ci in cis if ci["class"] == "network_device"}
    assert set(devices) == {"sw1", "sw2"}
    for name, ci in devices.items():
        switch = lab.switches[name]
        assert ci["attributes"]["mac_address"] == [switch.mac]
        assert {k: v for k, v in ci["attributes"].items() if k not in ("interfaces", "system_description")} == {
            "mac_address": [switch.mac], "vendor": "net-snmp", "system_object_id": "1.3.6.1.4.1.8072.3.2.10",
            "contact": "netops@lab.example", "location": f"lab rack {switch.number}",
            "management_address": switch.management, "ip_address": [switch.lan_address, switch.management]}
        ports = ["swp9", *lab.host_ports(name)]
        macs = {"mgmt0": f"02:00:00:78:{switch.number:02x}:ff", "br0": switch.mac, "swp9": switch.mac}
        assert ci["attributes"]["interfaces"] == [
            {"name": port, "mac_address": macs.get(port) or lab.port_mac(name, port), "speed_mbps": 10000,
             "admin_status": "up", "oper_status": "up"} for port in ["mgmt0", "br0", *ports]]
    # nmap found the three hosts by MAC and address; the switches' LLDP found h1 and h2 by MAC: the same CIs,
    # now named by LLDP's system name (snmp ranks above nmap), h3 keeping nmap's name (its address)
    # nmap also saw both switches (sw2 by its MAC, sw1 by its address alone): no server CI of theirs
    hosts = {ci["name"]: ci for ci in cis if ci["class"] == "server"}
    assert set(hosts) == {"h1", "h2", "10.78.0.13", "h4"}
    for name, host in (("h1", "h1"), ("h2", "h2"), ("10.78.0.13", "h3"), ("h4", "h4")):
        assert hosts[name]["attributes"]["mac_address"] == [lab.hosts[host].mac]
        assert hosts[name]["attributes"]["ip_address"] == [lab.hosts[host].address]
    addresses = sorted(ci["name"] for ci in cis if ci["class"] == "ip_address")
    assert addresses == sorted(["10.78.0.2", "10.78.0.3", "10.78.0.11", "10.78.0.12", "10.78.0.13", "10.78.0.14",
                                *(s.management for s in lab.switches.values()),
                                *(s.agent_side for s in lab.switches.values())])
    (group,) = [ci for ci in cis if ci["class"] == "cluster"]
    assert (group["name"], group["attributes"]) == (
        "network attachment of h4", {"cluster_id": f"snmp/attachment/{lab.hosts['h4'].mac}", "min_members": 1})
    assert len(first["cis"]) == 2 + 4 + 1 + len(addresses)
    assert first["run"]["counts"]["conflicts"] == 0 and first["run"]["counts"]["errors"] == 0


def test_links_and_attachments(estate):
    first = estate.rounds[0]
    lab = estate.lab
    assert edges(first) == {
        ("sw1", "cabled_to", "sw2", (("port", "swp9"), ("remote_port", "swp9"))),
        ("h1", "connects_to", "sw1", (("port", "swp1"),)),
        ("h2", "connects_to", "sw2", (("port", "swp1"),)),
        # h4 is cabled to both switches: it hangs on a redundancy group of them
        ("h4", "connects_to", "network attachment of h4", ()),
        ("sw1", "member_of", "network attachment of h4", (("port", "swp3"),)),
        ("sw2", "member_of", "network attachment of h4", (("port", "swp3"),)),
        ("sw1", "contains", "10.78.0.2", ()), ("sw1", "contains", lab.switches["sw1"].management, ()),
        ("sw2", "contains", "10.78.0.3", ()), ("sw2", "contains", lab.switches["sw2"].management, ()),
        # nmap's, and ARP's for h1 and h2 (the same edges, confirmed by two sources)
        ("h1", "contains", "10.78.0.11", ()), ("h2", "contains", "10.78.0.12", ()),
        ("10.78.0.13", "contains", "10.78.0.13", ()), ("h4", "contains", "10.78.0.14", ()),
    }


def test_a_second_run_with_v3_writes_no_change_record(estate):
    second = estate.rounds[1]
    assert second["changes"] == []
    assert second["run"]["counts"]["created"] == 0 and second["run"]["counts"]["updated"] == 0


def test_a_pulled_cable_changes_the_map_after_the_next_run(estate):
    second, third = estate.rounds[1], estate.rounds[2]
    assert edges(second) - edges(third) == {("h1", "connects_to", "sw1", (("port", "swp1"),))}
    assert edges(third) - edges(second) == set()
    sw1 = next(ci for ci in third["cis"].values() if ci["name"] == "sw1")
    # the host's end went dark: the switch port is still enabled, its link is not
    assert [(i["admin_status"], i["oper_status"]) for i in sw1["attributes"]["interfaces"] if i["name"] == "swp1"] \
        == [("up", "down")]
    # exactly two change records: sw1's interfaces, and the attachment ended
    assert [(c["object_type"], c["action"], sorted(c["diff"])) for c in third["changes"]] == [
        ("ci", "update", ["attributes.interfaces"]),
        ("relationship", "delete", ["attributes.port", "first_seen", "last_seen", "source", "target", "type"])]
    assert third["changes"][0]["object_id"] == sw1["id"]
    # 15 items: 2 switches, h2, h4, h4's group and 10 addresses (h1 no longer announces itself to a switch,
    # its address still is in their ARP tables; h3 is known to them by ARP only)
    assert third["run"]["counts"] == {"created": 0, "updated": 1, "unchanged": 14, "conflicts": 0, "errors": 0,
                                      "relationships_created": 0, "stale": 0, "ended_relationships": 1}



def test_the_cable_back_restores_the_attachment(estate):
    second, fourth = estate.rounds[1], estate.rounds[3]
    assert edges(fourth) == edges(second)
    assert [(c["object_type"], c["action"]) for c in fourth["changes"]] == [("ci", "update"), ("relationship", "create")]


def test_impact_of_a_switch_failure(estate):
    """sw1 fails: h1, cabled to it alone, is down; h4, cabled to sw1 and sw2, is only at risk through its
    degraded group; h2 and sw2 are not touched (a cable between switches carries no impact)."""
    first = estate.rounds[3]
    by_name = {ci["name"]: ci["id"] for ci in first["cis"].values()}
    lab = estate.lab

    def impact(*names: str) -> dict[str, str]:
        response = estate.api.post("/api/v1/impact", json={"ci_ids": [by_name[n] for n in names]})
        assert response.status_code == 200, response.text
        return {item["name"]: item["state"] for item in response.json()["impacted"]}

    sw1_addresses = {"10.78.0.2": "down", lab.switches["sw1"].management: "down"}
    assert impact("sw1") == {**sw1_addresses, "h1": "down", "10.78.0.11": "down",
                             "network attachment of h4": "degraded", "h4": "at_risk", "10.78.0.14": "at_risk"}
    # both switches: h4 loses its last path
    assert impact("sw1", "sw2") == {
        **sw1_addresses, "10.78.0.3": "down", lab.switches["sw2"].management: "down",
        "h1": "down", "10.78.0.11": "down", "h2": "down", "10.78.0.12": "down",
        "network attachment of h4": "down", "h4": "down", "10.78.0.14": "down"}
