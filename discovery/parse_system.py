"""Parsers for the system sections of a host's reply: identity, OS, hardware, software.

Each takes one section's decoded text and returns cleaned values or None.
Identity values (machine-id, product UUID, serial, FQDN) are validated by
shape here, and known placeholder values are dropped, because the host key of
every application instance is built from them.
"""

from __future__ import annotations

import re
import uuid

from discovery.models import Disk, Filesystem
from discovery.sanitize import MAX_LIST, MAX_NAME, clean_text, is_decimal

_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")
_MACHINE_ID = re.compile(r"[0-9a-f]{32}")

# Values vendors ship instead of a real serial or UUID. Compared case-folded.
PLACEHOLDER_IDENTIFIERS = frozenset({
    "", "none", "null", "n/a", "na", "unknown", "default string", "to be filled by o.e.m.",
    "to be filled by o.e.m", "system serial number", "not specified", "not applicable",
    "0", "00000000", "0123456789", "123456789", "chassis serial number", "invalid",
    "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "03000200-0400-0500-0006-000700080009",
})
# Filesystems that say nothing about a host's storage.
PSEUDO_FILESYSTEMS = frozenset({
    "tmpfs", "devtmpfs", "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue",
    "debugfs", "tracefs", "securityfs", "pstore", "bpf", "configfs", "fusectl",
    "hugetlbfs", "autofs", "binfmt_misc", "efivarfs", "ramfs", "nsfs", "rpc_pipefs",
    "squashfs",
})


def first_line(text: str, limit: int = MAX_NAME) -> str | None:
    for line in text.splitlines():
        value = clean_text(line, limit)
        if value:
            return value
    return None


def is_placeholder(value: str | None) -> bool:
    return value is None or value.strip().casefold() in PLACEHOLDER_IDENTIFIERS


def is_dns_name(value: str | None) -> bool:
    return bool(value) and _HOSTNAME.fullmatch(value.rstrip(".")) is not None


def parse_hostname(text: str) -> str | None:
    return first_line(text, 255)


def parse_fqdn(text: str) -> str | None:
    """``hostname -f``: kept only when it is a dotted DNS name and not localhost."""
    value = (first_line(text) or "").lower().rstrip(".")
    if "." not in value or not _HOSTNAME.fullmatch(value):
        return None
    if value.startswith("localhost"):
        return None
    return value


def parse_os_release(text: str) -> dict[str, str]:
    """``/etc/os-release``: KEY=value lines, first occurrence wins."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", key) or key in out:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        value = re.sub(r"\\(.)", r"\1", value)
        out[key] = clean_text(value, MAX_NAME)
        if len(out) >= 64:
            break
    return out


def parse_kernel(text: str) -> tuple[str | None, str | None]:
    """``uname -s -r -m`` -> (release, machine)."""
    parts = (first_line(text) or "").split()
    if len(parts) >= 3:
        return parts[1][:MAX_NAME], parts[2][:64]
    return None, None


def parse_machine_id(text: str) -> str | None:
    value = (first_line(text) or "").lower()
    if not _MACHINE_ID.fullmatch(value) or set(value) == {"0"}:
        return None
    return value


def parse_dmi(text: str) -> dict[str, str]:
    """``grep -s . /sys/class/dmi/id/<file>...``: 'path:value' lines, placeholders dropped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        path, sep, value = line.partition(":")
        if not sep:
            continue
        key = path.rsplit("/", 1)[-1]
        if key not in ("product_serial", "product_uuid", "sys_vendor", "product_name", "board_serial"):
            continue
        value = clean_text(value, MAX_NAME)
        if key in ("product_serial", "product_uuid", "board_serial") and is_placeholder(value):
            continue
        if key == "product_uuid":
            try:
                parsed = uuid.UUID(value)
            except ValueError:
                continue
            value = str(parsed)
            if is_placeholder(value):
                continue
        out.setdefault(key, value)
    return out


def parse_int(text: str) -> int | None:
    value = first_line(text) or ""
    return int(value) if is_decimal(value) and len(value) < 10 else None


def parse_cpu_model(text: str) -> str | None:
    line = first_line(text)
    if not line or ":" not in line:
        return None
    return clean_text(line.split(":", 1)[1], MAX_NAME) or None


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` lines -> megabytes by key."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+):\s+(\d{1,15})\s*kB", line.strip())
        if match:
            out[match.group(1)] = int(match.group(2)) // 1024
    return out


def parse_lsblk(text: str) -> list[Disk]:
    """``lsblk -b -d -n -P``: KEY="value" pairs per device; disks only."""
    out: list[Disk] = []
    for line in text.splitlines():
        pairs = dict(re.findall(r'([A-Z]+)="([^"]*)"', line))
        if pairs.get("TYPE") != "disk" or not pairs.get("NAME"):
            continue
        size = pairs.get("SIZE", "")
        if not is_decimal(size) or int(size) == 0:
            continue
        serial = clean_text(pairs.get("SERIAL", ""), MAX_NAME)
        model = clean_text(pairs.get("MODEL", ""), MAX_NAME)
        out.append(Disk(
            name=clean_text(pairs["NAME"], 64),
            size_bytes=int(size),
            model=model or None,
            serial=None if is_placeholder(serial) else serial,
            rotational={"1": True, "0": False}.get(pairs.get("ROTA", "")),
        ))
        if len(out) >= 256:
            break
    return out


def parse_df(text: str) -> list[Filesystem]:
    """``df -P -k -T -l``: real filesystems only (no tmpfs, proc, cgroup...)."""
    out: list[Filesystem] = []
    for line in text.splitlines()[1:]:
        parts = line.split(None, 6)
        if len(parts) < 7 or not is_decimal(parts[2]) or not is_decimal(parts[3]):
            continue
        if parts[1] in PSEUDO_FILESYSTEMS:
            continue
        out.append(Filesystem(
            device=clean_text(parts[0], MAX_NAME),
            fstype=clean_text(parts[1], 32),
            mountpoint=clean_text(parts[6], MAX_NAME),
            size_kb=int(parts[2]),
            used_kb=int(parts[3]),
        ))
        if len(out) >= 512:
            break
    return out


def parse_processes(text: str) -> dict[int, str]:
    """``ps -e -o pid= -o args=`` -> pid: command line (kept in memory only)."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        pid, _, args = line.strip().partition(" ")
        if is_decimal(pid) and len(pid) < 10:
            out[int(pid)] = clean_text(args, 4096)
            if len(out) >= 100_000:
                break
    return out


def parse_services(text: str) -> list[str]:
    """``systemctl list-units --type=service --state=running --plain``: unit names."""
    out: list[str] = []
    for line in text.splitlines():
        unit = line.strip().split(None, 1)[0] if line.strip() else ""
        if unit.endswith(".service"):
            out.append(clean_text(unit, MAX_NAME))
            if len(out) >= MAX_LIST:
                break
    return out


def parse_packages(text: str) -> list[tuple[str, str]]:
    """dpkg-query / rpm 'name<TAB>version' lines, or apk 'name-version-rN' lines."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if "\t" in line:
            name, _, version = line.partition("\t")
        else:  # apk info -v: name-1.2.3-r0
            head, _, release = line.rpartition("-")
            name, _, version = head.rpartition("-")
            version = f"{version}-{release}" if version else ""
        name = clean_text(name, MAX_NAME)
        if name:
            out.append((name, clean_text(version, MAX_NAME)))
        if len(out) >= 20_000:
            break
    return out
