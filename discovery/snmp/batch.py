"""Build step: what the devices said -> one ingest batch (source ``snmp``).

Items
    * Each device that answered and shows it switches or routes (models.forwarding_evidence: sysServices,
      its own LLDP capabilities, BRIDGE-MIB ports) is a ``network_device`` identified by its serial number (ENTITY-MIB: the
      first top-level chassis's, parse._entity; placeholders such as "N/A" or zeros are none) and its
      chassis MAC (the LLDP local chassis id, else its bridge's MAC or its lowest Ethernet MAC, virtual
      router, multicast and shared MACs left out: parse._base_mac): never by an address alone, which a
      VRRP pair or a NAT shares (its addresses are ``ip_address``, held identifiers: they find a CI
      nmap knew by nothing but that address, and move, but never make two machines one). The serial is the stronger rule: a stack whose MAC changed with its master is
      still the same CI. A device with neither identifies nothing and is left out with a note. Its
      chassis's model, maker and software version are attributes (``model``, ``manufacturer``,
      ``software_version``), and a stack's members are listed whole (``chassis``, every serial). Its
      other own MACs are ``interface_mac`` (secondary_macs): held identifiers, so nmap's sighting of a
      router's interface is this CI. An agent with no such evidence (net-snmp on a Linux or Windows
      server) is left out with a note: hosts are SSH's and nmap's, and a polled host would turn its
      switch's view of it (a host cabled to a port) into a cable between two devices.
    * A device seen only as an LLDP neighbour that says it is a bridge or router (and has a MAC chassis
      id) is a ``network_device`` too, known by that MAC and its LLDP system name. What LLDP says of it
      goes under attribute names of its own (``lldp_management_address``, ``lldp_system_description``):
      the same device polled from another scope sets ``management_address`` (the address polled) and
      ``system_description`` (sysDescr) to other values, and shared names would flip at every run.
    * A station seen as an LLDP neighbour (lldpd on a host; not a phone or a modem, which announce
      themselves too, nor a neighbour announcing no capability at all, which may be anything and is left
      out) is a ``server`` identified by its chassis MAC and nothing else: the host SSH or
      nmap found is the CI holding that MAC (identification rule 3, and a VM's more specific class
      wins), never a duplicate; a host nobody found yet becomes a CI, because it announced itself.
    * The device's own unicast addresses and the addresses of its ARP table are ``ip_address`` items
      (the ARP ones carry the MAC that answered), as nmap and SSH report them.

Interfaces are a structured attribute of their device (``interfaces``: name, description, alias, MAC,
speed, admin and oper status), not CIs of a class of their own: a port has no identity or owner
outside its switch, impact is computed per device, a 48-port switch would otherwise be 49 CIs each
with its own change records and staleness, and the hosts' interfaces are attributes already. Where a
port matters to an edge (which port a host or another switch is cabled to), the edge carries the port
name as an attribute.

Neighbours are read from LLDP and from CDP (Cisco's, which an IOS device runs by default and LLDP not).
A CDP row names no chassis MAC, so it counts only when it can be tied to one: its address is a device
this run polled; or it is a host whose address the ARP tables of this run resolve to one MAC (the MAC
SSH and nmap know the host by). A CDP row that the same port's LLDP row already reports (same name or
address) adds nothing: LLDP's chassis MAC names that neighbour. A network device known only by CDP and
not polled is left out: the MAC ARP gives for it is an interface's (a Catalyst's Vlan1 carries its base
MAC plus 0x40), not the one its own walk would identify it by, so it would become a second CI.

Relationships
    * ``cabled_to`` between two devices that see each other by LLDP or CDP (no impact: migration 0015),
      one edge per pair, from the device whose identity (chassis MAC) sorts first, with both port names:
      the first end's own LLDP report, else its own CDP report, else the other end's.
    * ``connects_to`` from a host to the device it is cabled to (the switch's failure cuts it off),
      with the switch's port; a host cabled to two or more devices (a bond, two LLDP or CDP neighbours)
      connects_to a ``cluster`` of them instead (min_members 1, each device ``member_of`` it with its
      port), so losing one switch leaves the group degraded and the host at risk, not down. The
      attachment is known from the switch's LLDP or CDP neighbour table, or from a forwarding entry when
      the port has exactly one learned MAC, that MAC is a host of this batch or the one host Karta already
      holds with it (``known_hosts``: the edge then names that CI by id, and no item is sent for it),
      and neither LLDP nor CDP shows a network device on the port (a port with several MACs, or another
      switch behind
      it, is an uplink or a hub and says nothing about one host).
    * ``contains`` from a device to its own addresses, and from a host of this batch (or a known host)
      to the addresses ARP shows for its MAC.

Uptime is collected but never sent: it changes every run, and each run would write a change record.
"""

from __future__ import annotations

from collections.abc import Callable

from app.core.batch_contract import MAX_NAME
from discovery.batch import MAX_IDENTIFIER_VALUES, _compact, _ip_item, _Refs
from discovery.parse_network import is_routable_host_address
from discovery.snmp.models import (Announced, CdpNeighbour, DeviceFacts, DeviceResult, LldpNeighbour,
                                   forwarding_evidence)
from discovery.snmp.parse import is_own_mac

LOOPBACK_IF_TYPE = 24
# mac -> (CI id, name) of the one host Karta holds with it, or None
KnownHosts = Callable[[str], "tuple[str, str] | None"]


def identity(facts: DeviceFacts) -> str | None:
    """What the batch knows a polled device by: its chassis MAC, else its serial number, else nothing."""
    return facts.chassis_mac or (f"serial:{facts.serial_number}" if facts.serial_number else None)


def _chassis(facts: DeviceFacts) -> dict:
    """The model, maker and software of the chassis whose serial names the device (else the first), and a
    stack's members whole: each member's serial is a fact even though only the first identifies."""
    if not facts.chassis:
        return {}
    main = next((c for c in facts.chassis if c.serial_number and c.serial_number == facts.serial_number),
                facts.chassis[0])
    members = [_compact({"serial_number": c.serial_number, "model": c.model, "manufacturer": c.manufacturer,
                         "software_version": c.software_version}) for c in facts.chassis]
    return {"model": main.model, "manufacturer": main.manufacturer, "software_version": main.software_version,
            "chassis": members if len(members) > 1 else None}


def device_attributes(facts: DeviceFacts) -> dict:
    return _compact({
        "vendor": facts.vendor,
        **_chassis(facts),
        "system_object_id": facts.object_id,
        "system_description": facts.system_description,
        "contact": facts.contact,
        "location": facts.location,
        "management_address": facts.target,
        "interfaces": [_compact({"name": i.name, "description": i.description if i.description != i.name else None,
                                 "alias": i.alias, "mac_address": i.mac, "speed_mbps": i.speed_mbps,
                                 "admin_status": i.admin_status, "oper_status": i.oper_status})
                       for i in facts.interfaces if i.if_type != LOOPBACK_IF_TYPE],
        "collector_warnings": facts.warnings,
    })


class _Builder:
    def __init__(self, run_id: str, scope: dict) -> None:
        self.refs = _Refs()
        self.items: list[dict] = []
        self.relationships: list[dict] = []
        self.device_refs: dict[str, str] = {}  # identity (chassis MAC, else serial) -> ref
        self.host_refs: dict[str, str] = {}  # host MAC -> ref
        self.host_macs: dict[str, str] = {}  # ref -> host MAC
        self.known_names: dict[str, str] = {}  # CI id of a host Karta holds -> its name
        self.ip_refs: dict[str, str] = {}
        self.edges: set[tuple[str, str, str]] = set()
        self.cables: dict[tuple[str, str], tuple[int, dict]] = {}  # (first device ref, second) -> rank, ports
        self.attachments: dict[str, dict[str, set[str]]] = {}  # host ref -> device ref -> its ports
        self.batch = {"source": "snmp", "run_id": run_id, "scope": scope, "complete": True,
                      "items": self.items, "relationships": self.relationships}

    def relate(self, source: str, rel_type: str, target: str, attributes: dict | None = None) -> None:
        if (source, rel_type, target) in self.edges:
            return
        self.edges.add((source, rel_type, target))
        self.relationships.append({"source": source, "target": target, "type": rel_type,
                                   "attributes": attributes or {}})

    def cable(self, first: str, second: str, port: str | None, remote_port: str | None, rank: int) -> None:
        """``rank``: 2 the first end's own LLDP report, 1 its own CDP report, 0 the other end's (kept only
        when nothing else is). An own report replaces one of its rank or lower; the names LLDP gives win."""
        known = self.cables.get((first, second))
        if known is None or (rank and rank >= known[0]):
            self.cables[(first, second)] = (rank, _compact({"port": port, "remote_port": remote_port}))

    def attach(self, host_ref: str, device_ref: str, port: str) -> None:
        self.attachments.setdefault(host_ref, {}).setdefault(device_ref, set()).add(port)

    def device(self, facts: DeviceFacts) -> None:
        key = identity(facts)
        ref = self.device_refs[key] = self.refs.new("d", key)
        self.items.append({"ref": ref, "class": "network_device",
                           "name": (facts.system_name or facts.target)[:MAX_NAME],
                           "identifiers": _compact({"serial_number": facts.serial_number,
                                                    "mac_address": [facts.chassis_mac] if facts.chassis_mac else None,
                                                    "ip_address": own_addresses(facts) or None}),
                           "attributes": device_attributes(facts)})

    def lldp_device(self, neighbour: LldpNeighbour) -> str:
        if neighbour.chassis_mac not in self.device_refs:
            ref = self.device_refs[neighbour.chassis_mac] = self.refs.new("d", neighbour.chassis_mac)
            self.items.append({"ref": ref, "class": "network_device",
                               "name": (neighbour.system_name or neighbour.chassis_mac)[:MAX_NAME],
                               "identifiers": {"mac_address": [neighbour.chassis_mac]},
                               "attributes": _compact({
                                   "lldp_system_description": neighbour.system_description,
                                   "lldp_management_address": (neighbour.management_addresses or (None,))[0]})})
        return self.device_refs[neighbour.chassis_mac]

    def host(self, host_mac: str, name: str | None) -> str:
        if host_mac not in self.host_refs:
            ref = self.host_refs[host_mac] = self.refs.new("h", host_mac)
            self.host_macs[ref] = host_mac
            self.items.append({"ref": ref, "class": "server", "name": (name or host_mac)[:MAX_NAME],
                               "identifiers": {"mac_address": [host_mac]}, "attributes": {}})
        return self.host_refs[host_mac]

    def known_host(self, host_mac: str, ci_id: str, name: str) -> None:
        """A host Karta already holds with this MAC (no LLDP names it): edges go to its CI id, and no item
        is sent, so the SNMP source asserts nothing about a host it never saw (its name stays SSH's or
        nmap's) and a MAC nobody knows makes no guessed CI."""
        self.host_refs[host_mac] = ci_id
        self.host_macs[ci_id] = host_mac
        self.known_names[ci_id] = name

    def address(self, address: str, attributes: dict) -> str:
        if address not in self.ip_refs:
            self.ip_refs[address] = self.refs.new("ip", address)
            self.items.append(_ip_item(self.ip_refs[address], address, {
                "family": "ipv6" if ":" in address else "ipv4", **attributes}))
        return self.ip_refs[address]


def build_snmp_batch(results: list[DeviceResult], *, run_id: str, subnets: list[str] | None = None,
                     complete: bool = True, known_hosts: KnownHosts | None = None) -> tuple[dict, list[str]]:
    """The batch, and notes on what was left out (devices without a MAC to identify them).

    ``known_hosts(mac)``: the (CI id, name) of the one host Karta holds with that MAC, or None
    (discovery.remote.ApiHostLookup). Asked only for a MAC learned alone on a port that no LLDP names,
    so a forwarding entry attaches the hosts SSH or nmap found, which seldom run an LLDP agent."""
    scope = {"subnets": list(subnets or []), "hosts": [] if subnets else sorted({r.target for r in results})}
    builder = _Builder(run_id, scope)
    builder.batch["complete"] = complete
    notes: list[str] = []
    devices = []
    serials: set[str] = set()
    for result in results:
        facts = result.facts
        if facts is None:
            continue
        if identity(facts) is None:
            notes.append(f"{result.target}: no chassis MAC or serial number, left out")
        elif not forwarding_evidence(facts):
            notes.append(f"{result.target}: no sign of switching or routing (sysServices, its LLDP capabilities, "
                         "BRIDGE-MIB ports): a host's agent, left to SSH and nmap")
        elif identity(facts) in builder.device_refs or (facts.serial_number or "") in serials:
            notes.append(f"{result.target}: same chassis as another target, walked twice")
        else:
            builder.device(facts)
            devices.append(facts)
            if facts.serial_number:
                serials.add(facts.serial_number)
    for facts in devices:
        ref = builder.device_refs[identity(facts)]
        for entry in facts.addresses:
            if is_routable_host_address(entry.address):
                builder.relate(ref, "contains", builder.address(entry.address, {
                    "prefix_length": entry.prefix_length, "interface": entry.interface}))
    _secondary_macs(builder, devices)
    polled = {identity(facts) for facts in devices}
    links = _links(devices)
    for facts in devices:
        _neighbour_edges(builder, facts, links[identity(facts)], polled)
    for (first, second), (_, ports) in builder.cables.items():
        builder.relate(first, "cabled_to", second, ports)
    for facts in devices:
        _forwarding_edges(builder, facts, links[identity(facts)], polled, known_hosts)
    _attachment_edges(builder)
    for facts in devices:
        for entry in facts.arp:
            if not is_routable_host_address(entry.address) or entry.mac in polled:
                continue
            ip_ref = builder.address(entry.address, {"mac_address": entry.mac})
            if entry.mac in builder.host_refs:
                builder.relate(builder.host_refs[entry.mac], "contains", ip_ref)
    return builder.batch, notes


def own_addresses(facts: DeviceFacts) -> list[str]:
    """The device's routable unicast addresses, in its order: held identifiers (ingest's rule 4), so nmap's
    sighting of a switch's address with no MAC (its own namespace, another subnet) is this device, and
    an address two devices of the batch report (a VRRP address) identifies neither. At most
    MAX_IDENTIFIER_VALUES, as SSH sends."""
    found = dict.fromkeys(entry.address for entry in facts.addresses if is_routable_host_address(entry.address))
    return list(found)[:MAX_IDENTIFIER_VALUES]


def secondary_macs(facts: DeviceFacts) -> list[str]:
    """The device's own MACs besides its chassis MAC that can name it alone: on one of its interfaces
    only, unicast and no virtual router's (parse.is_own_mac), universally administered (a locally
    administered MAC is software's and repeats across boxes). At most MAX_IDENTIFIER_VALUES, as SSH sends."""
    counts: dict[str, int] = {}
    for interface in facts.interfaces:
        if interface.mac:
            counts[interface.mac] = counts.get(interface.mac, 0) + 1
    return sorted(found for found, count in counts.items() if count == 1 and found != facts.chassis_mac
                  and is_own_mac(found) and not int(found[:2], 16) & 2)[:MAX_IDENTIFIER_VALUES]


def _secondary_macs(builder: _Builder, devices: list[DeviceFacts]) -> None:
    """Each polled device's item carries its secondary MACs (``interface_mac``, held: nmap on a router's
    segment sees the interface's MAC, never the chassis's; app.services.identity.SECONDARY), those
    no other device of the batch reports and no other item is identified by."""
    claims: dict[str, int] = {}
    extras = {identity(facts): secondary_macs(facts) for facts in devices}
    for macs in extras.values():
        for found in macs:
            claims[found] = claims.get(found, 0) + 1
    for item in builder.items:
        for found in item["identifiers"].get("mac_address", []):
            claims[found] = claims.get(found, 0) + 2
    by_ref = {item["ref"]: item for item in builder.items}
    for key, macs in extras.items():
        kept = [found for found in macs if claims[found] == 1]
        if kept:
            by_ref[builder.device_refs[key]]["attributes"]["interface_mac"] = kept


Link = tuple[LldpNeighbour | CdpNeighbour, str]  # a neighbour row and the identity of its far end


def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """key -> value for the keys that have one value only (an address on two devices names neither)."""
    found: dict[str, set[str]] = {}
    for key, value in pairs:
        found.setdefault(key, set()).add(value)
    return {key: values.pop() for key, values in found.items() if len(values) == 1}


def _short_name(name: str | None) -> str | None:
    """A device's name as LLDP and CDP may both give it: the first label, without NX-OS's "(serial)"."""
    if not name:
        return None
    return name.split("(", 1)[0].split(".", 1)[0].strip().casefold() or None


def _lldp_names(lldp: list[LldpNeighbour]) -> set[tuple[str, str]]:
    """(local port, short name) and (local port, address) of the LLDP rows that name a chassis MAC: what a CDP
    row of the same neighbour would agree with (a set, so a device with thousands of rows costs no more)."""
    found = set()
    for row in lldp:
        if row.chassis_mac:
            found.update((row.local_port, value) for value in (_short_name(row.system_name),
                                                                *row.management_addresses) if value)
    return found


def _reported_by_lldp(neighbour: CdpNeighbour, lldp: set[tuple[str, str]]) -> bool:
    """Whether an LLDP row of the same port is the same neighbour: its name or one of its addresses agrees."""
    return any((neighbour.local_port, value) in lldp for value in (_short_name(neighbour.system_name),
                                                                   neighbour.address) if value)


def _links(devices: list[DeviceFacts]) -> dict[str, list[Link]]:
    """Each polled device's neighbours tied to an identity: an LLDP row by its chassis MAC; a CDP row (which
    names none) by its address, when a polled device holds it, or, for a host, by the one MAC the run's ARP
    tables give that address (module docstring). CDP rows that LLDP reports too are LLDP's."""
    at = _unique([(address, identity(facts)) for facts in devices
                  for address in {facts.target, *(a.address for a in facts.addresses)}])
    polled = {identity(facts) for facts in devices}
    arp = _unique([(entry.address, entry.mac) for facts in devices for entry in facts.arp if entry.mac not in polled])
    links: dict[str, list[Link]] = {}
    for facts in devices:
        found: list[Link] = [(n, n.chassis_mac) for n in facts.lldp if n.chassis_mac]
        lldp = _lldp_names(facts.lldp)
        for neighbour in facts.cdp:
            if neighbour.address is None or _reported_by_lldp(neighbour, lldp):
                continue
            far = at.get(neighbour.address) or (arp.get(neighbour.address) if neighbour.is_host else None)
            if far:
                found.append((neighbour, far))
        links[identity(facts)] = found
    return links


def _neighbour_edges(builder: _Builder, facts: DeviceFacts, links: list[Link], polled: set[str]) -> None:
    key = identity(facts)
    ref = builder.device_refs[key]
    for neighbour, far in links:
        if far == key:
            continue
        lldp = isinstance(neighbour, LldpNeighbour)
        if far in polled or neighbour.is_network_device:
            if far not in polled and not lldp:
                continue  # a CDP row ties to a network device only when it was polled (_links)
            far_ref = builder.device_refs[far] if far in polled else builder.lldp_device(neighbour)
            # One cable, one edge, from the device whose identity sorts first, whichever end reported it;
            # when both did, the first end's own report wins (its port names are its own), LLDP's first.
            if key < far:
                builder.cable(ref, far_ref, neighbour.local_port, neighbour.port_name, 2 if lldp else 1)
            else:
                builder.cable(far_ref, ref, neighbour.port_name, neighbour.local_port, 0)
        elif neighbour.is_host:
            builder.attach(builder.host(far, neighbour.system_name), ref, neighbour.local_port)


def _forwarding_edges(builder: _Builder, facts: DeviceFacts, links: list[Link], polled: set[str],
                      known_hosts: KnownHosts | None) -> None:
    ref = builder.device_refs[identity(facts)]
    announced: list[Announced] = [*facts.lldp, *facts.cdp]
    uplinks = ({n.local_port for n in announced if n.is_network_device}
               | {n.local_port for n, far in links if far in polled})
    by_port: dict[str, set[str]] = {}
    for entry in facts.forwarding:
        if entry.interface in uplinks:  # another switch's port: every MAC behind it, even when one talks
            continue
        by_port.setdefault(entry.interface, set()).add(entry.mac)
    for port, macs in sorted(by_port.items()):
        if len(macs) != 1:
            continue
        (host_mac,) = macs
        if host_mac in polled or host_mac in builder.device_refs:
            continue
        if host_mac not in builder.host_refs and known_hosts is not None:
            known = known_hosts(host_mac)
            if known is not None:
                builder.known_host(host_mac, *known)
        if host_mac in builder.host_refs:
            builder.attach(builder.host_refs[host_mac], ref, port)


def _attachment_edges(builder: _Builder) -> None:
    """A host on one switch ``connects_to`` it; a host on two or more connects_to a redundancy group of
    them (a ``cluster`` with min_members 1, each switch ``member_of`` it with its ports), so one switch
    failing leaves the group degraded and the host at risk, not down (graph/semantics.py)."""
    names = {**builder.known_names, **{item["ref"]: item["name"] for item in builder.items}}
    for host_ref, by_device in builder.attachments.items():
        ports = {device_ref: ", ".join(sorted(found)) for device_ref, found in by_device.items()}
        if len(ports) == 1:
            ((device_ref, port),) = ports.items()
            builder.relate(host_ref, "connects_to", device_ref, {"port": port})
            continue
        host_mac = builder.host_macs[host_ref]
        group = builder.refs.new("g", host_mac)
        builder.items.append({"ref": group, "class": "cluster",
                              "name": f"network attachment of {names[host_ref]}"[:MAX_NAME],
                              "identifiers": {"cluster_id": f"snmp/attachment/{host_mac}"},
                              "attributes": {"min_members": 1}})
        builder.relate(host_ref, "connects_to", group)
        for device_ref, port in sorted(ports.items()):
            builder.relate(device_ref, "member_of", group, {"port": port})

