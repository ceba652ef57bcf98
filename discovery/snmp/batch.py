"""Build step: what the devices said -> one ingest batch (source ``snmp``).

Items
    * Each device that answered is a ``network_device`` identified by its chassis MAC (the LLDP local
      chassis id, else its bridge's MAC or its lowest Ethernet MAC, virtual router, multicast and
      shared MACs left out: parse._base_mac): never by an address, which a VRRP pair or a NAT shares. A device with no MAC at all identifies nothing and is left out with a note.
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

Relationships
    * ``cabled_to`` between two devices that see each other by LLDP (no impact: migration 0015), one
      edge per pair, from the device whose chassis MAC sorts first, with both port names.
    * ``connects_to`` from a host to the device it is cabled to (the switch's failure cuts it off),
      with the switch's port; a host cabled to two or more devices (a bond, two LLDP neighbours)
      connects_to a ``cluster`` of them instead (min_members 1, each device ``member_of`` it with its
      port), so losing one switch leaves the group degraded and the host at risk, not down. The
      attachment is known from the switch's LLDP neighbour table, or from a forwarding entry when the
      port has exactly one learned MAC, that MAC is a host of this batch or the one host Karta already
      holds with it (``known_hosts``: the edge then names that CI by id, and no item is sent for it),
      and LLDP shows no network device on the port (a port with several MACs, or another switch behind
      it, is an uplink or a hub and says nothing about one host).
    * ``contains`` from a device to its own addresses, and from a host of this batch (or a known host)
      to the addresses ARP shows for its MAC.

Uptime is collected but never sent: it changes every run, and each run would write a change record.
"""

from __future__ import annotations

from collections.abc import Callable

from app.core.batch_contract import MAX_NAME
from discovery.batch import _compact, _ip_item, _Refs
from discovery.parse_network import is_routable_host_address
from discovery.snmp.models import DeviceFacts, DeviceResult, LldpNeighbour

LOOPBACK_IF_TYPE = 24
# mac -> (CI id, name) of the one host Karta holds with it, or None
KnownHosts = Callable[[str], "tuple[str, str] | None"]


def device_attributes(facts: DeviceFacts) -> dict:
    return _compact({
        "vendor": facts.vendor,
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
        self.device_refs: dict[str, str] = {}  # chassis MAC -> ref
        self.host_refs: dict[str, str] = {}  # host MAC -> ref
        self.host_macs: dict[str, str] = {}  # ref -> host MAC
        self.known_names: dict[str, str] = {}  # CI id of a host Karta holds -> its name
        self.ip_refs: dict[str, str] = {}
        self.edges: set[tuple[str, str, str]] = set()
        self.cables: dict[tuple[str, str], dict] = {}  # (first device ref, second) -> ports
        self.attachments: dict[str, dict[str, set[str]]] = {}  # host ref -> device ref -> its ports
        self.batch = {"source": "snmp", "run_id": run_id, "scope": scope, "complete": True,
                      "items": self.items, "relationships": self.relationships}

    def relate(self, source: str, rel_type: str, target: str, attributes: dict | None = None) -> None:
        if (source, rel_type, target) in self.edges:
            return
        self.edges.add((source, rel_type, target))
        self.relationships.append({"source": source, "target": target, "type": rel_type,
                                   "attributes": attributes or {}})

    def cable(self, first: str, second: str, port: str | None, remote_port: str | None, *, own: bool) -> None:
        if (first, second) in self.cables and not own:
            return
        self.cables[(first, second)] = _compact({"port": port, "remote_port": remote_port})

    def attach(self, host_ref: str, device_ref: str, port: str) -> None:
        self.attachments.setdefault(host_ref, {}).setdefault(device_ref, set()).add(port)

    def device(self, facts: DeviceFacts) -> None:
        ref = self.device_refs[facts.chassis_mac] = self.refs.new("d", facts.chassis_mac)
        self.items.append({"ref": ref, "class": "network_device",
                           "name": (facts.system_name or facts.target)[:MAX_NAME],
                           "identifiers": {"mac_address": [facts.chassis_mac]},
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
    for result in results:
        facts = result.facts
        if facts is None:
            continue
        if facts.chassis_mac is None:
            notes.append(f"{result.target}: no chassis MAC, left out")
        elif facts.chassis_mac in builder.device_refs:
            notes.append(f"{result.target}: same chassis as another target, walked twice")
        else:
            builder.device(facts)
            devices.append(facts)
    for facts in devices:
        ref = builder.device_refs[facts.chassis_mac]
        for entry in facts.addresses:
            if is_routable_host_address(entry.address):
                builder.relate(ref, "contains", builder.address(entry.address, {
                    "prefix_length": entry.prefix_length, "interface": entry.interface}))
    polled = {facts.chassis_mac for facts in devices}
    for facts in devices:
        _lldp_edges(builder, facts, polled)
    for (first, second), ports in builder.cables.items():
        builder.relate(first, "cabled_to", second, ports)
    for facts in devices:
        _forwarding_edges(builder, facts, polled, known_hosts)
    _attachment_edges(builder)
    for facts in devices:
        for entry in facts.arp:
            if not is_routable_host_address(entry.address) or entry.mac in polled:
                continue
            ip_ref = builder.address(entry.address, {"mac_address": entry.mac})
            if entry.mac in builder.host_refs:
                builder.relate(builder.host_refs[entry.mac], "contains", ip_ref)
    return builder.batch, notes


def _lldp_edges(builder: _Builder, facts: DeviceFacts, polled: set[str]) -> None:
    ref = builder.device_refs[facts.chassis_mac]
    for neighbour in facts.lldp:
        far = neighbour.chassis_mac
        if far is None or far == facts.chassis_mac:
            continue
        if far in polled or neighbour.is_network_device:
            far_ref = builder.device_refs[far] if far in polled else builder.lldp_device(neighbour)
            # One cable, one edge, from the device whose chassis MAC sorts first, whichever end reported
            # it; when both did, the first end's own report wins (its port names are its own).
            if facts.chassis_mac < far:
                builder.cable(ref, far_ref, neighbour.local_port, neighbour.port_name, own=True)
            else:
                builder.cable(far_ref, ref, neighbour.port_name, neighbour.local_port, own=False)
        elif neighbour.is_host:
            builder.attach(builder.host(far, neighbour.system_name), ref, neighbour.local_port)


def _forwarding_edges(builder: _Builder, facts: DeviceFacts, polled: set[str],
                      known_hosts: KnownHosts | None) -> None:
    ref = builder.device_refs[facts.chassis_mac]
    uplinks = {n.local_port for n in facts.lldp if n.chassis_mac in polled or n.is_network_device}
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

