"""Parsers for the network sections of a host's reply: ip(8) links and addresses, ss(8) sockets.

Each parser takes the text of one section (already decoded) and returns
records; a line it cannot read is skipped, never guessed at. Addresses are
validated with ``ipaddress`` and IPv4-mapped IPv6 addresses are folded to IPv4
so the two ends of one connection compare equal.
"""

from __future__ import annotations

import ipaddress
import re

from discovery.models import Connection, Interface, InterfaceAddress, Listener
from discovery.sanitize import MAX_LIST, clean_text, is_decimal

_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_LINK = re.compile(r"^\d+:\s+(?P<name>[^\s:@]+)(?:@\S*)?:\s+<(?P<flags>[^>]*)>(?P<rest>.*)$")
_ADDR = re.compile(
    r"^\d+:\s+(?P<ifname>\S+)\s+(?P<family>inet6?)\s+(?P<addr>[0-9A-Fa-f.:]+)(?:/(?P<prefix>\d{1,3}))?(?P<rest>.*)$"
)
_USERS = re.compile(r'\("((?:[^"\\]|\\.){0,64})",pid=(\d{1,10})')
WILDCARDS = frozenset({"*", "0.0.0.0", "::"})


def normalize_mac(value: str | None) -> str | None:
    if not value:
        return None
    mac = value.strip().lower().replace("-", ":")
    if not _MAC.fullmatch(mac) or mac in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"):
        return None
    return mac


def normalize_address(value: str) -> str | None:
    """A canonical IP address string, or None if the text is not one."""
    text = value.strip().strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def is_routable_host_address(address: str) -> bool:
    """True for an address worth recording as a CI: not loopback, link-local, multicast or unspecified."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved)


def parse_links(text: str) -> list[Interface]:
    """``ip -o link show``: one interface per line."""
    out: list[Interface] = []
    for line in text.splitlines():
        match = _LINK.match(line.strip())
        if not match:
            continue
        rest = match.group("rest")
        mtu = re.search(r"\bmtu (\d{1,6})\b", rest)
        state = re.search(r"\bstate (\S+)", rest)
        link = re.search(r"\blink/(\S+)(?:\s+(\S+))?", rest)
        kind = link.group(1) if link else None
        mac = normalize_mac(link.group(2)) if link and kind == "ether" else None
        out.append(Interface(
            name=clean_text(match.group("name"), 64),
            mac=mac,
            state=clean_text(state.group(1), 32) if state else None,
            mtu=int(mtu.group(1)) if mtu else None,
            kind=clean_text(kind, 32) if kind else None,
        ))
        if len(out) >= MAX_LIST:
            break
    return out


def parse_addresses(text: str) -> list[InterfaceAddress]:
    """``ip -o addr show``: one address per line."""
    out: list[InterfaceAddress] = []
    for line in text.splitlines():
        match = _ADDR.match(line.strip())
        if not match:
            continue
        address = normalize_address(match.group("addr"))
        if address is None:
            continue
        scope = re.search(r"\bscope (\S+)", match.group("rest"))
        prefix = match.group("prefix")
        out.append(InterfaceAddress(
            interface=clean_text(match.group("ifname"), 64),
            address=address,
            prefix_length=int(prefix) if prefix is not None else None,
            family=match.group("family"),
            scope=clean_text(scope.group(1), 32) if scope else None,
        ))
        if len(out) >= MAX_LIST:
            break
    return out


def _endpoint(text: str) -> tuple[str, int | None] | None:
    """'10.0.0.1:80', '[::1]:22', '*:22', '127.0.0.53%lo:53' -> (address, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return None
    host = host.strip("[]").split("%", 1)[0]
    if host == "*":
        address = "*"
    else:
        address = normalize_address(host)
        if address is None:
            return None
    if port == "*":
        return address, None
    if not is_decimal(port) or not 0 < int(port) < 65536:
        return None
    return address, int(port)


def _owners(field: str) -> tuple[str | None, tuple[int, ...]]:
    users = _USERS.findall(field)
    if not users:
        return None, ()
    name = clean_text(users[0][0].replace('\\"', '"'), 64) or None
    pids = tuple(sorted({int(pid) for _, pid in users}))
    return name, pids


def _socket_fields(line: str) -> tuple[str, str, str] | None:
    """Local, peer and process columns of an ss line, with or without the State column."""
    parts = line.split(None, 1)
    if not parts:
        return None
    if not is_decimal(parts[0]):  # State column present (ss -l prints it)
        line = parts[1] if len(parts) > 1 else ""
    fields = line.split(None, 4)
    if len(fields) < 4 or not is_decimal(fields[0]) or not is_decimal(fields[1]):
        return None
    return fields[2], fields[3], fields[4] if len(fields) > 4 else ""


def parse_listening(text: str) -> list[Listener]:
    """``ss -H -t -l -n -p``: listening TCP sockets and their owners."""
    seen: dict[tuple[str, int], Listener] = {}
    for line in text.splitlines():
        fields = _socket_fields(line.strip())
        if not fields:
            continue
        local = _endpoint(fields[0])
        if local is None or local[1] is None:
            continue
        process, pids = _owners(fields[2])
        key = (local[0], local[1])
        if key not in seen:
            seen[key] = Listener(address=local[0], port=local[1], process=process, pids=pids)
        if len(seen) >= MAX_LIST:
            break
    return list(seen.values())


def parse_established(text: str) -> list[Connection]:
    """``ss -H -t -n -p state established``: connections and their owners."""
    out: list[Connection] = []
    for line in text.splitlines():
        fields = _socket_fields(line.strip())
        if not fields:
            continue
        local, peer = _endpoint(fields[0]), _endpoint(fields[1])
        if local is None or peer is None or local[1] is None or peer[1] is None:
            continue
        process, pids = _owners(fields[2])
        out.append(Connection(local[0], local[1], peer[0], peer[1], process, pids))
        if len(out) >= MAX_LIST:
            break
    return out


def parse_port_range(text: str) -> tuple[int, int] | None:
    """``/proc/sys/net/ipv4/ip_local_port_range``: the ephemeral port range."""
    numbers = text.split()
    if len(numbers) >= 2 and is_decimal(numbers[0]) and is_decimal(numbers[1]):
        low, high = int(numbers[0]), int(numbers[1])
        if 0 < low <= high < 65536:
            return low, high
    return None
