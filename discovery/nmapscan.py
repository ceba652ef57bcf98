"""Collect and parse for ``scan``: nmap (through python-nmap) finds live addresses and open ports.

``scan_arguments`` decides nmap's options, ``run_nmap`` runs it on validated
subnets only, ``parse_nmap`` turns python-nmap's result (live or recorded from
XML) into ScanHost records. Product and version strings come from the network
and are sanitized like everything a host says.
"""

from __future__ import annotations

import ipaddress
import os
import re

import nmap

from discovery.models import ScanHost, ScanPort
from discovery.parse_network import normalize_mac
from discovery.sanitize import MAX_NAME, clean_text, is_decimal

DEFAULT_PORTS = ("21,22,23,25,53,80,110,111,135,139,143,389,443,445,465,587,636,873,993,995,"
                 "1433,1521,2049,2375,2376,3000,3306,3389,5000,5432,5601,5672,5900,5984,6379,"
                 "6443,8000,8080,8443,8888,9000,9090,9092,9200,9300,11211,15672,27017")
_PORTS = re.compile(r"\d{1,5}(?:-\d{1,5})?(?:,\d{1,5}(?:-\d{1,5})?)*")


class ScanError(RuntimeError):
    """nmap could not run or its output could not be read."""


def validate_ports(ports: str) -> str:
    ports = ports.replace(" ", "")
    if not _PORTS.fullmatch(ports):
        raise ValueError(f"ports must look like '22,80,8000-8100', not {ports!r}")
    for part in ports.split(","):
        for number in part.split("-"):
            if not 0 < int(number) < 65536:
                raise ValueError(f"port out of range: {number}")
    return ports


def validate_subnets(subnets: list[str]) -> list[str]:
    """Canonical CIDR strings; anything else (names, nmap syntax, options) is refused."""
    out = []
    for subnet in subnets:
        out.append(str(ipaddress.ip_network(subnet.strip(), strict=False)))
    return out


NAME_RESOLUTION = {
    # The machine's own resolver (nsswitch: /etc/hosts, sssd, DNS), like every other program on it.
    "system": ["--system-dns"],
    # nmap's parallel DNS client: faster on very large scans, ignores nsswitch.
    "nmap": [],
    "off": ["-n"],
}


def scan_arguments(*, service_versions: bool, privileged: bool, host_timeout: int = 300,
                   names: str = "system") -> str:
    """nmap options: SYN scan and OS guess when root, connect scan otherwise."""
    args = ["-T4", "--max-retries", "2", "--host-timeout", f"{host_timeout}s", *NAME_RESOLUTION[names]]
    if privileged:
        args += ["-sS", "-O", "--osscan-limit", "--max-os-tries", "1"]
    else:
        args += ["-sT"]
    if service_versions:
        args += ["-sV", "--version-light"]
    return " ".join(args)


def scan_plan(subnets: list[str], exclude: list[str] | None = None) -> list[tuple[list[str], list[str], bool]]:
    """One nmap run per address family: (targets, addresses to skip, IPv6?), IPv4 first.

    nmap scans one family per run: ``-6`` makes it skip every IPv4 target (and a run without it
    skips IPv6 ones), so a scope with both families needs two runs, each with its own excludes.
    """
    targets = validate_subnets(subnets)
    skipped = [ipaddress.ip_address(a.strip()) for a in exclude or [] if a.strip()]
    plan = []
    for version in (4, 6):
        family = [t for t in targets if ipaddress.ip_network(t).version == version]
        if family:
            plan.append((family, [str(a) for a in skipped if a.version == version], version == 6))
    return plan


def run_nmap(subnets: list[str], *, ports: str = DEFAULT_PORTS, service_versions: bool = False,
             exclude: list[str] | None = None, names: str = "system", timeout: int = 1800) -> dict:
    """Run nmap on the subnets (once per address family) and return python-nmap's result dict."""
    ports = validate_ports(ports)
    base = scan_arguments(service_versions=service_versions, privileged=os.geteuid() == 0, names=names)
    merged: dict = {"nmap": {}, "scan": {}}
    for targets, skipped, ipv6 in scan_plan(subnets, exclude):
        arguments = base + (" --exclude " + ",".join(skipped) if skipped else "") + (" -6" if ipv6 else "")
        try:
            result = nmap.PortScanner().scan(hosts=" ".join(targets), ports=ports, arguments=arguments,
                                             timeout=timeout)
        except nmap.PortScannerTimeout as exc:
            raise ScanError(f"nmap did not finish within {timeout}s") from exc
        except nmap.PortScannerError as exc:
            raise ScanError(clean_text(str(exc), 500)) from exc
        merged["nmap"] = result.get("nmap") or merged["nmap"]
        merged["scan"].update(result.get("scan") or {})
    return merged


def parse_nmap_xml(xml: str) -> dict:
    """A recorded ``nmap -oX`` document -> python-nmap's result dict."""
    try:
        return nmap.PortScanner().analyse_nmap_xml_scan(nmap_xml_output=xml)
    except nmap.PortScannerError as exc:
        raise ScanError("nmap output is not valid XML") from exc


def parse_nmap(result: dict) -> list[ScanHost]:
    """python-nmap's result -> one ScanHost per address that is up."""
    hosts = []
    for address, data in sorted((result.get("scan") or {}).items()):
        if (data.get("status") or {}).get("state") != "up":
            continue
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            continue
        mac = normalize_mac((data.get("addresses") or {}).get("mac"))
        vendor = (data.get("vendor") or {}).get((data.get("addresses") or {}).get("mac", ""), "")
        names = [h.get("name", "") for h in data.get("hostnames") or [] if h.get("name")]
        host = ScanHost(
            address=address,
            mac=mac,
            vendor=clean_text(vendor, MAX_NAME) or None,
            hostname=(clean_text(names[0], 253).lower() or None) if names else None,
        )
        for protocol in ("tcp", "udp"):
            for port, info in sorted((data.get(protocol) or {}).items()):
                host.ports.append(ScanPort(
                    port=int(port), protocol=protocol, state=clean_text(info.get("state", ""), 32),
                    service=clean_text(info.get("name", ""), 64) or None,
                    product=clean_text(info.get("product", ""), MAX_NAME) or None,
                    version=clean_text(info.get("version", ""), MAX_NAME) or None,
                ))
        matches = data.get("osmatch") or []
        if matches:
            best = matches[0]
            host.os_name = clean_text(best.get("name", ""), MAX_NAME) or None
            accuracy = str(best.get("accuracy", ""))
            host.os_accuracy = int(accuracy) if is_decimal(accuracy) else None
            for osclass in best.get("osclass") or []:
                if osclass.get("osfamily") and host.os_family is None:
                    host.os_family = clean_text(osclass["osfamily"], 64) or None
                if osclass.get("type"):
                    host.os_types.append(clean_text(osclass["type"], 64))
                if osclass.get("vendor"):
                    host.os_vendors.append(clean_text(osclass["vendor"], 64))
        hosts.append(host)
    return hosts
