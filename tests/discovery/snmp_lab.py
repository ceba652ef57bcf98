"""A lab of real network agents for the SNMP tests: two "switches" and four hosts in network namespaces.

Layout (namespaces ``karta-snmp<pid>-<name>``; nothing touches the machine's own network but one
point-to-point /30 per switch)::

        this machine's namespace (the agent, karta serve)
         | ksN<pid>a 10.78.<b>.1/30        | ksN<pid>b 10.78.<b>.5/30
         | mgmt0 .2/30                     | mgmt0 .6/30
      [ sw1: bridge br0 10.78.0.2 ]--swp9---swp9--[ sw2: bridge br0 10.78.0.3 ]
         | swp1        | swp2       | swp3   swp3 |          | swp1
        h1 .11        h3 .13         +--- h4 .14 -+          h2 .12
      (lldpd)       (no lldpd)      eth0 (lldpd) eth1       (lldpd)

* Each switch namespace holds a Linux bridge ``br0`` (fixed MAC, ``Switch.mac``: its chassis id) over
  its ports, a real ``snmpd`` (net-snmp: IF-MIB, IP-MIB; v2c community and a v3 authPriv user) on its
  mgmt0 address, and a real ``lldpd`` speaking LLDP on its ports and serving LLDP-MIB to snmpd over
  AgentX. The two switches are cabled port swp9 to port swp9 (one layer-2 domain, 10.78.0.0/24).
* Each host namespace has ``eth0`` (fixed MAC, ``SnmpHost.mac``) on a switch port; h4 is cabled to both
  switches (eth0 to sw1, eth1 to sw2, no bond: a host that stays reachable when one switch fails).
  h1, h2 and h4 run ``lldpd`` (a station announcing itself, as lldpd on a Linux server does); h3 runs
  nothing, so the switches know it only from ARP.
* Every daemon runs with this lab's own config, sockets, pid files and persistent directory under a
  temp dir; Debian's system-wide snmpd/lldpd are neither used nor started.

``SnmpLab.stop`` kills every process it started (by pid) and deletes its namespaces and files, even
after a half-built start; namespaces left by a killed run are removed by the next one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.discovery.lab import _alive, _destroy_netns, sh, wait_until

PREFIX = "karta-snmp"
COMMUNITY = "karta-lab-community"
V3_USER = "karta"
V3_AUTH_KEY = "lab-auth-key-1"
V3_PRIV_KEY = "lab-priv-key-1"
SNMPD = "/usr/sbin/snmpd"
LLDPD = "/usr/sbin/lldpd"
LLDPCLI = "/usr/sbin/lldpcli"


@dataclass
class Switch:
    name: str
    number: int  # 1, 2: its LAN address is 10.78.0.<number + 1>
    mac: str = ""
    management: str = ""  # the address snmpd answers on, on the switch's side of its /30
    agent_side: str = ""  # this machine's side of that /30 (a server bound here is reachable from the switch)
    netns: str = ""

    @property
    def lan_address(self) -> str:
        return f"10.78.0.{self.number + 1}"


@dataclass
class SnmpHost:
    name: str
    octet: int
    switch: str
    port: str  # the switch port it is cabled to
    lldp: bool = True
    second: tuple[str, str] | None = None  # (switch, port) of a second cable, from eth1 (no address)
    netns: str = ""

    @property
    def address(self) -> str:
        return f"10.78.0.{self.octet}"

    @property
    def mac(self) -> str:
        return f"52:54:00:78:00:{self.octet:02x}"

    @property
    def second_mac(self) -> str:
        return f"52:54:00:78:01:{self.octet:02x}"

    def cables(self) -> list[tuple[str, str, str]]:
        """(switch, port, own interface) of each of its cables."""
        return [(self.switch, self.port, "eth0"), *([(*self.second, "eth1")] if self.second else [])]


def missing_requirements() -> list[str]:
    missing = [] if os.geteuid() == 0 else ["root (network namespaces)"]
    missing += [tool for tool in ("ip", "ping", "snmpwalk", SNMPD, LLDPD, LLDPCLI) if shutil.which(tool) is None]
    return missing


def remove_stale_labs() -> None:
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)-[a-z0-9]+", name)
        if match and not _alive(int(match.group(1))):
            _destroy_netns(name)


class SnmpLab:
    def __init__(self) -> None:
        self.tag = f"{PREFIX}{os.getpid()}"
        self.switches = {s.name: s for s in (Switch("sw1", 1), Switch("sw2", 2))}
        self.hosts = {h.name: h for h in (SnmpHost("h1", 11, "sw1", "swp1"), SnmpHost("h2", 12, "sw2", "swp1"),
                                          SnmpHost("h3", 13, "sw1", "swp2", lldp=False),
                                          SnmpHost("h4", 14, "sw1", "swp3", second=("sw2", "swp3")))}
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self._netns: list[str] = []
        self._links: list[str] = []
        self._procs: list[subprocess.Popen] = []
        self._logs: list = []
        self._stopped = False
        block = 8 * (os.getpid() % 8000)  # two /30s per lab, picked by pid so two runs do not collide
        self._base = (10, 78, 1 + block // 256, block % 256)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- building ---------------------------------------------------------------------------------
    def start(self) -> SnmpLab:
        remove_stale_labs()
        try:
            # The daemons drop privileges (snmpd keeps root; lldpd's AgentX and control sockets are
            # opened by its privileged half): the directory only needs to be traversable.
            self.dir.chmod(0o711)
            for switch in self.switches.values():
                self._make_switch(switch)
            self._cable("sw1", "swp9", "sw2", "swp9")
            for host in self.hosts.values():
                self._make_host(host)
            for switch in self.switches.values():
                self._start_snmpd(switch)
                self._start_lldpd(switch.netns, switch.name, "swp9", ["swp9", *self.host_ports(switch.name)],
                                  agentx=self.dir / f"{switch.name}.agentx", management=switch.lan_address)
            for host in self.hosts.values():
                if host.lldp:
                    self._start_lldpd(host.netns, host.name, "eth0", [own for _, _, own in host.cables()],
                                      agentx=None, management=host.address)
            self._settle()
        except BaseException:
            self.stop()
            raise
        return self

    def _netns_add(self, name: str) -> str:
        netns = f"{self.tag}-{name}"
        sh("ip", "netns", "add", netns)
        self._netns.append(netns)
        sh("ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        sh("ip", "-n", netns, "link", "set", "lo", "up")
        return netns

    def _make_switch(self, switch: Switch) -> None:
        switch.netns = self._netns_add(switch.name)
        switch.mac = f"02:00:00:78:00:{switch.number:02x}"
        a, b, c, d = self._base
        ours, theirs = f"{a}.{b}.{c}.{d + 4 * switch.number - 3}", f"{a}.{b}.{c}.{d + 4 * switch.number - 2}"
        switch.management, switch.agent_side = theirs, ours
        link = f"ks{os.getpid()}{'ab'[switch.number - 1]}"[:15]
        sh("ip", "link", "add", link, "type", "veth", "peer", "name", "mgmt0", "netns", switch.netns)
        self._links.append(link)
        sh("ip", "link", "set", link, "address", f"02:00:00:78:ff:{switch.number:02x}")
        sh("ip", "-n", switch.netns, "link", "set", "mgmt0", "address", f"02:00:00:78:{switch.number:02x}:ff")
        sh("ip", "addr", "add", f"{ours}/30", "dev", link)
        sh("ip", "link", "set", link, "up")
        sh("ip", "-n", switch.netns, "addr", "add", f"{theirs}/30", "dev", "mgmt0")
        sh("ip", "-n", switch.netns, "link", "set", "mgmt0", "up")
        # STP off: the lab has no loop, and a listening port would hold LLDP and ARP back for 30 s.
        sh("ip", "-n", switch.netns, "link", "add", "br0", "address", switch.mac, "type", "bridge", "stp_state", "0")
        sh("ip", "-n", switch.netns, "addr", "add", f"{switch.lan_address}/24", "dev", "br0")
        sh("ip", "-n", switch.netns, "link", "set", "br0", "up")

    def _cable(self, switch_a: str, port_a: str, switch_b: str, port_b: str) -> None:
        ns_a, ns_b = self.switches[switch_a].netns, self.switches[switch_b].netns
        sh("ip", "-n", ns_a, "link", "add", port_a, "type", "veth", "peer", "name", port_b, "netns", ns_b)
        for switch, netns, port in ((switch_a, ns_a, port_a), (switch_b, ns_b, port_b)):
            # lldpd takes its chassis id from a port (-C), never from a bridge: the uplink carries the
            # switch's MAC, as a real switch's ports derive theirs from its base MAC.
            sh("ip", "-n", netns, "link", "set", port, "address", self.switches[switch].mac)
            sh("ip", "-n", netns, "link", "set", port, "master", "br0", "up")

    def _make_host(self, host: SnmpHost) -> None:
        host.netns = self._netns_add(host.name)
        # Only the interface holding an address answers ARP for it (eth1 of a host cabled twice would
        # otherwise answer too, and the switches' ARP tables would hold either MAC).
        sh("ip", "netns", "exec", host.netns, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")
        for switch_name, port, own in host.cables():
            switch = self.switches[switch_name]
            sh("ip", "-n", switch.netns, "link", "add", port, "type", "veth", "peer", "name", own, "netns", host.netns)
            sh("ip", "-n", switch.netns, "link", "set", port, "address", self.port_mac(switch_name, port))
            sh("ip", "-n", switch.netns, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", host.netns, "link", "set", own, "address", host.mac if own == "eth0" else host.second_mac)
            sh("ip", "-n", host.netns, "link", "set", own, "up")
        sh("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")

    def _spawn(self, netns: str, argv: list[str], label: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.dir / f"{label}.log", "w")  # noqa: SIM115 - closed by stop()
        self._logs.append(log)
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
        self._procs.append(proc)
        return proc

    def _start_snmpd(self, switch: Switch) -> None:
        state = self.dir / f"{switch.name}-snmp"
        state.mkdir(mode=0o700)
        config = self.dir / f"{switch.name}-snmpd.conf"
        # createUser lines are read once and rewritten into the persistent directory, ours.
        config.write_text(
            f"agentAddress udp:{switch.management}:161\n"
            f"rocommunity {COMMUNITY} default\n"
            f'createUser {V3_USER} SHA "{V3_AUTH_KEY}" AES "{V3_PRIV_KEY}"\n'
            f"rouser {V3_USER} priv\n"
            f"sysName {switch.name}\n"
            f"sysContact netops@lab.example\n"
            f"sysLocation lab rack {switch.number}\n"
            "master agentx\n"
            f"agentXSocket {self.dir / f'{switch.name}.agentx'}\n"
            "agentXPerms 0660 0711\n")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SNMP_PERSISTENT_DIR": str(state), "MIBS": "",
               "MIBDIRS": str(state)}
        self._spawn(switch.netns, [SNMPD, "-f", "-Lo", "-C", "-c", str(config), "-p",
                                   str(self.dir / f"{switch.name}-snmpd.pid"), "-I", "-hrSWRunTable"],
                    f"{switch.name}-snmpd", env=env)
        wait_until(lambda: (self.dir / f"{switch.name}.agentx").exists(), 20, f"{switch.name} snmpd")

    def _start_lldpd(self, netns: str, name: str, chassis: str, ports: list[str], *, agentx: Path | None,
                     management: str) -> None:
        config = self.dir / f"{name}-lldpd.conf"
        config.write_text(f"configure system hostname {name}\nconfigure lldp tx-interval 1\n")
        config.chmod(0o644)
        argv = [LLDPD, "-d", "-u", str(self.dir / f"{name}.lldpd.socket"), "-O", str(config),
                "-I", ",".join(ports), "-C", chassis, "-m", management, "-S", f"{name} (Karta SNMP lab)"]
        if agentx is not None:
            argv += ["-x", "-X", str(agentx)]
        self._spawn(netns, argv, f"{name}-lldpd")

    def _settle(self, timeout: float = 30) -> None:
        """Wait until each switch sees its LLDP neighbours and knows every host's MAC by ARP."""
        expected = {"sw1": {"h1", "h4", "sw2"}, "sw2": {"h2", "h4", "sw1"}}
        for switch in self.switches.values():
            # snmpd may serve the interface table it read while a port was still coming up until its
            # cache expires (a few seconds): ready once net-snmp's own client reads every port up.
            wait_until(lambda s=switch: self.oper_status(s.name) == {"1"}, timeout, f"{switch.name} ports up")
            wait_until(lambda s=switch: expected[s.name] <= self.lldp_neighbours(s.name), timeout,
                       f"{switch.name} LLDP neighbours")
            for host in self.hosts.values():
                sh("ip", "netns", "exec", switch.netns, "ping", "-c1", "-W1", host.address, check=False)

    def host_ports(self, switch: str) -> list[str]:
        """The ports of a switch cabled to hosts, in the order they were made (their ifIndex order)."""
        return [port for host in self.hosts.values() for name, port, _ in host.cables() if name == switch]

    def port_mac(self, switch: str, port: str) -> str:
        """Every lab MAC is fixed, so the tests can name each one."""
        return f"02:00:00:78:{self.switches[switch].number:02x}:{int(port.removeprefix('swp')):02x}"

    # ---- reading and changing ---------------------------------------------------------------------
    def lldp_neighbours(self, name: str) -> set[str]:
        switch = self.switches[name]
        out = sh("ip", "netns", "exec", switch.netns, LLDPCLI, "-u", str(self.dir / f"{name}.lldpd.socket"),
                 "-f", "keyvalue", "show", "neighbors", check=False).stdout
        return {line.split("=", 1)[1] for line in out.splitlines() if ".chassis.name=" in line}

    def oper_status(self, name: str) -> set[str]:
        """ifOperStatus of every interface, read with net-snmp's snmpwalk (not the agent under test)."""
        out = sh("snmpwalk", "-v2c", "-c", COMMUNITY, "-On", "-Oqv", self.switches[name].management,
                 "1.3.6.1.2.1.2.2.1.8", check=False).stdout
        return set(out.split())

    def cable(self, host: str, up: bool) -> None:
        """Pull (or put back) a host's cable: the host's end goes down, so the switch port loses its link
        while staying enabled, as when a cable is pulled."""
        sh("ip", "-n", self.hosts[host].netns, "link", "set", "eth0", "up" if up else "down")

    def switch_run(self, name: str, argv: list[str], *, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
        """argv run inside a switch's namespace (nmap there sees the hosts on its LAN, MACs included)."""
        return subprocess.run(["ip", "netns", "exec", self.switches[name].netns, *argv], check=False, capture_output=True,
                              text=True, env=env, timeout=timeout)

    def targets(self) -> list[str]:
        return [s.management for s in self.switches.values()]

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(self.dir.glob("*.log")))

    # ---- tearing down -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Kill every process this lab started, delete its namespaces, links and files; safe twice."""
        if self._stopped:
            return
        self._stopped = True
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + 10
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        for log in self._logs:
            log.close()
        for link in self._links:
            sh("ip", "link", "del", link, check=False)
        for netns in reversed(self._netns):
            _destroy_netns(netns)
        shutil.rmtree(self.dir, ignore_errors=True)
