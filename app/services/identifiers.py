"""Identifier values: normalization, junk detection, and the index rows a CI claims.

A value identifies a machine only if it is specific to it. Firmware placeholders ("Default string",
"To be filled by O.E.M."), all-zero or all-F UUIDs and MACs, shared virtual-router MACs, loopback,
link-local and unspecified addresses, and "localhost" are junk: they are never written to the index,
so two machines can never be merged or refused on them.
"""

import ipaddress
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

# Compared after normalization (lower case, inner whitespace collapsed).
JUNK_VALUES = frozenset(
    {
        "", "0", "00", "000", "0000", "00000000", "none", "null", "n/a", "na", "unknown", "undefined",
        "default string", "default", "to be filled by o.e.m.", "to be filled by oem", "o.e.m.", "oem",
        "system serial number", "system product name", "not specified", "not applicable",
        "not available", "chassis serial number", "serial number", "base board serial number",
        "123456789", "1234567890", "0123456789", "xxxxxxxx", "invalid", "empty", "no asset tag",
        "localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6", "localdomain",
        # the DMI UUID many boards ship with
        "03000200-0400-0500-0006-000700080009",
    }
)
_MAC = re.compile(r"^[0-9a-f]{12}$")
# Virtual MACs shared by routers in a redundancy protocol: they move between machines.
_SHARED_MAC_PREFIXES = ("00005e0001", "00005e0002", "00000c07ac", "00000c9ff")

MAX_IDENTIFIER_LENGTH = 512
# Joins the parts of a composite identification rule's value in the index (name + environment).
PART_SEPARATOR = "\x1f"


def _collapse(value: str) -> str:
    return " ".join(value.split()).lower()


def normalize_mac(value: str) -> str | None:
    digits = re.sub(r"[^0-9a-fA-F]", "", value).lower()
    if not _MAC.match(digits):
        return None
    if digits in ("000000000000", "ffffffffffff") or digits.startswith(_SHARED_MAC_PREFIXES):
        return None
    if int(digits[:2], 16) & 1:  # multicast
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def normalize_address(value: str) -> str | None:
    try:
        address = ipaddress.ip_address(value.strip().split("%", 1)[0].split("/", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if (
        address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
    ):
        return None
    return address.compressed


def normalize_uuid(value: str) -> str | None:
    text = value.strip().lower()
    try:
        parsed = uuid.UUID(text)
    except ValueError:
        return normalize_text(value)
    if parsed.int == 0 or parsed.int == (1 << 128) - 1:
        return None
    canonical = str(parsed)
    return None if canonical in JUNK_VALUES else canonical


def normalize_fqdn(value: str) -> str | None:
    text = _collapse(value).rstrip(".")
    if text in JUNK_VALUES or " " in text or text.startswith("localhost."):
        return None
    return text


def normalize_text(value: str) -> str | None:
    text = _collapse(value)
    if text in JUNK_VALUES:
        return None
    if len(set(text.replace("-", "").replace(" ", ""))) <= 1:
        return None  # "0000-0000", "ffffffff", "xxxxxxx": placeholders
    return text


_NORMALIZERS = {
    "mac_address": normalize_mac,
    "ip_address": normalize_address,
    "address": normalize_address,
    "machine_id": normalize_uuid,
    "product_uuid": normalize_uuid,
    "fqdn": normalize_fqdn,
}


def normalize(key: str, value: Any) -> str | None:
    """The index form of one identifier value, or None when it is junk or not a usable scalar."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    normalized = _NORMALIZERS.get(key, normalize_text)(value)
    if normalized is None or len(normalized) > MAX_IDENTIFIER_LENGTH:
        return None
    return normalized


def _values(key: str, raw: Any) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    seen: dict[str, None] = {}
    for item in items:
        normalized = normalize(key, item)
        if normalized is not None:
            seen.setdefault(normalized)
    return list(seen)


def rule_key(rule: Iterable[str]) -> str:
    return "+".join(rule)


def identifier_values(rules: list[list[str]], facts: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, value) pairs a CI claims under its class's rules, strongest rule first.

    A single-attribute rule may carry a list (a host's MACs): each value is claimed. A composite rule
    (name + environment) is claimed only when every part is present and not junk; its parts join with
    a unit separator so "a|b" + "c" cannot collide with "a" + "b|c".
    """
    pairs: list[tuple[str, str]] = []
    for rule in rules:
        if len(rule) == 1:
            pairs.extend((rule[0], value) for value in _values(rule[0], facts.get(rule[0])))
            continue
        parts = []
        for key in rule:
            raw = facts.get(key)
            normalized = None if isinstance(raw, list) else normalize(key, raw)
            if normalized is None:
                break
            parts.append(normalized)
        else:
            pairs.append((rule_key(rule), PART_SEPARATOR.join(parts)))
    return pairs
