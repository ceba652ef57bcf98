"""Benchmark: Karta's SSH discovery, pushed to a real server, against Ansible on the same lab hosts.

    sudo .venv/bin/python bench/discovery_bench.py [--hosts 20] [--runs 3] [--backend sqlite]

Builds a lab of plain hosts (tests/discovery/lab.py: network namespaces, own
sshd each, 10.77.0.0/24 only) and a real Karta (bench/lab_karta.py: `karta
serve` on this machine's end of the lab's service link, a migrated database,
a token made with `karta token create`). Then times, from the lab's
management namespace, wall clock of whole commands (interpreter start-up
included), every one at concurrency 20:

* ``karta discover ssh ... --concurrency 20`` (the console script cron runs):
  one paramiko session and one exec of the collector script per host, then
  parse, classify, build the batch and POST it to the server, which ingests
  it (identification, reconciliation, the SQL transaction) before answering;
* the same through ``python -m discovery.cli`` (less start-up), and with
  ``--dry-run`` (no push: the figure this benchmark used to compare);
* ``ansible all -m setup`` (forks 20, pipelining on);
* ``ansible all -m script`` running discovery/hostscript.py's collector, the
  very text Karta sends (``executable=/bin/sh``): the same collection over
  SSH, with Ansible's transport (temp dir, copy, exec, clean-up per host),
  its output printed and nothing done with it;
* ``karta discover scan --subnet 10.77.0.0/24`` with push (OS guess, as root).

Every Ansible run gets a fresh ControlPath directory, so no run reuses another
one's connections. Before the timed runs, one untimed scan and one ssh run
push the estate, so the timed runs are what cron repeats (the first ones are
timed and shown apart). Each command runs ``--runs`` times; the table shows
the median and the best. Needs root, nmap, sshd and ansible-core in the venv
(``pip install ansible-core``, for the benchmark only). Writes
bench/results/discovery.md (git-ignored).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine

from bench.confirm_paths import confirmed_of_run
from bench.lab_karta import KARTA, agent_env, karta_server, publish, refuse_lab_clash
from discovery import hostscript
from tests.discovery.lab import SUBNET, Lab, LabHost, missing_requirements

RESULTS = REPO / "bench" / "results" / "discovery.md"
RUN_ID = re.compile(r"run_id=(\S+)")  # in the agent's summary line
FORKS = 20


def ansible_binary() -> str | None:
    local = Path(sys.executable).parent / "ansible"
    return str(local) if local.exists() else shutil.which("ansible")


def timed(lab: Lab, argv: list[str], env: dict, timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = lab.run(argv, env=env, timeout=timeout)
    return time.perf_counter() - started, result


def kill_ssh_masters(lab: Lab, control_dir: Path) -> None:
    """End the ControlPersist masters this benchmark's Ansible run left (and only those)."""
    pids = subprocess.run(["ip", "netns", "pids", lab.mgmt], check=False, capture_output=True, text=True,
                          timeout=30).stdout.split()
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
        forks = {FORKS}
        host_key_checking = True
        local_tmp = {work}/local_tmp
        interpreter_python = /usr/bin/python3

        [ssh_connection]
        pipelining = True
        # The lab's sshd has no sftp subsystem: without this, every file Ansible sends (the collector,
        # for -m script) first fails over sftp and scp before going through dd.
        transfer_method = piped
        """))
    env["ANSIBLE_CONFIG"] = str(work / "ansible.cfg")
    env["ANSIBLE_HOME"] = str(work / "home")


def run_ansible(lab: Lab, ansible: str, work: Path, env: dict, what: str, module_args: list[str],
                names: set[str], must_print: str | None = None) -> float:
    """One ad-hoc run over every lab host; fails unless every host answered (and printed `must_print`)."""
    control = Path(tempfile.mkdtemp(prefix="cp", dir=work))
    run_env = dict(env, ANSIBLE_SSH_CONTROL_PATH_DIR=str(control))
    try:
        seconds, result = timed(lab, [ansible, "all", *module_args, "-f", str(FORKS)], run_env, timeout=600)
    finally:
        kill_ssh_masters(lab, control)
    ok = {line.split(" | ")[0] for line in result.stdout.splitlines()
          if (" | SUCCESS" in line or " | CHANGED" in line) and line.split(" | ")[0] in names}
    printed = result.stdout.count(must_print) if must_print else len(names)
    if ok != names or printed < len(names):
        raise SystemExit(f"ansible {what}: {len(ok)}/{len(names)} hosts ok, {printed} complete outputs "
                         f"(rc {result.returncode}): {result.stdout[-1500:]} {result.stderr[-1500:]}")
    return seconds


def run_karta_ssh(lab: Lab, hosts: list[LabHost], env: dict, *, push: bool, console: bool,
                  on_summary: Callable[[str], None] | None = None) -> float:
    """One timed ssh run; `on_summary` then gets the agent's summary line (outside the timing)."""
    targets = ",".join(h.address for h in hosts)
    command = [str(KARTA), "discover"] if console else [sys.executable, "-m", "discovery.cli"]
    argv = [*command, "ssh", "--targets", targets, "--user", "root", "--key", str(lab.key_path),
            "--known-hosts", str(lab.known_hosts), "--concurrency", str(FORKS),
            *(["--insecure"] if push else ["--dry-run"])]  # the lab's server is plain http on the lab's link
    seconds, result = timed(lab, argv, env, timeout=300)
    summary = check_summary(result, "ssh", f"hosts={len(hosts)}/{len(hosts)} ok", push)
    if on_summary is not None:
        on_summary(summary)
    return seconds


def run_karta_scan(lab: Lab, env: dict, expected_hosts: int) -> float:
    seconds, result = timed(lab, [str(KARTA), "discover", "scan", "--subnet", SUBNET, "--insecure"], env, timeout=600)
    check_summary(result, "scan", f"hosts={expected_hosts} ", True)
    return seconds


def check_summary(result: subprocess.CompletedProcess, what: str, expected: str, push: bool) -> str:
    """The agent's summary line (last line of stderr) must show every host and, when pushing, an accepted push."""
    summary = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    pushed = not push or ("pushed=1 request(s)" in summary and "ingest_errors" not in summary)
    if result.returncode != 0 or expected not in summary or not pushed:
        raise SystemExit(f"karta {what} failed (rc {result.returncode}): {result.stderr[-2000:]}")
    return summary


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.splitlines()[0].strip() if out else "?"


ROWS = {  # key -> what the table calls it
    "push": "Karta `karta discover ssh` with push ({n} hosts, 20 threads, console script)",
    "push_module": "Karta `python -m discovery.cli ssh` with push (same, less start-up)",
    "dry": "Karta `python -m discovery.cli ssh --dry-run` (no push)",
    "setup": "`ansible all -m setup` (forks 20, pipelining on)",
    "script": "`ansible all -m script` of Karta's collector (forks 20)",
    "scan": "Karta `karta discover scan` of {subnet} with push (default ports, OS guess)",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=20, choices=range(1, 51), metavar="1..50")
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 11), metavar="1..10")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()

    missing = missing_requirements()
    ansible = ansible_binary()
    if ansible is None:
        missing.append("ansible-core (pip install ansible-core)")
    if missing:
        print("cannot run the benchmark, missing: " + ", ".join(missing), file=sys.stderr)
        return 2
    refuse_lab_clash()

    hosts = [LabHost(f"node-{n:02d}", 20 + n) for n in range(1, args.hosts + 1)]
    names = {h.name for h in hosts}
    env = agent_env()
    timings: dict[str, list[float]] = {key: [] for key in ROWS}
    load_before = os.getloadavg()[0]
    confirmed: list[tuple[int, int]] = []  # per timed ssh push: (items confirmed by fingerprint, items)
    with Lab(hosts, lifetime=1200) as lab, tempfile.TemporaryDirectory(prefix="karta-bench-") as tmp:
        work = Path(tmp)
        ansible_setup(lab, hosts, work, env)
        token = hostscript.new_token()
        collector = work / "karta-collector.sh"
        collector.write_text(hostscript.render(token))
        script_args = ["-m", "script", "-a", f"{collector} executable=/bin/sh"]
        with karta_server(lab, work, args.backend) as server:
            push_env = dict(env, KARTA_API_URL=server.base, KARTA_TOKEN=server.token)
            first = {"scan": run_karta_scan(lab, push_env, len(hosts) + 1),
                     "push": run_karta_ssh(lab, hosts, push_env, push=True, console=True)}
            print(f"first runs (create the estate): scan {first['scan']:.2f}s, ssh {first['push']:.2f}s",
                  file=sys.stderr)
            engine = create_engine(server.database_url)

            def count_confirmed(summary: str) -> None:
                confirmed.append(confirmed_of_run(engine, "ssh", RUN_ID.search(summary).group(1)))

            try:
                for run in range(1, args.runs + 1):
                    timings["push"].append(run_karta_ssh(lab, hosts, push_env, push=True, console=True,
                                                         on_summary=count_confirmed))
                    timings["push_module"].append(run_karta_ssh(lab, hosts, push_env, push=True, console=False,
                                                                on_summary=count_confirmed))
                    timings["dry"].append(run_karta_ssh(lab, hosts, env, push=False, console=False))
                    timings["setup"].append(run_ansible(lab, ansible, work, env, "setup", ["-m", "setup"], names))
                    timings["script"].append(run_ansible(lab, ansible, work, env, "script", script_args, names,
                                                         must_print=f"@@KARTA-{token} end"))
                    timings["scan"].append(run_karta_scan(lab, push_env, len(hosts) + 1))
                    print(f"run {run}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in timings.items()), file=sys.stderr)
            finally:
                engine.dispose()

    med = {k: statistics.median(v) for k, v in timings.items()}
    best = {k: min(v) for k, v in timings.items()}
    command = (f"sudo .venv/bin/python bench/discovery_bench.py --hosts {args.hosts} --runs {args.runs} "
               f"--backend {args.backend}")
    rows = "".join(f"| {label.format(n=args.hosts, subnet=SUBNET)} | {med[k]:.2f} | {best[k]:.2f} |\n"
                   for k, label in ROWS.items())
    ratios = "".join(f"| ratio {ROWS[a].split(' (')[0]} / Karta with push ({how}) | {med[a] / med[k]:.1f}x | "
                     f"{best[a] / best[k]:.1f}x |\n" for a in ("setup", "script")
                     for k, how in (("push", "console script"), ("push_module", "python -m")))
    table = textwrap.dedent(f"""\
        # Discovery benchmark

        `{command}` on {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()},
        {tool_version([ansible, '--version'])}, {tool_version(['nmap', '--version'])}, Karta on {args.backend}.
        {args.hosts} lab hosts (network namespaces, one sshd each), {args.runs} runs, wall clock of whole commands.
        First runs (untimed in the table, they create the estate): scan {first['scan']:.2f} s, ssh {first['push']:.2f} s.
        Load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}.
        Items of each timed ssh push that the server confirmed by fingerprint (bench/confirm_paths.py):
        {', '.join(f'{c}/{n}' for c, n in confirmed)}.

        | what | median (s) | best (s) |
        | --- | ---: | ---: |
        """) + rows + ratios
    publish(table, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
