"""A lab of real hosts for discovery tests and the benchmark: network namespaces on one bridge.

Layout (all inside namespaces this module creates; nothing touches the
machine's own network):

* a management namespace ``karta-lab<pid>-mgmt`` holding the bridge ``br0``
  with 10.77.0.1/24. The agent, nmap and Ansible run *in* it
  (``Lab.run``/``Lab.command``); it has no route anywhere but 10.77.0.0/24, and
  its resolv.conf points at its own loopback, so nothing can leave the lab.
* on request (``Lab.open_service_link``), a point-to-point veth between the
  machine's own namespace and the management namespace, on a /30 of its own
  outside the lab subnet: a Karta server started here binds its end, so the
  agent can push to it. Only the management namespace is on that link (the
  hosts have no route to it, the management namespace does not forward), and
  nmap's scans of 10.77.0.0/24 never see it.
* one namespace per host, joined to the bridge by a veth pair, with its own
  UTS, PID, IPC and mount namespaces (``unshare``): its own hostname,
  /etc/machine-id, /etc/os-release, /etc/hosts and /root (with /etc/skel's
  start-up files, not this machine's) bind-mounted, and its own sshd (own
  host key and config, key auth for root with a key the lab makes).
  PID 1 of each host is ``sleep <lifetime>``: when it dies the kernel kills
  every process of that host, and it dies on its own after ``lifetime``.

Services on the hosts (PostgreSQL, Redis, nginx, clients) are started by the
``setup`` hook, see lab_services.py; the benchmark's hosts run sshd only.
``Lab.stop`` tears everything down, step by step, even after a half-built
start; labs left by a killed run are removed by the next one.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUBNET = "10.77.0.0/24"
MGMT_ADDRESS = "10.77.0.1"
PREFIX = "karta-lab"
DEFAULT_LIFETIME = 1800  # seconds a lab host lives even if nobody stops it

@dataclass
class LabHost:
    name: str
    octet: int
    services: tuple[str, ...] = ()  # see lab_services.SERVICES
    os_id: str = "debian"
    os_version: str = "12"
    raw_hostname: bytes | None = None  # set with sethostname(2) as is (hostile hostnames)
    os_release: bytes | None = None  # replaces the generated /etc/os-release
    machine_id: str | None = None  # None: a random valid one
    hide_commands: tuple[str, ...] = ()  # made non-executable inside this host
    fake_commands: tuple[tuple[str, str], ...] = ()  # (command, sh script) replacing it inside this host
    sshd_extra: tuple[str, ...] = ()  # extra sshd_config lines (ForceCommand ...)
    authorized: bool = True  # the lab key may log in as root
    known: bool = True  # its host key is written to the lab's known_hosts
    # filled in by Lab.start
    netns: str = ""
    pid1: int = 0
    host_key: str = ""

    @property
    def address(self) -> str:
        return f"10.77.0.{self.octet}"

    @property
    def mac(self) -> str:
        return f"52:54:00:77:00:{self.octet:02x}"


def missing_requirements() -> list[str]:
    """What this machine lacks to build a lab (empty list: all there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces)")
    for tool in ("ip", "unshare", "nsenter", "setpriv", "nmap", "/usr/sbin/sshd", "ssh-keygen", "/usr/bin/python3"):
        if shutil.which(tool) is None:
            missing.append(tool)
    return missing


def sh(*argv: str, check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, timeout=timeout, capture_output=True, text=True, **kw)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_labs() -> None:
    """Delete namespaces of labs whose owning process is gone (a run that was killed)."""
    listing = sh("ip", "netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)-[a-z0-9-]+", name)
        if match and not _alive(int(match.group(1))):
            _destroy_netns(name)
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


def _destroy_netns(name: str) -> None:
    pids = sh("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    sh("ip", "netns", "del", name, check=False)


class Lab:
    """Build with ``start()`` (or ``with Lab(...) as lab``); always ``stop()``."""

    def __init__(self, hosts: list[LabHost], *, lifetime: int = DEFAULT_LIFETIME,
                 setup: Callable[[Lab], None] | None = None) -> None:
        self.hosts = {h.name: h for h in hosts}
        self.setup = setup  # runs once every host's sshd answers (lab_services.start_services)
        self.lifetime = lifetime
        self.tag = f"{PREFIX}{os.getpid()}"
        self.mgmt = f"{self.tag}-mgmt"
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.key_path = self.dir / "id_ed25519"
        self.known_hosts = self.dir / "known_hosts"
        self._procs: list[subprocess.Popen] = []
        self._logs: list = []
        self._netns: list[str] = []
        self._service_link: str | None = None
        self._stopped = False

    # ---- building -------------------------------------------------------
    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> Lab:
        atexit.register(self.stop)
        try:
            remove_stale_labs()
            os.chmod(self.dir, 0o755)
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "karta-lab", "-f", str(self.key_path))
            self._make_mgmt()
            for host in self.hosts.values():
                self._make_host(host)
            self.known_hosts.write_text("".join(
                f"{h.address} {h.host_key}\n" for h in self.hosts.values() if h.known))
            self.wait_for_tcp([(h.address, 22) for h in self.hosts.values()])
            if self.setup is not None:
                self.setup(self)
        except BaseException:
            self.stop()
            raise
        return self

    def _make_mgmt(self) -> None:
        sh("ip", "netns", "add", self.mgmt)
        self._netns.append(self.mgmt)
        etc = Path("/etc/netns") / self.mgmt
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        (etc / "hosts").write_text("127.0.0.1 localhost\n" + "".join(
            f"{h.address} {h.name}.lab {h.name}\n" for h in self.hosts.values()))
        for argv in (
            ("link", "set", "lo", "up"),
            ("link", "add", "br0", "type", "bridge"),
            ("addr", "add", f"{MGMT_ADDRESS}/24", "dev", "br0"),
            ("link", "set", "br0", "up"),
        ):
            sh("ip", "-n", self.mgmt, *argv)
        sh("ip", "netns", "exec", self.mgmt, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")

    def _make_host(self, host: LabHost) -> None:
        host.netns = f"{self.tag}-{host.name}"
        home = self.dir / host.name
        home.mkdir()
        os.chmod(home, 0o755)
        sh("ip", "netns", "add", host.netns)
        self._netns.append(host.netns)
        sh("ip", "netns", "exec", host.netns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        veth = f"v{host.octet}"
        sh("ip", "-n", self.mgmt, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
            "netns", host.netns)
        sh("ip", "-n", self.mgmt, "link", "set", veth, "master", "br0", "up")
        sh("ip", "-n", host.netns, "link", "set", "lo", "up")
        sh("ip", "-n", host.netns, "link", "set", "eth0", "address", host.mac)
        sh("ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        sh("ip", "-n", host.netns, "link", "set", "eth0", "up")

        (home / "machine-id").write_text((host.machine_id or os.urandom(16).hex()) + "\n")
        (home / "os-release").write_bytes(host.os_release if host.os_release is not None else (
            f'PRETTY_NAME="{host.os_id} {host.os_version} (karta lab)"\nID={host.os_id}\n'
            f'VERSION_ID="{host.os_version}"\n').encode())
        (home / "hosts").write_text(f"127.0.0.1 localhost\n{host.address} {host.name}.lab {host.name}\n")
        (home / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        (home / "hostname").write_bytes(host.raw_hostname or host.name.encode())
        root_home = home / "root"  # a host of its own: not this machine's /root and its shell start-up files
        root_home.mkdir(mode=0o700)
        for name in (".bashrc", ".profile"):
            if Path("/etc/skel", name).is_file():
                shutil.copy(Path("/etc/skel", name), root_home / name)
        (home / "not-installed").write_text("")
        os.chmod(home / "not-installed", 0o644)
        self._make_sshd(host, home)

        # The Python running this lab may live under /root (pyenv): share just that, read-only,
        # so the agent itself can run inside a host.
        shared = ""
        for directory in _interpreter_dirs_under_root():
            (root_home / directory.name).mkdir()
            shared += (f"mount --bind {directory} {root_home / directory.name}\n"
                       f"mount -o remount,bind,ro {root_home / directory.name}\n")
        hides = "".join(f"mount --bind {home}/not-installed {shutil.which(c) or '/nonexistent'}\n"
                        for c in host.hide_commands)
        for command, body in host.fake_commands:
            fake = home / f"fake-{command}"
            fake.write_text("#!/bin/sh\n" + body + "\n")
            os.chmod(fake, 0o755)
            hides += f"mount --bind {fake} {shutil.which(command) or '/nonexistent'}\n"
        init = home / "init.sh"
        init.write_text(textwrap.dedent(f"""\
            set -e
            /usr/bin/python3 -c 'import socket,sys; socket.sethostname(open(sys.argv[1],"rb").read())' {home}/hostname
            mount --bind {home}/machine-id /etc/machine-id
            mount --bind {home}/os-release /etc/os-release
            mount --bind {home}/hosts /etc/hosts
            mount --bind {home}/resolv.conf /etc/resolv.conf
            """) + shared + f"mount --rbind {root_home} /root\n" + hides
            + f"touch {home}/ready\nexec sleep {self.lifetime}\n")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--uts", "--pid", "--ipc", "--mount", "--fork",
             "--mount-proc", "--kill-child", "/bin/sh", str(init)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(home / "init.log", "wb"),
            start_new_session=True)
        self._procs.append(proc)
        wait_until(lambda: (home / "ready").exists() or proc.poll() is not None, 15, f"{host.name} init")
        if proc.poll() is not None:
            raise RuntimeError(f"{host.name}: init failed: {(home / 'init.log').read_text()[-500:]}")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        wait_until(lambda: children.read_text().split(), 5, f"{host.name} pid 1")
        host.pid1 = int(children.read_text().split()[0])
        self.spawn(host, ["/usr/sbin/sshd", "-D", "-e", "-f", str(home / "sshd_config")], "sshd")

    def _make_sshd(self, host: LabHost, home: Path) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(home / "ssh_host_ed25519_key"))
        host.host_key = " ".join((home / "ssh_host_ed25519_key.pub").read_text().split()[:2])
        if host.authorized:
            shutil.copy(self.key_path.with_suffix(".pub"), home / "authorized_keys")
        else:
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / "other_key"))
            shutil.copy(home / "other_key.pub", home / "authorized_keys")
        (home / "sshd_config").write_text("\n".join([
            f"ListenAddress {host.address}", "Port 22",
            f"HostKey {home}/ssh_host_ed25519_key", f"PidFile {home}/sshd.pid",
            f"AuthorizedKeysFile {home}/authorized_keys",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "PrintMotd no",
            "MaxStartups 200", "MaxSessions 50", "LogLevel ERROR", "UseDNS no",
            *host.sshd_extra, "",
        ]))

    def spawn(self, host: LabHost, argv: list[str], label: str, env: dict | None = None) -> None:
        log = open(self.dir / host.name / f"{label}.log", "wb")
        self._logs.append(log)
        proc = subprocess.Popen(
            ["nsenter", "-t", str(host.pid1), "-n", "-u", "-p", "-m", "-i", "--", *argv],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=env)
        self._procs.append(proc)

    # ---- waiting --------------------------------------------------------
    def wait_for_tcp(self, endpoints: list[tuple[str, int]], timeout: float = 60) -> None:
        """Wait (from the management namespace) until every endpoint accepts a connection."""
        if not endpoints:
            return
        probe = textwrap.dedent(f"""\
            import socket, sys, time
            pending = [(a, int(p)) for a, p in (e.split(":") for e in sys.argv[1:])]
            deadline = time.monotonic() + {timeout}
            while pending and time.monotonic() < deadline:
                still = []
                for endpoint in pending:
                    try:
                        socket.create_connection(endpoint, timeout=1).close()
                    except OSError:
                        still.append(endpoint)
                pending = still
                if pending:
                    time.sleep(0.1)
            print(" ".join(f"{{a}}:{{p}}" for a, p in pending))
            sys.exit(1 if pending else 0)
            """)
        result = self.run(["/usr/bin/python3", "-c", probe, *[f"{a}:{p}" for a, p in endpoints]],
                          timeout=timeout + 30)
        if result.returncode != 0:
            raise RuntimeError(f"lab: not listening: {result.stdout.strip()} {self._log_tails()}")

    def _log_tails(self) -> str:
        tails = []
        for log in sorted(self.dir.glob("*/*.log")):
            text = log.read_text(errors="replace").strip()
            if text:
                tails.append(f"[{log.parent.name}/{log.name}] {text[-300:]}")
        return " ".join(tails)

    # ---- using ----------------------------------------------------------
    def command(self, argv: list[str]) -> list[str]:
        """argv run inside the management namespace (where the agent sits)."""
        return ["ip", "netns", "exec", self.mgmt, *argv]

    def run(self, argv: list[str], *, timeout: float = 120, env: dict | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(argv), capture_output=True, text=True, timeout=timeout,
                              env=env, input=input)

    def open_service_link(self) -> tuple[str, str]:
        """Link this machine's namespace to the management namespace; returns (our address, theirs).

        A server bound to our address answers the agent and nobody else on the lab. The /30 is
        picked from 10.77.1.0-10.77.255.255 by this process's pid, so two labs on one machine
        (two test runs) do not claim the same address. The link dies with the management namespace.
        """
        if self._service_link is None:
            block = 4 * (os.getpid() % 16320)  # 16,320 /30s above 10.77.0.0/24
            ours = f"10.77.{1 + block // 256}.{block % 256 + 1}"
            theirs = f"10.77.{1 + block // 256}.{block % 256 + 2}"
            name = f"kl{os.getpid()}"[:15]
            sh("ip", "link", "add", name, "type", "veth", "peer", "name", "svc0", "netns", self.mgmt)
            self._service_link = name
            sh("ip", "addr", "add", f"{ours}/30", "dev", name)
            sh("ip", "link", "set", name, "up")
            sh("ip", "-n", self.mgmt, "addr", "add", f"{theirs}/30", "dev", "svc0")
            sh("ip", "-n", self.mgmt, "link", "set", "svc0", "up")
            self.service_addresses = (ours, theirs)
        return self.service_addresses

    def link_up(self, name: str, up: bool) -> None:
        """Cut (or restore) a host's cable: its bridge port in the management namespace."""
        sh("ip", "-n", self.mgmt, "link", "set", f"v{self.hosts[name].octet}", "up" if up else "down")

    def host_command(self, name: str, argv: list[str]) -> list[str]:
        """argv run inside one lab host (all of its namespaces)."""
        return ["nsenter", "-t", str(self.hosts[name].pid1), "-n", "-u", "-p", "-m", "-i", "--", *argv]

    def host_run(self, name: str, argv: list[str], *, timeout: float = 60,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.host_command(name, argv), capture_output=True, text=True,
                              timeout=timeout, env=env)

    def machine_id(self, name: str) -> str:
        return (self.dir / name / "machine-id").read_text().strip()

    # ---- tearing down ---------------------------------------------------
    def stop(self) -> None:
        """Kill every lab process, delete every namespace and file; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        for host in self.hosts.values():
            if host.pid1:
                try:
                    os.kill(host.pid1, signal.SIGKILL)  # the whole PID namespace goes with it
                except ProcessLookupError:
                    pass
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"lab: process {proc.pid} did not exit", file=sys.stderr)
        for log in self._logs:
            log.close()
        if self._service_link is not None:
            sh("ip", "link", "del", self._service_link, check=False)  # gone with the namespace anyway
        for name in reversed(self._netns):
            _destroy_netns(name)
        shutil.rmtree(f"/etc/netns/{self.mgmt}", ignore_errors=True)
        if _mounts_under(self.dir):  # never delete through a bind mount (it would reach the real /root/.pyenv)
            print(f"lab: {self.dir} still has mounts; left in place", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory`` as this process sees them."""
    prefix = str(directory).rstrip("/") + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == str(directory) or point.startswith(prefix):
            points.append(point)
    return points


def _interpreter_dirs_under_root() -> list[Path]:
    real = Path(os.path.realpath(sys.executable))
    try:
        relative = real.relative_to("/root")
    except ValueError:
        return []
    return [Path("/root") / relative.parts[0]]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"lab: gave up waiting for {what} after {timeout:g}s")
