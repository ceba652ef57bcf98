"""Parse step: the varbinds of one device walk -> DeviceFacts. Pure: no I/O, no pysnmp.

A walk is a mapping ``{oid tuple: value}`` where a value is what client.py turned pysnmp's types into:
``int`` (INTEGER, Counter, Gauge, TimeTicks), ``bytes`` (OCTET STRING, IpAddress) or ``str`` (an
OBJECT IDENTIFIER, dotted). Tests feed it recorded walks.

Everything a device says is hostile: text is cleaned and capped (sanitize.py), a MAC must be six
bytes and not all zeros or broadcast, an address must parse, an index that does not fit its table's
shape is skipped, and every list is capped, so a device that answers a million rows or garbage costs
the batch nothing but a warning (and a cut list makes the walk partial: DeviceFacts.truncated).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from app.services.identifiers import normalize
from discovery.sanitize import MAX_LIST, clean_text
from discovery.snmp import oids
from discovery.snmp.models import (
    ArpEntry,
    CdpNeighbour,
    Chassis,
    DeviceAddress,
    DeviceFacts,
    DeviceInterface,
    ForwardingEntry,
    LldpNeighbour,
)
from discovery.snmp.oids import Oid

Walk = Mapping[Oid, int | bytes | str]

IF_STATUS = {1: "up", 2: "down", 3: "testing", 4: "unknown", 5: "dormant", 6: "notPresent", 7: "lowerLayerDown"}
# LLDP-MIB LldpSystemCapabilitiesMap: bit 0 is the first octet's most significant bit.
CAPABILITIES = ("other", "repeater", "bridge", "wlan_access_point", "router", "telephone", "docsis_cable_device",
                "station")
CHASSIS_MAC, PORT_MAC = 4, 3  # LldpChassisIdSubtype macAddress(4), LldpPortIdSubtype macAddress(3)
PORT_NAMES = (1, 5, 7)  # LldpPortIdSubtype interfaceAlias(1), interfaceName(5), local(7)
PORT_LOCAL = 7
FDB_LEARNED = 3  # dot1dTpFdbStatus learned(3); self(4) is the device's own MAC, mgmt(5) a static entry
ARP_INVALID = 2
# CDP capability bits (cdpCacheCapabilities, four octets, the CDP spec's order) as LLDP's names: a switch or
# a source-route bridge is a bridge, a host a station, a phone a telephone; IGMP snooping says nothing.
CDP_CAPABILITIES = ((0x01, "router"), (0x02, "bridge"), (0x04, "bridge"), (0x08, "bridge"), (0x10, "station"),
                    (0x40, "repeater"), (0x80, "telephone"), (0x100, "other"), (0x200, "other"), (0x400, "other"))
CDP_ADDRESS_FAMILIES = {1: 1, 20: 2}  # CiscoNetworkProtocol ip(1), ipv6(20) -> InetAddressType ipv4(1), ipv6(2)
ENT_CHASSIS = 3  # PhysicalClass chassis(3)
MAX_CHASSIS = 16  # top-level chassis kept: a stack has 8 or 9 members, a Juniper virtual chassis 10
MAX_CONTAINMENT = 32  # steps up entPhysicalContainedIn followed: a loop or a deep chain costs no more


def column(walk: Walk, prefix: Oid) -> dict[Oid, int | bytes | str]:
    """The rows of one table column: {index: value}."""
    size = len(prefix)
    return {key[size:]: value for key, value in walk.items() if key[:size] == prefix and len(key) > size}


def text(value: object, limit: int = 255) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    cleaned = clean_text(value, limit).strip()
    return cleaned or None


def mac(value: object) -> str | None:
    """Six bytes -> "aa:bb:cc:dd:ee:ff"; None for anything else, all zeros or broadcast."""
    if not isinstance(value, bytes) or len(value) != 6 or value in (b"\0" * 6, b"\xff" * 6):
        return None
    return ":".join(f"{b:02x}" for b in value)


def _mac_from_index(index: Oid) -> str | None:
    if len(index) != 6 or any(not 0 <= n <= 255 for n in index):
        return None
    return mac(bytes(index))


def _address(family: int, raw: bytes | Oid) -> str | None:
    """An InetAddress (type 1 ipv4 / 2 ipv6, the zoned 3 and 4 skipped) as text. The unspecified address
    names no one: Windows lists 0.0.0.0 in ipAddrTable for an adapter without an address."""
    try:
        data = bytes(raw)
        if family == 1 and len(data) == 4:
            found: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(data)
        elif family == 2 and len(data) == 16:
            found = ipaddress.IPv6Address(data)
        else:
            return None
    except (ValueError, TypeError):
        return None
    return None if found.is_unspecified else str(found)


def _inet_index(index: Oid) -> tuple[int, str] | None:
    """``type.len.bytes`` at the start of an index -> (number of parts used, address)."""
    if len(index) < 2 or index[1] != len(index) - 2 or any(not 0 <= n <= 255 for n in index[2:]):
        return None
    address = _address(index[0], index[2:])
    return (len(index), address) if address else None


def _capped(facts: DeviceFacts, what: str, values: list, limit: int) -> list:
    """The first ``limit`` values. A cut list is said (a collector warning) and makes the walk partial
    (``truncated``): a complete run would end every edge the rows past the cut would have confirmed."""
    if len(values) > limit:
        facts.warnings.append(f"{len(values)} {what}, kept the first {limit}")
        facts.truncated.append(what)
    return values[:limit]


def parse_walk(target: str, walk: Walk) -> DeviceFacts:
    facts = DeviceFacts(target=target)
    _system(facts, walk)
    _entity(facts, walk)
    names = _interfaces(facts, walk)
    _addresses(facts, walk, names)
    _arp(facts, walk, names)
    _lldp(facts, walk, names)
    _cdp(facts, walk, names)
    _forwarding(facts, walk, names)
    if facts.chassis_mac is None:
        facts.chassis_mac = _base_mac(facts.interfaces)
    return facts


def _system(facts: DeviceFacts, walk: Walk) -> None:
    facts.system_name = text(walk.get(oids.SYS_NAME))
    facts.system_description = text(walk.get(oids.SYS_DESCR), 1024)
    object_id = walk.get(oids.SYS_OBJECT_ID)
    facts.object_id = object_id if isinstance(object_id, str) and len(object_id) <= 255 else None
    facts.vendor = oids.vendor_of(facts.object_id)
    uptime = walk.get(oids.SYS_UPTIME)
    facts.uptime_seconds = uptime // 100 if isinstance(uptime, int) and uptime >= 0 else None  # TimeTicks: 1/100 s
    facts.contact = text(walk.get(oids.SYS_CONTACT))
    facts.location = text(walk.get(oids.SYS_LOCATION))
    services = walk.get(oids.SYS_SERVICES)
    facts.services = services if isinstance(services, int) and 0 <= services <= 127 else None
    forwarding = walk.get(oids.IP_FORWARDING)
    facts.ip_forwarding = {1: True, 2: False}.get(forwarding) if isinstance(forwarding, int) else None
    facts.capabilities = _capabilities(walk.get(oids.LLDP_LOC_SYS_CAP_ENABLED))
    if walk.get(oids.LLDP_LOC_CHASSIS_SUBTYPE) == CHASSIS_MAC:
        facts.chassis_mac = mac(walk.get(oids.LLDP_LOC_CHASSIS_ID))


def top_chassis(walk: Walk) -> tuple[list[int], int]:
    """The entPhysicalIndex of each top-level chassis, in index order and capped at MAX_CHASSIS, and how
    many there were. Top-level: of class chassis and contained in no other chassis, however deep. A lone
    switch's chassis is contained in nothing (0); a stack's members are chassis contained in the stack
    entity (Cisco: 1001, 2001... in index 1, class stack); a chassis inside a chassis (a blade switch in
    a blade enclosure that shows it) is part of the outer one. client.py reads the text columns of these
    rows only, so this is all a 500-entity table costs beyond its two walked columns."""
    classes = {k[0]: v for k, v in column(walk, oids.ENT_PHYSICAL_CLASS).items() if len(k) == 1}
    parents = {k[0]: v for k, v in column(walk, oids.ENT_PHYSICAL_CONTAINED_IN).items()
               if len(k) == 1 and isinstance(v, int)}

    def inside_a_chassis(index: int) -> bool:
        seen = {index}
        parent = parents.get(index, 0)
        for _ in range(MAX_CONTAINMENT):
            if parent <= 0 or parent in seen:  # the top, or a loop a broken agent drew
                return False
            if classes.get(parent) == ENT_CHASSIS:
                return True
            seen.add(parent)
            parent = parents.get(parent, 0)
        return False

    found = sorted(i for i, kind in classes.items() if kind == ENT_CHASSIS and i > 0 and not inside_a_chassis(i))
    return found[:MAX_CHASSIS], len(found)


def serial(value: object) -> str | None:
    """A serial number that can name one device: cleaned text that the service would not drop as a
    placeholder (empty, "N/A", all zeros...: app.services.identifiers, the rule the service applies)."""
    cleaned = text(value)
    return cleaned if cleaned is not None and normalize("serial_number", cleaned) is not None else None


def _entity(facts: DeviceFacts, walk: Walk) -> None:
    """The top-level chassis and the device's serial number. A stack is one device (one agent, one
    name, one management address, one configuration: what Karta can poll and what fails as one; NetBox
    draws each member as a device of a virtual chassis, which an SNMP walk cannot tell apart by address
    or name) with a chassis per member: every member's serial is kept, and the
    device is known by the first member's, in entPhysicalIndex order (member 1 on Cisco, whichever is
    master: a master election changes the stack's MAC, never this), as LibreNMS's get_main_serial takes
    entPhysicalSerialNum of entity 1, else 1000, else 1001 (by class here, not by number, so any vendor's
    numbering works). A member without a usable serial is passed over. Replacing member 1 changes
    the serial: the device is then known anew, by its MAC when that stayed."""
    indexes, total = top_chassis(walk)
    if total > len(indexes):
        facts.warnings.append(f"{total} chassis, kept the first {len(indexes)}")
    for index in indexes:
        key = (index,)
        facts.chassis.append(Chassis(
            index, serial(walk.get(oids.ENT_PHYSICAL_SERIAL_NUM + key)),
            text(walk.get(oids.ENT_PHYSICAL_MODEL_NAME + key)), text(walk.get(oids.ENT_PHYSICAL_MFG_NAME + key)),
            text(walk.get(oids.ENT_PHYSICAL_SOFTWARE_REV + key))))
    facts.serial_number = next((c.serial_number for c in facts.chassis if c.serial_number), None)


def _status(value: object) -> str | None:
    return IF_STATUS.get(value) if isinstance(value, int) else None


def _interfaces(facts: DeviceFacts, walk: Walk) -> dict[int, str]:
    descr, if_name = column(walk, oids.IF_DESCR), column(walk, oids.IF_NAME)
    alias, phys = column(walk, oids.IF_ALIAS), column(walk, oids.IF_PHYS_ADDRESS)
    speed, high = column(walk, oids.IF_SPEED), column(walk, oids.IF_HIGH_SPEED)
    admin, oper, if_type = (column(walk, oids.IF_ADMIN_STATUS), column(walk, oids.IF_OPER_STATUS),
                            column(walk, oids.IF_TYPE))
    indexes = sorted({i[0] for i in (*descr, *if_name) if len(i) == 1 and i[0] > 0})
    indexes = _capped(facts, "interfaces", indexes, MAX_LIST)
    names: dict[int, str] = {}
    for index in indexes:
        key = (index,)
        name = text(if_name.get(key)) or text(descr.get(key)) or f"if{index}"
        high_speed = high.get(key)
        if isinstance(high_speed, int) and high_speed > 0:
            mbps = high_speed
        else:
            low = speed.get(key)
            mbps = low // 1_000_000 if isinstance(low, int) and low >= 1_000_000 else None
        kind = if_type.get(key)
        facts.interfaces.append(DeviceInterface(
            if_index=index, name=name, description=text(descr.get(key)), alias=text(alias.get(key)),
            mac=mac(phys.get(key)), speed_mbps=mbps, admin_status=_status(admin.get(key)),
            oper_status=_status(oper.get(key)), if_type=kind if isinstance(kind, int) else None))
        names[index] = name
    return names


def _prefix_length(pointer: object, address: str) -> int | None:
    """ipAddressPrefix points at a row of ipAddressPrefixTable: <column>.<ifIndex>.<type>.<len>.<prefix>.<length>.
    The length counts only when that prefix holds the address: an agent may point at zeroDotZero (0.0,
    unknown) or at garbage (net-snmp of 2007 on Linux 2.6 says 215.218.234.183/0 for 195.218.254.105: snmpsim's
    recorded linux-full-walk); then the length is unknown and ipAddrTable's mask may tell it."""
    if not isinstance(pointer, str):
        return None
    try:
        parts = oids.oid(pointer)
    except ValueError:
        return None
    size = len(oids.IP_ADDRESS_PREFIX_ENTRY)
    if parts[:size] != oids.IP_ADDRESS_PREFIX_ENTRY or len(parts) < size + 5:
        return None
    index, length = parts[size + 2:-1], parts[-1]  # past the column and the ifIndex; the length last
    parsed = _inet_index(index)
    if parsed is None or not 0 < length <= 128:
        return None
    try:
        prefix = ipaddress.ip_network(f"{parsed[1]}/{length}", strict=False)
    except ValueError:
        return None
    return length if ipaddress.ip_address(address) in prefix else None


def _addresses(facts: DeviceFacts, walk: Walk, names: dict[int, str]) -> None:
    seen: dict[str, DeviceAddress] = {}
    if_index, kinds, prefixes = (column(walk, oids.IP_ADDRESS_IF_INDEX), column(walk, oids.IP_ADDRESS_TYPE),
                                 column(walk, oids.IP_ADDRESS_PREFIX))
    for index, value in if_index.items():
        parsed = _inet_index(index)
        if parsed is None or kinds.get(index, 1) != 1:  # unicast only: broadcast and anycast name no device
            continue
        address = parsed[1]
        seen[address] = DeviceAddress(address, _prefix_length(prefixes.get(index), address),
                                      names.get(value) if isinstance(value, int) else None)
    masks = column(walk, oids.IP_AD_ENT_NETMASK)
    for index, value in column(walk, oids.IP_AD_ENT_IF_INDEX).items():
        address = _address(1, index)
        known = seen.get(address) if address else None
        if address is None or (known is not None and known.prefix_length is not None):
            continue
        mask = masks.get(index)
        length = None
        if isinstance(mask, bytes) and len(mask) == 4:
            try:
                length = ipaddress.IPv4Network(f"0.0.0.0/{ipaddress.IPv4Address(mask)}").prefixlen
            except ValueError:
                length = None
        if known is not None:  # the newer table's row, its length from the older one's mask
            seen[address] = DeviceAddress(address, length, known.interface)
            continue
        seen[address] = DeviceAddress(address, length, names.get(value) if isinstance(value, int) else None)
    facts.addresses = _capped(facts, "addresses", sorted(seen.values(), key=lambda a: (
        ipaddress.ip_address(a.address).version, ipaddress.ip_address(a.address))), MAX_LIST)


def _arp(facts: DeviceFacts, walk: Walk, names: dict[int, str]) -> None:
    seen: dict[str, ArpEntry] = {}
    kinds = column(walk, oids.IP_NET_TO_PHYSICAL_TYPE)
    for index, value in column(walk, oids.IP_NET_TO_PHYSICAL_PHYS).items():
        parsed = _inet_index(index[1:]) if index else None
        found = mac(value)
        if parsed is None or found is None or kinds.get(index) in (ARP_INVALID, 5):  # 5: local, the device itself
            continue
        seen.setdefault(parsed[1], ArpEntry(parsed[1], found, names.get(index[0])))
    kinds = column(walk, oids.IP_NET_TO_MEDIA_TYPE)
    for index, value in column(walk, oids.IP_NET_TO_MEDIA_PHYS).items():
        address = _address(1, index[1:]) if len(index) == 5 else None
        found = mac(value)
        if address is None or found is None or kinds.get(index) == ARP_INVALID:
            continue
        seen.setdefault(address, ArpEntry(address, found, names.get(index[0])))
    facts.arp = _capped(facts, "ARP entries", sorted(seen.values(), key=lambda e: (
        ipaddress.ip_address(e.address).version, ipaddress.ip_address(e.address))), MAX_LIST)


def _capabilities(value: object) -> tuple[str, ...]:
    if not isinstance(value, bytes) or not value:
        return ()
    return tuple(name for bit, name in enumerate(CAPABILITIES) if value[0] & (0x80 >> bit))


def _local_ports(walk: Walk, names: dict[int, str]) -> dict[int, str]:
    """lldpLocPortNum -> the device's interface name. lldpd and most vendors number ports by ifIndex;
    when the port's id or description names an interface, that name wins."""
    by_name = set(names.values())
    ports: dict[int, str] = {}
    descriptions = column(walk, oids.LLDP_LOC_PORT_DESC)
    for index, value in column(walk, oids.LLDP_LOC_PORT_ID).items():
        if len(index) != 1:
            continue
        candidates = [text(value), text(descriptions.get(index))]
        named = next((c for c in candidates if c in by_name), None)
        ports[index[0]] = named or names.get(index[0]) or candidates[0] or f"port{index[0]}"
    return ports


def _port_id_is_name(subtype: object, port_id: str | None, description: str | None) -> bool:
    """Whether the neighbour's port id names its port as people do. A locally assigned id that is only a
    number (Junos sends the port's ifIndex, "523") names nothing to a reader: its description
    ("ge-0/0/22") does, when there is one that is more than a number (a ProCurve's port 25 is "25" in both)."""
    if subtype not in PORT_NAMES:
        return False
    numbered = port_id is not None and port_id.isdigit()
    return not (subtype == PORT_LOCAL and numbered and description and not description.isdigit())


def _lldp(facts: DeviceFacts, walk: Walk, names: dict[int, str]) -> None:
    ports = _local_ports(walk, names)
    rows: dict[Oid, dict[int, int | bytes | str]] = {}
    for key, value in column(walk, oids.LLDP_REM).items():
        if len(key) == 4:  # column . timeMark . localPortNum . remIndex
            rows.setdefault(key[1:], {})[key[0]] = value
    management: dict[Oid, list[str]] = {}
    for key in column(walk, oids.LLDP_REM_MAN_ADDR_IF_SUBTYPE):
        # timeMark . localPortNum . remIndex . addrSubtype . len . address
        if len(key) >= 6 and key[4] == len(key) - 5:
            address = _address(key[3], key[5:])
            if address:
                management.setdefault(key[:3], []).append(address)
    neighbours = []
    for index, row in sorted(rows.items(), key=lambda item: item[0][1:]):
        raw_chassis = row.get(oids.LLDP_REM_CHASSIS_ID)
        chassis_mac = mac(raw_chassis) if row.get(oids.LLDP_REM_CHASSIS_SUBTYPE) == CHASSIS_MAC else None
        chassis_id = chassis_mac or text(raw_chassis)
        if chassis_id is None:
            continue
        raw_port = row.get(oids.LLDP_REM_PORT_ID)
        port_id = (mac(raw_port) if row.get(oids.LLDP_REM_PORT_SUBTYPE) == PORT_MAC else None) or text(raw_port)
        neighbours.append(LldpNeighbour(
            local_port=ports.get(index[1]) or names.get(index[1]) or f"port{index[1]}",
            chassis_id=chassis_id, chassis_mac=chassis_mac, port_id=port_id,
            port_description=text(row.get(oids.LLDP_REM_PORT_DESC)),
            port_id_is_name=_port_id_is_name(row.get(oids.LLDP_REM_PORT_SUBTYPE), port_id,
                                             text(row.get(oids.LLDP_REM_PORT_DESC))),
            system_name=text(row.get(oids.LLDP_REM_SYS_NAME)),
            system_description=text(row.get(oids.LLDP_REM_SYS_DESC), 1024),
            capabilities=_capabilities(row.get(oids.LLDP_REM_CAP_ENABLED)),
            management_addresses=tuple(sorted(set(management.get(index, [])))[:16])))
    facts.lldp = _capped(facts, "LLDP neighbours", neighbours, MAX_LIST)


def _cdp_capabilities(value: object) -> tuple[str, ...]:
    if not isinstance(value, bytes) or not 0 < len(value) <= 4:
        return ()
    bits = int.from_bytes(value, "big")
    return tuple(dict.fromkeys(name for bit, name in CDP_CAPABILITIES if bits & bit))


def _cdp(facts: DeviceFacts, walk: Walk, names: dict[int, str]) -> None:
    """cdpCacheTable: ifIndex.deviceIndex -> the neighbour on that port, its capabilities in LLDP's words."""
    rows: dict[Oid, dict[Oid, int | bytes | str]] = {}
    for prefix in oids.CDP_CACHE_COLUMNS:
        for index, value in column(walk, prefix).items():
            if len(index) == 2 and index[0] > 0:
                rows.setdefault(index, {})[prefix] = value
    neighbours = []
    for index, row in sorted(rows.items()):
        device_id = text(row.get(oids.CDP_CACHE_DEVICE_ID))
        if device_id is None:
            continue
        family, raw = CDP_ADDRESS_FAMILIES.get(row.get(oids.CDP_CACHE_ADDRESS_TYPE)), row.get(oids.CDP_CACHE_ADDRESS)
        neighbours.append(CdpNeighbour(
            local_port=names.get(index[0]) or f"if{index[0]}", system_name=device_id,
            port_name=text(row.get(oids.CDP_CACHE_DEVICE_PORT)),
            address=_address(family, raw) if family and isinstance(raw, bytes) else None,
            platform=text(row.get(oids.CDP_CACHE_PLATFORM)), version=text(row.get(oids.CDP_CACHE_VERSION), 1024),
            capabilities=_cdp_capabilities(row.get(oids.CDP_CACHE_CAPABILITIES))))
    facts.cdp = _capped(facts, "CDP neighbours", neighbours, MAX_LIST)


def _forwarding(facts: DeviceFacts, walk: Walk, names: dict[int, str]) -> None:
    """Learned entries only: the device's own MACs (self) and static ones say nothing about cabling."""
    port_if = {k[0]: v for k, v in column(walk, oids.DOT1D_BASE_PORT_IF_INDEX).items()
               if len(k) == 1 and isinstance(v, int)}
    facts.bridge_ports = sum(1 for v in port_if.values() if v in names)

    ports = set(names.values())

    def interface(port: object) -> str | None:
        if not isinstance(port, int) or port <= 0:
            return None
        name = names.get(port_if.get(port, -1))
        if name is None:
            return f"bridge-port{port}" if port not in port_if else None
        # Junos (EX, non-ELS) bridges a port's logical unit: the bridge port is ge-0/0/5.0, the cable and
        # LLDP's port ge-0/0/5. The unit's frames come in at its port, so the port is named.
        base, _, unit = name.rpartition(".")
        return base if unit.isdigit() and base in ports else name

    entries: dict[tuple[str, str, int | None], ForwardingEntry] = {}
    status = column(walk, oids.DOT1Q_TP_FDB_STATUS)
    for index, port in column(walk, oids.DOT1Q_TP_FDB_PORT).items():
        found, name = (_mac_from_index(index[1:]) if len(index) == 7 else None), interface(port)
        if found and name and status.get(index) == FDB_LEARNED:
            entries.setdefault((found, name, index[0]), ForwardingEntry(found, name, index[0]))
    if not entries:  # Q-BRIDGE, where present, holds the same entries per VLAN
        status = column(walk, oids.DOT1D_TP_FDB_STATUS)
        for index, port in column(walk, oids.DOT1D_TP_FDB_PORT).items():
            found, name = _mac_from_index(index), interface(port)
            if found and name and status.get(index) == FDB_LEARNED:
                entries.setdefault((found, name, None), ForwardingEntry(found, name))
    facts.forwarding = _capped(facts, "forwarding entries",
                               sorted(entries.values(), key=lambda e: (e.interface, e.mac, e.vlan or 0)), MAX_LIST * 4)


# Virtual router MACs, which every router of a redundancy group carries at once: VRRP/CARP (IPv4
# 00:00:5e:00:01:xx, IPv6 00:00:5e:00:02:xx, RFC 5798), HSRP v1 (00:00:0c:07:ac:xx), HSRP v2 (00:00:0c:9f:fx:xx).
VIRTUAL_MAC_PREFIXES = ("00:00:5e:00:01:", "00:00:5e:00:02:", "00:00:0c:07:ac:", "00:00:0c:9f:f")
BRIDGE_IF_TYPE = 209


def is_own_mac(value: str) -> bool:
    """A MAC that can name one device: unicast (a multicast MAC is a group's) and not a virtual router's."""
    return not int(value[:2], 16) & 1 and not value.startswith(VIRTUAL_MAC_PREFIXES)


def _base_mac(interfaces: list[DeviceInterface]) -> str | None:
    """Without an LLDP chassis MAC: the bridge interface's own MAC, else the lowest MAC among the device's
    Ethernet interfaces (the base MAC most switches derive their port MACs from). Virtual router and
    multicast MACs are left out first (two routers sharing a VRRP MAC would become one CI), then MACs on
    more than one interface (a bond's or a VLAN's borrowed MAC), unless nothing else is left: a router
    whose ports all carry its base MAC is still known by it. None when it has none: then nothing
    identifies it."""
    own = [i for i in interfaces if i.mac and is_own_mac(i.mac) and i.if_type in (6, 117, BRIDGE_IF_TYPE)]
    bridges = sorted(i.mac for i in own if i.if_type == BRIDGE_IF_TYPE)
    if bridges:
        return bridges[0]
    counts: dict[str, int] = {}
    for interface in own:
        counts[interface.mac] = counts.get(interface.mac, 0) + 1
    single = sorted(m for m, n in counts.items() if n == 1)
    return (single or sorted(counts) or [None])[0]
