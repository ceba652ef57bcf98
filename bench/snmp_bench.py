"""Benchmark: Karta's SNMP discovery over 20 real net-snmp agents (issue #15: 20 walks in <= 10 s).

    sudo .venv/bin/python bench/snmp_bench.py [--agents 20] [--ports 48] [--rounds 3]

Builds, in network namespaces only (``karta-snmp<pid>-b...``: the machine's own namespace gets no
interface, address or route), one management namespace and ``--agents`` switch namespaces:

* the management namespace holds a bridge ``br0`` (10.79.0.1/24) with one veth to each switch; the
  walks run in it, so they reach the agents and nothing else;
* each switch namespace holds a Linux bridge ``br0`` (10.80.<i>.1/24) over ``--ports`` veth ports
  ``swp1..`` (their far ends in one "stations" namespace), a real ``snmpd`` on ``mgmt0``
  (10.79.0.<10+i>, its own config, state directory and AgentX socket: tests/discovery/snmp_lab.py's
  config writer, v2c community and v3 authPriv user SHA/AES) and a real ``lldpd`` on its ports serving
  LLDP-MIB to that snmpd over AgentX (the lab's lldpd set-up);
* the stations namespace runs one ``lldpd`` on every far end, so each switch port has one LLDP
  neighbour (one chassis for all: the batch sees one station on every port, which costs the build
  step a little and the walk nothing); each switch's ARP cache holds one entry per port, entered by hand because the stations
  have no addresses (``ip neigh ... nud permanent``, so IP-MIB types them static(4): a learned entry
  would do, but the kernel's neighbour table is shared by all namespaces, over its gc_thresh1 (128)
  here, and a stale entry nobody uses is collected within a minute).

So each agent serves: the system group; IF-MIB ifTable/ifXTable with ports + 3 rows (lo, mgmt0, br0);
IP-MIB addresses (ipAddressTable, ipAddrTable: lo, mgmt0, br0) and ARP (ipNetToPhysicalTable,
ipNetToMediaTable: one row per port, plus the management bridge's); LLDP-MIB local system, local ports
and one remote row per port (lldpd over AgentX). Debian's snmpd has no BRIDGE-MIB/Q-BRIDGE-MIB module:
the walk asks for those subtrees as for any device and gets their ends at once (a device without them).
snmpd runs with the lab's config as the tests use it (it logs one line per request to its log file:
agent-side work on the same cores, not in the walker's CPU time).

Once every agent answers its ports up and its LLDP rows (net-snmp's snmpwalk, not the code under
test), lldpd's transmit interval goes from the lab's 1 s to 30 s, so LLDP chatter does not load the
machine while the walks are timed. Then, for v2c and for v3 authPriv, ``--rounds`` times:

* a child process in the management namespace imports the agent (pysnmp's import timed apart, as
  every `karta discover snmp` pays it once), then runs ``discovery.snmp.scope.snmp_scope`` -- what the
  CLI runs: collect_devices (one asyncio loop, one SnmpEngine, the config's default concurrency) then
  parse and build the batch -- with the settings ``resolve_settings`` makes from the environment, as
  the CLI does. It times that call (wall clock and process CPU time) and counts varbinds: those the
  walks kept (the dict parse_walk gets) and those pysnmp decoded (every varbind of every response, the
  GETBULK overshoot past a subtree's end included), by wrapping parse_walk and pysnmp's get_cmd/bulk_cmd
  with counters that call the real functions. Every device must be ``ok`` with all its ports, ARP
  entries and LLDP neighbours, or the run fails.
* the whole command, ``python -m discovery.cli snmp --targets ... --dry-run`` (interpreter start-up,
  imports, walk, batch JSON printed), is timed once per round as a cross-check.

Needs root (namespaces), snmpd, lldpd, snmpwalk. Everything started is stopped (by pid) and every
namespace deleted on the way out, Ctrl-C and failures included; namespaces a killed run left are
removed by the next run (snmp_lab.remove_stale_labs). Writes bench/results/snmp.md (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results" / "snmp.md"
MGMT_NET = "10.79.0"  # the management LAN, inside the management namespace and the switches only
LLDP_REM_SYS_NAME = "1.0.8802.1.1.2.1.4.1.1.9"
IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
EXTRA_INTERFACES = 3  # lo, mgmt0, br0
WALK_TIMEOUT = 300  # seconds one child walk may take, whatever happens


# ---- the child: one walk of every agent, as `karta discover snmp` does it ------------------------------------
def walk_child(version: str, targets: list[str]) -> None:
    """Runs inside the management namespace; prints one JSON line with its measures."""
    wall, cpu = time.perf_counter(), time.process_time()
    import pysnmp.hlapi.v3arch.asyncio as hlapi

    from discovery.snmp import client
    from discovery.snmp.scope import snmp_scope
    from discovery.snmp.settings import resolve_settings

    import_wall, import_cpu = time.perf_counter() - wall, time.process_time() - cpu
    counts = {"kept": 0, "received": 0}
    real_parse, real_get, real_bulk = client.parse_walk, hlapi.get_cmd, hlapi.bulk_cmd

    def parse_walk(target, walk):
        counts["kept"] += len(walk)
        return real_parse(target, walk)

    async def get_cmd(*args, **kw):
        answer = await real_get(*args, **kw)
        counts["received"] += len(answer[3])
        return answer

    async def bulk_cmd(*args, **kw):
        answer = await real_bulk(*args, **kw)
        counts["received"] += len(answer[3])
        return answer

    client.parse_walk, hlapi.get_cmd, hlapi.bulk_cmd = parse_walk, get_cmd, bulk_cmd
    settings, warnings = resolve_settings(None, version=version)
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = snmp_scope("snmp", targets, settings)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    devices = [{"target": r.target, "status": r.status, "error": r.error, "requests": r.requests,
                "seconds": r.seconds,
                "interfaces": len(r.facts.interfaces) if r.facts else 0, "arp": len(r.facts.arp) if r.facts else 0,
                "addresses": len(r.facts.addresses) if r.facts else 0, "lldp": len(r.facts.lldp) if r.facts else 0}
               for r in outcome.results]
    print(json.dumps({"wall": wall, "cpu": cpu, "import_wall": import_wall, "import_cpu": import_cpu,
                      "concurrency": settings.concurrency, "timeout": settings.timeout, "retries": settings.retries,
                      "items": len(outcome.batch["items"]) if outcome.batch else 0, "warnings": warnings,
                      "requests": sum(d["requests"] for d in devices), **counts, "devices": devices}))


# ---- the parent: the lab, the rounds, the table -------------------------------------------------------------
def build_lab_class():
    from tests.discovery.lab import sh
    from tests.discovery.snmp_lab import LLDPCLI, SnmpLab, Switch, remove_stale_labs

    class BenchLab(SnmpLab):
        """SnmpLab's process, namespace and file bookkeeping (and its stop()), snmpd config writer and
        lldpd set-up, over a layout of its own: N switches with P ports each (see the module docstring)."""

        def __init__(self, agents: int, ports: int) -> None:
            super().__init__()
            self.hosts = {}
            self.ports = ports
            self.switches = {f"bsw{i:02d}": Switch(f"bsw{i:02d}", i, mac=f"02:00:00:79:{i:02x}:01",
                                                   management=f"{MGMT_NET}.{10 + i}")
                             for i in range(1, agents + 1)}
            self.mgmt = self.stations = ""

        def start(self) -> BenchLab:
            remove_stale_labs()
            try:
                self.dir.chmod(0o711)
                self.mgmt = self._netns_add("bmgmt")
                self.stations = self._netns_add("bsta")
                self._batch(self.mgmt, ["link add br0 type bridge stp_state 0", f"addr add {MGMT_NET}.1/24 dev br0",
                                        "link set br0 up"])
                for switch in self.switches.values():
                    self._make_bench_switch(switch)
                for switch in self.switches.values():
                    self._start_snmpd(switch)
                    self._start_lldpd(switch.netns, switch.name, "swp1", ["swp*"], agentx=self.dir / f"{switch.name}.agentx",
                                      management=f"10.80.{switch.number}.1")
                self._start_lldpd(self.stations, "bsta", "s01p01", ["s*p*"], agentx=None, management="10.80.0.1")
            except BaseException:
                self.stop()
                raise
            return self

        def _batch(self, netns: str, commands: list[str]) -> None:
            """Many `ip` commands in one process (ip -batch): 20 x 48 ports would be ~5,000 processes."""
            sh("ip", "-n", netns, "-batch", "-", input="\n".join(commands) + "\n", timeout=120)

        def _make_bench_switch(self, switch: Switch) -> None:
            i = switch.number
            switch.netns = self._netns_add(switch.name)
            self._batch(self.mgmt, [f"link add m{i:02d} type veth peer name mgmt0 netns {switch.netns}",
                                    f"link set m{i:02d} master br0 up"])
            commands = [f"addr add {switch.management}/24 dev mgmt0", "link set mgmt0 up",
                        f"link add br0 address {switch.mac} type bridge stp_state 0",
                        f"addr add 10.80.{i}.1/24 dev br0", "link set br0 up"]
            for j in range(1, self.ports + 1):
                commands += [f"link add swp{j} address 02:00:00:79:{i:02x}:{j:02x} type veth peer name s{i:02d}p{j:02d} "
                             f"address 52:54:00:79:{i:02x}:{j:02x} netns {self.stations}",
                             f"link set swp{j} master br0 up",
                             f"neigh replace 10.80.{i}.{9 + j} lladdr 52:54:00:79:{i:02x}:{j:02x} dev br0 nud permanent"]
            self._batch(switch.netns, commands)
            self._batch(self.stations, [f"link set s{i:02d}p{j:02d} up" for j in range(1, self.ports + 1)])

        def run_in_mgmt(self, argv: list[str], *, env: dict, timeout: float) -> subprocess.CompletedProcess:
            return subprocess.run(["ip", "netns", "exec", self.mgmt, *argv], check=False, capture_output=True,
                                  text=True, env=env, timeout=timeout)

        def snmpwalk(self, switch: Switch, oid: str) -> list[str]:
            from tests.discovery.snmp_lab import COMMUNITY

            out = sh("ip", "netns", "exec", self.mgmt, "snmpwalk", "-v2c", "-c", COMMUNITY, "-On", "-Oqv",
                     switch.management, oid, check=False).stdout
            return out.strip().splitlines()

        def settle(self, timeout: float) -> None:
            """Every port up and every LLDP neighbour in LLDP-MIB, as net-snmp's own client reads them."""
            deadline = time.monotonic() + timeout
            waiting = dict(self.switches)
            while waiting:
                for name, switch in list(waiting.items()):
                    up = self.snmpwalk(switch, IF_OPER_STATUS)
                    if len(up) == self.ports + EXTRA_INTERFACES and set(up) == {"1"} and \
                            len(self.snmpwalk(switch, LLDP_REM_SYS_NAME)) == self.ports:
                        del waiting[name]
                if waiting and time.monotonic() > deadline:
                    raise TimeoutError(f"not settled after {timeout:g}s: {', '.join(sorted(waiting))}\n{self.log_tails()}")
                if waiting:
                    time.sleep(1)

        def quiet_lldp(self) -> None:
            for name, netns in [(s.name, s.netns) for s in self.switches.values()] + [("bsta", self.stations)]:
                sh("ip", "netns", "exec", netns, LLDPCLI, "-u", str(self.dir / f"{name}.lldpd.socket"),
                   "configure", "lldp", "tx-interval", "30")

        def targets(self) -> list[str]:
            return [s.management for s in self.switches.values()]

    return BenchLab


def credentials_env(version: str) -> dict[str, str]:
    from bench.lab_karta import agent_env
    from tests.discovery.snmp_lab import COMMUNITY, V3_AUTH_KEY, V3_PRIV_KEY, V3_USER

    if version == "2c":
        return agent_env(KARTA_SNMP_COMMUNITY=COMMUNITY)
    return agent_env(KARTA_SNMP_USER=V3_USER, KARTA_SNMP_AUTH_KEY=V3_AUTH_KEY, KARTA_SNMP_PRIV_KEY=V3_PRIV_KEY,
                     KARTA_SNMP_AUTH_PROTOCOL="SHA", KARTA_SNMP_PRIV_PROTOCOL="AES")


def one_walk(lab, version: str, ports: int) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", version, "--targets", ",".join(lab.targets())]
    done = lab.run_in_mgmt(argv, env=credentials_env(version), timeout=WALK_TIMEOUT)
    if done.returncode != 0:
        raise SystemExit(f"walk ({version}) failed (rc {done.returncode}): {done.stderr[-3000:]}")
    measure = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = [d for d in measure["devices"] if d["status"] != "ok" or d["interfaces"] != ports + EXTRA_INTERFACES
             or d["lldp"] != ports or d["arp"] < ports]
    if wrong:
        raise SystemExit(f"walk ({version}): devices not walked whole: {wrong[:3]}")
    return measure


def one_cli(lab, version: str, agents: int) -> float:
    argv = [sys.executable, "-m", "discovery.cli", "snmp", "--targets", ",".join(lab.targets()),
            "--snmp-version", version, "--dry-run"]
    started = time.perf_counter()
    done = lab.run_in_mgmt(argv, env=credentials_env(version), timeout=WALK_TIMEOUT)
    seconds = time.perf_counter() - started
    summary = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    if done.returncode != 0 or f"hosts={agents}/{agents} ok" not in summary:
        raise SystemExit(f"karta discover snmp ({version}) failed (rc {done.returncode}): {done.stderr[-3000:]}")
    batch = json.loads(done.stdout)
    if sum(item["class"] == "network_device" for item in batch["items"]) < agents:
        raise SystemExit(f"karta discover snmp ({version}): fewer than {agents} devices in the batch")
    return seconds


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0].strip() if text else "?"


def pysnmp_version() -> str:
    from importlib.metadata import version

    return version("pysnmp")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=20, choices=range(1, 101), metavar="1..100")
    parser.add_argument("--ports", type=int, default=48, choices=range(1, 97), metavar="1..96")
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 21), metavar="1..20")
    parser.add_argument("--settle-seconds", type=float, default=120)
    parser.add_argument("--child", choices=("2c", "3"), help=argparse.SUPPRESS)
    parser.add_argument("--targets", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        walk_child(args.child, args.targets.split(","))
        return 0

    from bench.lab_karta import publish
    from tests.discovery.snmp_lab import missing_requirements

    missing = missing_requirements()
    if missing:
        print("cannot run the SNMP benchmark, missing: " + ", ".join(missing)
              + ("; run it as root: sudo .venv/bin/python bench/snmp_bench.py" if os.geteuid() else ""),
              file=sys.stderr)
        return 2
    # SIGTERM (and SIGHUP) end the run as Ctrl-C does, through the lab's stop().
    def interrupted(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)

    load_before = os.getloadavg()
    started = time.monotonic()
    measures: dict[str, list[dict]] = {"2c": [], "3": []}
    cli: dict[str, list[float]] = {"2c": [], "3": []}
    with build_lab_class()(args.agents, args.ports) as lab:
        built = time.monotonic() - started
        lab.settle(args.settle_seconds)
        lab.quiet_lldp()
        settled = time.monotonic() - started
        print(f"lab built in {built:.1f}s, settled at {settled:.1f}s", file=sys.stderr)
        for round_ in range(1, args.rounds + 1):
            for version in ("2c", "3"):
                measures[version].append(one_walk(lab, version, args.ports))
                cli[version].append(one_cli(lab, version, args.agents))
                m = measures[version][-1]
                print(f"round {round_} v{version}: walk {m['wall']:.2f}s cpu {m['cpu']:.2f}s "
                      f"{m['kept']} varbinds kept, {m['received']} received, {m['requests']} requests; "
                      f"whole CLI {cli[version][-1]:.2f}s", file=sys.stderr)
    load_after = os.getloadavg()

    sample = measures["2c"][0]
    device = sample["devices"][0]
    rows = []
    for version, label in (("2c", "v2c"), ("3", "v3 authPriv (SHA/AES)")):
        for n, m in enumerate(measures[version], 1):
            rows.append(f"| {label} | {n} | {m['wall']:.2f} | {max(d['seconds'] for d in m['devices']):.2f} | "
                        f"{m['cpu']:.2f} | {m['requests']:,} | {m['kept']:,} | {m['received']:,} | "
                        f"{1000 * m['cpu'] / m['kept']:.3f} | {1000 * m['cpu'] / m['received']:.3f} | "
                        f"{cli[version][n - 1]:.2f} |")
        walls = [m["wall"] for m in measures[version]]
        per_kept = [1000 * m["cpu"] / m["kept"] for m in measures[version]]
        per_received = [1000 * m["cpu"] / m["received"] for m in measures[version]]
        rows.append(f"| **{label}** | **median** | **{statistics.median(walls):.2f}** | | "
                    f"**{statistics.median(m['cpu'] for m in measures[version]):.2f}** | | | | "
                    f"**{statistics.median(per_kept):.3f}** | **{statistics.median(per_received):.3f}** | "
                    f"**{statistics.median(cli[version]):.2f}** |")
    imports = [m["import_wall"] for v in measures.values() for m in v]
    command = f"sudo .venv/bin/python bench/snmp_bench.py --agents {args.agents} --ports {args.ports} --rounds {args.rounds}"
    header = [
        "# SNMP discovery benchmark", "",
        f"`{command}`",
        f"on {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"pysnmp {pysnmp_version()}, {tool_version(['snmpwalk', '--version'])}, "
        f"lldpd {tool_version(['/usr/sbin/lldpd', '-v'])}.",
        f"{args.agents} agents (real snmpd + lldpd over AgentX, each in its own namespace), {args.ports} ports each: "
        f"{device['interfaces']} IF-MIB rows, {device['addresses']} addresses, {device['arp']} ARP rows, "
        f"{device['lldp']} LLDP neighbours per agent ({sample['kept'] // args.agents:,} varbinds kept, "
        f"{device['requests']} requests per agent); no BRIDGE-MIB (Debian's snmpd has none).",
        f"Concurrency {sample['concurrency']} (the config's default), timeout {sample['timeout']:g} s, "
        f"retries {sample['retries']}. Lab built in {built:.0f} s, settled in {settled:.0f} s.",
        f"Load average (1 min) before / after: {load_before[0]:.1f} / {load_after[0]:.1f}.",
        f"pysnmp and agent import, paid once per command and not in the walk columns: median "
        f"{statistics.median(imports):.2f} s.", "",
        '"walk" is `snmp_scope` (walk + parse + batch, what the CLI runs) in a process of its own; "slowest',
        'device" its longest single walk; CPU is that process\'s CPU time during the call; "kept" the',
        'varbinds the walks stored, "received" every varbind pysnmp decoded (GETBULK overshoot included);',
        '"whole CLI" is `python -m discovery.cli snmp --dry-run` end to end (start-up, imports, JSON out).', "",
        "| version | round | walk (s) | slowest device (s) | CPU (s) | requests | varbinds kept | varbinds received "
        "| CPU ms / kept | CPU ms / received | whole CLI (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    table = "\n".join(header + rows) + "\n"
    publish(table, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
