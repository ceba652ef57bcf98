"""Dependency mapping: established TCP connections become ``depends_on`` edges.

The rules, case by case, for one established connection seen on host A
(local L:lp, peer P:pp, owned by process X):

1. A listens on lp (on L or on a wildcard address): A is the *server* end.
   The peer's port is the client's ephemeral port, which names nothing: no
   edge from this side. The client's own host, if in the run, reports the
   same connection from its side, where rule 4 applies.
2. P is loopback, or one of A's own addresses, or L is loopback: chatter
   inside one host. No edge.
3. P:pp is not where a *known application* listens (an application CI made
   by classification, on a host of this run, on P or on a wildcard address
   of the host that owns P): no edge. An sshd or any unclassified listener
   makes no edge, and neither does a port nobody listens on (ephemeral).
   If P belongs to no host of this run and a remote lookup is given, the
   lookup may name an application CI the CMDB already holds at P:pp
   (through the API: the ip_address CI by address, ``GET
   /api/v1/cis?class=ip_address&attr.address=P``, then the application on
   its host at port pp); the edge then targets that CI's id.
   Otherwise the connection is kept on A as an unresolved outbound fact.
4. Otherwise there is an edge from X's application to the application at
   P:pp, with attribute ``port`` = pp. If X is itself a known listening
   application on A (same pid), that is the source; else a client-only
   ``application`` CI named after X (its command line for interpreters) is
   made on A, so the edge has a source. A connection whose owning process
   could not be read (agent not root) makes no edge.
5. An address claimed by two hosts of the run (a docker0 bridge on each) is
   ambiguous: no edge goes to it.

Edges are unique per (source, target, port); many connections of a pool make one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from discovery.classify import AppInstance, application_name
from discovery.models import Connection, HostFacts
from discovery.parse_network import WILDCARDS, is_loopback, is_routable_host_address


@dataclass(frozen=True)
class RemoteApplication:
    """An application CI the CMDB already holds, found by address outside this run.

    The edge then targets the CI's id directly (the ingest accepts an existing
    CI's id wherever a ref goes), so nothing about it is re-sent.
    """

    ci_id: str
    name: str


RemoteLookup = Callable[[str, int], RemoteApplication | None]


@dataclass(frozen=True)
class Dependency:
    source: AppInstance
    target: AppInstance | RemoteApplication
    port: int


@dataclass
class DependencyMap:
    dependencies: list[Dependency] = field(default_factory=list)
    client_apps: list[AppInstance] = field(default_factory=list)
    # host target -> sorted unique (process, peer address, peer port) it talks to but we could not place
    unresolved: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)


def _listener_index(hosts: list[tuple[HostFacts, list[AppInstance]]]):
    """(address, port) -> application, and the set of addresses claimed by two hosts."""
    owners: dict[str, set[int]] = {}
    for number, (facts, _) in enumerate(hosts):
        for address in facts.own_addresses():
            if is_routable_host_address(address):
                owners.setdefault(address, set()).add(number)
    ambiguous = {address for address, numbers in owners.items() if len(numbers) > 1}

    index: dict[tuple[str, int], AppInstance] = {}
    for facts, apps in hosts:
        own = [a for a in facts.own_addresses() if is_routable_host_address(a)]
        for app in apps:
            for address, port in app.endpoints:
                targets = own if address in WILDCARDS else [address]
                for target in targets:
                    if is_routable_host_address(target) and target not in ambiguous:
                        index.setdefault((target, port), app)
    return index, set(owners), ambiguous


def _is_server_side(facts: HostFacts, conn: Connection) -> bool:
    return any(
        listener.port == conn.local_port
        and (listener.address in WILDCARDS or listener.address == conn.local_address)
        for listener in facts.listeners
    )


def map_dependencies(
    hosts: list[tuple[HostFacts, list[AppInstance]]],
    remote_lookup: RemoteLookup | None = None,
) -> DependencyMap:
    """Edges between the applications of one run (see the module docstring for the rules)."""
    index, run_addresses, ambiguous = _listener_index(hosts)
    result = DependencyMap()
    seen: set[tuple[int, int, int]] = set()
    remote_cache: dict[tuple[str, int], RemoteApplication | None] = {}

    for facts, apps in hosts:
        own = facts.own_addresses()
        by_pid = {pid: app for app in apps for pid in app.pids}
        clients: dict[str, AppInstance] = {}
        unresolved: set[tuple[str, str, int]] = set()
        for conn in facts.connections:
            if _is_server_side(facts, conn):
                continue
            if is_loopback(conn.peer_address) or is_loopback(conn.local_address) or conn.peer_address in own:
                continue
            if conn.peer_address in ambiguous:
                continue
            key = (conn.peer_address, conn.peer_port)
            target: AppInstance | RemoteApplication | None = index.get(key)
            if target is None and remote_lookup is not None and conn.peer_address not in run_addresses:
                if key not in remote_cache:
                    remote_cache[key] = remote_lookup(*key)
                target = remote_cache[key]
            if target is None:
                low, high = facts.ephemeral_ports
                outside = conn.peer_address not in run_addresses
                if outside and conn.process and not low <= conn.peer_port <= high:
                    unresolved.add((conn.process, conn.peer_address, conn.peer_port))
                continue
            if not conn.process:
                continue
            source = next((by_pid[pid] for pid in conn.pids if pid in by_pid), None)
            if source is None:
                pid = min(conn.pids) if conn.pids else None
                name = application_name(conn.process, facts.command_lines.get(pid) if pid else None)
                source = clients.get(name)
                if source is None:
                    source = clients[name] = AppInstance(
                        host=facts, ci_class="application", kind=name, process=conn.process,
                        pids=frozenset(conn.pids), client_only=True)
                    result.client_apps.append(source)
                else:
                    source.pids = source.pids | frozenset(conn.pids)
            edge = (id(source), id(target), conn.peer_port)
            if edge not in seen:
                seen.add(edge)
                result.dependencies.append(Dependency(source, target, conn.peer_port))
        if unresolved:
            result.unresolved[facts.target] = sorted(unresolved)[:500]
    return result
