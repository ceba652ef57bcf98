"""Benchmark: Karta's SSH collector against ``ansible all -m setup`` on 20 lab hosts, and a /24 scan.

    sudo .venv/bin/python bench/discovery_bench.py [--hosts 20] [--runs 3]

Builds a lab of plain hosts (tests/discovery/lab.py: network namespaces, own
sshd each, 10.77.0.0/24 only), then times, from the lab's management
namespace, wall clock for whole commands (interpreter start-up included):

* ``python -m discovery.cli ssh ... --concurrency 20 --dry-run``
  (one paramiko session and one exec per host, 20 threads);
* ``ansible all -m setup`` with forks = 20 and pipelining on, a fresh
  ControlPath directory each run so no run reuses another's connections;
* ``python -m discovery.cli scan --subnet 10.77.0.0/24 --dry-run`` with the
  default port list (OS guess on, as root).

Each is run ``--runs`` times; the table shows the median and the best. Needs
root, nmap, sshd and ansible-core in the venv (``pip install ansible-core``,
for the benchmark only). Writes bench/results/discovery.md (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.discovery.lab import SUBNET, Lab, LabHost, missing_requirements  # noqa: E402

RESULTS = REPO / "bench" / "results" / "discovery.md"


def ansible_binary() -> str | None:
    local = Path(sys.executable).parent / "ansible"
    return str(local) if local.exists() else shutil.which("ansible")


def timed(lab: Lab, argv: list[str], env: dict, timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = lab.run(argv, env=env, timeout=timeout)
    return time.perf_counter() - started, result


def kill_ssh_masters(lab: Lab, control_dir: Path) -> None:
    """End the ControlPersist masters this benchmark's Ansible run left (and only those)."""
    pids = subprocess.run(["ip", "netns", "pids", lab.mgmt], capture_output=True, text=True).stdout.split()
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(control_dir).encode() in cmdline:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def ansible_setup(lab: Lab, hosts: list[LabHost], work: Path, env: dict) -> None:
    inventory = work / "inventory.ini"
    lines = "".join(f"{h.name} ansible_host={h.address}\n" for h in hosts)
    inventory.write_text("[lab]\n" + lines + textwrap.dedent(f"""
        [lab:vars]
        ansible_user=root
        ansible_ssh_private_key_file={lab.key_path}
        ansible_python_interpreter=/usr/bin/python3
        ansible_ssh_common_args=-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes
        """))
    (work / "ansible.cfg").write_text(textwrap.dedent(f"""\
        [defaults]
        inventory = {inventory}
        forks = 20
        host_key_checking = True
        local_tmp = {work}/local_tmp
        interpreter_python = /usr/bin/python3

        [ssh_connection]
        pipelining = True
        """))
    env["ANSIBLE_CONFIG"] = str(work / "ansible.cfg")
    env["ANSIBLE_HOME"] = str(work / "home")


def run_ansible(lab: Lab, ansible: str, work: Path, env: dict, run: int, names: set[str]) -> float:
    control = Path(tempfile.mkdtemp(prefix="cp", dir=work))
    run_env = dict(env, ANSIBLE_SSH_CONTROL_PATH_DIR=str(control))
    try:
        seconds, result = timed(lab, [ansible, "all", "-m", "setup", "-f", "20"], run_env, timeout=600)
    finally:
        kill_ssh_masters(lab, control)
    ok = sum(1 for line in result.stdout.splitlines() if " | SUCCESS" in line and line.split(" | ")[0] in names)
    if ok != len(names):
        raise SystemExit(f"ansible run {run}: {ok}/{len(names)} hosts ok (rc {result.returncode}): "
                         f"{result.stdout[-1500:]} {result.stderr[-1500:]}")
    return seconds


def run_karta_ssh(lab: Lab, hosts: list[LabHost], env: dict, run: int) -> float:
    targets = ",".join(h.address for h in hosts)
    argv = [sys.executable, "-m", "discovery.cli", "ssh", "--targets", targets, "--user", "root",
            "--key", str(lab.key_path), "--known-hosts", str(lab.known_hosts), "--concurrency", "20", "--dry-run"]
    seconds, result = timed(lab, argv, env, timeout=300)
    summary = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    if result.returncode != 0 or f"hosts={len(hosts)}/{len(hosts)} ok" not in summary:
        raise SystemExit(f"karta ssh run {run} failed (rc {result.returncode}): {result.stderr[-2000:]}")
    return seconds


def run_karta_scan(lab: Lab, env: dict, run: int, expected_hosts: int) -> float:
    seconds, result = timed(lab, [sys.executable, "-m", "discovery.cli", "scan", "--subnet", SUBNET, "--dry-run"],
                            env, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"karta scan run {run} failed: {result.stderr[-2000:]}")
    found = sum(1 for i in json.loads(result.stdout)["items"] if i["class"] != "ip_address")
    if found != expected_hosts:
        raise SystemExit(f"karta scan run {run}: found {found} hosts, expected {expected_hosts}")
    return seconds


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.splitlines()[0].strip() if out else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=20, choices=range(1, 51), metavar="1..50")
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 11), metavar="1..10")
    args = parser.parse_args()

    missing = missing_requirements()
    ansible = ansible_binary()
    if ansible is None:
        missing.append("ansible-core (pip install ansible-core)")
    if missing:
        print("cannot run the benchmark, missing: " + ", ".join(missing), file=sys.stderr)
        return 2

    hosts = [LabHost(f"node-{n:02d}", 20 + n) for n in range(1, args.hosts + 1)]
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "PYTHONPATH": str(REPO), "HOME": os.environ.get("HOME", "/root"), "LC_ALL": "C.UTF-8"}
    timings: dict[str, list[float]] = {"karta": [], "ansible": [], "scan": []}
    with Lab(hosts, lifetime=1200) as lab, tempfile.TemporaryDirectory(prefix="karta-bench-") as tmp:
        work = Path(tmp)
        ansible_setup(lab, hosts, work, env)
        for run in range(1, args.runs + 1):
            timings["karta"].append(run_karta_ssh(lab, hosts, env, run))
            timings["ansible"].append(run_ansible(lab, ansible, work, env, run, {h.name for h in hosts}))
            timings["scan"].append(run_karta_scan(lab, env, run, len(hosts) + 1))
            print(f"run {run}: karta {timings['karta'][-1]:.2f}s, ansible {timings['ansible'][-1]:.2f}s, "
                  f"scan {timings['scan'][-1]:.2f}s", file=sys.stderr)

    med = {k: statistics.median(v) for k, v in timings.items()}
    best = {k: min(v) for k, v in timings.items()}
    command = f"sudo .venv/bin/python bench/discovery_bench.py --hosts {args.hosts} --runs {args.runs}"
    table = textwrap.dedent(f"""\
        # Discovery benchmark

        `{command}` on {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()},
        {tool_version([ansible, '--version'])}, {tool_version(['nmap', '--version'])}.
        {args.hosts} lab hosts (network namespaces, one sshd each), {args.runs} runs, wall clock of whole commands.

        | what | median (s) | best (s) |
        | --- | ---: | ---: |
        | Karta `discover ssh` ({args.hosts} hosts, 20 threads, one session + one exec per host) | {med['karta']:.2f} | {best['karta']:.2f} |
        | `ansible all -m setup` (forks 20, pipelining on) | {med['ansible']:.2f} | {best['ansible']:.2f} |
        | ratio Ansible / Karta | {med['ansible'] / med['karta']:.1f}x | {best['ansible'] / best['karta']:.1f}x |
        | Karta `discover scan` of {SUBNET} (default ports, OS guess) | {med['scan']:.2f} | {best['scan']:.2f} |
        """)
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
