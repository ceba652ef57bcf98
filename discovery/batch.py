"""Build step: facts and applications become an ingest batch; split it for transport.

A batch is the JSON body of ``POST /api/v1/ingest`` (see the ingest contract):
``source``, ``run_id``, ``scope``, ``complete``, ``items``, ``relationships``.
Items refer to each other by ``ref`` inside one run.

Identifiers follow the service's identification rules: hosts send
serial_number, product_uuid, machine_id, fqdn, mac_address and ip_address (nmap's reverse-DNS
name is the ``dns_name`` attribute of the address's item, never a host's identifier)
(placeholders and loopback/link-local already dropped); ip_address items send
``address``; applications send ``instance_key`` = ``<host key>/<kind>/<port>``
where the host key is the machine-id, else the product UUID, else the FQDN,
else the IP (port 0 for a client-only application). Command lines, keys and
passwords are never put in a batch.

``split_batch`` cuts a batch into requests within the service's limits
(``app/core/batch_contract.py``, which both sides import) that share the
run_id; a host travels with its addresses and applications, and an edge whose
ends fall in different requests carries a copy of the missing end (items are
upserted by identifiers, so a copy is harmless). Only the last request carries
the run's ``complete`` flag.
"""

from __future__ import annotations

import copy
import fnmatch
import ipaddress

from app.core.batch_contract import (MAX_ITEMS, MAX_NAME, MAX_REF, MAX_RELATIONSHIPS, MAX_SCOPE_HOSTS,
                                     MAX_SCOPE_SUBNETS)
from discovery.classify import DEFAULT_RULES, AppInstance, ClassificationRule, classify_host, host_class
from discovery.dependencies import DependencyMap, RemoteApplication, RemoteLookup, map_dependencies
from discovery.models import HostFacts, HostResult, ScanHost
from discovery.parse_network import is_routable_host_address
from discovery.parse_system import is_dns_name

MAX_IDENTIFIER_VALUES = 256  # entries in one list identifier (mac_address, ip_address)
# Interfaces whose addresses are local to the host (container bridges, tunnels):
# the same address exists on many hosts, so it identifies none of them.
HOST_LOCAL_INTERFACES = ("docker*", "br-*", "veth*", "virbr*", "cni*", "flannel*", "cali*",
                         "vxlan*", "kube-*", "tun*", "tap*", "wg*", "podman*", "lxc*", "lxd*",
                         "ifb*", "dummy*", "lo")


def _host_local(interface: str) -> bool:
    return any(fnmatch.fnmatchcase(interface, pattern) for pattern in HOST_LOCAL_INTERFACES)


def _compact(mapping: dict) -> dict:
    """Drop None, empty lists and empty dicts (the batch says only what is known)."""
    return {k: v for k, v in mapping.items() if v is not None and v != [] and v != {}}


def host_addresses(facts: HostFacts) -> list[str]:
    """Addresses that identify the host: routable and not on a host-local interface."""
    out = []
    for entry in facts.addresses:
        if is_routable_host_address(entry.address) and not _host_local(entry.interface):
            if entry.address not in out:
                out.append(entry.address)
    return out


def host_key(facts: HostFacts) -> str:
    """The stable key of a host inside application instance keys."""
    if facts.machine_id:
        return facts.machine_id
    if facts.product_uuid:
        return facts.product_uuid
    if facts.fqdn:
        return facts.fqdn
    try:
        ipaddress.ip_address(facts.target)
        return facts.target
    except ValueError:
        addresses = host_addresses(facts)
        return addresses[0] if addresses else facts.target


def host_identifiers(facts: HostFacts) -> dict:
    macs = []
    for interface in facts.interfaces:
        if interface.mac and not _host_local(interface.name) and interface.mac not in macs:
            macs.append(interface.mac)
    return _compact({
        "serial_number": facts.serial_number,
        "product_uuid": facts.product_uuid,
        "machine_id": facts.machine_id,
        "fqdn": facts.fqdn,
        "mac_address": macs[:MAX_IDENTIFIER_VALUES],
        "ip_address": host_addresses(facts)[:MAX_IDENTIFIER_VALUES],
    })


def host_attributes(facts: HostFacts, unresolved: list[tuple[str, str, int]]) -> dict:
    by_interface: dict[str, list[str]] = {}
    for entry in facts.addresses:
        suffix = f"/{entry.prefix_length}" if entry.prefix_length is not None else ""
        by_interface.setdefault(entry.interface, []).append(entry.address + suffix)
    attributes = {
        "os_name": facts.os_id,
        "os_version": facts.os_version,
        "os_pretty_name": facts.os_pretty_name,
        "kernel": facts.kernel,
        "architecture": facts.architecture,
        "vendor": facts.vendor,
        "product_name": facts.product_name,
        "virtualization": facts.virtualization,
        "hypervisor": facts.virtualization if host_class(facts) == "virtual_machine" else None,
        "cpu_count": facts.cpu_count,
        "cpu_model": facts.cpu_model,
        "memory_mb": facts.memory_mb,
        "swap_mb": facts.swap_mb,
        "interfaces": [_compact({"name": i.name, "mac_address": i.mac, "state": i.state, "mtu": i.mtu,
                                 "addresses": by_interface.get(i.name, [])})
                       for i in facts.interfaces if i.kind != "loopback"],
        "disks": [_compact({"name": d.name, "size_bytes": d.size_bytes, "model": d.model, "serial": d.serial,
                            "rotational": d.rotational}) for d in facts.disks],
        # Sizes, not usage: usage moves every minute, and a CMDB records configuration, not metrics
        # (each run would otherwise write a change record per host).
        "filesystems": [{"device": f.device, "type": f.fstype, "mountpoint": f.mountpoint,
                         "size_kb": f.size_kb} for f in facts.filesystems],
        "services": facts.services,
        "listening": [_compact({"address": s.address, "port": s.port, "process": s.process})
                      for s in sorted(facts.listeners, key=lambda s: (s.port, s.address))],
        "outbound": [{"process": p, "address": a, "port": port} for p, a, port in unresolved],
        "packages": ([{"name": n, "version": v} for n, v in facts.packages]
                     if facts.packages is not None else None),
        "collector_warnings": facts.warnings,
    }
    return _compact(attributes)


def instance_key(app: AppInstance) -> str:
    return f"{host_key(app.host)}/{app.kind}/{app.port}"


def app_item(ref: str, app: AppInstance) -> dict:
    host_name = app.host.hostname or app.host.target
    suffix = f":{app.port}" if app.port else ""
    name = f"{app.kind}@{host_name}"[:MAX_NAME - len(suffix)] + suffix
    return {
        "ref": ref,
        "class": app.ci_class,
        "name": name,
        "identifiers": {"instance_key": instance_key(app)},
        "attributes": _compact({
            "kind": app.kind,
            "engine": app.kind if app.ci_class == "database" else None,
            "process": app.process,
            "port": app.port or None,
            "ports": app.ports,
            "listen": sorted(f"{a}:{p}" if ":" not in a else f"[{a}]:{p}" for a, p in app.endpoints),
            "client_only": True if app.client_only else None,
        }),
    }


class _Refs:
    """Refs named after what each item is (`h:<target>`, `ip:<address>`, `a:<instance key>`), not numbered
    in batch order: the service recognises a report sent again unchanged by a hash of its bytes, refs
    included, and numbered refs shifted every later item's when one was added (a service started on one
    host re-derived the unchanged items of every host after it, BENCHMARKS.md)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def new(self, prefix: str, key: str) -> str:
        base = f"{prefix}:{key}"[:MAX_REF - 8]
        ref, n = base, 1
        while ref in self.taken:  # the same key twice in one batch (bounded by the batch's size)
            n += 1
            ref = f"{base}#{n}"
        self.taken.add(ref)
        return ref


def _ip_item(ref: str, address: str, attributes: dict) -> dict:
    return {"ref": ref, "class": "ip_address", "name": address,
            "identifiers": {"address": address}, "attributes": _compact(attributes)}


def build_ssh_batch(
    results: list[HostResult],
    *,
    run_id: str,
    source: str = "ssh",
    rules: tuple[ClassificationRule, ...] = DEFAULT_RULES,
    remote_lookup: RemoteLookup | None = None,
    complete: bool = True,
) -> dict:
    """Hosts collected over SSH (or locally) -> one batch. Scope: every target asked for."""
    collected = [r for r in results if r.facts is not None]
    hosts = [(r.facts, classify_host(r.facts, rules)) for r in collected]
    deps: DependencyMap = map_dependencies(hosts, remote_lookup)

    refs = _Refs()
    items: list[dict] = []
    relationships: list[dict] = []
    ip_refs: dict[str, str] = {}
    app_refs: dict[int, str] = {}
    clients_by_host: dict[int, list[AppInstance]] = {}
    for client in deps.client_apps:
        clients_by_host.setdefault(id(client.host), []).append(client)

    for facts, apps in hosts:
        href = refs.new("h", facts.target)
        items.append({
            "ref": href,
            "class": host_class(facts),
            "name": (facts.hostname or facts.target)[:MAX_NAME],
            "identifiers": host_identifiers(facts),
            "attributes": host_attributes(facts, deps.unresolved.get(facts.target, [])),
        })
        for entry in facts.addresses:
            if not is_routable_host_address(entry.address) or _host_local(entry.interface):
                continue
            if entry.address not in ip_refs:
                ip_refs[entry.address] = refs.new("ip", entry.address)
                items.append(_ip_item(ip_refs[entry.address], entry.address, {
                    "family": "ipv6" if entry.family == "inet6" else "ipv4",
                    "prefix_length": entry.prefix_length, "interface": entry.interface}))
            relationships.append({"source": href, "target": ip_refs[entry.address],
                                  "type": "contains", "attributes": {}})
        for app in apps + clients_by_host.get(id(facts), []):
            aref = app_refs[id(app)] = refs.new("a", instance_key(app))
            items.append(app_item(aref, app))
            relationships.append({"source": aref, "target": href, "type": "runs_on", "attributes": {}})

    for dep in deps.dependencies:
        target = dep.target
        target_ref = target.ci_id if isinstance(target, RemoteApplication) else app_refs[id(target)]
        relationships.append({"source": app_refs[id(dep.source)], "target": target_ref,
                              "type": "depends_on", "attributes": {"port": dep.port}})

    # The scope is every target asked for, reached or not: a host that is down must keep the scope (and
    # so its key on the service) the same, or the service could never count it as missed and age it.
    scope_hosts = sorted({r.target for r in results})
    # A host that could not be read in full (down, partial reply, refused key) confirms nothing this run;
    # its CIs go stale only after the service's stale_after_runs such runs in a row: stale means "not
    # confirmed lately", never "deleted", and one flaky run ages nothing.
    return {"source": source, "run_id": run_id, "scope": {"subnets": [], "hosts": scope_hosts},
            "complete": complete, "items": items, "relationships": relationships}


def build_scan_batch(hosts: list[ScanHost], *, run_id: str, subnets: list[str], complete: bool = True) -> dict:
    """Live addresses found by nmap -> ip_address items and one host item each."""
    refs = _Refs()
    items: list[dict] = []
    relationships: list[dict] = []
    for host in sorted(hosts, key=lambda h: ipaddress.ip_address(h.address)):
        href, iref = refs.new("h", host.address), refs.new("ip", host.address)
        dns_name = host.hostname.rstrip(".") if is_dns_name(host.hostname) else None
        items.append({
            "ref": href,
            "class": host_class(scan=host),
            "name": dns_name or host.address,
            # The reverse-DNS name is what DNS calls the address, not what the machine calls itself: a
            # NAT address's PTR names another box, a host's `hostname -f` may be short, a host with two
            # addresses has two. As the host's fqdn it made a second CI of a host or device that does not
            # report that name; it is the address's `dns_name` (below), by which alerts and service
            # entry points find the host holding it (app.services.alert_binding), and identifies nothing.
            "identifiers": _compact({"mac_address": [host.mac] if host.mac else [], "ip_address": [host.address]}),
            "attributes": _compact({
                "listening": [_compact({"port": p.port, "protocol": p.protocol, "service": p.service,
                                        "product": p.product, "version": p.version})
                              for p in host.ports if p.state == "open"],
                # The OS family only: nmap's exact match and its accuracy flip between identical scans.
                "os_family": host.os_family,
                "mac_vendor": host.vendor,
                "vendor": (host.os_vendors[0] if host.os_vendors else host.vendor)
                if host_class(scan=host) == "network_device" else None,
                "ptr_name": host.hostname if host.hostname and not dns_name else None,
            }),
        })
        items.append(_ip_item(iref, host.address, {
            "family": "ipv6" if ":" in host.address else "ipv4", "mac_address": host.mac, "dns_name": dns_name}))
        relationships.append({"source": href, "target": iref, "type": "contains", "attributes": {}})
    return {"source": "nmap", "run_id": run_id, "scope": {"subnets": list(subnets), "hosts": []},
            "complete": complete, "items": items, "relationships": relationships}


def _groups(batch: dict) -> list[list[str]]:
    """Refs bound together by runs_on/contains (a host and what it holds), in item order."""
    parent: dict[str, str] = {item["ref"]: item["ref"] for item in batch["items"]}

    def find(ref: str) -> str:
        while parent[ref] != ref:
            parent[ref] = parent[parent[ref]]
            ref = parent[ref]
        return ref

    for rel in batch["relationships"]:
        if rel["type"] != "depends_on" and rel["source"] in parent and rel["target"] in parent:
            parent[find(rel["source"])] = find(rel["target"])
    groups: dict[str, list[str]] = {}
    for item in batch["items"]:
        groups.setdefault(find(item["ref"]), []).append(item["ref"])
    return list(groups.values())


def split_batch(batch: dict, limit: int = MAX_ITEMS, rel_limit: int = MAX_RELATIONSHIPS) -> list[dict]:
    """Requests of at most ``limit`` items and ``rel_limit`` relationships, same run_id.

    ``complete`` is set only on the last request. An edge end that is not an
    item of the batch (an existing CI's id) is never copied.
    """
    if limit < 2 or rel_limit < 1:
        raise ValueError("a request must hold at least one edge and its two ends")
    # Every request carries the run's whole scope: a scope beyond the limits cannot be split.
    scope = batch["scope"]
    if len(scope.get("hosts", [])) > MAX_SCOPE_HOSTS or len(scope.get("subnets", [])) > MAX_SCOPE_SUBNETS:
        raise ValueError(f"a run's scope holds at most {MAX_SCOPE_HOSTS} hosts and {MAX_SCOPE_SUBNETS} subnets")
    by_ref = {item["ref"]: item for item in batch["items"]}
    chunks: list[list[str]] = [[]]
    for group in _groups(batch):
        for start in range(0, len(group), limit):
            piece = group[start:start + limit]
            if len(chunks[-1]) + len(piece) > limit:
                chunks.append([])
            chunks[-1].extend(piece)
    members = [set(chunk) for chunk in chunks]
    rels: list[list[dict]] = [[] for _ in chunks]

    def missing(i: int, ends: list[str]) -> list[str]:
        return [ref for ref in ends if ref not in members[i]]

    for rel in batch["relationships"]:
        ends = [ref for ref in dict.fromkeys((rel["source"], rel["target"])) if ref in by_ref]
        fits = [i for i in range(len(chunks)) if len(rels[i]) < rel_limit
                and len(chunks[i]) + len(missing(i, ends)) <= limit and (not ends or set(ends) & members[i])]
        home = min(fits, key=lambda i: (len(missing(i, ends)), i)) if fits else None
        if home is None:
            chunks.append([])
            members.append(set())
            rels.append([])
            home = len(chunks) - 1
        for ref in missing(home, ends):
            chunks[home].append(ref)
            members[home].add(ref)
        rels[home].append(rel)

    requests = []
    for chunk, chunk_rels in zip(chunks, rels, strict=True):
        if not chunk and not chunk_rels and len(chunks) > 1:
            continue
        requests.append({
            "source": batch["source"], "run_id": batch["run_id"], "scope": copy.deepcopy(batch["scope"]),
            "complete": False, "items": [by_ref[ref] for ref in chunk], "relationships": chunk_rels,
        })
    requests[-1]["complete"] = bool(batch.get("complete"))
    return requests
