"""The SNMP objects the agent reads, by number, and the vendors of common enterprise numbers.

Numeric OIDs only: the agent never loads MIB files (none ship with Debian's net-snmp for lack of a
free licence, and compiling them costs seconds per run). Each constant names its MIB object.
``TABLE_GROUPS`` are the subtrees one device walk reads, walked a group at a time.
"""

from __future__ import annotations

Oid = tuple[int, ...]


def oid(text: str) -> Oid:
    return tuple(int(part) for part in text.strip(".").split("."))


# SNMPv2-MIB system group (scalars, read with one GET).
SYS_DESCR = oid("1.3.6.1.2.1.1.1.0")
SYS_OBJECT_ID = oid("1.3.6.1.2.1.1.2.0")
SYS_UPTIME = oid("1.3.6.1.2.1.1.3.0")
SYS_CONTACT = oid("1.3.6.1.2.1.1.4.0")
SYS_NAME = oid("1.3.6.1.2.1.1.5.0")
SYS_LOCATION = oid("1.3.6.1.2.1.1.6.0")
SYS_SERVICES = oid("1.3.6.1.2.1.1.7.0")  # the OSI layers it serves: bit 2^(layer-1), datalink 2, internet 4
# IP-MIB ipForwarding: forwarding(1) for a router, notForwarding(2) for a host; read with the system group
IP_FORWARDING = oid("1.3.6.1.2.1.4.1.0")
SYSTEM = (SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_CONTACT, SYS_NAME, SYS_LOCATION, SYS_SERVICES, IP_FORWARDING)

# IF-MIB ifTable / ifXTable columns (index: ifIndex).
IF_DESCR = oid("1.3.6.1.2.1.2.2.1.2")
IF_TYPE = oid("1.3.6.1.2.1.2.2.1.3")
IF_SPEED = oid("1.3.6.1.2.1.2.2.1.5")
IF_PHYS_ADDRESS = oid("1.3.6.1.2.1.2.2.1.6")
IF_ADMIN_STATUS = oid("1.3.6.1.2.1.2.2.1.7")
IF_OPER_STATUS = oid("1.3.6.1.2.1.2.2.1.8")
IF_NAME = oid("1.3.6.1.2.1.31.1.1.1.1")
IF_HIGH_SPEED = oid("1.3.6.1.2.1.31.1.1.1.15")
IF_ALIAS = oid("1.3.6.1.2.1.31.1.1.1.18")

# IP-MIB: addresses (ipAddressTable, RFC 4293; ipAddrTable, the older IPv4-only one) and the
# neighbour (ARP/NDP) tables (ipNetToPhysicalTable; ipNetToMediaTable, the older IPv4-only one).
IP_ADDRESS_IF_INDEX = oid("1.3.6.1.2.1.4.34.1.3")  # index: addrType.len.addr
IP_ADDRESS_TYPE = oid("1.3.6.1.2.1.4.34.1.4")  # unicast(1) anycast(2) broadcast(3)
IP_ADDRESS_PREFIX = oid("1.3.6.1.2.1.4.34.1.5")  # pointer into ipAddressPrefixTable, ends in .prefixLength
IP_ADDRESS_PREFIX_ENTRY = oid("1.3.6.1.2.1.4.32.1")  # ipAddressPrefixEntry: what IP_ADDRESS_PREFIX points into
IP_AD_ENT_IF_INDEX = oid("1.3.6.1.2.1.4.20.1.2")  # index: a.b.c.d
IP_AD_ENT_NETMASK = oid("1.3.6.1.2.1.4.20.1.3")
IP_NET_TO_PHYSICAL_PHYS = oid("1.3.6.1.2.1.4.35.1.4")  # index: ifIndex.addrType.len.addr
IP_NET_TO_PHYSICAL_TYPE = oid("1.3.6.1.2.1.4.35.1.6")  # other(1) invalid(2) dynamic(3) static(4) local(5)
IP_NET_TO_MEDIA_PHYS = oid("1.3.6.1.2.1.4.22.1.2")  # index: ifIndex.a.b.c.d
IP_NET_TO_MEDIA_TYPE = oid("1.3.6.1.2.1.4.22.1.4")  # other(1) invalid(2) dynamic(3) static(4)

# LLDP-MIB (IEEE 802.1AB-2005, under iso.std.iso8802.ieee802dot1).
LLDP_LOC_CHASSIS_SUBTYPE = oid("1.0.8802.1.1.2.1.3.1.0")
LLDP_LOC_CHASSIS_ID = oid("1.0.8802.1.1.2.1.3.2.0")
LLDP_LOC_SYS_NAME = oid("1.0.8802.1.1.2.1.3.3.0")
LLDP_LOC_SYS_CAP_ENABLED = oid("1.0.8802.1.1.2.1.3.6.0")  # LldpSystemCapabilitiesMap: what it says it does
LLDP_LOCAL = (LLDP_LOC_CHASSIS_SUBTYPE, LLDP_LOC_CHASSIS_ID, LLDP_LOC_SYS_NAME, LLDP_LOC_SYS_CAP_ENABLED)
LLDP_LOC_PORT_ID_SUBTYPE = oid("1.0.8802.1.1.2.1.3.7.1.2")  # index: lldpLocPortNum
LLDP_LOC_PORT_ID = oid("1.0.8802.1.1.2.1.3.7.1.3")
LLDP_LOC_PORT_DESC = oid("1.0.8802.1.1.2.1.3.7.1.4")
LLDP_REM = oid("1.0.8802.1.1.2.1.4.1.1")  # lldpRemEntry; index: timeMark.localPortNum.remIndex
LLDP_REM_CHASSIS_SUBTYPE = 4
LLDP_REM_CHASSIS_ID = 5
LLDP_REM_PORT_SUBTYPE = 6
LLDP_REM_PORT_ID = 7
LLDP_REM_PORT_DESC = 8
LLDP_REM_SYS_NAME = 9
LLDP_REM_SYS_DESC = 10
LLDP_REM_CAP_ENABLED = 12
LLDP_REM_MAN_ADDR_IF_SUBTYPE = oid("1.0.8802.1.1.2.1.4.2.1.3")  # index: rem index . addrSubtype.len.addr

# BRIDGE-MIB (RFC 4188) and Q-BRIDGE-MIB (RFC 4363) forwarding databases.
DOT1D_BASE_PORT_IF_INDEX = oid("1.3.6.1.2.1.17.1.4.1.2")  # index: bridge port
DOT1D_TP_FDB_PORT = oid("1.3.6.1.2.1.17.4.3.1.2")  # index: MAC (6 numbers)
DOT1D_TP_FDB_STATUS = oid("1.3.6.1.2.1.17.4.3.1.3")  # other(1) invalid(2) learned(3) self(4) mgmt(5)
DOT1Q_TP_FDB_PORT = oid("1.3.6.1.2.1.17.7.1.2.2.1.2")  # index: fdbId.MAC
DOT1Q_TP_FDB_STATUS = oid("1.3.6.1.2.1.17.7.1.2.2.1.3")

# ENTITY-MIB entPhysicalTable (RFC 6933; index: entPhysicalIndex). Only the two columns that find the
# chassis are walked (a modular chassis lists hundreds of entities: cards, ports, sensors); the text
# columns are then read with one GET for the chassis rows alone (client.py).
ENT_PHYSICAL_CONTAINED_IN = oid("1.3.6.1.2.1.47.1.1.1.1.4")  # the entity holding it; 0: none
ENT_PHYSICAL_CLASS = oid("1.3.6.1.2.1.47.1.1.1.1.5")  # chassis(3), stack(11), module(9), port(10)...
ENT_PHYSICAL_SOFTWARE_REV = oid("1.3.6.1.2.1.47.1.1.1.1.10")
ENT_PHYSICAL_SERIAL_NUM = oid("1.3.6.1.2.1.47.1.1.1.1.11")
ENT_PHYSICAL_MFG_NAME = oid("1.3.6.1.2.1.47.1.1.1.1.12")
ENT_PHYSICAL_MODEL_NAME = oid("1.3.6.1.2.1.47.1.1.1.1.13")
ENT_CHASSIS_COLUMNS = (ENT_PHYSICAL_SERIAL_NUM, ENT_PHYSICAL_MODEL_NAME, ENT_PHYSICAL_MFG_NAME,
                       ENT_PHYSICAL_SOFTWARE_REV)

# CISCO-CDP-MIB cdpCacheTable (index: cdpCacheIfIndex.cdpCacheDeviceIndex): columns 3-9 are read, one by
# one (the entry has a dozen more: VTP domain, native VLAN, duplex...).
CDP_CACHE = oid("1.3.6.1.4.1.9.9.23.1.2.1.1")
CDP_CACHE_COLUMNS = tuple(CDP_CACHE + (column,) for column in range(3, 10))
(CDP_CACHE_ADDRESS_TYPE,  # CiscoNetworkProtocol: ip(1), ipv6(20)
 CDP_CACHE_ADDRESS, CDP_CACHE_VERSION, CDP_CACHE_DEVICE_ID, CDP_CACHE_DEVICE_PORT, CDP_CACHE_PLATFORM,
 CDP_CACHE_CAPABILITIES) = CDP_CACHE_COLUMNS

# The subtrees one device walk reads (GETBULK), after the system group and the LLDP local scalars, in
# groups walked side by side: each request asks for the next rows of every column of a group still
# running, so a table of n columns costs what one column would, and a table the device lacks costs
# nothing beyond its group's first request.
TABLE_GROUPS = (
    (IF_DESCR, IF_TYPE, IF_SPEED, IF_PHYS_ADDRESS, IF_ADMIN_STATUS, IF_OPER_STATUS, IF_NAME, IF_HIGH_SPEED,
     IF_ALIAS),
    (IP_ADDRESS_IF_INDEX, IP_ADDRESS_TYPE, IP_ADDRESS_PREFIX, IP_AD_ENT_IF_INDEX, IP_AD_ENT_NETMASK,
     IP_NET_TO_PHYSICAL_PHYS, IP_NET_TO_PHYSICAL_TYPE, IP_NET_TO_MEDIA_PHYS, IP_NET_TO_MEDIA_TYPE),
    (LLDP_LOC_PORT_ID_SUBTYPE, LLDP_LOC_PORT_ID, LLDP_LOC_PORT_DESC, LLDP_REM, LLDP_REM_MAN_ADDR_IF_SUBTYPE,
     DOT1D_BASE_PORT_IF_INDEX, DOT1D_TP_FDB_PORT, DOT1D_TP_FDB_STATUS, DOT1Q_TP_FDB_PORT, DOT1Q_TP_FDB_STATUS),
    # CDP's few rows end early, leaving the requests to the entity columns; one request for a device with neither
    (*CDP_CACHE_COLUMNS, ENT_PHYSICAL_CONTAINED_IN, ENT_PHYSICAL_CLASS),
)

ENTERPRISES = oid("1.3.6.1.4.1")

# IANA private enterprise numbers (https://www.iana.org/assignments/enterprise-numbers) of the makers
# whose devices are common on a network; any other number is reported as "enterprise <n>".
VENDORS = {
    9: "Cisco", 11: "HP", 42: "Sun Microsystems", 43: "3Com", 171: "D-Link", 207: "Allied Telesis",
    311: "Microsoft", 318: "APC", 674: "Dell", 705: "Eaton (MGE UPS Systems)", 890: "Zyxel",
    1916: "Extreme Networks", 1991: "Brocade (Foundry)", 2011: "Huawei", 2272: "Avaya (Nortel)", 2636: "Juniper",
    3375: "F5", 3955: "Linksys", 4526: "Netgear", 6027: "Dell (Force10)", 6527: "Nokia (Alcatel-Lucent)",
    6486: "Alcatel-Lucent Enterprise", 8072: "net-snmp", 8741: "SonicWall", 12356: "Fortinet",
    14179: "Cisco (Airespace)", 14823: "Aruba", 14988: "MikroTik", 25461: "Palo Alto Networks",
    25506: "H3C", 30065: "Arista", 41112: "Ubiquiti", 47196: "HPE Aruba",
}


def vendor_of(object_id: str | None) -> str | None:
    """The maker named by a sysObjectID (1.3.6.1.4.1.<enterprise>...), None when it is not one."""
    if not object_id:
        return None
    try:
        parts = oid(object_id)
    except ValueError:
        return None
    if len(parts) <= len(ENTERPRISES) or parts[:len(ENTERPRISES)] != ENTERPRISES:
        return None
    number = parts[len(ENTERPRISES)]
    return VENDORS.get(number, f"enterprise {number}")
