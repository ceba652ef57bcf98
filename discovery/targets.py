"""SSH target lists: a file, a CIDR, a range, or a comma-separated list of them.

Accepted forms, mixed freely (in a file: one or more per line, ``#`` comments):

* ``10.77.0.11`` or ``web-1.lab`` (an address or a DNS name)
* ``10.77.0.0/28`` (every host address of the network)
* ``10.77.0.10-20`` (last-octet range) or ``10.77.0.10-10.77.0.20``
* ``a,b,c`` (any of the above)

A spec that names an existing file is read as a file. The expansion is capped
(``MAX_TARGETS``) so a typo like ``/8`` fails at once instead of queueing
sixteen million hosts. Anything that is not one of these shapes is refused.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from discovery.sanitize import is_decimal

MAX_TARGETS = 65_536
_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def _expand(token: str) -> list[str]:
    if "/" in token:
        try:
            network = ipaddress.ip_network(token, strict=False)
        except ValueError as exc:
            raise ValueError(f"not a CIDR network: {token!r}") from exc
        if network.num_addresses > MAX_TARGETS:
            raise ValueError(f"{token} has {network.num_addresses} addresses; at most {MAX_TARGETS}")
        hosts = list(network.hosts())
        return [str(ip) for ip in (hosts or [network.network_address])]
    if "-" in token and re.fullmatch(r"[0-9.:a-fA-F]+-[0-9.:a-fA-F]+", token):
        start_text, end_text = token.split("-", 1)
        start = ipaddress.ip_address(start_text)
        if "." in end_text or ":" in end_text:
            end = ipaddress.ip_address(end_text)
        else:
            if start.version != 4 or not is_decimal(end_text) or int(end_text) > 255:
                raise ValueError(f"not an address range: {token!r}")
            end = ipaddress.ip_address(str(start).rsplit(".", 1)[0] + "." + end_text)
        if end.version != start.version or int(end) < int(start):
            raise ValueError(f"range ends before it starts: {token!r}")
        if int(end) - int(start) + 1 > MAX_TARGETS:
            raise ValueError(f"range {token} is longer than {MAX_TARGETS} addresses")
        return [str(ipaddress.ip_address(n)) for n in range(int(start), int(end) + 1)]
    try:
        return [str(ipaddress.ip_address(token))]
    except ValueError:
        pass
    if _NAME.fullmatch(token) and not is_decimal(token.replace(".", "")):
        return [token.rstrip(".").lower()]
    raise ValueError(f"not an address, network, range or host name: {token!r}")


def parse_targets(spec: str | list[str]) -> list[str]:
    """Expand a target spec (or several) into unique targets, in order."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    tokens: list[str] = []
    for item in specs:
        path = Path(item)
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.split("#", 1)[0]
                tokens += [t for t in re.split(r"[\s,]+", line) if t]
        else:
            tokens += [t.strip() for t in item.split(",") if t.strip()]
    out: dict[str, None] = {}
    for token in tokens:
        for target in _expand(token):
            out.setdefault(target, None)
            if len(out) > MAX_TARGETS:
                raise ValueError(f"more than {MAX_TARGETS} targets")
    if not out:
        raise ValueError("no targets given")
    return list(out)
