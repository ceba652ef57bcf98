"""What the agent learns from one SNMP device, as plain data (parse.py fills it, batch.py reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceInterface:
    if_index: int
    name: str  # ifName, else ifDescr, else "if<index>"
    description: str | None = None  # ifDescr
    alias: str | None = None  # ifAlias: what the operator wrote on the port
    mac: str | None = None
    speed_mbps: int | None = None  # ifHighSpeed, else ifSpeed / 10^6
    admin_status: str | None = None  # up, down, testing
    oper_status: str | None = None  # up, down, testing, unknown, dormant, notPresent, lowerLayerDown
    if_type: int | None = None  # IANAifType: 6 ethernetCsmacd, 24 softwareLoopback, 209 bridge...


@dataclass(frozen=True)
class DeviceAddress:
    address: str
    prefix_length: int | None
    interface: str | None


@dataclass(frozen=True)
class ArpEntry:
    """A neighbour the device resolved: this address answered with this MAC on this interface."""

    address: str
    mac: str
    interface: str | None


class Announced:
    """What a neighbour says it is (``capabilities``, LLDP's names; CDP's are mapped onto them), the same
    rule for both protocols."""

    capabilities: tuple[str, ...]

    @property
    def is_network_device(self) -> bool:
        return bool({"bridge", "router", "wlan_access_point", "repeater"} & set(self.capabilities))

    @property
    def is_host(self) -> bool:
        """A station (lldpd on a server says "station", CDP "host"): not a phone or a modem, which announce
        themselves too but are no server. A neighbour that announces no capability (or only "other") is
        neither host nor network device: it could be a printer, a camera or an unmanaged box, and a guessed
        class would be a wrong CI that the rule "a more specific class wins" cannot undo; it is left out."""
        return "station" in self.capabilities and set(self.capabilities) <= {"station", "other"}


@dataclass(frozen=True)
class LldpNeighbour(Announced):
    """One row of the device's LLDP remote table: who is at the far end of one of its ports."""

    local_port: str  # the device's own interface name
    chassis_id: str  # a MAC (lowercase, colons) when chassis_mac is set, else the text sent
    chassis_mac: str | None
    port_id: str | None
    port_description: str | None = None
    system_name: str | None = None
    system_description: str | None = None
    capabilities: tuple[str, ...] = ()  # enabled: bridge, router, station...
    management_addresses: tuple[str, ...] = ()
    port_id_is_name: bool = False  # sent as an interface name or alias, not a MAC or address

    @property
    def port_name(self) -> str | None:
        """The far end's port as people name it: its id when that is a name, else its description
        (lldpd sends the port's MAC as id and its name as description)."""
        return self.port_id if self.port_id_is_name else (self.port_description or self.port_id)


@dataclass(frozen=True)
class CdpNeighbour(Announced):
    """One row of the device's CDP cache (Cisco devices, and lldpd where a Cisco peer asks for it). CDP
    names no chassis MAC: batch.py finds the neighbour by its address or by the LLDP row of the same port."""

    local_port: str  # the device's own interface name
    system_name: str  # cdpCacheDeviceId: a hostname as a rule (a phone's is SEP<its MAC>)
    port_name: str | None = None  # cdpCacheDevicePort, as the neighbour names it ("GigabitEthernet0/2")
    address: str | None = None
    platform: str | None = None  # "cisco WS-C2960-24TT-L", "Linux"
    version: str | None = None  # the neighbour's software banner, on one line
    capabilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chassis:
    """A top-level chassis of ENTITY-MIB (a stack lists one per member), with its text columns."""

    index: int  # entPhysicalIndex
    serial_number: str | None = None  # None when empty or a placeholder ("N/A", zeros)
    model: str | None = None
    manufacturer: str | None = None
    software_version: str | None = None


@dataclass(frozen=True)
class ForwardingEntry:
    """The device forwards frames for ``mac`` out of ``interface`` (a learned BRIDGE-MIB entry)."""

    mac: str
    interface: str
    vlan: int | None = None  # Q-BRIDGE's filtering database id


@dataclass
class DeviceFacts:
    target: str  # the address the agent polled
    system_name: str | None = None
    system_description: str | None = None
    object_id: str | None = None
    vendor: str | None = None
    uptime_seconds: int | None = None
    contact: str | None = None
    location: str | None = None
    services: int | None = None  # sysServices (0-127)
    ip_forwarding: bool | None = None  # IP-MIB ipForwarding, None when the agent does not say
    capabilities: tuple[str, ...] = ()  # its own LLDP enabled capabilities (lldpLocSysCapEnabled)
    bridge_ports: int = 0  # BRIDGE-MIB ports mapped to an interface (dot1dBasePortIfIndex rows)
    chassis_mac: str | None = None
    serial_number: str | None = None  # the first top-level chassis's (parse._entity says why that one)
    chassis: list[Chassis] = field(default_factory=list)
    interfaces: list[DeviceInterface] = field(default_factory=list)
    addresses: list[DeviceAddress] = field(default_factory=list)
    arp: list[ArpEntry] = field(default_factory=list)
    lldp: list[LldpNeighbour] = field(default_factory=list)
    cdp: list[CdpNeighbour] = field(default_factory=list)
    forwarding: list[ForwardingEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)  # tables or lists a bound cut short: a partial walk


DATALINK, INTERNET, HOST_LAYERS = 0x02, 0x04, 0x08 | 0x40  # sysServices bits: layers 2, 3; 4 and 7


def forwarding_evidence(facts: DeviceFacts) -> list[str]:
    """Why the device is a network device (switches or routes frames), empty when nothing says so: its
    sysServices has the datalink layer, or the internet layer from an agent that forwards IP (ipForwarding
    1) or, not saying, serves no host layer (a Juniper router's 4); its own LLDP says bridge or router is
    enabled; or BRIDGE-MIB maps bridge ports to its interfaces. A host's agent says 72 (end-to-end +
    applications) on Linux and 76 on Windows, whose internet bit comes with ipForwarding 2. Answering
    SNMP is no evidence: net-snmp runs on Linux and Windows servers too."""
    found = []
    services = facts.services
    if services is not None and services & DATALINK:
        found.append(f"sysServices {services}")
    elif services is not None and services & INTERNET and (
            facts.ip_forwarding or (facts.ip_forwarding is None and not services & HOST_LAYERS)):
        found.append(f"sysServices {services}" + (", ipForwarding 1" if facts.ip_forwarding else ""))
    enabled = sorted({"bridge", "router"} & set(facts.capabilities))
    if enabled:
        found.append(f"LLDP {'+'.join(enabled)} enabled")
    if facts.bridge_ports:
        found.append(f"{facts.bridge_ports} bridge ports")
    return found


@dataclass
class DeviceResult:
    target: str
    status: str  # ok, timeout, refused (authentication), error
    facts: DeviceFacts | None = None
    error: str | None = None
    requests: int = 0  # SNMP requests the walk took
    seconds: float = 0.0
