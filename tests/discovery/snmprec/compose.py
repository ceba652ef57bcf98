"""Write the composed ``.snmprec`` recordings of this directory (README.md says what each models).

Run from the repository root: ``python tests/discovery/snmprec/compose.py``. The files are written, not
recorded: no switch was walked to make them. Each row is built from the MIB object's definition (BRIDGE-MIB
RFC 4188, Q-BRIDGE-MIB RFC 4363, IF-MIB RFC 2863, IP-MIB RFC 4293, LLDP-MIB IEEE 802.1AB-2005, ENTITY-MIB
RFC 6933, CISCO-CDP-MIB) with the
vendor's published sysObjectID and the way that vendor is known to fill the table (README.md). The output is
deterministic and sorted by OID, as snmpsim wants it; test_snmp_recordings.py checks that the files in the
repository are what this script writes, so an edit goes here, never into a ``.snmprec`` by hand.

snmprec format, one object a line: ``oid|tag|value``; tags used: 2 INTEGER, 4 OCTET STRING (text),
4x OCTET STRING (hex), 6 OBJECT IDENTIFIER, 64x IpAddress (hex), 66 Gauge32, 67 TimeTicks.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent

# The estate the three switches form (README.md draws it).
EX_CHASSIS, EX_VLAN_MAC = "28:8a:1c:e0:00:00", "28:8a:1c:e0:00:01"
C2960_VLAN_MAC = "00:1b:2b:aa:00:40"
PROCURVE_MAC = "00:1f:fe:c0:00:00"
SRV_DB1, SRV_WEB1 = "52:54:00:20:00:11", "52:54:00:20:00:21"
WEB2, STORE3, APP1, APP2 = "52:54:00:20:00:22", "52:54:00:20:00:33", "52:54:00:20:00:41", "52:54:00:20:00:42"
PHONE, PRINTER = "00:1b:d4:00:00:42", "00:1b:a9:00:00:31"
LINUX_DESCR = "Debian GNU/Linux 12 (bookworm) Linux 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 x86_64"
EX_DESCR = ("Juniper Networks, Inc. ex2200-24t-4g Ethernet Switch, kernel JUNOS 12.3R12.4, Build date: 2016-01-20 "
            "02:11:10 UTC Copyright (c) 1996-2016 Juniper Networks, Inc.")
# Hostile values (procurve): markup and quotes kept as text, terminal escapes and controls dropped, lengths capped.
HOSTILE_NAME = ('procurve-floor2 "quoted" <b>bold</b> ' + "x" * 300)[:300]
HOSTILE_MODEL = "J9085A <i>2610-24</i>\x1b]0;owned\x07"
HOSTILE_DESCR = ("ProCurve J9085A Switch 2610-24, revision R.11.72, ROM R.10.06 (/sw/code/build/nemo(R_ndx)) "
                 '<script>alert("sysDescr")</script>')

BITS_STATION, BITS_BRIDGE, BITS_BRIDGE_ROUTER, BITS_PHONE, BITS_ROUTER = "0100", "2000", "2800", "0400", "0800"
# CDP capability bits (cdpCacheCapabilities, four octets): router 0x01, trans-bridge 0x02, switch 0x08, host
# 0x10, IGMP 0x20, phone 0x80, two-port MAC relay 0x400. A Catalyst says switch + IGMP (L3: + router), lldpd
# host, a Cisco phone host + phone + relay, an access point trans-bridge + IGMP.
CDP_SWITCH, CDP_L3_SWITCH, CDP_HOST, CDP_PHONE, CDP_AP = 0x28, 0x29, 0x10, 0x490, 0x22
# ENTITY-MIB PhysicalClass
ENT_CHASSIS, ENT_CONTAINER, ENT_PSU, ENT_FAN, ENT_SENSOR, ENT_MODULE, ENT_PORT, ENT_STACK = 3, 5, 6, 7, 8, 9, 10, 11

# The Catalyst 3750-X stack (dist-stack, cabled to the 2960's Gi0/2) and what hangs off it.
STACK_MEMBER_MACS = ("00:22:bd:00:10:00", "00:22:bd:00:20:00")  # each member's base MAC; the master's is the stack's
STACK_SERIALS = ("FDO1611X1AA", "FDO1612X2CC")
C2960_SERIAL = "FOC1234X0AB"
SRV_APP3, SRV_APP3_BRIDGE = "52:54:00:20:00:51", "fe:54:00:20:00:51"  # lldpd's chassis id (eth0) and br0's MAC
WAN_RTR = "00:3a:7d:00:00:01"
IOS_2960_BANNER = ("Cisco IOS Software, C2960 Software (C2960-LANBASEK9-M), Version 12.2(55)SE12, RELEASE SOFTWARE "
                   "(fc2)\r\nTechnical Support: http://www.cisco.com/techsupport\r\nCopyright (c) 1986-2017 by Cisco "
                   "Systems, Inc.\r\nCompiled Thu 02-Feb-17 11:36 by prod_rel_team")
STACK_DESCR = ("Cisco IOS Software, C3750E Software (C3750E-UNIVERSALK9-M), Version 15.0(2)SE11, RELEASE SOFTWARE "
               "(fc3)\r\nTechnical Support: http://www.cisco.com/techsupport\r\nCopyright (c) 1986-2017 by Cisco "
               "Systems, Inc.\r\nCompiled Sat 19-Aug-17 09:34 by prod_rel_team")


def hexs(text: str | bytes) -> str:
    return (text.encode() if isinstance(text, str) else text).hex()


def mac_hex(mac: str) -> str:
    return mac.replace(":", "")


def mac_index(mac: str) -> str:
    return ".".join(str(int(part, 16)) for part in mac.split(":"))


def ip_hex(address: str) -> str:
    return "".join(f"{int(part):02x}" for part in address.split("."))


class Recording:
    """Rows of one device, written sorted by OID (snmpsim walks the file in order)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, ...], str] = {}

    def add(self, oid: str, tag: str, value: object) -> None:
        key = tuple(int(n) for n in oid.split("."))
        assert key not in self.rows, oid
        text = str(value)
        assert "\n" not in text and "\r" not in text, f"{oid}: a line break needs the 4x tag"
        self.rows[key] = f"{oid}|{tag}|{text}"

    def text(self, value: str) -> tuple[str, str]:
        """A text value: as is when printable ASCII without '|', else hex (snmprec reads a line, split at '|')."""
        if value.isascii() and value.isprintable() and "|" not in value:
            return "4", value
        return "4x", hexs(value)

    def system(self, descr: str, object_id: str, uptime: int, contact: str, name: str, location: str) -> None:
        for column, value in ((1, descr), (4, contact), (5, name), (6, location)):
            self.add(f"1.3.6.1.2.1.1.{column}.0", *self.text(value))
        self.add("1.3.6.1.2.1.1.2.0", "6", object_id)
        self.add("1.3.6.1.2.1.1.3.0", "67", uptime)
        self.add("1.3.6.1.2.1.1.7.0", "2", 6)  # sysServices: datalink + internet

    def interface(self, index: int, name: str, descr: str, if_type: int, mbps: int, mac: str | None,
                  oper: int = 1, alias: str = "", admin: int = 1) -> None:
        self.add(f"1.3.6.1.2.1.2.2.1.1.{index}", "2", index)
        self.add(f"1.3.6.1.2.1.2.2.1.2.{index}", *self.text(descr))
        self.add(f"1.3.6.1.2.1.2.2.1.3.{index}", "2", if_type)
        self.add(f"1.3.6.1.2.1.2.2.1.5.{index}", "66", min(mbps * 1_000_000, 4_294_967_295))
        self.add(f"1.3.6.1.2.1.2.2.1.6.{index}", *(("4x", mac_hex(mac)) if mac else ("4", "")))
        self.add(f"1.3.6.1.2.1.2.2.1.7.{index}", "2", admin)
        self.add(f"1.3.6.1.2.1.2.2.1.8.{index}", "2", oper)
        self.add(f"1.3.6.1.2.1.31.1.1.1.1.{index}", *self.text(name))
        self.add(f"1.3.6.1.2.1.31.1.1.1.15.{index}", "66", mbps)
        self.add(f"1.3.6.1.2.1.31.1.1.1.18.{index}", *self.text(alias))

    def ip_address(self, address: str, if_index: int, mask: str) -> None:
        """ipAddrTable (the IPv4-only table these switch generations serve; no ipAddressTable)."""
        self.add(f"1.3.6.1.2.1.4.20.1.1.{address}", "64x", ip_hex(address))
        self.add(f"1.3.6.1.2.1.4.20.1.2.{address}", "2", if_index)
        self.add(f"1.3.6.1.2.1.4.20.1.3.{address}", "64x", ip_hex(mask))

    def arp(self, if_index: int, address: str, mac: str, kind: int = 3) -> None:
        """ipNetToMediaTable: dynamic(3), static(4), invalid(2)."""
        self.add(f"1.3.6.1.2.1.4.22.1.1.{if_index}.{address}", "2", if_index)
        self.add(f"1.3.6.1.2.1.4.22.1.2.{if_index}.{address}", "4x", mac_hex(mac))
        self.add(f"1.3.6.1.2.1.4.22.1.3.{if_index}.{address}", "64x", ip_hex(address))
        self.add(f"1.3.6.1.2.1.4.22.1.4.{if_index}.{address}", "2", kind)

    def bridge_ports(self, ports: dict[int, int]) -> None:
        """dot1dBasePortTable: bridge port -> ifIndex."""
        self.add("1.3.6.1.2.1.17.1.2.0", "2", len(ports))  # dot1dBaseNumPorts
        for port, if_index in ports.items():
            self.add(f"1.3.6.1.2.1.17.1.4.1.1.{port}", "2", port)
            self.add(f"1.3.6.1.2.1.17.1.4.1.2.{port}", "2", if_index)

    def fdb(self, mac: str, port: int, status: int = 3) -> None:
        """dot1dTpFdbTable, indexed by the MAC: learned(3), self(4), mgmt(5)."""
        self.add(f"1.3.6.1.2.1.17.4.3.1.1.{mac_index(mac)}", "4x", mac_hex(mac))
        self.add(f"1.3.6.1.2.1.17.4.3.1.2.{mac_index(mac)}", "2", port)
        self.add(f"1.3.6.1.2.1.17.4.3.1.3.{mac_index(mac)}", "2", status)

    def qfdb(self, fdb_id: int, mac: str, port: int, status: int = 3) -> None:
        """dot1qTpFdbTable, indexed by dot1qFdbId and the MAC (no dot1qTpFdbAddress column: it is the index)."""
        self.add(f"1.3.6.1.2.1.17.7.1.2.2.1.2.{fdb_id}.{mac_index(mac)}", "2", port)
        self.add(f"1.3.6.1.2.1.17.7.1.2.2.1.3.{fdb_id}.{mac_index(mac)}", "2", status)

    def lldp_local(self, chassis_mac: str, name: str, descr: str, ports: dict[int, tuple[int, str, str]]) -> None:
        """lldpLocalSystemData and lldpLocPortTable: port number -> (id subtype, id, description)."""
        self.add("1.0.8802.1.1.2.1.3.1.0", "2", 4)  # macAddress(4)
        self.add("1.0.8802.1.1.2.1.3.2.0", "4x", mac_hex(chassis_mac))
        self.add("1.0.8802.1.1.2.1.3.3.0", *self.text(name))
        self.add("1.0.8802.1.1.2.1.3.4.0", *self.text(descr))
        for number, (subtype, port_id, port_descr) in ports.items():
            self.add(f"1.0.8802.1.1.2.1.3.7.1.2.{number}", "2", subtype)
            self.add(f"1.0.8802.1.1.2.1.3.7.1.3.{number}", *self.text(port_id))
            self.add(f"1.0.8802.1.1.2.1.3.7.1.4.{number}", *self.text(port_descr))

    def lldp_remote(self, local_port: int, rem_index: int, chassis_mac: str, port_subtype: int, port_id: str,
                    port_descr: str, name: str, descr: str, enabled: str, management: str | None) -> None:
        """lldpRemTable (timeMark 0) and lldpRemManAddrTable: one neighbour on one local port."""
        index = f"0.{local_port}.{rem_index}"
        base = "1.0.8802.1.1.2.1.4.1.1"
        self.add(f"{base}.4.{index}", "2", 4)
        self.add(f"{base}.5.{index}", "4x", mac_hex(chassis_mac))
        self.add(f"{base}.6.{index}", "2", port_subtype)
        if port_subtype == 3:  # macAddress: the id is the MAC's six octets
            self.add(f"{base}.7.{index}", "4x", mac_hex(port_id))
        else:
            self.add(f"{base}.7.{index}", *self.text(port_id))
        self.add(f"{base}.8.{index}", *self.text(port_descr))
        self.add(f"{base}.9.{index}", *self.text(name))
        self.add(f"{base}.10.{index}", *self.text(descr))
        self.add(f"{base}.11.{index}", "4x", enabled)  # lldpRemSysCapSupported: as enabled, for brevity
        self.add(f"{base}.12.{index}", "4x", enabled)
        if management:
            man = f"1.0.8802.1.1.2.1.4.2.1.3.{index}.1.4.{management}"
            self.add(man, "2", 2)  # lldpRemManAddrIfSubtype: ifIndex(2)

    def entity(self, index: int, kind: int, contained_in: int, name: str, position: int = 0, model: str = "",
               serial: str = "", software: str = "", hardware: str = "", maker: str = "", fru: bool = False) -> None:
        """One entPhysicalEntry, every column as IOS fills it (most of them never read by Karta: the walk
        reads entPhysicalContainedIn and entPhysicalClass of every row, then the text of the chassis rows)."""
        base = "1.3.6.1.2.1.47.1.1.1.1"
        self.add(f"{base}.2.{index}", *self.text(name))  # entPhysicalDescr
        self.add(f"{base}.3.{index}", "6", "1.3.6.1.4.1.9.12.3.1.3.1" if kind == ENT_CHASSIS else "0.0")
        self.add(f"{base}.4.{index}", "2", contained_in)
        self.add(f"{base}.5.{index}", "2", kind)
        self.add(f"{base}.6.{index}", "2", position)
        self.add(f"{base}.7.{index}", *self.text(name))  # entPhysicalName
        self.add(f"{base}.8.{index}", *self.text(hardware))
        self.add(f"{base}.9.{index}", "4", "")
        self.add(f"{base}.10.{index}", *self.text(software))
        self.add(f"{base}.11.{index}", *self.text(serial))
        self.add(f"{base}.12.{index}", *self.text(maker))
        self.add(f"{base}.13.{index}", *self.text(model))
        self.add(f"{base}.14.{index}", "4", "")
        self.add(f"{base}.15.{index}", "4", "")
        self.add(f"{base}.16.{index}", "2", 1 if fru else 2)  # entPhysicalIsFRU: true(1), false(2)

    def cdp(self, if_index: int, device_index: int, address: str, version: str, device_id: str, port: str,
            platform: str, capabilities: int) -> None:
        """One cdpCacheEntry (CISCO-CDP-MIB): the columns Karta reads and three it does not."""
        index = f"{if_index}.{device_index}"
        base = "1.3.6.1.4.1.9.9.23.1.2.1.1"
        self.add(f"{base}.3.{index}", "2", 1)  # cdpCacheAddressType: ip(1)
        self.add(f"{base}.4.{index}", "4x", ip_hex(address))
        self.add(f"{base}.5.{index}", *self.text(version))
        self.add(f"{base}.6.{index}", *self.text(device_id))
        self.add(f"{base}.7.{index}", *self.text(port))
        self.add(f"{base}.8.{index}", *self.text(platform))
        self.add(f"{base}.9.{index}", "4x", f"{capabilities:08x}")
        self.add(f"{base}.10.{index}", "4", "")  # cdpCacheVTPMgmtDomain
        self.add(f"{base}.11.{index}", "2", 1)  # cdpCacheNativeVLAN
        self.add(f"{base}.12.{index}", "2", 3)  # cdpCacheDuplex: fullduplex(3)

    def render(self) -> str:
        return "".join(self.rows[key] + "\n" for key in sorted(self.rows))


def juniper_ex2200() -> str:
    """ex-core: a Juniper EX2200-24T-4G (JUNOS 12.3, non-ELS), the estate's router (vlan.0 10.20.0.1/24).

    As Junos fills the tables: dot1dBasePortIfIndex names the logical unit (ge-0/0/5.0, ifType 53), not the
    port; dot1qTpFdbTable is indexed by an internal filtering database id (here 2 for VLAN default and 3 for
    VLAN voice), not the VLAN tag; the LLDP port id is subtype local(7) carrying the port's ifIndex as a number,
    its name in the port description."""
    r = Recording()
    r.system(EX_DESCR, "1.3.6.1.4.1.2636.1.1.1.2.43", 123_456_789, "noc@example.net", "ex-core",
             "DC1 row A rack 3")
    ports = (0, 1, 2, 3, 4, 5, 22, 23)
    aliases = {5: "srv-db1 eth0", 22: "uplink procurve-floor2", 23: "uplink c2960-access1"}
    down = {0, 1, 2, 4}
    for n in ports:
        name = f"ge-0/0/{n}"
        mac = f"28:8a:1c:e0:00:{n + 3:02x}"
        r.interface(501 + n, name, name, 6, 1000, mac, oper=2 if n in down else 1, alias=aliases.get(n, ""))
        r.interface(531 + n, f"{name}.0", f"{name}.0", 53, 1000, mac, oper=2 if n in down else 1)
    r.interface(600, "vlan", "vlan", 6, 1000, EX_VLAN_MAC)
    r.interface(601, "vlan.0", "vlan.0", 53, 1000, EX_VLAN_MAC)
    r.ip_address("10.20.0.1", 601, "255.255.255.0")
    r.arp(601, "10.20.0.2", C2960_VLAN_MAC)
    r.arp(601, "10.20.0.3", PROCURVE_MAC)
    r.arp(601, "10.20.0.11", SRV_DB1)
    r.arp(601, "10.20.0.21", SRV_WEB1)
    r.arp(601, "10.20.0.31", PRINTER)
    r.arp(601, "10.20.0.99", "52:54:00:20:00:99", kind=2)  # invalid: left out
    bridge = {i + 1: 531 + n for i, n in enumerate(ports)}  # bridge port -> the logical unit's ifIndex
    r.bridge_ports(bridge)
    port_of = {n: i + 1 for i, n in enumerate(ports)}
    r.qfdb(2, SRV_DB1, port_of[5])
    r.qfdb(3, SRV_DB1, port_of[5])  # the same host in the voice VLAN too: one port, two entries
    r.qfdb(2, STORE3, port_of[3])
    for mac in (PROCURVE_MAC, SRV_WEB1, WEB2, PRINTER):
        r.qfdb(2, mac, port_of[22])
    for mac in (C2960_VLAN_MAC, "00:1b:2b:aa:00:19", APP1, APP2):
        r.qfdb(2, mac, port_of[23])
    r.qfdb(3, PHONE, port_of[23])
    r.qfdb(2, EX_VLAN_MAC, 0, status=4)  # self: the switch's own MAC
    r.lldp_local(EX_CHASSIS, "ex-core", EX_DESCR, {501 + n: (7, str(501 + n), f"ge-0/0/{n}") for n in ports})
    r.lldp_remote(506, 1, SRV_DB1, 3, SRV_DB1, "eth0", "srv-db1", LINUX_DESCR, BITS_STATION, "10.20.0.11")
    r.lldp_remote(523, 2, PROCURVE_MAC, 7, "25", "25", HOSTILE_NAME, HOSTILE_DESCR, BITS_BRIDGE, "10.20.0.3")
    return r.render()


def cisco_c2960() -> str:
    """c2960-access1: a Cisco Catalyst WS-C2960-24TT-L (IOS 12.2(55)SE, LAN Base), trimmed to Fa0/1-8 and the
    two Gigabit uplinks. CDP only, as shipped (no LLDP-MIB rows); BRIDGE-MIB dot1dTpFdbTable of VLAN 1, the
    table IOS serves to the plain community (other VLANs need community@vlan); IOS numbers bridge ports by the
    port's position and ifIndex 10001+ for FastEthernet, 10101+ for GigabitEthernet; Vlan1 carries the base
    MAC + 0x40. No ipAddressTable (IOS 12.2 serves ipAddrTable only)."""
    r = Recording()
    r.system(IOS_2960_BANNER, "1.3.6.1.4.1.9.1.716", 98_765_432, "noc@example.net", "c2960-access1",
             "Building 1, floor 1 IDF")
    r.interface(1, "Vl1", "Vlan1", 53, 1000, C2960_VLAN_MAC)
    aliases = {1: "app1", 2: "desk 2 phone+pc", 3: "srv-db1 eth1 (bond)"}
    for n in range(1, 9):
        r.interface(10000 + n, f"Fa0/{n}", f"FastEthernet0/{n}", 6, 100, f"00:1b:2b:aa:00:{n:02x}",
                    oper=1 if n <= 4 else 2, alias=aliases.get(n, ""))
    r.interface(10101, "Gi0/1", "GigabitEthernet0/1", 6, 1000, "00:1b:2b:aa:00:19", alias="uplink ex-core ge-0/0/23")
    r.interface(10102, "Gi0/2", "GigabitEthernet0/2", 6, 1000, "00:1b:2b:aa:00:1a", alias="dist-stack Gi1/0/1")
    r.interface(10501, "Nu0", "Null0", 1, 0, None)
    r.ip_address("10.20.0.2", 1, "255.255.255.0")
    r.arp(1, "10.20.0.1", EX_VLAN_MAC)
    r.bridge_ports({**{n: 10000 + n for n in range(1, 9)}, 25: 10101, 26: 10102})
    r.fdb(APP1, 1)  # an access port, one MAC: a host nobody announced (no CI from a forwarding entry alone)
    r.fdb(APP2, 2)  # a desk: a phone and the PC behind it, two MACs on one port
    r.fdb(PHONE, 2)
    r.fdb(SRV_DB1, 3)  # srv-db1's second bond leg: the only sign of that cable (CDP only here)
    r.fdb("52:54:00:20:00:44", 4, status=5)  # a static (mgmt) entry: says nothing about cabling
    for mac in (EX_VLAN_MAC, "28:8a:1c:e0:00:1a", PROCURVE_MAC, SRV_WEB1, WEB2, STORE3, PRINTER):
        r.fdb(mac, 25)  # the uplink: everything behind the core, srv-web1 among them
    r.fdb(C2960_VLAN_MAC, 0, status=4)
    # ENTITY-MIB: the chassis (serial, model, software; IOS leaves entPhysicalMfgName empty), its power supply,
    # the ten ports, and an SFP in Gi0/1's slot: a module with a serial of its own, which names no device.
    r.entity(1, ENT_CHASSIS, 0, "WS-C2960-24TT-L", model="WS-C2960-24TT-L", serial=C2960_SERIAL,
             software="12.2(55)SE12", hardware="V05", fru=True)
    r.entity(2, ENT_PSU, 1, "Switch 1 - Power Supply 0", position=0)
    ports = [f"FastEthernet0/{n}" for n in range(1, 9)] + ["GigabitEthernet0/1", "GigabitEthernet0/2"]
    for position, name in enumerate(ports, 1):
        r.entity(2 + position, ENT_PORT, 1 if position <= 8 else 12 + position, name, position=position)
    r.entity(21, ENT_CONTAINER, 1, "GigabitEthernet0/1 Container", position=9)
    r.entity(22, ENT_CONTAINER, 1, "GigabitEthernet0/2 Container", position=10)
    r.entity(23, ENT_MODULE, 21, "1000BaseSX SFP", model="GLC-SX-MMD", serial="AGM1234ABCD", hardware="V01",
             maker="CISCO-AVAGO", fru=True)
    # CDP: srv-db1's lldpd answers the Catalyst's CDP on its bond's second leg (lldpd's smart mode), a phone on
    # the desk port, the 3750-X stack on the other uplink
    r.cdp(10003, 1, "10.20.0.11", LINUX_DESCR, "srv-db1", "eth1", "Linux", CDP_HOST)
    r.cdp(10002, 2, "10.20.0.142", "SCCP42.9-4-2SR3-1S", "SEP001BD4000042", "Port 1", "Cisco IP Phone 7942",
          CDP_PHONE)
    r.cdp(10102, 3, "10.20.0.4", STACK_DESCR, "dist-stack", "GigabitEthernet1/0/1", "cisco WS-C3750X-48T-S",
          CDP_L3_SWITCH)
    return r.render()


def hp_procurve() -> str:
    """procurve-floor2: an HP ProCurve 2610-24 (J9085A, firmware R.11) style edge switch, ports 1-8 and the
    Gigabit uplink 25 (26 unused). ProCurve names a port by its number (ifName/ifDescr "3"), numbers bridge and
    LLDP ports the same, and indexes dot1qTpFdbTable by the VLAN id. Its operator-written text is hostile:
    markup, quotes, terminal escapes and control characters, a 300-character name."""
    r = Recording()
    r.system(HOSTILE_DESCR, "1.3.6.1.4.1.11.2.3.7.11.76", 55_555_555, 'ops@example.net"; DROP TABLE cis; --',
             HOSTILE_NAME, "Floor 2 \x1b[31mred\x1b[0m closet\x07 'B'")
    aliases = {3: "srv-web1 <img src=x onerror=alert(1)>", 4: "\"desk 4\" & 'co'",
               5: "printer\x00nul\x1b[2Jclear\ttab", 6: "phone " + "y" * 294, 25: "uplink ex-core"}
    for n in (*range(1, 9), 25, 26):
        r.interface(n, str(n), str(n), 6, 1000 if n > 24 else 100, f"00:1f:fe:c0:00:{n:02x}",
                    oper=2 if n in (7, 8, 26) else 1, alias=aliases.get(n, ""))
    r.interface(33, "DEFAULT_VLAN", "DEFAULT_VLAN", 53, 0, PROCURVE_MAC)
    r.ip_address("10.20.0.3", 33, "255.255.255.0")
    r.arp(33, "10.20.0.1", EX_VLAN_MAC)
    r.bridge_ports({n: n for n in (*range(1, 9), 25, 26)})
    r.qfdb(1, SRV_WEB1, 3)
    r.qfdb(1, WEB2, 4)
    r.qfdb(1, PRINTER, 5)
    for mac in (EX_VLAN_MAC, "28:8a:1c:e0:00:19", C2960_VLAN_MAC, SRV_DB1, APP1, APP2, PHONE):
        r.qfdb(1, mac, 25)
    r.add("1.3.6.1.2.1.17.7.1.2.2.1.2.1.0.31.254.192.0.300", "2", 5)  # a malformed index (300 is no octet)
    r.add("1.3.6.1.2.1.17.7.1.2.2.1.3.1.0.31.254.192.0.300", "2", 3)
    r.lldp_local(PROCURVE_MAC, HOSTILE_NAME, HOSTILE_DESCR,
                 {n: (7, str(n), str(n)) for n in (*range(1, 9), 25, 26)})
    r.lldp_remote(3, 1, SRV_WEB1, 3, SRV_WEB1, "ens3", "srv-web1",
                  "Ubuntu 22.04.4 LTS Linux 5.15.0-105-generic #115-Ubuntu SMP x86_64", BITS_STATION, "10.20.0.21")
    r.lldp_remote(6, 2, "00:1b:d4:00:00:66", 3, "00:1b:d4:00:00:66", "Port 1", "SEP001BD4000066",
                  "Cisco IP Phone 7942", BITS_PHONE, None)  # a phone announcing itself: no server
    r.lldp_remote(25, 3, EX_CHASSIS, 7, "523", "ge-0/0/22", "ex-core", EX_DESCR, BITS_BRIDGE_ROUTER, "10.20.0.1")
    # ENTITY-MIB: a chassis whose serial is all zeros (names nothing: the switch stays known by its MAC) and
    # whose model and software text carry markup and terminal escapes; ten ports
    r.entity(1, ENT_CHASSIS, 0, "ProCurve J9085A Switch 2610-24", model=HOSTILE_MODEL, serial="0000000000",
             software="R.11.72\r\n\x1b[5m", maker="HP", fru=True)
    for position, n in enumerate((*range(1, 9), 25, 26), 1):
        r.entity(100 + n, ENT_PORT, 1, str(n), position=position)
    return r.render()


def _stack(master: int) -> str:
    """dist-stack: a Cisco Catalyst 3750-X stack of two WS-C3750X-48T-S (IOS 15.0(2)SE11) whose master is
    member ``master``: the stack's MAC (LLDP's local chassis id) is the master's base MAC, so it changes when
    the master does (no "stack-mac persistent timer"), the rest stays. Runs CDP and LLDP ("lldp run").

    ENTITY-MIB as IOS fills it for a stack: entity 1 the stack (class stack, in nothing), each member a chassis
    in it (1001, 2001) with its power supply, fan, three sensors, 48 ports, the network module's slot, the
    module (a serial of its own) and its four SFP ports: 121 entities of 15 columns, of which the walk reads
    two columns of each and the text of the two chassis. Ports Gi1/0/1-4 and Gi2/0/1-4 only in ifTable
    (IOS numbers member n's ports 10101 + 500 (n - 1) on)."""
    r = Recording()
    r.system(STACK_DESCR, "1.3.6.1.4.1.9.1.516", 45_678_901 if master == 1 else 1_234, "noc@example.net",
             "dist-stack", "Building 1, basement MDF")
    stack_mac = STACK_MEMBER_MACS[master - 1]
    r.interface(1, "Vl1", "Vlan1", 53, 1000, "00:22:bd:00:10:40")
    for member in (1, 2):
        for port in range(1, 5):
            r.interface(10100 + 500 * (member - 1) + port, f"Gi{member}/0/{port}", f"GigabitEthernet{member}/0/{port}",
                        6, 1000, f"00:22:bd:00:{member}0:{port:02x}", oper=1 if port <= 3 else 2)
    r.ip_address("10.20.0.4", 1, "255.255.255.0")
    r.arp(1, "10.20.0.2", C2960_VLAN_MAC)
    r.arp(1, "10.20.0.51", SRV_APP3_BRIDGE)  # srv-app3's address is on its bridge br0, not on eth0
    r.arp(1, "10.20.0.254", "00:3a:7d:00:00:02")  # wan-rtr1's Gi0/0
    r.entity(1, ENT_STACK, 0, "c37xx Stack")
    for member in (1, 2):
        top = 1000 * member
        r.entity(top + 1, ENT_CHASSIS, 1, f"Switch {member}", position=member, model="WS-C3750X-48T-S",
                 serial=STACK_SERIALS[member - 1], software="15.0(2)SE11", hardware="V02", fru=True)
        r.entity(top + 2, ENT_PSU, top + 1, f"Switch {member} - Power Supply 0", model="C3KX-PWR-350WAC",
                 serial=f"DTN1611{member}ABC", fru=True)
        r.entity(top + 3, ENT_FAN, top + 1, f"Switch {member} - FAN 1", model="C3KX-FAN-23CFM", fru=True)
        for sensor in range(1, 4):
            r.entity(top + 3 + sensor, ENT_SENSOR, top + 1, f"Switch {member} - Temp Sensor {sensor}")
        for port in range(1, 49):
            r.entity(top + 6 + port, ENT_PORT, top + 1, f"GigabitEthernet{member}/0/{port}", position=port)
        r.entity(top + 55, ENT_CONTAINER, top + 1, f"Switch {member} - FRULink Slot 1")
        r.entity(top + 56, ENT_MODULE, top + 55, f"Switch {member} - C3KX-NM-1G", model="C3KX-NM-1G",
                 serial=f"FDO1611Y{member}BB", fru=True)
        for port in range(1, 5):
            r.entity(top + 56 + port, ENT_PORT, top + 56, f"GigabitEthernet{member}/1/{port}", position=port)
    ports = {10100 + 500 * (member - 1) + port: f"Gi{member}/0/{port}" for member in (1, 2) for port in range(1, 5)}
    r.lldp_local(stack_mac, "dist-stack", STACK_DESCR, {n: (5, name, name) for n, name in ports.items()})
    r.lldp_remote(10102, 1, SRV_APP3, 3, SRV_APP3, "eth0", "srv-app3", LINUX_DESCR, BITS_STATION, "10.20.0.51")
    r.lldp_remote(10601, 2, WAN_RTR, 5, "Gi0/0", "GigabitEthernet0/0", "wan-rtr1.example.net",
                  "Cisco IOS Software [Fuji], ISR Software (X86_64_LINUX_IOSD-UNIVERSALK9-M), Version 16.9.4",
                  BITS_ROUTER, "10.20.0.254")
    # CDP: the 2960 (CDP only) on Gi1/0/1; srv-app3 and wan-rtr1 by CDP too (the same neighbours LLDP shows);
    # a phone; an access point no walk reaches (a network device CDP alone names: left out)
    r.cdp(10101, 1, "10.20.0.2", IOS_2960_BANNER, "c2960-access1", "GigabitEthernet0/2", "cisco WS-C2960-24TT-L",
          CDP_SWITCH)
    r.cdp(10102, 2, "10.20.0.51", LINUX_DESCR, "srv-app3", "eth0", "Linux", CDP_HOST)
    r.cdp(10601, 3, "10.20.0.254", "Cisco IOS Software [Fuji], ISR Software, Version 16.9.4", "wan-rtr1.example.net",
          "GigabitEthernet0/0", "cisco ISR4331/K9", 0x29)
    r.cdp(10602, 4, "10.20.0.177", "SCCP42.9-4-2SR3-1S", "SEP001BD4000077", "Port 1", "Cisco IP Phone 7942", CDP_PHONE)
    r.cdp(10603, 5, "10.20.0.60", "Cisco IOS Software, C3700 Software (AP3G2-K9W7-M), Version 15.3(3)JF5",
          "ap-floor1", "GigabitEthernet0.1", "cisco AIR-CAP3702I-E-K9", CDP_AP)
    return r.render()


def cisco_stack() -> str:
    return _stack(master=1)


def cisco_stack_failover() -> str:
    """dist-stack after member 1 reloaded: member 2 is master, so the stack's MAC is member 2's."""
    return _stack(master=2)


RECORDINGS = {"juniper-ex2200.snmprec": juniper_ex2200, "cisco-c2960.snmprec": cisco_c2960,
              "hp-procurve.snmprec": hp_procurve, "cisco-3750x-stack.snmprec": cisco_stack,
              "cisco-3750x-stack-failover.snmprec": cisco_stack_failover}


def main() -> int:
    for name, build in RECORDINGS.items():
        (HERE / name).write_text(build(), encoding="utf-8", newline="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
