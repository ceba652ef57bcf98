"""Benchmark: of two real consecutive discovery runs, how many items the server confirms by fingerprint.

    sudo .venv/bin/python bench/discovery_confirm_bench.py [--plain 5] [--unchanged-rounds 2] [--change-on web-1]
        [--address-on db-1]

The ingest figure "same again (unchanged)" in BENCHMARKS.md sends byte-identical batches. This one
asks what real runs do. It builds the lab with real services (tests/discovery/lab_services.py:
web-1 with nginx and an application, db-1 with PostgreSQL and Redis, app-1 with a psql client) plus
``--plain`` hosts running sshd only, and a real Karta (bench/lab_karta.py). Each round runs, as cron
would, ``karta discover scan --subnet 10.77.0.0/24`` then ``karta discover ssh`` over every lab
host, both pushing to the server, and right after each push measures which of its items took the
confirmed path and which the full one (bench/confirm_paths.py says how), with the reason for each
item derived. Round 1 is first sight; then ``--unchanged-rounds`` rounds with nothing changed; then
one round after Redis was started on ``--change-on`` (a service started between two runs), and one
after ``--address-on`` was given a second address, one with nothing changed, and a last one after
a new host (a MAC and an address of its own) came online.
Writes bench/results/discovery_confirm.md (git-ignored). Needs root, nmap, sshd, nginx, redis,
PostgreSQL's server binaries.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.confirm_paths import PushPaths, paths_of_push, sightings
from bench.lab_karta import KARTA, agent_env, karta_server, publish, refuse_lab_clash
from tests.discovery.lab import MGMT_ADDRESS, SUBNET, Lab, LabHost, missing_requirements
from tests.discovery.lab_services import (
    missing_service_binaries,
    standard_hosts,
    start_services,
)

RESULTS = REPO / "bench" / "results" / "discovery_confirm.md"
RUN_ID = re.compile(r"run_id=(\S+)")
SECOND_ADDRESS = "10.77.0.112"  # in the lab subnet, no host there (hosts are .11-.13 and .21 on)
LATE = "late-01"  # a host whose cable is cut from the start and plugged in before the last round


class Rounds:
    """Runs scan then ssh against the lab, pushing each, and measures each push's paths."""

    def __init__(self, lab: Lab, engine, env: dict, work: Path) -> None:
        self.lab, self.engine, self.env, self.work = lab, engine, env, work
        self.previous: dict[str, dict] = {}
        self.results: list[tuple[str, dict[str, PushPaths], dict[str, dict]]] = []

    def command(self, source: str, output: Path) -> list[str]:
        if source == "nmap":
            return [str(KARTA), "discover", "scan", "--subnet", SUBNET, "--exclude", MGMT_ADDRESS,
                    "--output", str(output), "--insecure"]  # the lab's server is plain http on the lab's link
        targets = ",".join(h.address for h in self.lab.hosts.values())
        return [str(KARTA), "discover", "ssh", "--targets", targets, "--user", "root", "--key",
                str(self.lab.key_path), "--known-hosts", str(self.lab.known_hosts), "--connect-timeout", "5",
                "--command-timeout", "60", "--output", str(output), "--insecure"]

    def round(self, label: str) -> None:
        paths, runs = {}, {}
        for source in ("nmap", "ssh"):
            output = self.work / f"{len(self.results) + 1}-{source}.json"
            before = sightings(self.engine, source)
            result = self.lab.run(self.command(source, output), env=self.env, timeout=300)
            summary = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
            # Conflicts are a fact of the round (an address moving can raise one), shown in the summary lines.
            if result.returncode != 0 or "pushed=1 request(s)" not in summary:
                raise SystemExit(f"{label}: karta discover {source} failed: {result.stderr[-2000:]}")
            batch = orjson.loads(output.read_bytes())
            run_id = RUN_ID.search(summary).group(1)
            paths[source] = paths_of_push(self.engine, source, run_id, batch, self.previous.get(source), before)
            runs[source] = {"summary": summary, "batch": batch}
            self.previous[source] = batch
        self.results.append((label, paths, runs))
        print(f"{label}: " + "; ".join(f"{s} {p.items} items, {sum(p.confirmed.values())} confirmed, "
                                       f"{sum(map(len, p.derived.values()))} derived, {len(p.unmatched)} unmatched"
                                       for s, p in paths.items()), file=sys.stderr)


def start_redis(lab: Lab, name: str) -> None:
    """A service started on a host between two runs: Redis on its address, as an operator would."""
    host = lab.hosts[name]
    lab.spawn(host, ["redis-server", "--bind", host.address, "127.0.0.1", "--port", "6379", "--save", "",
                     "--appendonly", "no", "--protected-mode", "no", "--dir", str(lab.dir / name)], "redis-added")
    lab.wait_for_tcp([(host.address, 6379)], timeout=30)


def add_address(lab: Lab, name: str, address: str) -> None:
    """A host given a second address on its interface between two runs."""
    result = lab.host_run(name, ["ip", "addr", "add", f"{address}/24", "dev", "eth0"], timeout=30)
    if result.returncode != 0:
        raise SystemExit(f"cannot add {address} to {name}: {result.stderr}")


def report(rounds: Rounds, command: str, hosts: list[LabHost]) -> str:
    lines = [f"`{command}`: {len(hosts)} lab hosts ({', '.join(h.name for h in hosts)}).", "",
             "| round | source | items | confirmed | derived | not found by fingerprint | run record: created / updated / unchanged |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for label, paths, _ in rounds.results:
        for source, p in paths.items():
            counts = " / ".join(str(p.run_counts.get(k, 0)) for k in ("created", "updated", "unchanged"))
            lines.append(f"| {label} | {source} | {p.items} | {sum(p.confirmed.values())} | "
                         f"{sum(map(len, p.derived.values()))} | {len(p.unmatched)} | {counts} |")
    lines += ["", "Derived items, by class and reason (rounds after the first):", "",
              "| round | source | class | items | reason | which |", "| --- | --- | --- | ---: | --- | --- |"]
    for label, paths, _ in rounds.results[1:]:
        for source, p in paths.items():
            for (ci_class, reason), names in sorted(p.derived.items()):
                which = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
                lines.append(f"| {label} | {source} | {ci_class} | {len(names)} | {reason} | {which} |")
            if p.unmatched:
                lines.append(f"| {label} | {source} | | {len(p.unmatched)} | path unknown: no fingerprint kept "
                             f"for their CI | {', '.join(p.unmatched)} |")
    lines += ["", "Agent summary lines:", ""]
    for label, _, runs in rounds.results:
        lines += [f"- {label}, {source}: `{run['summary']}`" for source, run in runs.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plain", type=int, default=5, choices=range(21), metavar="0..20",
                        help="hosts with sshd only, beside web-1, db-1 and app-1")
    parser.add_argument("--unchanged-rounds", type=int, default=2, choices=range(1, 6), metavar="1..5")
    parser.add_argument("--change-on", default="web-1", help="the host Redis is started on after the unchanged rounds")
    parser.add_argument("--address-on", default="db-1", help="the host given a second address before the last round")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()

    missing = missing_requirements() + missing_service_binaries()
    if missing:
        print("cannot run the benchmark, missing: " + ", ".join(missing), file=sys.stderr)
        return 2
    refuse_lab_clash()
    hosts = [h for h in standard_hosts() if h.name in ("web-1", "db-1", "app-1")]
    hosts += [LabHost(f"plain-{n:02d}", 20 + n) for n in range(1, args.plain + 1)]
    hosts.append(LabHost(LATE, 60))  # after every other host: its ssh items renumber nothing
    if not {args.change_on, args.address_on} <= {h.name for h in hosts}:
        parser.error(f"--change-on and --address-on must be among {', '.join(h.name for h in hosts)}")

    from sqlalchemy import create_engine

    with Lab(hosts, lifetime=900, setup=start_services) as lab, \
            tempfile.TemporaryDirectory(prefix="karta-confirm-") as tmp:
        work = Path(tmp)
        lab.link_up(LATE, False)  # ssh asks for it every round (it is in the scope), nmap cannot see it
        with karta_server(lab, work, args.backend) as server:
            engine = create_engine(server.database_url)
            try:
                rounds = Rounds(lab, engine, agent_env(KARTA_API_URL=server.base, KARTA_TOKEN=server.token), work)
                rounds.round("1 (first sight)")
                for n in range(args.unchanged_rounds):
                    rounds.round(f"{n + 2} (nothing changed)")
                start_redis(lab, args.change_on)
                rounds.round(f"{args.unchanged_rounds + 2} (Redis started on {args.change_on})")
                add_address(lab, args.address_on, SECOND_ADDRESS)
                rounds.round(f"{args.unchanged_rounds + 3} ({args.address_on} given {SECOND_ADDRESS})")
                rounds.round(f"{args.unchanged_rounds + 4} (nothing changed)")
                lab.link_up(LATE, True)
                lab.wait_for_tcp([(lab.hosts[LATE].address, 22)], timeout=30)
                rounds.round(f"{args.unchanged_rounds + 5} (new host {LATE} comes online)")
            finally:
                engine.dispose()

    command = (f"sudo .venv/bin/python bench/discovery_confirm_bench.py --plain {args.plain} "
               f"--unchanged-rounds {args.unchanged_rounds} --change-on {args.change_on} "
               f"--address-on {args.address_on} --backend {args.backend}")
    text = "# Confirmed by fingerprint in real discovery runs\n\n" + report(rounds, command, hosts)
    publish(text, RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
