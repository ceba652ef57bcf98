"""Benchmark: what keeping business-service maps current costs ingest, and how fast a map follows a change.

An estate of `--items` items (100,000 by default) pushed over HTTP in batches of 5,000 by one client to
`karta serve` with one worker, twice, on two fresh databases of one backend, served side by side by the
same code. `--services` (1,000) business services each have a stack of their own, as discovery
reports it: a web server on its host (the entry point, its host's fqdn and port 443), three instances
of the service's application on three hosts (connections at port 8080: Karta infers a redundancy
group of them), the service's database on a fifth host, one of 20 shared databases, and two of 100
switches per host. The rest of the items are the unrelated estate of bench/ingest_bench.py. So each
map holds about 25 CIs, and 11,000 CIs are under a mapped service.

  mapped    the services carry `entry_points`, so the keeper maps them;
  unmapped  the same estate with no entry points: no service has a map.

Measured:
  1. the unchanged pass (the same batches again, as discovery's next run sends them), on the two
     databases taking turns (after one pass each not timed), `--rounds` times each: mapped / unmapped
     time (target: within 5%), and each server process's own CPU seconds during its passes (on a shared
     machine the wall time mostly measures waiting for the cores; the CPU time does not);
  2. a batch that changes one mapped service's edges (a new database behind one of its application
     instances, through POST /api/v1/ingest): from the ingest answer to the `service_map` change
     record that names the new member, polled every 5 ms (target: <= 100 ms), `--changes` times.

    python bench/service_map_bench.py [--items 100000] [--services 1000] [--backend postgresql]
                                      [--rounds 3] [--changes 20] [--ask-during-load]
"""

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (cpu_seconds, drop_database, fresh_database, karta_command, memory_mib, minor_faults, served,
                          settle, vacuum)
from bench.ingest_bench import batches_of, generate

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
MAP_WAIT_SECONDS = 600


def service_stacks(services: int, rng: random.Random):
    """(item, relationships) of `services` service stacks (see the module docstring), in dependency
    order; the services carry no entry points yet."""
    items = []

    def add(ref, ci_class, name, identifiers, attributes, rels=()):
        items.append(({"ref": ref, "class": ci_class, "name": name, "identifiers": identifiers,
                       "attributes": attributes}, [{"source": s, "type": t, "target": g, "attributes": a}
                                                   for s, t, g, a in rels]))

    def host(ref, name, switches):
        add(ref, "server", name, {"machine_id": uuid.UUID(int=rng.getrandbits(128)).hex, "fqdn": f"{name}.example.com"},
            {"os_name": "debian", "os_version": "12"},
            [(ref, "connects_to", switch, {}) for switch in switches])

    switches = [f"m-sw-{n}" for n in range(100)]
    for n, ref in enumerate(switches):
        add(ref, "network_device", f"m-sw-{n:03d}", {"serial_number": f"MSW{n:06d}"}, {"vendor": "cisco"})
    shared = []
    for n in range(20):
        host(f"m-shared-host-{n}", f"shared-db-{n}", rng.sample(switches, 2))
        shared.append(f"m-shared-db-{n}")
        add(shared[-1], "database", f"auth-db-{n}", {"instance_key": f"m/shared/{n}"}, {"port": 5432},
            [(shared[-1], "runs_on", f"m-shared-host-{n}", {})])
    for n in range(services):
        for part in ("web", "app1", "app2", "app3", "db"):
            host(f"m-{n}-{part}-host", f"svc{n}-{part}", rng.sample(switches, 2))
        add(f"m-{n}-db", "database", f"svc{n}-db", {"instance_key": f"m/{n}/db"}, {"port": 5432},
            [(f"m-{n}-db", "runs_on", f"m-{n}-db-host", {})])
        auth = rng.choice(shared)
        for i in (1, 2, 3):
            ref = f"m-{n}-app{i}"
            add(ref, "application", f"svc{n}-api", {"instance_key": f"m/{n}/app{i}"}, {"port": 8080},
                [(ref, "runs_on", f"m-{n}-app{i}-host", {}), (ref, "depends_on", f"m-{n}-db", {"port": 5432}),
                 (ref, "depends_on", auth, {"port": 5432})])
        add(f"m-{n}-web", "web_server", "nginx", {"instance_key": f"m/{n}/web"}, {"port": 443},
            [(f"m-{n}-web", "runs_on", f"m-{n}-web-host", {})]
            + [(f"m-{n}-web", "depends_on", f"m-{n}-app{i}", {"port": 8080}) for i in (1, 2, 3)])
        add(f"m-{n}-service", "service", f"svc{n}", {"service_id": f"MSVC{n:05d}"}, {"sla": "gold"})
    return items


def with_entry_points(items):
    """The estate with each stack's service given its entry point: its web host's fqdn, port 443."""
    out = []
    for item, rels in items:
        if item["ref"].startswith("m-") and item["ref"].endswith("-service"):
            n = item["ref"].split("-")[1]
            item = {**item, "attributes": {**item["attributes"], "entry_points": [f"svc{n}-web.example.com:443"]}}
        out.append((item, rels))
    return out


def push(http: httpx.Client, items, run: str, id_of: dict, *, ask: bool = False) -> float:
    """Seconds to push `items` in batches of 5,000; with `ask`, an impact question after each batch
    (untimed), as a worker serving people during a load is asked: its graph catches up batch by batch."""
    started, each, asked = time.perf_counter(), [], 0.0
    for body in batches_of(items, 5000, run, id_of):
        at = time.perf_counter()
        response = http.post("/api/v1/ingest", content=orjson.dumps(body), headers={"Content-Type": "application/json"})
        response.raise_for_status()
        id_of.update(response.json()["refs"])
        each.append(time.perf_counter() - at)
        if ask:
            at = time.perf_counter()
            http.post("/api/v1/impact", json={"ci_ids": [next(iter(id_of.values()))]}).raise_for_status()
            asked += time.perf_counter() - at
    if os.environ.get("KARTA_BENCH_BATCH_TIMES"):
        print(f"  {run}: batches " + " ".join(f"{t:.2f}" for t in each), file=sys.stderr)
    return time.perf_counter() - started - asked


def wait_mapped(url: str, services: int) -> float:
    """Seconds until `services` maps exist and the keeper has written nothing for 5 s (its stored
    cursor lags what it has read by design, so the feed's quiet is what says it is done), bounded."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(url))
    started, last_head, quiet_since = time.perf_counter(), None, time.perf_counter()
    try:
        while time.perf_counter() - started < MAP_WAIT_SECONDS:
            with engine.connect() as conn:
                mapped = conn.execute(text("SELECT count(*) FROM service_map_state WHERE status = 'mapped'")).scalar()
                head = conn.execute(text("SELECT max(seq) FROM change_record")).scalar() or 0
            if head != last_head:
                last_head, quiet_since = head, time.perf_counter()
            if mapped >= services and time.perf_counter() - quiet_since >= 5:
                with engine.connect() as conn:
                    groups = conn.execute(text("SELECT count(*) FROM ci_source WHERE source = 'service_mapping'")).scalar()
                print(f"  {mapped} maps, {groups} redundancy groups inferred", file=sys.stderr)
                return quiet_since - started
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise SystemExit(f"the keeper did not map {services} services within {MAP_WAIT_SECONDS} s")


def map_follows(http: httpx.Client, id_of: dict, services: int, changes: int, rng: random.Random) -> list[float]:
    """Milliseconds from each one-service batch's answer to the map record naming its new member."""
    times = []
    for n in range(changes):
        k = rng.randrange(services)
        service_id = id_of[f"m-{k}-service"]
        ref = f"bench-db-{n}"
        body = {"source": "ssh", "run_id": f"follow-{n}", "scope": {"hosts": [f"follow-{n}"]},
                "items": [{"ref": ref, "class": "database", "name": ref,
                           "identifiers": {"instance_key": f"follow/{os.getpid()}/{n}"}, "attributes": {"port": 5432}}],
                "relationships": [{"source": id_of[f"m-{k}-app1"], "target": ref, "type": "depends_on",
                                   "attributes": {"port": 5432}}]}
        seen = len(http.get("/api/v1/changes", params={"object_type": "service_map", "object_id": service_id,
                                                       "limit": 1000}).json()["items"])
        response = http.post("/api/v1/ingest", json=body)
        response.raise_for_status()
        answered = time.perf_counter()
        new_id = response.json()["refs"][ref]
        while True:
            records = http.get("/api/v1/changes", params={"object_type": "service_map", "object_id": service_id,
                                                          "limit": 1000}).json()["items"]
            if any(f"members.{new_id}" in r["diff"] for r in records[seen:]):
                times.append((time.perf_counter() - answered) * 1000)
                break
            if time.perf_counter() - answered > 30:
                raise SystemExit(f"the map of {service_id} did not follow within 30 s")
            time.sleep(0.005)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--backend", default="postgresql", choices=("sqlite", "postgresql"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--keeper-off", action="store_true",
                        help="the mapped side's server runs no keeper (KARTA_SERVICE_MAPS_KEEP=false): its services "
                             "are mapped once by `karta db map-services` after the load, and the unchanged passes "
                             "then compare the mapped database without the keeper's thread in the process")
    parser.add_argument("--restart", action="store_true",
                        help="time the unchanged passes on two fresh servers started after the mapping (each "
                             "loads its graph whole; the first ones stay up, idle)")
    parser.add_argument("--then-restart", action="store_true",
                        help="time the rounds on the servers that went through the load, then the same rounds on two "
                             "fresh servers started on the same databases: the four processes compared in one run")
    parser.add_argument("--vacuum", action="store_true",
                        help="VACUUM ANALYZE both databases before the timed passes (what autovacuum would do in "
                             "time: the mapped one took ~13,000 more writes while it was loaded)")
    parser.add_argument("--ask-during-load", action="store_true",
                        help="both servers are asked an impact question after each batch of the first load, so both "
                             "graphs grow change by change as a serving worker's does (without it only the mapped "
                             "side's keeper walks its graph during the load; the unmapped graph is loaded whole after)")
    parser.add_argument("--profile", type=Path,
                        help="record each timed pass's server's CPU profile into this directory (--profile-with)")
    parser.add_argument("--profile-with", choices=("py-spy", "perf"), default="py-spy",
                        help="py-spy (pip install py-spy): Python stacks, one collapsed-stack file a pass; perf "
                             "(linux-perf): the interpreter's own C functions (malloc, hashing, the collector), one "
                             "perf.data file a pass")
    parser.add_argument("--control", action="store_true",
                        help="neither database's services carry entry points: the ratio two like databases "
                             "served side by side give (the noise floor of the first measure)")
    args = parser.parse_args()

    def profiling(pid: int, name: str):
        if args.profile is None:
            return None
        args.profile.mkdir(parents=True, exist_ok=True)
        if args.profile_with == "perf":
            command = ["perf", "record", "-F", "999", "-p", str(pid), "-o", str(args.profile / f"{name}.data")]
        else:
            command = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--nonblocking",
                       "--rate", "250", "--format", "raw", "--output", str(args.profile / f"{name}.txt")]
        profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1)  # attached before the pass starts
        if profiler.poll() is not None:
            raise SystemExit(f"{command[0]} could not record process {pid}: {profiler.stderr.read().decode()[-500:]}")
        return profiler

    def stop_profiling(profiler) -> None:
        """Stopped once the pass's readings are taken (its own flush is not the server's work); killed if
        it does not end within a minute, so that none outlives the run."""
        if profiler is None:
            return
        profiler.send_signal(signal.SIGINT)
        try:
            profiler.wait(60)
        except subprocess.TimeoutExpired:
            profiler.kill()
            profiler.wait(10)
    stacks = service_stacks(args.services, random.Random(42))
    items = stacks + generate(max(args.items - len(stacks), 1000), random.Random(43))
    mapped_items = items if args.control else with_entry_points(items)
    mapped_services = 0 if args.control else args.services
    workdir = Path(tempfile.mkdtemp(prefix="karta-bench-map-"))
    try:
        sides = {}
        for side, data in (("mapped", mapped_items), ("unmapped", items)):
            url = fresh_database(args.backend, f"karta_bench_map_{side}", workdir)
            env = {**os.environ, "KARTA_DATABASE_URL": url,
                   **({"KARTA_SERVICE_MAPS_KEEP": "false"} if args.keeper_off and side == "mapped" else {})}
            karta = karta_command(env, REPO)
            karta("db", "upgrade")
            secret = karta("token", "create", "--name", "bench", "--scope", "discovery", "--scope", "read"
                           ).strip().splitlines()[-1]
            sides[side] = (url, env, secret, data)
        results: dict[str, list[float]] = {"mapped": [], "unmapped": []}
        server_cpu: dict[str, list[float]] = {"mapped": [], "unmapped": []}
        # per process kind ("loaded": went through the load; "fresh": started after it) and side: CPU s,
        # minor faults and resident MiB after each pass
        passes: dict[tuple[str, str], list[tuple[float, int, float]]] = {}
        follow: list[float] = []
        with served(sides["mapped"][1], REPO) as mapped_base, served(sides["unmapped"][1], REPO) as unmapped_base:
            bases = {"mapped": mapped_base, "unmapped": unmapped_base}
            clients = {side: httpx.Client(base_url=bases[side], timeout=600,
                                          headers={"Authorization": f"Bearer {sides[side][2]}"}) for side in sides}
            ids: dict[str, dict] = {"mapped": {}, "unmapped": {}}
            for side in ("mapped", "unmapped"):
                seconds = push(clients[side], sides[side][3], "load", ids[side], ask=args.ask_during_load)
                print(f"{side}: first load {seconds:.1f} s", file=sys.stderr)
            if args.keeper_off and mapped_services:
                karta_command(sides["mapped"][1], REPO)("db", "map-services")
            mapped_in = wait_mapped(sides["mapped"][0], mapped_services)
            print(f"mapped: {args.services} services mapped {mapped_in:.0f} s after the load", file=sys.stderr)
            for side in ("mapped", "unmapped"):  # one unchanged pass each, not timed: both warm alike
                push(clients[side], sides[side][3], "warm", ids[side])
                # Both workers hold their impact graph, as a serving worker does (the keeper loaded the
                # mapped one's; nothing had asked the unmapped one a question yet).
                clients[side].post("/api/v1/impact", json={"ci_ids": [ids[side]["m-0-db-host"]]}).raise_for_status()
            wait_mapped(sides["mapped"][0], mapped_services)
            if args.vacuum:
                for side in sides:
                    vacuum(sides[side][0])

            def timed_rounds(timed: dict[str, httpx.Client], pids: dict[str, int], kind: str = "loaded") -> None:
                for n in range(args.rounds):
                    order = ("mapped", "unmapped") if n % 2 == 0 else ("unmapped", "mapped")
                    for side in order:
                        settle(sides[side][0])
                        profiler = profiling(pids[side], f"{kind}-{side}-{n}")
                        try:
                            cpu, faults = cpu_seconds(pids[side]), minor_faults(pids[side])
                            seconds = push(timed[side], sides[side][3], f"again-{n}", ids[side])
                            cpu, faults = cpu_seconds(pids[side]) - cpu, minor_faults(pids[side]) - faults
                        finally:
                            stop_profiling(profiler)
                        passes.setdefault((kind, side), []).append((cpu, faults, memory_mib(pids[side])[0]))
                        if kind == "loaded" or args.restart:
                            results[side].append(seconds)
                            server_cpu[side].append(cpu)
                        print(f"round {n}: {kind} {side} unchanged pass {seconds:.2f} s, its server's CPU {cpu:.2f} s, "
                              f"{faults} minor faults", file=sys.stderr)

            if args.then_restart:
                timed_rounds(clients, {side: bases[side].process.pid for side in bases})
            if args.restart or args.then_restart:  # fresh processes on the same databases: each loads its graph whole
                with served(sides["mapped"][1], REPO) as again_mapped, served(sides["unmapped"][1], REPO) as again_unmapped:
                    fresh = {side: httpx.Client(base_url=base, timeout=600,
                                                headers={"Authorization": f"Bearer {sides[side][2]}"})
                             for side, base in (("mapped", again_mapped), ("unmapped", again_unmapped))}
                    for side in ("mapped", "unmapped"):
                        fresh[side].post("/api/v1/impact", json={"ci_ids": [ids[side]["m-0-db-host"]]}).raise_for_status()
                        push(fresh[side], sides[side][3], "warm-again", ids[side])
                    timed_rounds(fresh, {"mapped": again_mapped.process.pid, "unmapped": again_unmapped.process.pid}, "fresh")
                    for client in fresh.values():
                        client.close()
            else:
                timed_rounds(clients, {side: bases[side].process.pid for side in bases})
            if not args.control and not args.keeper_off and not args.restart and not args.then_restart:
                follow = map_follows(clients["mapped"], ids["mapped"], args.services, args.changes, random.Random(9))
            for client in clients.values():
                client.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if args.backend == "postgresql":
            for side in ("mapped", "unmapped"):
                drop_database(f"karta_bench_map_{side}")

    mapped_s, unmapped_s = statistics.mean(results["mapped"]), statistics.mean(results["unmapped"])
    follow = sorted(follow) or [float("nan")]
    ratios = [m / u for m, u in zip(results["mapped"], results["unmapped"])]
    cpu_ratios = [m / u for m, u in zip(server_cpu["mapped"], server_cpu["unmapped"])]
    lines = [f"Service maps, {args.items:,} items, {mapped_services:,} mapped services, {args.backend}, "
             f"`karta serve` with one worker each, batches of 5,000" + (" (control: nothing mapped)" if args.control else "")
             + (" (the mapped side's server runs no keeper)" if args.keeper_off else "") + (" (vacuumed)" if args.vacuum else "") + (" (restarted)" if args.restart else "") + (" (both asked during the load)" if args.ask_during_load else "")
             + (f" (profiled with {args.profile_with}: its sampling counts in the servers' CPU)" if args.profile else ""),
             "", "| measure | value |", "|---|---:|",
             f"| unchanged pass, mapped (mean of {args.rounds}) | {mapped_s:.2f} s |",
             f"| unchanged pass, unmapped (mean of {args.rounds}) | {unmapped_s:.2f} s |",
             f"| mapped / unmapped | {mapped_s / unmapped_s:.3f} |",
             # Each round runs the two sides back to back: their ratio is the least disturbed by a
             # machine whose load drifts between rounds.
             f"| mapped / unmapped per round, median (min-max) | {statistics.median(ratios):.3f} "
             f"({min(ratios):.3f}-{max(ratios):.3f}) |",
             # The server process's own CPU seconds (user + system) during each pass: on a machine others
             # share, far less disturbed than the wall time (which waits for the cores), though caches
             # and frequency are shared still. PostgreSQL's work is not in it (the same on both sides).
             f"| server CPU per unchanged pass, mapped / unmapped (means) | {statistics.mean(server_cpu['mapped']):.2f} s / "
             f"{statistics.mean(server_cpu['unmapped']):.2f} s = "
             f"{statistics.mean(server_cpu['mapped']) / statistics.mean(server_cpu['unmapped']):.3f} |",
             f"| same, per round, median (min-max) | {statistics.median(cpu_ratios):.3f} "
             f"({min(cpu_ratios):.3f}-{max(cpu_ratios):.3f}) |",
             f"| a one-service batch's map current after its answer, p50 | {statistics.median(follow):.0f} ms |",
             f"| same, p90 | {follow[int(0.9 * (len(follow) - 1))]:.0f} ms |",
             f"| same, max of {len(follow)} | {follow[-1]:.0f} ms |",
             f"| every service mapped, after the first load | {mapped_in:.0f} s |"]
    # Each server process's own cost per pass: the servers that went through the load, and (with
    # --restart or --then-restart) the ones started after it on the same databases.
    for (kind, side), rows in sorted(passes.items()):
        lines.append(f"| {kind} {side} server per pass: CPU, minor faults (means); resident after | "
                     f"{statistics.mean(r[0] for r in rows):.2f} s, {statistics.mean(r[1] for r in rows):,.0f}; "
                     f"{rows[-1][2]:,.0f} MiB |")
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "service_map.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
