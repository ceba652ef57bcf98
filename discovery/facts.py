"""Parse step: a host's raw reply becomes HostFacts.

``facts_from_output`` is the only entry point the collectors use: it decodes,
cuts the reply into sections with this run's marker and hands each section to
its parser. A section that is missing or unreadable leaves its fields empty
and a warning on the host; it never fails the host.
"""

from __future__ import annotations

from discovery import parse_network as net
from discovery import parse_system as sysp
from discovery.hostscript import Reply, split_reply
from discovery.models import HostFacts
from discovery.sanitize import clean_text, decode

# systemd-detect-virt --vm answers; "none" means bare metal.
VIRTUAL_MACHINE_TYPES = frozenset({
    "qemu", "kvm", "amazon", "zvm", "vmware", "microsoft", "oracle", "powervm",
    "xen", "bochs", "uml", "parallels", "bhyve", "qnx", "acrn", "apple", "sre",
    "google",
})


def facts_from_output(target: str, raw: bytes, token: str) -> tuple[HostFacts, Reply]:
    """Decode and parse one host's reply."""
    reply = split_reply(decode(raw), token)
    return facts_from_reply(target, reply), reply


def facts_from_reply(target: str, reply: Reply) -> HostFacts:
    text = reply.text
    facts = HostFacts(target=target)
    facts.hostname = sysp.parse_hostname(text("hostname"))
    facts.fqdn = sysp.parse_fqdn(text("fqdn"))

    os_release = sysp.parse_os_release(text("os_release"))
    facts.os_id = os_release.get("ID") or None
    facts.os_version = os_release.get("VERSION_ID") or None
    facts.os_pretty_name = os_release.get("PRETTY_NAME") or None
    facts.kernel, facts.architecture = sysp.parse_kernel(text("kernel"))
    facts.machine_id = sysp.parse_machine_id(text("machine_id"))

    dmi = sysp.parse_dmi(text("dmi"))
    facts.serial_number = dmi.get("product_serial") or dmi.get("board_serial")
    facts.product_uuid = dmi.get("product_uuid")
    facts.vendor = dmi.get("sys_vendor")
    facts.product_name = dmi.get("product_name")
    virt = (sysp.first_line(text("virt"), 32) or "").lower()
    facts.virtualization = virt or None

    facts.cpu_count = sysp.parse_int(text("cpu_count"))
    facts.cpu_model = sysp.parse_cpu_model(text("cpu_model"))
    memory = sysp.parse_meminfo(text("meminfo"))
    facts.memory_mb = memory.get("MemTotal")
    facts.swap_mb = memory.get("SwapTotal")
    facts.disks = sysp.parse_lsblk(text("disks"))
    facts.filesystems = sysp.parse_df(text("filesystems"))

    facts.interfaces = net.parse_links(text("links"))
    facts.addresses = net.parse_addresses(text("addresses"))
    facts.listeners = net.parse_listening(text("listening"))
    facts.connections = net.parse_established(text("established"))
    facts.ephemeral_ports = net.parse_port_range(text("port_range")) or facts.ephemeral_ports
    facts.command_lines = sysp.parse_processes(text("processes"))
    facts.services = sysp.parse_services(text("services"))
    if "packages" in reply.sections:
        facts.packages = sysp.parse_packages(text("packages"))

    facts.warnings = [clean_text(w, 200) for w in reply.warnings()]
    if facts.listeners and not any(listener.process for listener in facts.listeners):
        facts.warnings.append("listening: socket owners not readable (not root?)")
    return facts


def is_virtual_machine(facts: HostFacts) -> bool:
    return (facts.virtualization or "none") in VIRTUAL_MACHINE_TYPES
