"""Benchmark: discovery ingest of a realistic estate through the real HTTP API.

100,000 items (network devices, clusters, servers, VMs, IP addresses, applications, databases, web
servers, containers, services) and ~200,000 relationships, pushed in batches of 5,000 to a running
`karta serve` (one worker), on SQLite and on PostgreSQL, side by side in one run:
  1. first load (everything is created),
  2. the same batches again (everything unchanged: only last_seen moves),
  3. the same with 5% of the items changed.
Reports items/s per pass and the server's peak resident memory. With --baseline, an earlier checkout
runs against its own database in the same run, the two taking turns pass by pass, and the ratios are
printed; they swap places every round (two rounds by default), because going second favoured either
code. The database writes out what the previous pass left dirty before each pass is timed. Prints a
Markdown table and writes bench/results/ingest.md.

    python bench/ingest_bench.py [--items 100000] [--batch 5000] [--backends sqlite,postgresql] [--baseline DIR]
                                 [--rounds N]
"""

import argparse
import ipaddress
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import fresh_database, karta_command, served, settle

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent


def generate(total: int, rng: random.Random):
    """Items in dependency order, each with the relationships whose later end it is."""
    scale = total / 100_000
    counts = {"network_device": 1000, "cluster": 500, "server": 16000, "virtual_machine": 24000, "ip_address": 30000,
              "application": 12000, "database": 3000, "web_server": 5000, "container": 6500, "service": 2000}
    items = []  # (item dict, [relationship dicts])
    refs: dict[str, list[str]] = {}

    def add(ci_class, name, identifiers, attributes, relationships):
        ref = f"{ci_class}-{len(refs.setdefault(ci_class, []))}"
        refs[ci_class].append(ref)
        items.append(({"ref": ref, "class": ci_class, "name": name, "identifiers": identifiers,
                       "attributes": attributes}, [{"source": s if s != "@" else ref, "target": t if t != "@" else ref,
                                                    "type": y} for s, y, t in relationships]))
        return ref

    def hexid():
        return uuid.UUID(int=rng.getrandbits(128)).hex

    for n in range(int(counts["network_device"] * scale)):
        add("network_device", f"sw-{n:04d}", {"serial_number": f"FOC{rng.getrandbits(40):010X}", "fqdn": f"sw-{n:04d}.net.example.com"},
            {"vendor": "cisco", "model": "C9300"}, [])
    for n in range(int(counts["cluster"] * scale)):
        add("cluster", f"cluster-{n:03d}", {"cluster_id": f"cl-{n}"}, {"min_members": rng.choice([1, 2])}, [])
    hosts = []
    for ci_class in ("server", "virtual_machine"):
        for n in range(int(counts[ci_class] * scale)):
            name = f"{ci_class[:2]}-{n:05d}"
            switches = rng.sample(refs["network_device"], 2)
            rels = [("@", "connects_to", switches[0]), ("@", "connects_to", switches[1])]
            if rng.random() < 0.3:
                rels.append(("@", "member_of", rng.choice(refs["cluster"])))
            hosts.append(add(ci_class, name, {"machine_id": hexid(), "serial_number": f"CZ{rng.getrandbits(40):010X}",
                                              "fqdn": f"{name}.example.com",
                                              # unique per host: random MACs collide (birthday) and merge hosts
                                              "mac_address": ["52:54:" + ":".join(f"{b:02x}" for b in (len(hosts) + 1).to_bytes(4, "big"))]},
                             {"os_name": "debian", "os_version": "12", "cpu_count": rng.choice([2, 4, 8, 16]),
                              "memory_mb": rng.choice([4096, 16384, 65536])}, rels))
    for n in range(int(counts["ip_address"] * scale)):
        address = str(ipaddress.IPv4Address("10.0.0.0") + n + 1)
        add("ip_address", address, {"address": address}, {}, [(hosts[n % len(hosts)], "contains", "@")])
    apps = []
    for ci_class in ("database", "application", "web_server"):
        for n in range(int(counts[ci_class] * scale)):
            rels = [("@", "runs_on", rng.choice(hosts))] + [("@", "depends_on", a) for a in rng.sample(apps, min(3, len(apps)))]
            apps.append(add(ci_class, f"{ci_class}-{n}", {"instance_key": f"{hexid()}/{ci_class}/{n}"},
                            {"port": rng.choice([80, 443, 5432, 8080]), "version": "1.0"}, rels))
    for n in range(int(counts["container"] * scale)):
        add("container", f"ctr-{n}", {"container_id": hexid()}, {"image": "registry/app:1"}, [("@", "runs_on", rng.choice(hosts))])
    for n in range(int(counts["service"] * scale)):
        add("service", f"service-{n}", {"service_id": f"SVC{n:05d}"}, {"sla": "gold"},
            [("@", "depends_on", a) for a in rng.sample(apps, 5)])
    return items


def batches_of(items, size: int, run: str, id_of: dict[str, str]):
    """Batches of `size` items; a relationship end from an earlier batch is sent as that CI's id."""
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        in_batch = {item["ref"] for item, _ in chunk}
        relationships = []
        for _, rels in chunk:
            for rel in rels:
                relationships.append({**rel, "source": rel["source"] if rel["source"] in in_batch else id_of[rel["source"]],
                                      "target": rel["target"] if rel["target"] in in_batch else id_of[rel["target"]]})
        yield {"source": "ssh", "run_id": f"{run}-{start}", "scope": {"subnets": ["10.0.0.0/8"]},
               "items": [item for item, _ in chunk], "relationships": relationships}


class PeakMemory:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        total = 0
        pids = [self.pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(self.pid)], capture_output=True,
                                                            text=True, check=False).stdout.split()]
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            self.peak = max(self.peak, self._rss())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_passes(url: str, items, batch_size: int, checkout: Path):
    """Migrate, make a token and serve with the code of `checkout` (this one, or a baseline); yields
    (pass, seconds, totals, server peak RSS so far) after each pass, so that two checkouts can take
    turns pass by pass (these machines' speed drifts over minutes)."""
    env = {**os.environ, "KARTA_DATABASE_URL": url, "PYTHONPATH": str(checkout)}
    karta = karta_command(env, checkout)
    karta("db", "upgrade")
    secret = karta("token", "create", "--name", "bench", "--scope", "discovery").strip().splitlines()[-1]
    with served(env, checkout) as base:
        memory = PeakMemory(base.process.pid)
        try:
            id_of = {}
            rng = random.Random(7)
            changed = [({**item, "attributes": {**item["attributes"], "version": "2.0", "patched": True}}
                        if rng.random() < 0.05 else item, rels) for item, rels in items]
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=600) as http:
                for label, data in (("first load", items), ("same again (unchanged)", items), ("5% changed", changed)):
                    settle(url)
                    started, totals = time.perf_counter(), {}
                    for body in batches_of(data, batch_size, label.split()[0], id_of):
                        response = http.post("/api/v1/ingest", content=__import__("orjson").dumps(body),
                                             headers={"Content-Type": "application/json"})
                        response.raise_for_status()
                        outcome = response.json()
                        id_of.update(outcome["refs"])
                        for key in ("created", "updated", "unchanged", "errors", "conflicts"):
                            totals[key] = totals.get(key, 0) + outcome["counts"][key]
                        totals["relationships"] = totals.get("relationships", 0) + sum(outcome["relationships"].values())
                    elapsed = time.perf_counter() - started
                    print(f"  {checkout.name} {label}: {len(data) / elapsed:,.0f} items/s ({elapsed:.1f} s) {totals}",
                          file=sys.stderr)
                    yield label, elapsed, totals, memory.peak
        finally:
            memory.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--baseline", type=Path, help="a checkout of an earlier version to run side by side "
                        "(e.g. `git worktree add /tmp/karta-before <commit>`)")
    parser.add_argument("--rounds", type=int, help="rounds of the three passes per backend, the checkouts swapping "
                        "places each round (default: 2 with --baseline, else 1)")
    args = parser.parse_args()
    items = generate(args.items, random.Random(20261122))
    relationship_count = sum(len(rels) for _, rels in items)
    print(f"{len(items):,} items, {relationship_count:,} relationships", file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="karta-ingest-"))
    lines = [(f"Ingest through HTTP, {len(items):,} items and {relationship_count:,} relationships in batches of "
              f"{args.batch:,}, one client, `karta serve` with one worker, {os.cpu_count()} cores; items/s from the "
              "mean time of the rounds"), "",
             "| code | backend | pass | items/s | seconds | created | updated | unchanged | errors | server peak RSS |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    checkouts = [("this", REPO)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    rounds = args.rounds or (2 if args.baseline else 1)
    # (code, backend, pass) -> [(seconds, totals, peak RSS)], one per round
    results: dict[tuple[str, str, str], list[tuple[float, dict, int]]] = {}
    for backend in args.backends.split(","):
        for round_number in range(rounds):
            # Whoever goes second in a pass measured faster by up to 8% in short passes, whatever the
            # code: the checkouts swap places every round, and the table gives the mean of the rounds.
            order = checkouts if round_number % 2 == 0 else checkouts[::-1]
            print(f"on {backend}, round {round_number + 1} of {rounds}: {' then '.join(c for c, _ in order)}",
                  file=sys.stderr)
            runs = [(code, run_passes(fresh_database(backend, f"karta_bench_ingest_{code}", workdir), items,
                                      args.batch, checkout)) for code, checkout in order]
            for _ in range(3):  # the checkouts take turns, one pass each
                for code, passes in runs:
                    label, elapsed, totals, peak = next(passes)
                    results.setdefault((code, backend, label), []).append((elapsed, totals, peak))
            for _, passes in runs:
                passes.close()  # stops its server
    rates = {}
    for backend in args.backends.split(","):
        for code, _ in checkouts:
            for (result_code, result_backend, label), runs in results.items():
                if (result_code, result_backend) != (code, backend):
                    continue
                elapsed = statistics.mean(seconds for seconds, _, _ in runs)
                totals, peak = runs[-1][1], max(peak for _, _, peak in runs)
                rates[(code, backend, label)] = len(items) / elapsed
                lines.append(f"| {code} | {backend} | {label} | {len(items) / elapsed:,.0f} | {elapsed:.1f} | "
                             f"{totals['created']:,} | {totals['updated']:,} | {totals['unchanged']:,} | "
                             f"{totals['errors']} | {peak / 2**20:,.0f} MiB |")
    if args.baseline:
        lines += ["", "| backend | pass | this / baseline |", "|---|---|---:|"]
        for (code, backend, label), rate in rates.items():
            if code == "this":
                lines.append(f"| {backend} | {label} | {rate / rates[('baseline', backend, label)]:.2f}x |")
    shutil.rmtree(workdir, ignore_errors=True)
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
