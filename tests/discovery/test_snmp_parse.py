"""SNMP parsing (discovery/snmp/parse.py) and batch building (discovery/snmp/batch.py) on recorded varbinds.

The walk below is a switch as net-snmp and lldpd answered it in the lab (tests/discovery/snmp_lab.py),
with what they cannot serve added as a vendor switch would answer it: the older ipAddrTable and
ipNetToMediaTable, BRIDGE-MIB and Q-BRIDGE-MIB forwarding entries, an ifAlias, a name-typed LLDP port id.
"""

from __future__ import annotations

from dataclasses import replace

from discovery.snmp import oids
from discovery.snmp.batch import build_snmp_batch
from discovery.snmp.models import (
    ArpEntry,
    CdpNeighbour,
    Chassis,
    DeviceAddress,
    DeviceFacts,
    DeviceInterface,
    DeviceResult,
    ForwardingEntry,
    LldpNeighbour,
    forwarding_evidence,
)
from discovery.snmp.oids import oid, vendor_of
from discovery.snmp.parse import MAX_CHASSIS, parse_walk, top_chassis

SW1, SW2, H1, H3 = "02:00:00:78:00:01", "02:00:00:78:00:02", "52:54:00:78:00:0b", "52:54:00:78:00:0d"


def mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def mac_index(text: str) -> tuple[int, ...]:
    return tuple(mac_bytes(text))


def col(prefix, index, value):
    return prefix + tuple(index), value


def switch_walk() -> dict:
    w = {
        oids.SYS_DESCR: b"Linux sw1 6.1.0 x86_64",
        oids.SYS_OBJECT_ID: "1.3.6.1.4.1.9.1.1208",
        oids.SYS_UPTIME: 123456,
        oids.SYS_CONTACT: b"netops@example.org\x1b[31m",
        oids.SYS_NAME: b"sw1",
        oids.SYS_LOCATION: b"rack 1",
        oids.SYS_SERVICES: 6,
        oids.LLDP_LOC_CHASSIS_SUBTYPE: 4,
        oids.LLDP_LOC_CHASSIS_ID: mac_bytes(SW1),
    }
    interfaces = [(1, b"lo", 24, b"", 10_000_000, 0), (3, b"br0", 209, mac_bytes(SW1), 0, 0),
                  (4, b"swp9", 6, mac_bytes(SW1), 4_294_967_295, 10000),
                  (5, b"swp1", 6, mac_bytes("02:00:00:78:01:01"), 1_000_000_000, 1000),
                  (6, b"swp2", 6, b"\0" * 6, 100_000_000, 0)]
    for index, name, kind, phys, speed, high in interfaces:
        w.update(dict([col(oids.IF_DESCR, [index], name), col(oids.IF_NAME, [index], name),
                       col(oids.IF_TYPE, [index], kind), col(oids.IF_PHYS_ADDRESS, [index], phys),
                       col(oids.IF_SPEED, [index], speed), col(oids.IF_HIGH_SPEED, [index], high),
                       col(oids.IF_ADMIN_STATUS, [index], 1), col(oids.IF_OPER_STATUS, [index], 1 if index != 6 else 2),
                       col(oids.IF_ALIAS, [index], b"to sw2" if index == 4 else b"")]))
    w.update(dict([
        # ipAddressTable: 10.78.0.2/24 on br0, a broadcast entry (left out), ::1 on lo
        col(oids.IP_ADDRESS_IF_INDEX, [1, 4, 10, 78, 0, 2], 3),
        col(oids.IP_ADDRESS_TYPE, [1, 4, 10, 78, 0, 2], 1),
        col(oids.IP_ADDRESS_PREFIX, [1, 4, 10, 78, 0, 2], "1.3.6.1.2.1.4.32.1.5.3.1.4.10.78.0.0.24"),
        col(oids.IP_ADDRESS_IF_INDEX, [1, 4, 10, 78, 0, 255], 3),
        col(oids.IP_ADDRESS_TYPE, [1, 4, 10, 78, 0, 255], 3),
        col(oids.IP_ADDRESS_IF_INDEX, [2, 16, *([0] * 15), 1], 1),
        # ipAddrTable: the same address again (kept once) and one only it knows
        col(oids.IP_AD_ENT_IF_INDEX, [10, 78, 0, 2], 3),
        col(oids.IP_AD_ENT_IF_INDEX, [192, 0, 2, 7], 4),
        col(oids.IP_AD_ENT_NETMASK, [192, 0, 2, 7], bytes([255, 255, 255, 0])),
        # ipNetToPhysicalTable: h1 (dynamic), an invalid entry; ipNetToMediaTable: h3, and h1 again
        col(oids.IP_NET_TO_PHYSICAL_PHYS, [3, 1, 4, 10, 78, 0, 11], mac_bytes(H1)),
        col(oids.IP_NET_TO_PHYSICAL_TYPE, [3, 1, 4, 10, 78, 0, 11], 3),
        col(oids.IP_NET_TO_PHYSICAL_PHYS, [3, 1, 4, 10, 78, 0, 99], mac_bytes("52:54:00:78:00:63")),
        col(oids.IP_NET_TO_PHYSICAL_TYPE, [3, 1, 4, 10, 78, 0, 99], 2),
        col(oids.IP_NET_TO_MEDIA_PHYS, [3, 10, 78, 0, 13], mac_bytes(H3)),
        col(oids.IP_NET_TO_MEDIA_TYPE, [3, 10, 78, 0, 13], 3),
        col(oids.IP_NET_TO_MEDIA_PHYS, [3, 10, 78, 0, 11], mac_bytes(H1)),
        # LLDP local ports (numbered by ifIndex, as lldpd does) and two neighbours
        col(oids.LLDP_LOC_PORT_ID, [4], mac_bytes(SW1)), col(oids.LLDP_LOC_PORT_DESC, [4], b"swp9"),
        col(oids.LLDP_LOC_PORT_ID, [5], b"swp1"), col(oids.LLDP_LOC_PORT_DESC, [5], b"swp1"),
    ]))
    for column, value in ((4, 4), (5, mac_bytes(SW2)), (6, 5), (7, b"swp9"), (8, b"uplink"), (9, b"sw2"),
                          (10, b"sw2 (lab)"), (12, b"\x20")):
        w[oids.LLDP_REM + (column, 100, 4, 2)] = value
    for column, value in ((4, 4), (5, mac_bytes(H1)), (6, 3), (7, mac_bytes(H1)), (8, b"eth0"), (9, b"h1"),
                          (12, b"\x01")):
        w[oids.LLDP_REM + (column, 0, 5, 1)] = value
    w[oids.LLDP_REM_MAN_ADDR_IF_SUBTYPE + (100, 4, 2, 1, 4, 10, 78, 0, 3)] = 2
    w[oids.LLDP_REM_MAN_ADDR_IF_SUBTYPE + (0, 5, 1, 1, 4, 10, 78, 0, 11)] = 2
    # BRIDGE-MIB: bridge ports 1 -> swp9, 2 -> swp1, 3 -> swp2
    for port, if_index in ((1, 4), (2, 5), (3, 6)):
        w[oids.DOT1D_BASE_PORT_IF_INDEX + (port,)] = if_index
    for mac, port, status in ((H1, 2, 3), (SW2, 1, 3), ("52:54:00:78:00:0c", 1, 3), (SW1, 1, 4), (H3, 3, 3)):
        w[oids.DOT1D_TP_FDB_PORT + mac_index(mac)] = port
        w[oids.DOT1D_TP_FDB_STATUS + mac_index(mac)] = status
    return w


def test_system_group_and_vendor():
    facts = parse_walk("192.0.2.7", switch_walk())
    assert (facts.system_name, facts.system_description, facts.object_id, facts.vendor, facts.uptime_seconds,
            facts.contact, facts.location, facts.chassis_mac) == (
        "sw1", "Linux sw1 6.1.0 x86_64", "1.3.6.1.4.1.9.1.1208", "Cisco", 1234, "netops@example.org", "rack 1", SW1)
    assert [vendor_of(o) for o in ("1.3.6.1.4.1.8072.3.2.10", "1.3.6.1.4.1.2636.1", "1.3.6.1.4.1.99999",
                                   "1.3.6.1.2.1.1", "junk", None)] == [
        "net-snmp", "Juniper", "enterprise 99999", None, None, None]


def test_interfaces():
    facts = parse_walk("192.0.2.7", switch_walk())
    assert facts.interfaces == [
        DeviceInterface(1, "lo", "lo", None, None, 10, "up", "up", 24),
        DeviceInterface(3, "br0", "br0", None, SW1, None, "up", "up", 209),
        DeviceInterface(4, "swp9", "swp9", "to sw2", SW1, 10000, "up", "up", 6),  # ifHighSpeed over a capped ifSpeed
        DeviceInterface(5, "swp1", "swp1", None, "02:00:00:78:01:01", 1000, "up", "up", 6),
        DeviceInterface(6, "swp2", "swp2", None, None, 100, "up", "down", 6),  # all-zero MAC: none
    ]


def test_addresses_and_arp():
    facts = parse_walk("192.0.2.7", switch_walk())
    assert facts.addresses == [DeviceAddress("10.78.0.2", 24, "br0"), DeviceAddress("192.0.2.7", 24, "swp9"),
                               DeviceAddress("::1", None, "lo")]
    assert facts.arp == [ArpEntry("10.78.0.11", H1, "br0"), ArpEntry("10.78.0.13", H3, "br0")]


def test_lldp_neighbours():
    facts = parse_walk("192.0.2.7", switch_walk())
    assert facts.lldp == [  # in the order of the local ports (swp9 is ifIndex 4, swp1 5)
        LldpNeighbour("swp9", SW2, SW2, "swp9", "uplink", "sw2", "sw2 (lab)", ("bridge",), ("10.78.0.3",),
                      port_id_is_name=True),
        LldpNeighbour("swp1", H1, H1, H1, "eth0", "h1", None, ("station",), ("10.78.0.11",)),
    ]
    assert [n.port_name for n in facts.lldp] == ["swp9", "eth0"]


def test_forwarding_learned_entries_only():
    facts = parse_walk("192.0.2.7", switch_walk())
    assert facts.forwarding == [ForwardingEntry(H1, "swp1"), ForwardingEntry(H3, "swp2"),
                                ForwardingEntry(SW2, "swp9"), ForwardingEntry("52:54:00:78:00:0c", "swp9")]
    walk = switch_walk()  # Q-BRIDGE, where present, wins: it names the VLAN
    walk[oids.DOT1Q_TP_FDB_PORT + (10, *mac_index(H3))] = 3
    walk[oids.DOT1Q_TP_FDB_STATUS + (10, *mac_index(H3))] = 3
    assert parse_walk("192.0.2.7", walk).forwarding == [ForwardingEntry(H3, "swp2", 10)]


def test_hostile_and_broken_answers():
    walk = {
        oids.SYS_NAME: b"evil\x1b]0;owned\x07\nname" + b"x" * 1000,
        oids.SYS_OBJECT_ID: 42,  # a wrong type is no value, not a crash
        oids.SYS_UPTIME: b"soon",
        oids.LLDP_LOC_CHASSIS_SUBTYPE: 4, oids.LLDP_LOC_CHASSIS_ID: b"\xff" * 6,  # broadcast: no chassis
        oids.IF_DESCR + (0,): b"index zero",  # not an ifIndex
        oids.IF_DESCR + (7, 1): b"two-part index",
        oids.IF_DESCR + (8,): b"eth8", oids.IF_PHYS_ADDRESS + (8,): b"\x01\x02",  # a short MAC
        oids.IP_ADDRESS_IF_INDEX + (1, 5, 10, 0, 0, 1): 8,  # length says 5, four bytes follow
        oids.IP_NET_TO_PHYSICAL_PHYS + (8, 1, 4, 10, 0, 0, 300): b"\x52\x54\0\0\0\1",
        oids.LLDP_REM + (5, 0, 8, 1): b"",  # a neighbour without a chassis id
        oids.DOT1D_TP_FDB_PORT + (1, 2, 3): 1,  # an index that is no MAC
    }
    facts = parse_walk("192.0.2.9", walk)
    assert facts.system_name.startswith("evil name") and len(facts.system_name) == 255
    assert (facts.object_id, facts.vendor, facts.uptime_seconds, facts.chassis_mac) == (None, None, None, None)
    assert facts.interfaces == [DeviceInterface(8, "eth8", "eth8")]
    assert (facts.addresses, facts.arp, facts.lldp, facts.forwarding) == ([], [], [], [])


def test_oid_text():
    assert oid(".1.3.6.1.2.1.1.5.0") == oids.SYS_NAME


# ---- batch --------------------------------------------------------------------------------------------

def device(target: str, name: str, chassis: str | None, **more) -> DeviceResult:
    more.setdefault("services", 6)  # datalink + internet: a switch that routes (models.forwarding_evidence)
    return DeviceResult(target, "ok", DeviceFacts(target, system_name=name, chassis_mac=chassis, vendor="Cisco",
                                                  **more))


def test_batch_devices_links_and_attachments():
    sw1 = DeviceResult("192.0.2.7", "ok", parse_walk("192.0.2.7", switch_walk()))
    sw2 = device("192.0.2.8", "sw2", SW2, lldp=[
        LldpNeighbour("swp9", SW1, SW1, SW1, "swp9", "sw1", None, ("bridge",)),
        LldpNeighbour("swp3", "52:54:00:78:00:0c", "52:54:00:78:00:0c", None, None, "h2", None, ("station",)),
        LldpNeighbour("swp4", "router-7", None, "ge-0/0/1", None, "r7", None, ("router",)),  # no MAC: no item
        LldpNeighbour("swp5", "02:00:00:78:00:05", "02:00:00:78:00:05", "Gi1/0/1", None, "edge-5", None,
                      ("bridge", "router"), ("10.9.9.5",), port_id_is_name=True),
        LldpNeighbour("swp6", "00:04:f2:00:00:06", "00:04:f2:00:00:06", None, None, "phone-6", None,
                      ("telephone",)),  # a phone announces itself too, and is no server
        # no capability, or only "other": a printer or an unmanaged box as well as a host; no guessed CI
        LldpNeighbour("swp7", "00:00:aa:00:00:07", "00:00:aa:00:00:07", None, None, "printer-7", None, ()),
        LldpNeighbour("swp8", "00:00:aa:00:00:08", "00:00:aa:00:00:08", None, None, "box-8", None, ("other",))],
        arp=[ArpEntry("10.78.0.12", "52:54:00:78:00:0c", "br0"), ArpEntry("10.78.0.3", SW2, "br0")])
    silent = DeviceResult("192.0.2.9", "timeout", error="no answer")
    no_mac = device("192.0.2.10", "nomac", None)
    batch, notes = build_snmp_batch([sw1, sw2, silent, no_mac], run_id="r1")
    assert notes == ["192.0.2.10: no chassis MAC or serial number, left out"]
    assert (batch["source"], batch["complete"], batch["scope"]) == (
        "snmp", True, {"subnets": [], "hosts": ["192.0.2.10", "192.0.2.7", "192.0.2.8", "192.0.2.9"]})
    items = {i["ref"]: i for i in batch["items"]}
    assert {(i["class"], i["name"], tuple(i["identifiers"].get("mac_address", [i["identifiers"].get("address")])))
            for i in batch["items"]} == {
        ("network_device", "sw1", (SW1,)), ("network_device", "sw2", (SW2,)),
        ("network_device", "edge-5", ("02:00:00:78:00:05",)),
        ("server", "h1", (H1,)), ("server", "h2", ("52:54:00:78:00:0c",)),
        ("ip_address", "10.78.0.2", ("10.78.0.2",)), ("ip_address", "192.0.2.7", ("192.0.2.7",)),
        ("ip_address", "10.78.0.11", ("10.78.0.11",)), ("ip_address", "10.78.0.13", ("10.78.0.13",)),
        ("ip_address", "10.78.0.12", ("10.78.0.12",)),
    }
    sw1_item = items[f"d:{SW1}"]
    assert sw1_item["attributes"] == {
        "vendor": "Cisco", "system_object_id": "1.3.6.1.4.1.9.1.1208", "system_description": "Linux sw1 6.1.0 x86_64",
        "contact": "netops@example.org", "location": "rack 1", "management_address": "192.0.2.7",
        "interfaces": [  # the loopback left out; no uptime (it would change every run)
            {"name": "br0", "mac_address": SW1, "admin_status": "up", "oper_status": "up"},
            {"name": "swp9", "alias": "to sw2", "mac_address": SW1, "speed_mbps": 10000, "admin_status": "up",
             "oper_status": "up"},
            {"name": "swp1", "mac_address": "02:00:00:78:01:01", "speed_mbps": 1000, "admin_status": "up",
             "oper_status": "up"},
            {"name": "swp2", "speed_mbps": 100, "admin_status": "up", "oper_status": "down"}]}
    assert items["ip:10.78.0.11"]["attributes"] == {"family": "ipv4", "mac_address": H1}
    # what LLDP says of a device it only saw never takes the names its own poll (another scope) would set
    assert items["d:02:00:00:78:00:05"]["attributes"] == {"lldp_management_address": "10.9.9.5"}
    assert not set(items["d:02:00:00:78:00:05"]["attributes"]) & set(sw1_item["attributes"])
    names = {ref: item["name"] for ref, item in items.items()}
    assert {(names[r["source"]], r["type"], names[r["target"]], tuple(sorted(r["attributes"].items())))
            for r in batch["relationships"]} == {
        # one cable, reported by both ends, is one edge from the chassis MAC that sorts first
        ("sw1", "cabled_to", "sw2", (("port", "swp9"), ("remote_port", "swp9"))),
        ("sw2", "cabled_to", "edge-5", (("port", "swp5"), ("remote_port", "Gi1/0/1"))),
        ("h1", "connects_to", "sw1", (("port", "swp1"),)),
        ("h2", "connects_to", "sw2", (("port", "swp3"),)),
        ("sw1", "contains", "10.78.0.2", ()), ("sw1", "contains", "192.0.2.7", ()),
        ("h1", "contains", "10.78.0.11", ()), ("h2", "contains", "10.78.0.12", ()),
    }
    # h3 is alone on swp2's forwarding entry, but no LLDP names it: it is an address, never a guessed host;
    # swp9 carries several MACs (an uplink) and names nobody.


def test_batch_forwarding_entry_confirms_only_hosts_it_knows():
    """A port with one learned MAC attaches the host holding it; a port LLDP shows a switch on never does."""
    sw1 = device("192.0.2.7", "sw1", SW1, lldp=[LldpNeighbour("swp1", H1, H1, None, None, "h1", None, ("station",))],
                 forwarding=[ForwardingEntry(H1, "swp1"), ForwardingEntry(H1, "swp7")])
    # sw1 does not report the cable (its neighbour aged out): sw2's report gives the edge, sw1 first
    sw2 = device("192.0.2.8", "sw2", SW2, lldp=[LldpNeighbour("swp9", SW1, SW1, None, "xe-1", "sw1", None, ("bridge",))],
                 forwarding=[ForwardingEntry(H1, "swp9"), ForwardingEntry(H1, "swp2")])
    batch, _ = build_snmp_batch([sw1, sw2], run_id="r2", subnets=["192.0.2.0/24"])
    assert batch["scope"] == {"subnets": ["192.0.2.0/24"], "hosts": []}
    names = {i["ref"]: i["name"] for i in batch["items"]}
    # h1 is on sw1 by LLDP (the forwarding entry on swp1 says the same) and alone on sw2's swp2: a host
    # on two switches connects to a redundancy group of them
    assert {(names[r["source"]], r["type"], names[r["target"]], r["attributes"].get("port"))
            for r in batch["relationships"]} == {
        ("sw1", "cabled_to", "sw2", "xe-1"),
        ("h1", "connects_to", "network attachment of h1", None),
        ("sw1", "member_of", "network attachment of h1", "swp1, swp7"),  # swp7 holds h1 alone too (a bond)
        ("sw2", "member_of", "network attachment of h1", "swp2"),
    }
    (group,) = [i for i in batch["items"] if i["class"] == "cluster"]
    assert (group["identifiers"], group["attributes"]) == ({"cluster_id": f"snmp/attachment/{H1}"},
                                                           {"min_members": 1})


def _router_walk(name: str, interfaces: list[tuple[str, str, int]]) -> dict:
    # sysServices 78 (physical, datalink, internet, end-to-end, applications): a router's agent configured
    # as one (net-snmp's `sysservices`); its default, 72, says host (models.forwarding_evidence)
    walk = {oids.SYS_NAME: name.encode(), oids.SYS_DESCR: b"Linux router (keepalived, use_vmac)",
            oids.SYS_SERVICES: 78}
    for index, (ifname, address, kind) in enumerate(interfaces, 1):
        walk.update(dict([col(oids.IF_DESCR, [index], ifname.encode()),
                          col(oids.IF_PHYS_ADDRESS, [index], mac_bytes(address)), col(oids.IF_TYPE, [index], kind)]))
    return walk


def test_routers_sharing_a_vrrp_mac_are_two_devices():
    r1 = parse_walk("10.0.0.1", _router_walk("r1", [("eth0", "52:54:00:aa:00:01", 6),
                                                    ("vrrp.51", "00:00:5e:00:01:33", 6)]))
    r2 = parse_walk("10.0.0.2", _router_walk("r2", [("eth0", "52:54:00:bb:00:02", 6),
                                                    ("vrrp.51", "00:00:5e:00:01:33", 6)]))
    assert (r1.chassis_mac, r2.chassis_mac) == ("52:54:00:aa:00:01", "52:54:00:bb:00:02")
    batch, notes = build_snmp_batch([DeviceResult("10.0.0.1", "ok", facts=r1), DeviceResult("10.0.0.2", "ok", facts=r2)],
                                    run_id="r")
    assert [i["name"] for i in batch["items"] if i["class"] == "network_device"] == ["r1", "r2"] and notes == []


def test_base_mac_leaves_out_virtual_multicast_and_shared_macs():
    def base(interfaces):
        return parse_walk("t", _router_walk("r", interfaces)).chassis_mac

    assert base([("eth0", "52:54:00:00:00:09", 6), ("hsrp", "00:00:0c:07:ac:01", 6), ("hsrp2", "00:00:0c:9f:f0:01", 6),
                 ("v6", "00:00:5e:00:02:01", 6), ("mc", "01:00:5e:00:00:01", 6)]) == "52:54:00:00:00:09"
    # a bond's MAC on both its ports and the bond: the port with a MAC of its own names the device
    assert base([("bond0", "02:00:00:00:00:01", 6), ("eth0", "02:00:00:00:00:01", 6),
                 ("eth1", "02:00:00:00:00:05", 6)]) == "02:00:00:00:00:05"
    # the bridge's own MAC wins over a lower port MAC; a router whose ports all share one MAC keeps it
    assert base([("swp1", "02:00:00:00:00:01", 6), ("br0", "02:00:00:00:00:07", 209)]) == "02:00:00:00:00:07"
    assert base([("eth0", "02:00:00:00:00:03", 6), ("eth1", "02:00:00:00:00:03", 6)]) == "02:00:00:00:00:03"
    assert base([("vrrp", "00:00:5e:00:01:01", 6)]) is None


def test_a_list_cut_by_its_cap_is_said_and_makes_the_walk_partial(monkeypatch):
    from discovery.snmp import parse
    from discovery.snmp.scope import run_is_complete

    whole = parse_walk("192.0.2.7", switch_walk())
    assert whole.truncated == [] and whole.warnings == []
    monkeypatch.setattr(parse, "MAX_LIST", 2)
    facts = parse_walk("192.0.2.7", switch_walk())
    assert [i.name for i in facts.interfaces] == ["lo", "br0"]
    assert "interfaces" in facts.truncated and "5 interfaces, kept the first 2" in facts.warnings
    notes: list[str] = []
    assert not run_is_complete([DeviceResult("192.0.2.7", "ok", facts)], notes)
    assert notes == ["incomplete run (partial walks: 192.0.2.7)"]


def test_vendors_of_the_recorded_devices():
    """snmpsim's real recordings (test_snmp_recordings.py): a Linksys router, a Sun agent, Windows, an MGE UPS."""
    assert [vendor_of(f"1.3.6.1.4.1.{o}") for o in ("3955.1.1", "42.2.1.1", "311.1.1.3.1.1", "705.1")] == [
        "Linksys", "Sun Microsystems", "Microsoft", "Eaton (MGE UPS Systems)"]


def test_a_prefix_pointer_counts_only_when_its_prefix_holds_the_address():
    """ipAddressPrefix pointing at zeroDotZero or at another prefix (net-snmp 5.4: 215.218.234.183/0 for
    195.218.254.105) says nothing: ipAddrTable's mask gives the length, else it is unknown. The unspecified
    address (Windows' adapter without one) is no address."""
    origin = "1.3.6.1.2.1.4.32.1.5"
    w = {oids.SYS_NAME: b"h"}
    for address, pointer in (((10, 0, 0, 5), f"{origin}.2.1.4.10.0.0.0.16"), ((195, 218, 254, 105),
                             f"{origin}.2.1.4.215.218.234.183.0"), ((192, 0, 2, 9), "0.0"),
                             ((198, 51, 100, 7), f"{origin}.2.1.4.203.0.113.0.24"), ((0, 0, 0, 0), "0.0")):
        w.update(dict([col(oids.IP_ADDRESS_IF_INDEX, [1, 4, *address], 2),
                       col(oids.IP_ADDRESS_PREFIX, [1, 4, *address], pointer)]))
    w.update(dict([col(oids.IP_AD_ENT_IF_INDEX, [195, 218, 254, 105], 2),
                   col(oids.IP_AD_ENT_NETMASK, [195, 218, 254, 105], bytes([255, 255, 255, 0])),
                   col(oids.IP_AD_ENT_IF_INDEX, [10, 0, 0, 5], 2),
                   col(oids.IP_AD_ENT_NETMASK, [10, 0, 0, 5], bytes([255, 0, 0, 0])),
                   col(oids.IP_AD_ENT_IF_INDEX, [0, 0, 0, 0], 3),
                   col(oids.IP_AD_ENT_NETMASK, [0, 0, 0, 0], bytes(4))]))
    assert parse_walk("192.0.2.7", w).addresses == [
        DeviceAddress("10.0.0.5", 16, None),  # a pointer that holds it wins over the older table
        DeviceAddress("192.0.2.9", None, None), DeviceAddress("195.218.254.105", 24, None),
        DeviceAddress("198.51.100.7", None, None)]


def test_junos_bridges_logical_units_and_numbers_its_lldp_ports():
    """dot1dBasePortIfIndex names ge-0/0/5.0 (Junos bridges the unit): the entry names the port, as LLDP does.
    A neighbour's locally assigned port id that is a number (Junos' ifIndex) gives way to its description."""
    w = {oids.SYS_NAME: b"ex"}
    for index, name in ((506, b"ge-0/0/5"), (536, b"ge-0/0/5.0"), (540, b"ae0.0"), (600, b"vlan.10")):
        w.update(dict([col(oids.IF_NAME, [index], name)]))
    for port, if_index in ((1, 536), (2, 540), (3, 600)):
        w[oids.DOT1D_BASE_PORT_IF_INDEX + (port,)] = if_index
    for mac, port in ((H1, 1), (H3, 2), (SW2, 3)):
        w[oids.DOT1Q_TP_FDB_PORT + (2, *mac_index(mac))] = port
        w[oids.DOT1Q_TP_FDB_STATUS + (2, *mac_index(mac))] = 3
    for local, (subtype, port_id, description) in ((506, (7, b"523", b"ge-0/0/22")), (507, (7, b"25", b"25")),
                                                    (508, (7, b"1/1", b"uplink"))):
        for column, value in ((4, 4), (5, mac_bytes(SW2)), (6, subtype), (7, port_id), (8, description),
                              (12, b"\x20")):
            w[oids.LLDP_REM + (column, 0, local, 1)] = value
    facts = parse_walk("192.0.2.7", w)
    # ae0.0 and vlan.10 name no interface of their own port: kept as they are
    assert facts.forwarding == [ForwardingEntry(H3, "ae0.0", 2), ForwardingEntry(H1, "ge-0/0/5", 2),
                                ForwardingEntry(SW2, "vlan.10", 2)]
    assert [(n.port_id, n.port_name, n.port_id_is_name) for n in facts.lldp] == [
        ("523", "ge-0/0/22", False), ("25", "25", True), ("1/1", "1/1", True)]


# ---- ENTITY-MIB ---------------------------------------------------------------------------------------

ENT = oid("1.3.6.1.2.1.47.1.1.1.1")
CHASSIS, CONTAINER, MODULE, PORT, STACK = 3, 5, 9, 10, 11


def entity(walk: dict, index: int, kind: int, contained_in: int, serial: bytes = b"", model: bytes = b"",
           maker: bytes = b"", software: bytes = b"") -> None:
    for column, value in ((4, contained_in), (5, kind), (11, serial), (13, model), (12, maker), (10, software)):
        walk[ENT + (column, index)] = value


def test_the_chassis_serial_identifies_the_device_and_its_model_is_said():
    """A lone switch: the chassis in nothing (0) gives the serial; its modules' and SFPs' serials name nothing."""
    walk = switch_walk()
    entity(walk, 1, CHASSIS, 0, b"FOC1234X0AB", b"WS-C2960-24TT-L", b"Cisco Systems, Inc.", b"12.2(55)SE12")
    entity(walk, 2, CONTAINER, 1)
    entity(walk, 3, MODULE, 2, b"AGM1234ABCD", b"GLC-SX-MMD")
    for index in range(4, 30):
        entity(walk, index, PORT, 1)
    facts = parse_walk("192.0.2.7", walk)
    assert facts.chassis == [Chassis(1, "FOC1234X0AB", "WS-C2960-24TT-L", "Cisco Systems, Inc.", "12.2(55)SE12")]
    assert facts.serial_number == "FOC1234X0AB"
    batch, _ = build_snmp_batch([DeviceResult("192.0.2.7", "ok", facts)], run_id="r")
    (item,) = [i for i in batch["items"] if i["name"] == "sw1"]
    assert item["identifiers"] == {"serial_number": "FOC1234X0AB", "mac_address": [SW1],
                                   "ip_address": ["10.78.0.2", "192.0.2.7"]}  # held: batch.own_addresses
    assert {k: item["attributes"].get(k) for k in ("vendor", "model", "manufacturer", "software_version", "chassis")} \
        == {"vendor": "Cisco", "model": "WS-C2960-24TT-L", "manufacturer": "Cisco Systems, Inc.",
            "software_version": "12.2(55)SE12", "chassis": None}  # one chassis: no member list


def test_a_stack_is_one_device_known_by_its_first_members_serial():
    """Cisco: entity 1 the stack (in nothing), each member a chassis in it. Every member's serial is kept; the
    first usable one in index order identifies (not the master's: an election must not change who it is)."""
    walk = switch_walk()
    entity(walk, 1, STACK, 0, b"", b"c37xx Stack")
    entity(walk, 1001, CHASSIS, 1, b"N/A", b"WS-C3750X-48T-S")  # member 1 with a placeholder: passed over
    entity(walk, 1002, PORT, 1001)
    entity(walk, 2001, CHASSIS, 1, b"FDO1612X2CC", b"WS-C3750X-48T-S", software=b"15.0(2)SE11")
    entity(walk, 3001, CHASSIS, 1, b"FDO1613X3DD", b"WS-C3750X-24T-S")
    entity(walk, 3002, CHASSIS, 3001, b"INNER0001")  # a chassis inside a member: part of it, not a member
    facts = parse_walk("192.0.2.7", walk)
    assert [(c.index, c.serial_number) for c in facts.chassis] == [(1001, None), (2001, "FDO1612X2CC"),
                                                                    (3001, "FDO1613X3DD")]
    assert facts.serial_number == "FDO1612X2CC"
    (attributes,) = [i["attributes"] for i in build_snmp_batch([DeviceResult("192.0.2.7", "ok", facts)], run_id="r")[0][
        "items"] if i["name"] == "sw1"]
    assert (attributes["model"], attributes["software_version"], attributes["chassis"]) == (
        "WS-C3750X-48T-S", "15.0(2)SE11",
        [{"model": "WS-C3750X-48T-S"},
         {"serial_number": "FDO1612X2CC", "model": "WS-C3750X-48T-S", "software_version": "15.0(2)SE11"},
         {"serial_number": "FDO1613X3DD", "model": "WS-C3750X-24T-S"}])


def test_placeholder_serials_name_nothing_and_hostile_text_is_cleaned():
    placeholders = (b"", b"   ", b"N/A", b"n/a ", b"0000000000", b"00000000000", b"\x1b[31m\x1b[0m", b"\x00\x00",
                    b"Unknown", b"FFFFFFFF", b"123456789", b"\xff\xfe")
    for value in placeholders:
        walk = {oids.SYS_NAME: b"sw"}
        entity(walk, 1, CHASSIS, 0, value)
        facts = parse_walk("t", walk)
        assert (facts.chassis[0].serial_number, facts.serial_number) == (None, None), value
        assert build_snmp_batch([DeviceResult("t", "ok", facts)], run_id="r")[1] == [
            "t: no chassis MAC or serial number, left out"]
    walk = {oids.SYS_NAME: b"sw"}
    entity(walk, 1, CHASSIS, 0, b"\x1b[31mFOC1234X0AB\x1b[0m\r\n", b"WS-C2960 <b>x</b>\x1b]0;owned\x07" + b"y" * 400,
           b"Cisco\tSystems", b"12.2\x00(55)")
    (chassis,) = parse_walk("t", walk).chassis
    assert chassis == Chassis(1, "FOC1234X0AB", ("WS-C2960 <b>x</b>" + "y" * 400)[:255], "Cisco Systems", "12.2(55)")


def test_a_device_known_by_its_serial_alone_is_kept():
    """No MAC (a router whose ports all carry a VRRP MAC) but a serial: it is identified by the serial; the same
    serial from a second address is the same device walked twice."""
    facts = []
    for target in ("10.0.0.1", "10.0.0.9"):
        walk = _router_walk("r1", [("vrrp.51", "00:00:5e:00:01:33", 6)])
        entity(walk, 1, CHASSIS, 0, b"FTX1840A0AA")
        facts.append(parse_walk(target, walk))
    batch, notes = build_snmp_batch([DeviceResult(f.target, "ok", f) for f in facts], run_id="r")
    assert [(i["name"], i["identifiers"]) for i in batch["items"] if i["class"] == "network_device"] == [
        ("r1", {"serial_number": "FTX1840A0AA"})]
    assert notes == ["10.0.0.9: same chassis as another target, walked twice"]


def test_the_entity_table_is_bounded():
    """500 entities with a containment loop, a deep chain and 40 chassis: the walk ends, the first
    MAX_CHASSIS top-level chassis are kept (in index order) and the cut is said."""
    walk = {oids.SYS_NAME: b"big"}
    entity(walk, 1, CONTAINER, 2)
    entity(walk, 2, CONTAINER, 1)  # a loop: 1 in 2 in 1
    entity(walk, 3, CHASSIS, 1, b"LOOPED0001")  # in the loop, no chassis above it: top-level
    for index in range(10, 60):  # a chain 50 deep, a chassis at its bottom and its top
        entity(walk, index, CONTAINER, index - 1 if index > 10 else 0)
    entity(walk, 10, CHASSIS, 0, b"CHAIN0001")
    entity(walk, 60, CHASSIS, 59, b"DEEP0001")  # 50 steps below chassis 10: past MAX_CONTAINMENT, so top-level
    for index in range(100, 140):
        entity(walk, index, CHASSIS, 0, f"STACK{index:04d}".encode())
    for index in range(200, 606):
        entity(walk, index, PORT, 100 + index % 40)
    assert len({k[len(ENT) + 1] for k in walk if k[:len(ENT)] == ENT}) == 500
    indexes, total = top_chassis(walk)
    assert (indexes, total) == ([3, 10, 60, *range(100, 100 + MAX_CHASSIS - 3)], 43)
    facts = parse_walk("t", walk)
    assert [c.serial_number for c in facts.chassis][:3] == ["LOOPED0001", "CHAIN0001", "DEEP0001"]
    assert (len(facts.chassis), facts.serial_number) == (MAX_CHASSIS, "LOOPED0001")
    assert facts.warnings == [f"43 chassis, kept the first {MAX_CHASSIS}"] and facts.truncated == []


# ---- CDP ----------------------------------------------------------------------------------------------

CDP = oid("1.3.6.1.4.1.9.9.23.1.2.1.1")
SW3, H4, H4_BRIDGE = "02:00:00:78:00:03", "52:54:00:78:00:0e", "fe:54:00:78:00:0e"


def cdp_row(walk: dict, if_index: int, device_index: int, device_id: bytes, port: bytes, address: bytes | None,
            capabilities: bytes, address_type: int = 1, platform: bytes = b"cisco WS-C2960-24TT-L") -> None:
    index = (if_index, device_index)
    for column, value in ((3, address_type), (4, address), (5, b"IOS\r\nline two"), (6, device_id), (7, port),
                          (8, platform), (9, capabilities)):
        if value is not None:
            walk[CDP + (column, *index)] = value


def test_cdp_neighbours():
    walk = switch_walk()
    cdp_row(walk, 4, 1, b"sw2.example.net", b"GigabitEthernet0/9", bytes([10, 78, 0, 3]), b"\0\0\0\x29")
    cdp_row(walk, 5, 2, b"h1", b"eth0", bytes([10, 78, 0, 11]), b"\0\0\0\x10", platform=b"Linux")
    cdp_row(walk, 6, 3, b"SEP001BD4000042", b"Port 1", bytes([10, 78, 0, 42]), b"\0\0\x04\x90")
    cdp_row(walk, 6, 4, b"v6\x1b[2J<b>", b"Gi0/1", bytes(15) + b"\1", b"\x08", address_type=20)
    cdp_row(walk, 7, 5, b"odd", b"x", bytes([10, 0, 0, 1, 9]), b"\0\0\0\0\x01")  # 5 octets: no address, no caps
    cdp_row(walk, 8, 6, b"", b"x", bytes([10, 0, 0, 2]), b"\x01")  # no device id: skipped
    walk[CDP + (6, 9)] = b"bad index"  # one part where two are due
    facts = parse_walk("192.0.2.7", walk)
    assert facts.cdp == [
        CdpNeighbour("swp9", "sw2.example.net", "GigabitEthernet0/9", "10.78.0.3", "cisco WS-C2960-24TT-L",
                     "IOS line two", ("router", "bridge")),
        CdpNeighbour("swp1", "h1", "eth0", "10.78.0.11", "Linux", "IOS line two", ("station",)),
        CdpNeighbour("swp2", "SEP001BD4000042", "Port 1", "10.78.0.42", "cisco WS-C2960-24TT-L", "IOS line two",
                     ("station", "telephone", "other")),
        CdpNeighbour("swp2", "v6<b>", "Gi0/1", "::1", "cisco WS-C2960-24TT-L", "IOS line two", ("bridge",)),
        CdpNeighbour("if7", "odd", "x", None, "cisco WS-C2960-24TT-L", "IOS line two", ())]
    assert [(n.is_network_device, n.is_host) for n in facts.cdp] == [
        (True, False), (False, True), (False, False), (True, False), (False, False)]


def _cdp_device(target: str, name: str, chassis: str, address: str, **more) -> DeviceResult:
    return device(target, name, chassis, addresses=[DeviceAddress(address, 24, "vlan1")], **more)


def test_cdp_links_devices_and_attaches_hosts():
    """A CDP row counts when tied to an identity: a polled device by its address (both ends reporting make one
    cable, from the identity that sorts first, with its own port names), a host by the one MAC ARP gives its
    address. A network device CDP alone names, unpolled, and a phone make nothing."""
    sw1 = _cdp_device("192.0.2.7", "sw1", SW1, "10.78.0.2", cdp=[
        CdpNeighbour("Gi0/1", "sw2", "GigabitEthernet0/24", "10.78.0.3", capabilities=("bridge",)),
        CdpNeighbour("Fa0/4", "h4", "eth0", "10.78.0.14", capabilities=("station",)),
        CdpNeighbour("Fa0/5", "ap-1", "Gi0", "10.78.0.60", capabilities=("bridge",)),  # not polled: left out
        CdpNeighbour("Fa0/6", "SEP001BD4000042", "Port 1", "10.78.0.42", capabilities=("station", "telephone")),
        CdpNeighbour("Fa0/7", "h9", "eth0", "10.78.0.99", capabilities=("station",))],  # no ARP entry: left out
        arp=[ArpEntry("10.78.0.14", H4, "vlan1")])
    sw2 = _cdp_device("192.0.2.8", "sw2", SW2, "10.78.0.3", cdp=[
        CdpNeighbour("Gi0/24", "sw1", "GigabitEthernet0/1", "192.0.2.7", capabilities=("bridge", "router"))])
    batch, notes = build_snmp_batch([sw2, sw1], run_id="r")
    names = {i["ref"]: i["name"] for i in batch["items"]}
    assert notes == [] and sorted((i["class"], i["name"]) for i in batch["items"] if i["class"] != "ip_address") == [
        ("network_device", "sw1"), ("network_device", "sw2"), ("server", "h4")]
    assert [i["identifiers"] for i in batch["items"] if i["name"] == "h4"] == [{"mac_address": [H4]}]
    assert {(names[r["source"]], r["type"], names[r["target"]], tuple(sorted(r["attributes"].items())))
            for r in batch["relationships"] if r["type"] != "contains"} == {
        ("sw1", "cabled_to", "sw2", (("port", "Gi0/1"), ("remote_port", "GigabitEthernet0/24"))),
        ("h4", "connects_to", "sw1", (("port", "Fa0/4"),))}


def test_lldp_and_cdp_of_one_neighbour_are_one_link():
    """A neighbour speaking both (lldpd answering a Catalyst's CDP, an IOS router with "lldp run") is LLDP's: its
    chassis MAC names it, even where ARP gives its address another MAC (h4's address is on its bridge), and
    LLDP's port names win over CDP's for a cable the same end reports both ways."""
    lldp = [LldpNeighbour("Gi0/2", H4, H4, H4, "eth0", "h4", None, ("station",), ("10.78.0.14",)),
            LldpNeighbour("Gi0/1", SW3, SW3, "Gi0/9", None, "sw3.example.net", None, ("bridge",), (),
                          port_id_is_name=True)]
    cdp = [CdpNeighbour("Gi0/2", "h4.example.net", "eth0", "10.78.0.14", capabilities=("station",)),
           CdpNeighbour("Gi0/1", "SW3(FOX1234)", "GigabitEthernet0/9", "10.78.0.3", capabilities=("bridge",))]
    sw1 = _cdp_device("192.0.2.7", "sw1", SW1, "10.78.0.2", lldp=lldp, cdp=cdp,
                      arp=[ArpEntry("10.78.0.14", H4_BRIDGE, "vlan1")])
    sw3 = _cdp_device("192.0.2.9", "sw3", SW3, "10.78.0.3")
    batch, _ = build_snmp_batch([sw1, sw3], run_id="r")
    names = {i["ref"]: i["name"] for i in batch["items"]}
    assert sorted(i["name"] for i in batch["items"] if i["class"] == "server") == ["h4"]
    assert {(names[r["source"]], r["type"], names[r["target"]], tuple(sorted(r["attributes"].items())))
            for r in batch["relationships"] if r["type"] != "contains"} == {
        ("sw1", "cabled_to", "sw3", (("port", "Gi0/1"), ("remote_port", "Gi0/9"))),
        ("h4", "connects_to", "sw1", (("port", "Gi0/2"),))}
    # the same cable seen by CDP alone from sw1: CDP's names; with an LLDP row that names no system and no
    # address (both optional), CDP's row stands on its own (its address is sw3's) and LLDP's names still win
    cables = []
    for rows in ([], [replace(lldp[1], system_name=None)]):
        sw1 = _cdp_device("192.0.2.7", "sw1", SW1, "10.78.0.2", lldp=rows, cdp=cdp[1:])
        cables += [r["attributes"] for r in build_snmp_batch([sw1, sw3], run_id="r")[0]["relationships"]
                   if r["type"] == "cabled_to"]
    assert cables == [{"port": "Gi0/1", "remote_port": "GigabitEthernet0/9"}, {"port": "Gi0/1", "remote_port": "Gi0/9"}]


def test_the_internet_layer_is_evidence_only_from_an_agent_that_forwards_or_serves_no_host_layer():
    # review finding 10: Windows' SNMP service says sysServices 76 (internet, end-to-end, applications)
    # with ipForwarding 2; a Juniper router says 4; a router saying 76 forwards (ipForwarding 1)
    def evidence(services, forwarding=None):
        walk = {oids.SYS_NAME: b"x", oids.SYS_SERVICES: services}
        if forwarding is not None:
            walk[oids.IP_FORWARDING] = forwarding
        return forwarding_evidence(parse_walk("10.0.0.1", walk))

    assert evidence(76, 2) == [] and evidence(76) == [] and evidence(72, 1) == []
    assert evidence(76, 1) == ["sysServices 76, ipForwarding 1"]
    assert evidence(4) == ["sysServices 4"] and evidence(6, 2) == ["sysServices 6"]
