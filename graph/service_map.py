"""A business service's map, computed from its entry points: pure rules over the impact graph.

A service names its entry points (`host:port` or a URL); each resolves, in the service's database
layer, to the application CIs listening there. From those entry applications the map is every CI
they depend on, transitively, along edges that carry impact (graph.providers: applications they
call, data stores, the hosts they run on, what those hosts run on), each CI placed in one layer:

    entry           the applications an entry point resolved to
    applications    other CIs of the application family
    data_stores     CIs of the database class or a class under it
    hosts           CIs of the server or container families
    infrastructure  everything else the walk reached (network devices, hypervisors, clusters, racks)

Which classes make which layer is the caller's to say (it knows the class tree); this module only
applies the order above. An entry point's text is attacker-controlled (it may come from an import),
so it is parsed here strictly and bounded: a parse never raises anything but ValueError naming
the reason.

It must never import `app/`, a web framework or a database driver.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from graph.impact_graph import ImpactGraph
from graph.providers import providers

LAYERS = ("entry", "applications", "data_stores", "hosts", "infrastructure")
MAX_ENTRY_POINTS = 64
MAX_ENTRY_POINT_LENGTH = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::", "*"})
# What a reader would not see as written: spaces, controls, bidirectional and other format marks.
_UNSEEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Zs"})
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


@dataclass(frozen=True)
class EntryPoint:
    """Where people reach a service: `host` lower case (an IPv6 address without brackets) and a port."""

    text: str
    host: str
    port: int

    @property
    def address(self) -> str | None:
        """The host as a canonical IP address, or None when it is a name."""
        try:
            return str(ipaddress.ip_address(self.host))
        except ValueError:
            return None


def _host(text: str) -> str:
    host = text.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ValueError("names no host")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.removesuffix(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError("the host is neither an IP address nor a DNS name")
    return name


def _port(text: str | None, default: int | None) -> int:
    if text is None or text == "":
        if default is None:
            raise ValueError("names no port (write host:port, or a URL of http or https)")
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise ValueError("the port is not a number from 1 to 65535")
    return int(text)


def parse_entry_point(text: object) -> EntryPoint:
    """`host:port`, `[v6]:port` or a URL (`https://shop.example.com/`: its port, or its scheme's) ->
    EntryPoint; ValueError saying what is wrong otherwise."""
    if not isinstance(text, str):
        raise ValueError("is not a string")  # noqa: TRY004 (one exception for every bad value)
    if len(text) > MAX_ENTRY_POINT_LENGTH:
        raise ValueError(f"is longer than {MAX_ENTRY_POINT_LENGTH} characters")
    value = text.strip(" ")
    if any(unicodedata.category(c) in _UNSEEN for c in value):
        raise ValueError("holds a space, a control or a formatting character")
    if "://" in value:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValueError("the URL's port is not a number from 1 to 65535") from None
        if "@" in parts.netloc:
            raise ValueError("a URL with credentials is not an entry point")
        host = _host(parts.hostname or "")
        if port is None:
            return EntryPoint(value, host, _port(None, DEFAULT_PORTS.get(parts.scheme.lower())))
        return EntryPoint(value, host, _port(str(port), None))
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1:end + 2] != ":":
            raise ValueError("is not [address]:port")
        return EntryPoint(value, _host(value[1:end]), _port(value[end + 2:], None))
    host, colon, port = value.rpartition(":")
    if not colon or ":" in host:
        raise ValueError("is not host:port (write an IPv6 address in brackets: [2001:db8::5]:443)")
    return EntryPoint(value, _host(host), _port(port, None))


def entry_point_errors(value: object) -> list[tuple[str, str]]:
    """What is wrong with an `entry_points` attribute, as (path below it, reason): empty when it is a
    list of at most MAX_ENTRY_POINTS entry points that parse."""
    if not isinstance(value, list):
        return [("", "must be a list of 'host:port' or URLs")]
    if len(value) > MAX_ENTRY_POINTS:
        return [("", f"holds more than {MAX_ENTRY_POINTS} entry points")]
    errors = []
    for n, item in enumerate(value):
        try:
            parse_entry_point(item)
        except ValueError as exc:
            errors.append((str(n), str(exc)))
    return errors


def _listen_address(entry: str) -> tuple[str, int] | None:
    """`addr:port` / `[v6]:port` as discovery reports a listening socket -> (address, port)."""
    if not isinstance(entry, str):
        return None
    if entry.startswith("["):
        address, _, port = entry[1:].partition("]:")
    else:
        address, _, port = entry.rpartition(":")
    if not port.isdigit():
        return None
    address = address.split("%", 1)[0]  # fe80::1%eth0
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        pass
    return address, int(port)


def listens_on(attributes: Mapping, port: int, address: str | None) -> bool:
    """Whether an application (by its discovered attributes) serves `port` on `address` (None: the
    entry named its host by name, so any address of the host that is not loopback-only).

    `listen` (["addr:port", ...]) decides when present: a wildcard address serves every address, a
    loopback one only a loopback entry point. Without it, `port` or `ports` (a person's own CI)."""
    listen = attributes.get("listen")
    if isinstance(listen, list) and listen:
        for entry in listen:
            parsed = _listen_address(entry)
            if parsed is None or parsed[1] != port:
                continue
            bound = parsed[0]
            if bound in WILDCARD_ADDRESSES or bound == address:
                return True
            if address is None and not _loopback(bound):
                return True
        return False
    ports = attributes.get("ports")
    return attributes.get("port") == port or (isinstance(ports, list) and port in ports)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def service_map(graph: ImpactGraph, entries: Iterable[str], layer_of_class: Callable[[str | None], str],
                exclude: Iterable[str] = ()) -> dict[str, str]:
    """{ci_id: layer} of the map below the entry applications: each entry, and every CI one of them
    depends on transitively (never a CI of `exclude`, the service itself). An entry the graph does not
    hold is left out (deleted since it resolved). `layer_of_class` names one of LAYERS[1:]."""
    excluded = set(exclude)
    members = {entry: "entry" for entry in entries if entry in graph and entry not in excluded}
    node = graph.graph._node
    for entry in list(members):
        for provider in providers(graph, entry):
            if provider not in members and provider not in excluded:
                layer = layer_of_class(node[provider].get("ci_class") if node.get(provider) else None)
                members[provider] = layer if layer in LAYERS[1:] else "infrastructure"
    return members


def membership_changes(before: Mapping[str, str], after: Mapping[str, str]) -> tuple[dict, dict, dict]:
    """(joined {ci: layer}, left {ci: layer}, moved {ci: (old layer, new layer)}) between two maps."""
    joined = {ci: layer for ci, layer in after.items() if ci not in before}
    left = {ci: layer for ci, layer in before.items() if ci not in after}
    moved = {ci: (before[ci], layer) for ci, layer in after.items() if ci in before and before[ci] != layer}
    return joined, left, moved
