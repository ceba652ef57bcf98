"""The SNMP collector against recorded walks replayed by the real snmpsim (snmp_sim.py), over real UDP.

What net-snmp's snmpd in the lab (test_snmp_agents.py) cannot serve: forwarding tables, LLDP as switches
fill it, vendor system groups. Two kinds of recordings:

* real ones, shipped in the snmpsim package and read from there (a Linksys BEFSX41's system group, a Linux
  host's and a Windows XP host's full walks, a Sun agent's system group, an Eaton 9PX UPS's partial walk);
* composed ones, tests/discovery/snmprec/ (README.md there: written from the MIBs and the vendors' published
  sysObjectIDs, not recorded from hardware): four switches that form one estate, a Juniper EX2200 core
  (Q-BRIDGE, LLDP), a Cisco Catalyst 2960 access switch (BRIDGE-MIB, CDP only, ENTITY-MIB), an HP ProCurve
  edge switch (Q-BRIDGE, LLDP) whose operator-written text is hostile, and a Cisco Catalyst 3750-X stack of
  two (CDP and LLDP, a 121-entity ENTITY-MIB table); and the same stack after its master changed.

Each device is walked by discovery.snmp.client.collect_devices and its facts are asserted whole; then the
estate is walked by ``karta discover snmp`` pushing to a real ``karta serve`` (SQLite), and the CMDB it
leaves is asserted: devices, hosts, the cable between two switches, the attachments a forwarding entry
makes only on a one-MAC port.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import pytest

from discovery.batch import build_scan_batch
from discovery.models import ScanHost
from discovery.snmp.batch import build_snmp_batch
from discovery.snmp.client import collect_devices
from discovery.snmp.models import (
    ArpEntry,
    CdpNeighbour,
    Chassis,
    DeviceAddress,
    DeviceInterface,
    DeviceResult,
    ForwardingEntry,
    LldpNeighbour,
)
from tests.conftest import fresh_database, tokens_for
from tests.discovery.conftest import REPO, require
from tests.discovery.snmp_sim import (
    COMMUNITY,
    V3,
    SnmpSim,
    composed_recording,
    missing_requirements,
    shipped_recording,
)
from tests.discovery.snmprec import compose
from tests.server import running_server

KARTA = Path(sys.executable).with_name("karta")
RUN_ID = re.compile(r"run_id=(\S+)")
COMPOSED = ("juniper-ex2200", "cisco-c2960", "hp-procurve", "cisco-3750x-stack")
FAILOVER = "cisco-3750x-stack-failover"
SHIPPED = ("linksys-system", "linux-full-walk", "winxp-full-walk", "solaris-system", "eaton-9PX-partial-walk")
EX, C2960, PROCURVE = "28:8a:1c:e0:00:00", "00:1b:2b:aa:00:01", "00:1f:fe:c0:00:00"
STACK, STACK_AFTER_FAILOVER = compose.STACK_MEMBER_MACS
SRV_DB1, SRV_WEB1 = compose.SRV_DB1, compose.SRV_WEB1
PROCURVE_NAME = compose.HOSTILE_NAME[:255]  # text() caps a name at 255 characters
# (source, type, target, attributes) the composed switches' walks give whatever hosts Karta holds: the cables
# (LLDP's, CDP's between the Catalyst and the stack, the stack's to a router LLDP and CDP both name),
# srv-db1's attachment group, srv-web1's and srv-app3's ports, and the addresses of devices and LLDP hosts
SWITCH_EDGES = {
    ("c2960-access1", "cabled_to", "dist-stack", (("port", "Gi0/2"), ("remote_port", "GigabitEthernet1/0/1"))),
    ("dist-stack", "cabled_to", "wan-rtr1.example.net", (("port", "Gi2/0/1"), ("remote_port", "Gi0/0"))),
    ("srv-app3", "connects_to", "dist-stack", (("port", "Gi1/0/2"),)),
    ("dist-stack", "contains", "10.20.0.4", ()),
    (PROCURVE_NAME, "cabled_to", "ex-core", (("port", "25"), ("remote_port", "ge-0/0/22"))),
    ("srv-db1", "connects_to", "network attachment of srv-db1", ()),
    ("ex-core", "member_of", "network attachment of srv-db1", (("port", "ge-0/0/5"),)),
    ("c2960-access1", "member_of", "network attachment of srv-db1", (("port", "Fa0/3"),)),
    ("srv-web1", "connects_to", PROCURVE_NAME, (("port", "3"),)),
    ("ex-core", "contains", "10.20.0.1", ()), ("c2960-access1", "contains", "10.20.0.2", ()),
    (PROCURVE_NAME, "contains", "10.20.0.3", ()),
    ("srv-db1", "contains", "10.20.0.11", ()), ("srv-web1", "contains", "10.20.0.21", ())
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SnmpSim]:
    require(missing_requirements())
    recordings = {name: composed_recording(name) for name in (*COMPOSED, FAILOVER)}
    recordings.update({name: shipped_recording(name) for name in SHIPPED})
    with SnmpSim(recordings) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def walked(sim) -> dict:
    """Every device walked once with v2c, by name."""
    names = list(sim.addresses)
    results = collect_devices([sim.address(n) for n in names], sim.settings())
    assert [(r.status, r.error) for r in results] == [("ok", None)] * len(names), results
    return dict(zip(names, results, strict=True))


def test_the_composed_recordings_are_what_compose_writes():
    """README.md says how each file was made: by compose.py, never edited by hand."""
    for name, build in compose.RECORDINGS.items():
        assert (compose.HERE / name).read_text(encoding="utf-8") == build(), f"{name}: run compose.py"


def test_real_system_groups_and_their_vendors(walked):
    """The shipped system-group recordings: the vendor comes from the enterprise number of sysObjectID."""
    def system(name: str) -> tuple:
        f = walked[name].facts
        return (f.system_name, f.system_description, f.object_id, f.vendor, f.contact, f.location,
                f.uptime_seconds, f.chassis_mac, f.interfaces, f.warnings)

    assert system("linksys-system") == (
        "isp-gw", "BEFSX41", "1.3.6.1.4.1.3955.1.1", "Linksys", "Linksys", "4, Petersburger strasse, Berlin, Germany",
        6382, None, [], [])
    assert system("solaris-system") == (
        "oss", "Sun SNMP Agent, Sun-Blade-100", "1.3.6.1.4.1.42.2.1.1", "Sun Microsystems", "System administrator",
        "System administrators office", 6241625, None, [], [])
    # the UPS answers sysObjectID and its own enterprise's MIB only
    assert system("eaton-9PX-partial-walk") == (
        None, None, "1.3.6.1.4.1.705.1", "Eaton (MGE UPS Systems)", None, None, None, None, [], [])


def test_real_linux_walk(walked):
    """net-snmp of 2007 points ipAddressPrefix at garbage (215.218.234.183/0): the length comes from
    ipAddrTable's mask instead of a /0."""
    f = walked["linux-full-walk"].facts
    assert (f.system_name, f.object_id, f.vendor, f.chassis_mac) == ("tt", "1.3.6.1.4.1.8072.3.2.10", "net-snmp",
                                                                     "00:12:79:62:f9:40")
    assert f.interfaces == [DeviceInterface(1, "lo", "lo", None, None, 10, "up", "up", 24),
                            DeviceInterface(2, "eth0", "eth0", None, "00:12:79:62:f9:40", 100, "up", "up", 6)]
    assert f.addresses == [DeviceAddress("127.0.0.1", 8, "lo"), DeviceAddress("195.218.254.105", 24, "eth0"),
                           DeviceAddress("::1", 128, "lo"), DeviceAddress("fe80::212:79ff:fe62:f940", 64, "eth0")]
    assert f.arp == [ArpEntry("195.218.254.97", "00:0e:84:9f:9c:19", "eth0")]
    assert (f.lldp, f.forwarding, f.warnings, f.truncated) == ([], [], [], [])


def test_real_windows_xp_walk(walked):
    """Windows lists 0.0.0.0 in ipAddrTable for its Bluetooth adapter, which has no address: left out."""
    f = walked["winxp-full-walk"].facts
    assert (f.system_name, f.object_id, f.vendor, f.contact, f.location, f.chassis_mac) == (
        "CRAY", "1.3.6.1.4.1.311.1.1.3.1.1", "Microsoft", "support@lextudio.com", "Toronto, Canada",
        "00:0e:35:d3:3d:53")
    wifi, bluetooth = "Intel(R) PRO/Wireless 2200BG Network Connection", "Bluetooth Device (Personal Area Network)"
    assert f.interfaces == [
        DeviceInterface(1, "MS TCP Loopback interface", "MS TCP Loopback interface", None, None, 10, "up", "up", 24),
        DeviceInterface(65539, wifi, wifi, None, "00:0e:35:d3:3d:53", 54, "up", "up", 6),
        DeviceInterface(65540, bluetooth, bluetooth, None, "00:15:83:07:d4:19", 1, "up", "down", 6)]
    assert f.addresses == [DeviceAddress("127.0.0.1", 8, "MS TCP Loopback interface"),
                           DeviceAddress("192.168.1.9", 24, wifi)]
    assert f.arp == [ArpEntry("192.168.1.1", "48:5b:39:3a:bb:68", wifi),
                     ArpEntry("192.168.1.2", "b8:8d:12:0f:4f:a4", wifi)]
    assert (f.lldp, f.forwarding, f.warnings) == ([], [], [])


def test_juniper_ex_core(walked):
    """Junos bridges a port's logical unit (dot1dBasePortIfIndex -> ge-0/0/5.0): the entries name the port
    (ge-0/0/5), the one LLDP and the cable name. Q-BRIDGE's index is Junos' filtering database id (2, 3)."""
    f = walked["juniper-ex2200"].facts
    assert (f.system_name, f.object_id, f.vendor, f.contact, f.location, f.chassis_mac, f.uptime_seconds) == (
        "ex-core", "1.3.6.1.4.1.2636.1.1.1.2.43", "Juniper", "noc@example.net", "DC1 row A rack 3", EX, 1234567)
    assert f.system_description == compose.EX_DESCR
    ports, up = (0, 1, 2, 3, 4, 5, 22, 23), (3, 5, 22, 23)
    assert [(i.if_index, i.name, i.if_type, i.oper_status) for i in f.interfaces] == [
        *((501 + n, f"ge-0/0/{n}", 6, "up" if n in up else "down") for n in ports),
        *((531 + n, f"ge-0/0/{n}.0", 53, "up" if n in up else "down") for n in ports),
        (600, "vlan", 6, "up"), (601, "vlan.0", 53, "up")]
    assert [i.alias for i in f.interfaces if i.alias] == ["srv-db1 eth0", "uplink procurve-floor2",
                                                          "uplink c2960-access1"]
    assert f.addresses == [DeviceAddress("10.20.0.1", 24, "vlan.0")]
    assert f.arp == [ArpEntry("10.20.0.2", "00:1b:2b:aa:00:40", "vlan.0"), ArpEntry("10.20.0.3", PROCURVE, "vlan.0"),
                     ArpEntry("10.20.0.11", SRV_DB1, "vlan.0"), ArpEntry("10.20.0.21", SRV_WEB1, "vlan.0"),
                     ArpEntry("10.20.0.31", compose.PRINTER, "vlan.0")]  # the invalid entry left out
    assert f.lldp == [
        LldpNeighbour("ge-0/0/5", SRV_DB1, SRV_DB1, SRV_DB1, "eth0", "srv-db1", compose.LINUX_DESCR, ("station",),
                      ("10.20.0.11",)),
        LldpNeighbour("ge-0/0/22", PROCURVE, PROCURVE, "25", "25", PROCURVE_NAME, compose.HOSTILE_DESCR, ("bridge",),
                      ("10.20.0.3",), port_id_is_name=True)]
    uplink_c2960 = ("00:1b:2b:aa:00:19", "00:1b:2b:aa:00:40", compose.APP1, compose.APP2)
    assert f.forwarding == sorted([
        *(ForwardingEntry(m, "ge-0/0/22", 2) for m in (PROCURVE, SRV_WEB1, compose.WEB2, compose.PRINTER)),
        *(ForwardingEntry(m, "ge-0/0/23", 2) for m in uplink_c2960), ForwardingEntry(compose.PHONE, "ge-0/0/23", 3),
        ForwardingEntry(compose.STORE3, "ge-0/0/3", 2),
        ForwardingEntry(SRV_DB1, "ge-0/0/5", 2), ForwardingEntry(SRV_DB1, "ge-0/0/5", 3)],  # self entry left out
        key=lambda e: (e.interface, e.mac, e.vlan))
    assert (f.warnings, f.truncated) == ([], [])


def test_cisco_catalyst_access_switch(walked):
    """IOS: no LLDP (CDP only, as shipped), so the chassis is the lowest port MAC; BRIDGE-MIB for VLAN 1; the
    self and static (mgmt) entries say nothing about cabling. sysDescr's line breaks are spaces. ENTITY-MIB
    gives the chassis's serial (the SFP module's names nothing); CDP a Linux host, a phone and the stack."""
    f = walked["cisco-c2960"].facts
    assert (f.system_name, f.object_id, f.vendor, f.location, f.chassis_mac) == (
        "c2960-access1", "1.3.6.1.4.1.9.1.716", "Cisco", "Building 1, floor 1 IDF", C2960)
    assert f.system_description == (
        "Cisco IOS Software, C2960 Software (C2960-LANBASEK9-M), Version 12.2(55)SE12, RELEASE SOFTWARE (fc2) "
        "Technical Support: http://www.cisco.com/techsupport Copyright (c) 1986-2017 by Cisco Systems, Inc. "
        "Compiled Thu 02-Feb-17 11:36 by prod_rel_team")
    assert [(i.if_index, i.name, i.description, i.speed_mbps, i.oper_status) for i in f.interfaces] == [
        (1, "Vl1", "Vlan1", 1000, "up"),
        *((10000 + n, f"Fa0/{n}", f"FastEthernet0/{n}", 100, "up" if n <= 4 else "down") for n in range(1, 9)),
        (10101, "Gi0/1", "GigabitEthernet0/1", 1000, "up"), (10102, "Gi0/2", "GigabitEthernet0/2", 1000, "up"),
        (10501, "Nu0", "Null0", None, "up")]
    assert f.addresses == [DeviceAddress("10.20.0.2", 24, "Vl1")]
    assert f.arp == [ArpEntry("10.20.0.1", compose.EX_VLAN_MAC, "Vl1")]
    assert f.lldp == []
    assert (f.serial_number, f.chassis) == (compose.C2960_SERIAL, [
        Chassis(1, compose.C2960_SERIAL, "WS-C2960-24TT-L", None, "12.2(55)SE12")])
    banner = compose.STACK_DESCR.replace("\r\n", " ")
    assert f.cdp == [
        CdpNeighbour("Fa0/2", "SEP001BD4000042", "Port 1", "10.20.0.142", "Cisco IP Phone 7942", "SCCP42.9-4-2SR3-1S",
                     ("station", "telephone", "other")),
        CdpNeighbour("Fa0/3", "srv-db1", "eth1", "10.20.0.11", "Linux", compose.LINUX_DESCR, ("station",)),
        CdpNeighbour("Gi0/2", "dist-stack", "GigabitEthernet1/0/1", "10.20.0.4", "cisco WS-C3750X-48T-S", banner,
                     ("router", "bridge"))]
    uplink = (compose.PRINTER, PROCURVE, compose.EX_VLAN_MAC, "28:8a:1c:e0:00:1a", SRV_WEB1, compose.WEB2,
              compose.STORE3)
    assert f.forwarding == [ForwardingEntry(compose.APP1, "Fa0/1"), ForwardingEntry(compose.PHONE, "Fa0/2"),
                            ForwardingEntry(compose.APP2, "Fa0/2"), ForwardingEntry(SRV_DB1, "Fa0/3"),
                            *(ForwardingEntry(m, "Gi0/1") for m in uplink)]
    assert f.warnings == []


def test_procurve_hostile_text_is_bounded_and_kept_as_text(walked):
    """Markup and quotes stay text (escaping is the reader's job), terminal escapes and control characters
    go, a 300-character name or alias is cut at 255; a forwarding index that is no MAC is skipped."""
    f = walked["hp-procurve"].facts
    assert (f.system_name, f.system_description, f.contact, f.location, f.vendor, f.chassis_mac) == (
        PROCURVE_NAME, compose.HOSTILE_DESCR, 'ops@example.net"; DROP TABLE cis; --', "Floor 2 red closet 'B'", "HP",
        PROCURVE)
    assert len(f.system_name) == 255 and f.system_name.startswith('procurve-floor2 "quoted" <b>bold</b> xxx')
    aliases = {i.name: i.alias for i in f.interfaces if i.alias}
    assert aliases == {"3": "srv-web1 <img src=x onerror=alert(1)>", "4": "\"desk 4\" & 'co'",
                       "5": "printernulclear tab", "6": ("phone " + "y" * 294)[:255], "25": "uplink ex-core"}
    # a locally assigned LLDP port id that is a number (Junos' ifIndex) gives way to the port's description
    (ex_core,) = [n for n in f.lldp if n.system_name == "ex-core"]
    assert (ex_core.local_port, ex_core.port_id, ex_core.port_name, ex_core.capabilities) == (
        "25", "523", "ge-0/0/22", ("bridge", "router"))
    assert [(n.local_port, n.system_name, n.capabilities) for n in f.lldp] == [
        ("3", "srv-web1", ("station",)), ("6", "SEP001BD4000066", ("telephone",)),
        ("25", "ex-core", ("bridge", "router"))]
    uplink = (compose.C2960_VLAN_MAC, compose.PHONE, compose.EX_VLAN_MAC, "28:8a:1c:e0:00:19", SRV_DB1,
              compose.APP1, compose.APP2)
    assert f.forwarding == [*(ForwardingEntry(m, "25", 1) for m in uplink), ForwardingEntry(SRV_WEB1, "3", 1),
                            ForwardingEntry(compose.WEB2, "4", 1), ForwardingEntry(compose.PRINTER, "5", 1)]
    # ENTITY-MIB: an all-zero serial names nothing (the switch stays known by its MAC); escapes in the model go
    assert (f.serial_number, f.chassis) == (None, [Chassis(1, None, "J9085A <i>2610-24</i>", "HP", "R.11.72")])
    assert f.warnings == []


def test_cisco_stack(walked):
    """A 3750-X stack of two: entity 1 the stack, members 1001 and 2001 chassis in it. One device, known by
    member 1's serial, both serials kept. After a failover the stack's MAC (LLDP's local chassis id) is member
    2's, the serial the same. CDP and LLDP both name srv-app3 and wan-rtr1; CDP alone the Catalyst, a phone and
    an access point. Bounded: two columns of the 121 entities are walked (20 rows a request once CDP's few rows
    are done) and the text of the two chassis read with one GET: the whole walk takes 18 requests, where
    walking the six columns side by side took 31 and the whole entPhysicalEntry 57 (measured)."""
    f, after = walked["cisco-3750x-stack"].facts, walked[FAILOVER].facts
    assert (f.system_name, f.vendor, f.chassis_mac, f.serial_number) == ("dist-stack", "Cisco", STACK,
                                                                         compose.STACK_SERIALS[0])
    assert f.chassis == [Chassis(1000 * n + 1, serial, "WS-C3750X-48T-S", None, "15.0(2)SE11") for n, serial in
                         ((1, compose.STACK_SERIALS[0]), (2, compose.STACK_SERIALS[1]))]
    assert (after.chassis_mac, after.serial_number, after.chassis) == (STACK_AFTER_FAILOVER, f.serial_number,
                                                                       f.chassis)
    assert [(n.local_port, n.system_name, n.chassis_mac, n.port_name, n.capabilities) for n in f.lldp] == [
        ("Gi1/0/2", "srv-app3", compose.SRV_APP3, "eth0", ("station",)),
        ("Gi2/0/1", "wan-rtr1.example.net", compose.WAN_RTR, "Gi0/0", ("router",))]
    assert [(n.local_port, n.system_name, n.port_name, n.address, n.capabilities) for n in f.cdp] == [
        ("Gi1/0/1", "c2960-access1", "GigabitEthernet0/2", "10.20.0.2", ("bridge",)),
        ("Gi1/0/2", "srv-app3", "eth0", "10.20.0.51", ("station",)),
        ("Gi2/0/1", "wan-rtr1.example.net", "GigabitEthernet0/0", "10.20.0.254", ("router", "bridge")),
        ("Gi2/0/2", "SEP001BD4000077", "Port 1", "10.20.0.177", ("station", "telephone", "other")),
        ("Gi2/0/3", "ap-floor1", "GigabitEthernet0.1", "10.20.0.60", ("bridge",))]
    assert f.arp[1] == ArpEntry("10.20.0.51", compose.SRV_APP3_BRIDGE, "Vl1")  # br0's MAC, not LLDP's chassis id
    assert (f.warnings, f.truncated) == ([], [])
    assert walked["cisco-3750x-stack"].requests <= 18, walked["cisco-3750x-stack"].requests


def test_v3_authpriv_walks_the_same_facts(sim, walked):
    """snmpsim's v3 user (SHA, AES) with the empty context our client sends: the same devices, the same facts."""
    results = collect_devices([sim.address(n) for n in COMPOSED], sim.settings(V3))
    assert [(r.status, r.error) for r in results] == [("ok", None)] * len(COMPOSED)
    assert [r.facts for r in results] == [walked[n].facts for n in COMPOSED]


def test_a_wrong_community_is_a_silent_device(sim):
    """snmpsim, as any agent, does not answer a community it does not know: a timeout, no exception."""
    from discovery.snmp.client import SnmpCredentials

    (result,) = collect_devices([sim.address("cisco-c2960")],
                                sim.settings(SnmpCredentials("2c", community="not-" + COMMUNITY), timeout=0.5,
                                             retries=0))
    assert (result.status, result.facts) == ("timeout", None)


def _named(batch: dict) -> dict[str, dict]:
    return {item["ref"]: item for item in batch["items"]}


class KnownHosts:
    """The hosts Karta holds (what discovery.remote.ApiHostLookup answers from the service), and what was asked."""

    def __init__(self, hosts: dict[str, tuple[str, str]]) -> None:
        self.hosts, self.asked = hosts, []

    def __call__(self, mac: str) -> tuple[str, str] | None:
        self.asked.append(mac)
        return self.hosts.get(mac)


def test_the_batch_attaches_hosts_on_one_mac_ports_only(walked):
    """srv-db1 is announced by LLDP on ex-core's ge-0/0/5 and seen alone on the Catalyst's Fa0/3 (its bond's
    second leg): two switches, so a redundancy group. srv-web1 (LLDP on the ProCurve's port 3) is among seven
    MACs on the Catalyst's uplink Gi0/1 and four on ex-core's ge-0/0/22: no attachment there. Of the hosts
    Karta holds, app1 (alone on Fa0/1) and store3 (alone on ge-0/0/3, among seven on Gi0/1) are attached,
    app2 (with a phone on Fa0/2) is not; a one-MAC port of a MAC nobody holds (the printer) makes no CI; the
    phone announcing itself by LLDP or CDP is no server. The stack and the Catalyst see each other by CDP only:
    one cable; srv-app3 and wan-rtr1 by LLDP and CDP: one link each, srv-app3 one server although ARP gives its
    address br0's MAC. The access point CDP alone names is left out (no MAC its own walk would know it by)."""
    results = [walked[n] for n in COMPOSED]
    known = KnownHosts({compose.APP1: ("ci-app1", "app1"), compose.APP2: ("ci-app2", "app2"),
                        compose.STORE3: ("ci-store3", "store3")})
    batch, notes = build_snmp_batch(results, run_id="r1", known_hosts=known)
    items = _named(batch)
    assert notes == []
    # asked only for a MAC alone on a port that no LLDP names, not for one LLDP announced
    assert sorted(known.asked) == sorted([compose.STORE3, compose.APP1, compose.WEB2, compose.PRINTER])
    assert sorted((i["class"], i["name"]) for i in items.values()) == sorted([
        ("network_device", "ex-core"), ("network_device", "c2960-access1"), ("network_device", PROCURVE_NAME),
        ("server", "srv-db1"), ("server", "srv-web1"), ("cluster", "network attachment of srv-db1"),
        ("network_device", "dist-stack"), ("network_device", "wan-rtr1.example.net"), ("server", "srv-app3"),
        *(("ip_address", f"10.20.0.{n}") for n in (1, 2, 3, 4, 11, 21, 31, 51, 254))])
    stack = items[f"d:{STACK}"]
    assert (stack["identifiers"], stack["attributes"]["model"], stack["attributes"]["chassis"]) == (
        {"serial_number": compose.STACK_SERIALS[0], "mac_address": [STACK], "ip_address": ["10.20.0.4"]},
        "WS-C3750X-48T-S",
        [{"serial_number": serial, "model": "WS-C3750X-48T-S", "software_version": "15.0(2)SE11"}
         for serial in compose.STACK_SERIALS])
    names = {**{ref: item["name"] for ref, item in items.items()}, "ci-app1": "app1", "ci-store3": "store3"}
    edges = {(names[r["source"]], r["type"], names[r["target"]], tuple(sorted(r["attributes"].items())))
             for r in batch["relationships"]}
    assert edges == {
        ("app1", "connects_to", "c2960-access1", (("port", "Fa0/1"),)),
        ("store3", "connects_to", "ex-core", (("port", "ge-0/0/3"),)),
        *SWITCH_EDGES}
    # the forwarding entry alone makes the Catalyst's attachment: without it srv-db1 hangs on ex-core only
    without = [walked["juniper-ex2200"], walked["hp-procurve"]]
    edges_without = {(r["type"], r["attributes"].get("port")) for r in build_snmp_batch(without, run_id="r2")[0][
        "relationships"] if r["type"] in ("connects_to", "member_of")}
    assert edges_without == {("connects_to", "ge-0/0/5"), ("connects_to", "3")}
    # srv-db1's lldpd answering the Catalyst's CDP on Fa0/3 attaches it there too, its address resolved by
    # ex-core's ARP table, when the Catalyst's forwarding table says nothing
    no_fdb = [walked["juniper-ex2200"],
              DeviceResult("c2960", "ok", replace(walked["cisco-c2960"].facts, forwarding=[]))]
    edges_cdp = {(r["type"], r["attributes"].get("port")) for r in build_snmp_batch(no_fdb, run_id="r3")[0][
        "relationships"] if r["type"] in ("connects_to", "member_of")}
    assert edges_cdp == {("connects_to", None), ("member_of", "ge-0/0/5"), ("member_of", "Fa0/3")}


@pytest.fixture(scope="module")
def karta_database(request, tmp_path_factory) -> Iterator[str]:
    yield from fresh_database(request, "sqlite", tmp_path_factory.mktemp("snmp-recordings"))


@pytest.fixture(scope="module")
def failover_database(request, tmp_path_factory) -> Iterator[str]:
    yield from fresh_database(request, "sqlite", tmp_path_factory.mktemp("snmp-failover"))


def _discover(sim: SnmpSim, base: str, token: str, names: tuple[str, ...]) -> str:
    """One ``karta discover snmp`` over the named simulated devices, pushed to ``base``: its summary line."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
           "PYTHONPATH": str(REPO), "KARTA_API_URL": base, "KARTA_TOKEN": token, "KARTA_SNMP_COMMUNITY": COMMUNITY}
    result = subprocess.run([str(KARTA), "discover", "snmp", "--targets", ",".join(sim.address(n) for n in names),
                             "--port", str(sim.port), "--timeout", "2", "--insecure"], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert f"hosts={len(names)}/{len(names)} ok" in line and "pushed=1 request(s)" in line, line
    assert "ingest_errors" not in line, line
    return line


def test_karta_discover_snmp_pushes_the_estate_to_karta_serve(sim, karta_database):
    """nmap found app1, app2 and store3; then one ``karta discover snmp`` over the four switches and the
    Linksys router (a system group, no MAC or serial to know it by: left out with a note), pushed to a real
    ``karta serve``. The CMDB then holds what the walk said, hostile names as plain text, and the hosts nmap
    found are attached where a port learned their MAC alone (asked of the service by MAC)."""
    assert KARTA.exists(), f"the karta console script is not installed next to {sys.executable}"
    secrets = tokens_for(karta_database)
    with running_server(karta_database) as base, \
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secrets['read']}"}, timeout=30,
                         trust_env=False) as api, \
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secrets['discovery']}"}, timeout=30,
                         trust_env=False) as agent:
        scan = build_scan_batch([ScanHost("10.20.0.41", mac=compose.APP1, hostname="app1.example.net"),
                                 ScanHost("10.20.0.42", mac=compose.APP2, hostname="app2.example.net"),
                                 ScanHost("10.20.0.33", mac=compose.STORE3, hostname="store3.example.net")],
                                run_id="scan-1", subnets=["10.20.0.0/24"])
        response = agent.post("/api/v1/ingest", content=orjson.dumps(scan),
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        line = _discover(sim, base, secrets["discovery"], (*COMPOSED, "linksys-system"))
        assert f"{sim.address('linksys-system')}: no chassis MAC or serial number, left out" in line, line

        def get(url: str, **params) -> dict:
            response = api.get(url, params=params)
            assert response.status_code == 200, response.text
            return response.json()

        cis = {ci["id"]: ci for ci in get("/api/v1/cis", limit=1000)["items"]}
        relationships = get("/api/v1/relationships", limit=1000)["items"]
        run = get(f"/api/v1/discovery/runs/{RUN_ID.search(line).group(1)}")
    by_name = {ci["name"]: ci for ci in cis.values()}
    assert sorted((ci["class"], ci["name"]) for ci in cis.values()) == sorted([
        ("network_device", "ex-core"), ("network_device", "c2960-access1"), ("network_device", PROCURVE_NAME),
        ("server", "srv-db1"), ("server", "srv-web1"), ("cluster", "network attachment of srv-db1"),
        *(("server", f"{n}.example.net") for n in ("app1", "app2", "store3")),
        ("network_device", "dist-stack"), ("network_device", "wan-rtr1.example.net"), ("server", "srv-app3"),
        *(("ip_address", f"10.20.0.{n}") for n in (1, 2, 3, 4, 11, 21, 31, 33, 41, 42, 51, 254))])
    procurve = by_name[PROCURVE_NAME]["attributes"]
    assert (procurve["vendor"], procurve["system_object_id"], procurve["system_description"], procurve["location"],
            procurve["mac_address"], procurve["management_address"]) == (
        "HP", "1.3.6.1.4.1.11.2.3.7.11.76", compose.HOSTILE_DESCR, "Floor 2 red closet 'B'", [PROCURVE],
        sim.address("hp-procurve"))
    assert {i["name"]: i.get("alias") for i in procurve["interfaces"]}["3"] == "srv-web1 <img src=x onerror=alert(1)>"
    # its all-zero serial is no identifier (nor stored); its model's markup is text, its escapes gone
    assert (procurve.get("serial_number"), procurve["model"], procurve["manufacturer"]) == (
        None, "J9085A <i>2610-24</i>", "HP")
    ex_core = by_name["ex-core"]["attributes"]
    assert (ex_core["vendor"], ex_core["mac_address"]) == ("Juniper", [EX])
    # logical units are interfaces of their own, as the switch lists them
    assert [i["name"] for i in ex_core["interfaces"]][:3] == ["ge-0/0/0", "ge-0/0/1", "ge-0/0/2"]
    c2960 = by_name["c2960-access1"]["attributes"]
    assert (c2960["vendor"], c2960["mac_address"], c2960["serial_number"], c2960["model"], c2960["software_version"]) \
        == ("Cisco", [C2960], compose.C2960_SERIAL, "WS-C2960-24TT-L", "12.2(55)SE12")
    assert by_name["srv-db1"]["attributes"]["mac_address"] == [SRV_DB1]
    assert by_name["10.20.0.31"]["attributes"]["mac_address"] == compose.PRINTER
    edges = {(cis[r["source"]]["name"], r["type"], cis[r["target"]]["name"], tuple(sorted(r["attributes"].items())))
             for r in relationships}
    assert edges == {
        # nmap's
        *((f"{n}.example.net", "contains", f"10.20.0.{o}", ()) for n, o in (("app1", 41), ("app2", 42),
                                                                            ("store3", 33))),
        # the walk's: app2 shares Fa0/2 with a phone, so it hangs on nothing
        ("app1.example.net", "connects_to", "c2960-access1", (("port", "Fa0/1"),)),
        ("store3.example.net", "connects_to", "ex-core", (("port", "ge-0/0/3"),)),
        *SWITCH_EDGES}
    assert (run["counts"]["created"], run["counts"]["errors"], run["counts"]["conflicts"]) == (18, 0, 0)


def test_a_stack_walked_again_after_a_failover_is_the_same_ci(sim, failover_database):
    """The stack walked, then walked again at another address after its master changed: the stack's MAC (LLDP's
    local chassis id) is now member 2's, and member 1's serial, the stronger identifier, says it is the same
    device: one CI, its MAC updated. Known by its MAC alone it would be a second "dist-stack"."""
    secrets = tokens_for(failover_database)
    with running_server(failover_database) as base, \
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secrets['read']}"}, timeout=30,
                         trust_env=False) as api:
        cis = []
        for name in ("cisco-3750x-stack", FAILOVER):
            line = _discover(sim, base, secrets["discovery"], (name,))
            response = api.get("/api/v1/cis", params={"limit": 1000, "class": "network_device"})
            assert response.status_code == 200, response.text
            cis.append({ci["name"]: ci for ci in response.json()["items"]})
            run = api.get(f"/api/v1/discovery/runs/{RUN_ID.search(line).group(1)}").json()
            assert (run["counts"]["errors"], run["counts"]["conflicts"]) == (0, 0), run
    before, after = cis
    assert sorted(after) == sorted(before) == ["dist-stack", "wan-rtr1.example.net"]
    assert after["dist-stack"]["id"] == before["dist-stack"]["id"]
    assert [(ci["attributes"]["serial_number"], ci["attributes"]["mac_address"], ci["attributes"]["management_address"])
            for ci in (before["dist-stack"], after["dist-stack"])] == [
        (compose.STACK_SERIALS[0], [STACK], sim.address("cisco-3750x-stack")),
        (compose.STACK_SERIALS[0], [STACK_AFTER_FAILOVER], sim.address(FAILOVER))]
