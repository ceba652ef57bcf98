"""SSH target lists: a file (``@path``), a CIDR, a range, or a comma-separated list of them.

Accepted forms, mixed freely (in a file: one or more per line, ``#`` comments):

* ``10.77.0.11`` or ``web-1.lab`` (an address or a DNS name)
* ``10.77.0.0/28`` (every host address of the network)
* ``10.77.0.10-20`` (last-octet range) or ``10.77.0.10-10.77.0.20``
* ``a,b,c`` (any of the above)
* ``@hosts.txt`` (a file of the above; only on the command line or in the config, not inside a file)

A file is read only when asked for with ``@``: a bare word is always a host, so a host named like a
file that happens to sit in the working directory (``web-1``) is scanned, not read. A bare word that
is no valid target but names a file is refused with a hint to write ``@``; a valid host name that
also names a file is taken as the host, with a note saying so (``notes``). The expansion is capped
(``MAX_TARGETS``) so a typo like ``/8`` fails at once instead of queueing sixteen million hosts.
Anything that is not one of these shapes is refused.
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


def _is_file(name: str) -> bool:
    try:
        return Path(name).is_file()
    except OSError:  # a name too long for the file system is no file
        return False


def _file_tokens(spec: str) -> list[str]:
    if not spec[1:]:
        raise ValueError("'@' needs a file name: --targets @hosts.txt")
    tokens = []
    for line in Path(spec[1:]).read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0]
        tokens += [t for t in re.split(r"[\s,]+", line) if t]
    return tokens


def _expand_bare(token: str, notes: list[str] | None) -> list[str]:
    """A bare word from the command line or the config: a host, never a file (see the docstring)."""
    try:
        targets = _expand(token)
    except ValueError as exc:
        if _is_file(token):
            raise ValueError(f"{exc}; a file by that name exists: write @{token} to read targets from it") from None
        raise
    if notes is not None and _is_file(token):
        notes.append(f"target {token!r} is taken as a host name; to read the file by that name, write @{token}")
    return targets


def parse_targets(spec: str | list[str], notes: list[str] | None = None) -> list[str]:
    """Expand a target spec (or several) into unique targets, in order; ``notes`` gets what is worth saying."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    out: dict[str, None] = {}
    for item in specs:
        for word in (t.strip() for t in item.split(",")):
            if not word:
                continue
            # Targets inside a file are expanded strictly: no '@' there, and no file lookups either.
            expanded = ((t for token in _file_tokens(word) for t in _expand(token)) if word.startswith("@")
                        else _expand_bare(word, notes))
            for target in expanded:
                out.setdefault(target, None)
                if len(out) > MAX_TARGETS:
                    raise ValueError(f"more than {MAX_TARGETS} targets")
    if not out:
        raise ValueError("no targets given")
    return list(out)
