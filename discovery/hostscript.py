"""The one read-only script the agent runs on every host, and how its output is cut.

The same script runs over SSH (one session, one exec of ``/bin/sh -s`` with the
script on standard input) and locally. It is a fixed text: the only things
filled in are a random section marker made by this agent and a 0/1 switch for
the package list. Nothing discovered on any host is ever put into it.

Cost matters (one script per host, thousands of hosts): files are read with
``head -c`` (read and capped by one process), only commands that can block
(DNS, systemd, the package database, block devices) run under ``timeout``,
and only sections whose length grows with the host (sockets, processes,
packages, mounts, interfaces) go through a ``head -c`` pipe.

Each section starts with ``<marker> <name>`` and ends with ``<marker> rc <n>``;
a command that is not installed prints ``<marker> missing <command>`` instead.
The marker carries a per-run random token, so a host that prints marker-looking
lines (a hostname, a package description) cannot forge sections. The reader
caps the whole reply again and stops at a deadline: a hostile host need not
run our script at all.

The script must stay read-only: it writes nothing, starts nothing, changes nothing.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from discovery.sanitize import is_decimal

# Bytes kept per section on the host side, and for a whole reply on our side.
SECTION_CAP = 1_048_576
REPLY_CAP = 8 * 1_048_576

# Order matters only for reading the output; every section is optional.
SECTIONS = (
    "hostname", "fqdn", "os_release", "kernel", "machine_id", "dmi", "virt",
    "cpu_count", "cpu_model", "meminfo", "disks", "filesystems", "links",
    "addresses", "listening", "established", "port_range", "processes",
    "services", "packages",
)

_TEMPLATE = r"""# karta discovery collector (read-only)
M='@@KARTA-%(token)s'
P=%(packages)d
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
LC_ALL=C
export PATH LC_ALL
T=''
if command -v timeout >/dev/null 2>&1; then T='timeout 15'; fi
# sec NAME [-t] [-c] COMMAND...: -t under timeout (may block), -c output capped (may be long).
sec() {
  n=$1; shift; t=''; c=''
  if [ "$1" = -t ]; then t=$T; shift; fi
  if [ "$1" = -c ]; then c=1; shift; fi
  printf '\n%%s %%s\n' "$M" "$n"
  if ! command -v "$1" >/dev/null 2>&1; then
    printf '%%s missing %%s\n' "$M" "$1"
  elif [ -n "$c" ]; then
    { $t "$@" 2>/dev/null </dev/null; printf '\n%%s rc %%s\n' "$M" "$?"; } | head -c %(cap)d
  else
    $t "$@" 2>/dev/null </dev/null; printf '\n%%s rc %%s\n' "$M" "$?"
  fi
}
sec hostname uname -n
sec fqdn -t hostname -f
sec os_release head -c 65536 /etc/os-release
sec kernel uname -s -r -m
sec machine_id head -c 256 /etc/machine-id
sec dmi grep -s . /sys/class/dmi/id/product_serial /sys/class/dmi/id/product_uuid /sys/class/dmi/id/sys_vendor /sys/class/dmi/id/product_name /sys/class/dmi/id/board_serial
sec virt systemd-detect-virt --vm
sec cpu_count nproc
sec cpu_model grep -m 1 -E '^(model name|cpu model|Hardware|uarch)[[:space:]]*:' /proc/cpuinfo
sec meminfo grep -E '^(MemTotal|SwapTotal):' /proc/meminfo
sec disks -t -c lsblk -b -d -n -P -o NAME,TYPE,SIZE,MODEL,SERIAL,ROTA
sec filesystems -t -c df -P -k -T -l
sec links -c ip -o link show
sec addresses -c ip -o addr show
sec listening -c ss -H -t -l -n -p
sec established -c ss -H -t -n -p state established
sec port_range head -c 64 /proc/sys/net/ipv4/ip_local_port_range
sec processes -c ps -e -o pid= -o args=
sec services -t -c systemctl list-units --type=service --state=running --no-legend --no-pager --plain
if [ "$P" = 1 ]; then
  if command -v dpkg-query >/dev/null 2>&1; then
    sec packages -t -c dpkg-query -W -f '${Package}\t${Version}\n'
  elif command -v rpm >/dev/null 2>&1; then
    sec packages -t -c rpm -qa --qf '%%{NAME}\t%%{VERSION}-%%{RELEASE}\n'
  else
    sec packages -t -c apk info -v
  fi
fi
printf '\n%%s end\n' "$M"
"""

# Sections whose non-zero exit status means data is missing. The others end
# non-zero in normal cases (a second fallback file absent, grep with no match,
# systemd-detect-virt on bare metal).
_RC_MATTERS = frozenset({
    "kernel", "cpu_count", "disks", "filesystems", "links", "addresses", "listening",
    "established", "processes", "services", "packages",
})

_TOKEN_SHAPE = re.compile(r"[0-9a-f]{16}")


def new_token() -> str:
    """A fresh random marker token for one run."""
    return secrets.token_hex(8)


def render(token: str, *, packages: bool = False) -> str:
    """The collector script with this run's marker token."""
    if not _TOKEN_SHAPE.fullmatch(token):
        raise ValueError("marker token must be 16 lowercase hex digits")
    return _TEMPLATE % {"token": token, "packages": int(packages), "cap": SECTION_CAP}


@dataclass
class Section:
    name: str
    text: str = ""
    rc: int | None = None  # None: no rc line (cut by the cap or by a timeout)
    missing: str | None = None  # the command that was not installed

    @property
    def ok(self) -> bool:
        return self.missing is None and self.rc == 0


@dataclass
class Reply:
    """A host's reply cut into sections."""

    sections: dict[str, Section] = field(default_factory=dict)
    finished: bool = False  # the script's last line arrived

    def text(self, name: str) -> str:
        section = self.sections.get(name)
        return section.text if section else ""

    def warnings(self) -> list[str]:
        """What went wrong, per section, in words fit for an attribute."""
        out = []
        for name, section in self.sections.items():
            if section.missing:
                out.append(f"{name}: command not found: {section.missing}")
            elif section.rc is None:
                out.append(f"{name}: output cut off")
            elif section.rc in (124, 137):
                out.append(f"{name}: timed out")
            elif section.rc != 0 and name in _RC_MATTERS:
                out.append(f"{name}: exit status {section.rc}")
        if not self.finished:
            out.append("reply incomplete")
        return out


def split_reply(text: str, token: str) -> Reply:
    """Cut decoded output into sections using this run's marker.

    Lines that do not start with the marker belong to the current section; a
    section name we do not know, or a second header for a section already
    seen, is treated as content, never as structure.
    """
    marker = f"@@KARTA-{token}"
    reply = Reply()
    current: Section | None = None
    body: list[str] = []

    def close() -> None:
        if current is not None:
            # The rc line is preceded by a newline of our own; drop that blank.
            current.text = "\n".join(body).strip("\n")

    for line in text.split("\n"):
        if not line.startswith(marker + " "):
            if current is not None:
                body.append(line)
            continue
        rest = line[len(marker) + 1:].strip()
        word, _, arg = rest.partition(" ")
        if word == "end" and not arg:
            close()
            current, body = None, []
            reply.finished = True
            continue
        if current is not None and word == "rc" and is_decimal(arg.lstrip("-")):
            current.rc = int(arg)
            continue
        if current is not None and word == "missing" and arg:
            current.missing = arg[:64]
            continue
        if word in SECTIONS and not arg and word not in reply.sections:
            close()
            current, body = Section(word), []
            reply.sections[word] = current
            continue
        if current is not None:
            body.append(line)
    close()
    return reply
