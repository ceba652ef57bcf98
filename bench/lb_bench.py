"""Benchmark: how long a commit takes to reach every worker's impact answers, with many workers behind
nginx, each holding a big graph (issue #14: p99 <= 1 s over 4 workers of 1,000,000 CIs).

    python bench/lb_bench.py --cis 1000000                    # 2 `karta serve` x 2 workers, the target
    python bench/lb_bench.py --cis 100000 --servers 4 --workers 1
    python bench/lb_bench.py --reuse                          # the database a previous run loaded

The estate is the graph benchmark's synthetic enterprise written into Karta's tables the way
bench/incident_bench.py writes it (its load(), reused). `--servers` `karta serve` processes of
`--workers` workers each run behind the real nginx configured by deploy/nginx/karta.conf (TLS, as
tests/test_load_balancer.py runs it). Every worker builds its graph at start-up; once each has
answered, a writer commits through nginx every `--interval` s for `--seconds` s: a new application A
and `A depends_on T` (T: a server made for the run). A probe per worker, on a keep-alive connection
straight to that worker (found by its file descriptors: tests/test_load_balancer.py), asks the impact
of T (depth 1) every `--probe-interval` s. The lag of a write at a worker: from sending the
relationship's POST to the first answer of that worker naming A (so the write's own time is in it).
Reports p50/p95/p99/max over every (write, worker), and each worker's resident memory. PostgreSQL
only (the graph's size is the point): the shared cluster's primary alone, or with `--replica` a
primary and hot standby of the bench's own (tests/replica/conftest.py's ReplicatedPostgres: root and
PostgreSQL's server programs needed), the workers' questions then read from the standby, so the lag
holds its replay. Writes bench/results/lb.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from incident_bench import load
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.core.db import make_engine
from app.services import tokens
from app.services.history import UnitOfWork
from bench.common import PG_URL, fresh_database, memory_mib, served
from tests.test_load_balancer import Nginx, LagProbes, children, percentile, pin_workers

RESULTS = Path(__file__).resolve().parent / "results"
DATABASE = "karta_bench_lb"


@contextmanager
def replicated_pair():
    """A primary and its hot standby on free ports, as tests/replica/conftest.py makes them."""
    from tests.discovery.lab_services import postgres_bindir
    from tests.replica.conftest import replicated_postgres

    bindir = postgres_bindir()
    if os.geteuid() != 0 or bindir is None:
        raise SystemExit("--replica needs root and PostgreSQL's server programs (initdb, pg_ctl, pg_basebackup)")
    with replicated_postgres(bindir, prefix="karta-lb-bench-pg-") as pair:
        yield pair


def token(url: str) -> str:
    engine = make_engine(url)
    try:
        with UnitOfWork(engine, "bench") as uow:
            return tokens.create_token(uow, f"lb-bench-{uuid.uuid4().hex[:8]}", ["read", "write"])["secret"]
    finally:
        engine.dispose()


def pin_all(servers, workers: int, secret: str, timeout: float = 60):
    return [w for s in servers for w in pin_workers(s.process.pid, int(s.rsplit(":", 1)[1]), workers, secret,
                                                    timeout=timeout)]


class PacedProbes(LagProbes):
    """LagProbes asking at most every `interval` s per worker (continuous asking would load the machine
    the workers share more than production's readers do)."""

    def __init__(self, workers, target: str, seconds: float, interval: float) -> None:
        super().__init__(workers, target, seconds)
        self.interval = interval

    def _probe(self, worker) -> None:
        original = worker.post

        def paced(path, body):
            started = time.monotonic()
            try:
                return original(path, body)
            finally:
                self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

        worker.post = paced
        super()._probe(worker)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cis", type=int, default=1_000_000)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="per `karta serve`")
    parser.add_argument("--seconds", type=float, default=60, help="how long the writer writes")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between two writes")
    parser.add_argument("--probe-interval", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--reuse", action="store_true", help="the PostgreSQL database a previous run loaded")
    parser.add_argument("--replica", action="store_true", help="a primary and hot standby of the bench's own")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="karta-lb-bench-"))
    env = {**os.environ, "KARTA_THREADS": "8"}
    with ExitStack() as stack:
        if args.replica:
            pair = stack.enter_context(replicated_pair())
            admin = create_engine(pair.primary.url(), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
            admin.dispose()
            url = pair.primary.url(DATABASE)
            load(url, args.cis, args.seed)
            replica = make_engine(pair.standby.url(DATABASE))
            head = make_engine(url)
            try:
                def applied(engine) -> int:
                    with engine.connect() as conn:
                        return conn.execute(text("SELECT coalesce(max(seq), 0) FROM change_record")).scalar_one()

                pair.wait_until(lambda: applied(replica) >= applied(head), 600, "the standby caught up")
            finally:
                replica.dispose()
                head.dispose()
            env["KARTA_DATABASE_REPLICA_URLS"] = pair.standby.url(DATABASE)
        elif args.reuse:
            url = make_url(PG_URL).set(database=DATABASE).render_as_string(hide_password=False)
        else:
            url = fresh_database("postgresql", DATABASE, workdir)
            load(url, args.cis, args.seed)
        secret = token(url)
        load_before = os.getloadavg()
        env["KARTA_DATABASE_URL"] = url
        started = time.monotonic()
        servers = [stack.enter_context(served({**env, **({} if n == 0 else {"KARTA_WEBHOOKS_DELIVER": "false", "KARTA_SERVICE_MAPS_KEEP": "false"})}, ROOT,
                                              workers=args.workers, startup_seconds=120))
                   for n in range(args.servers)]
        nginx = stack.enter_context(Nginx(workdir, [s.removeprefix("http://") for s in servers]))
        with nginx.client(secret) as http:
            if args.replica:  # the questions must read the standby: each host's workers see it in rotation
                deadline = time.monotonic() + 60
                while not all(r["in_rotation"] for _ in range(8) for r in http.get("/readyz").json()["replicas"]):
                    if time.monotonic() > deadline:
                        raise SystemExit("the standby did not join the rotation within 60 s")
                    time.sleep(0.5)
            answer = http.post("/api/v1/cis", json={"class": "server", "name": f"lb-target-{uuid.uuid4()}"})
            assert answer.status_code == 201, answer.text
            target = answer.json()["id"]
            # Each worker's first answer waits for its graph (built at start-up, in the background): asked
            # of all at once, then the connections are made again (an idle one is closed after 5 s).
            workers = pin_all(servers, args.workers, secret, timeout=1800)
            outcomes: dict[int, tuple[int, dict]] = {}
            waits = [threading.Thread(target=lambda w=w: outcomes.__setitem__(
                w.pid, w.post("/api/v1/impact", {"ci_ids": [target], "max_depth": 1}))) for w in workers]
            for wait in waits:
                wait.start()
            for wait in waits:
                wait.join(timeout=1800)
            assert len(outcomes) == len(workers) and all(s == 200 for s, _ in outcomes.values()), outcomes
            ready = time.monotonic() - started
            for worker in workers:
                worker.close()
            workers = pin_all(servers, args.workers, secret)
            print(f"{len(workers)} workers answering with their graphs {ready:.0f} s after start", file=sys.stderr)
            sent: dict[str, float] = {}
            with PacedProbes(workers, target, args.seconds + 120, args.probe_interval) as probes:
                deadline = time.monotonic() + args.seconds
                while time.monotonic() < deadline and not probes.errors:
                    begun = time.monotonic()
                    app = http.post("/api/v1/cis", json={"class": "application", "name": f"lb-{uuid.uuid4()}"})
                    assert app.status_code == 201, app.text
                    app_id = app.json()["id"]
                    sent[app_id] = time.monotonic()
                    related = http.post("/api/v1/relationships", json={"source": app_id, "target": target,
                                                                       "type": "depends_on"})
                    assert related.status_code == 201, related.text
                    time.sleep(max(0.0, args.interval - (time.monotonic() - begun)))
                last = list(sent)[-1]
                probes.wait_all_saw(last, 30)
                time.sleep(1)  # stragglers of earlier writes
                seen, errors, answered = dict(probes.seen), list(probes.errors), dict(probes.answers)
        memory = {w.pid: memory_mib(w.pid)[0] for w in workers}
        supervisors = {s.process.pid: memory_mib(s.process.pid)[0] for s in servers}
        helpers = {pid: memory_mib(pid)[0] for s in servers for pid in children(s.process.pid)
                   if pid not in memory}
        for worker in workers:
            worker.close()
    load_after = os.getloadavg()
    if errors:
        raise SystemExit(f"a probe failed: {errors[:5]}")
    lags = [seen[(w.pid, a)][0] - at for a, at in sent.items() for w in workers if (w.pid, a) in seen]
    missing = len(sent) * len(workers) - len(lags)
    ms = [lag * 1000 for lag in lags]
    lines = [
        f"{args.cis:,} CIs (bench/graph_synthetic.py), {args.servers} `karta serve` x {args.workers} workers behind "
        f"nginx (deploy/nginx/karta.conf, TLS), PostgreSQL {'primary + hot standby (questions read from it)' if args.replica else 'primary'}; {len(sent)} writes through nginx every "
        f"{args.interval:g} s for {args.seconds:g} s; each worker asked directly every {args.probe_interval:g} s; "
        f"{os.cpu_count()} cores, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after", "",
        "| commit -> each worker's impact answer | samples | p50 ms | p95 ms | p99 ms | max ms | not seen |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| all workers | {len(ms)} | {statistics.median(ms):.0f} | {percentile(ms, 0.95):.0f} | "
        f"{percentile(ms, 0.99):.0f} | {max(ms):.0f} | {missing} |",
    ]
    for worker in workers:
        own = [(seen[(worker.pid, a)][0] - at) * 1000 for a, at in sent.items() if (worker.pid, a) in seen]
        lines.append(f"| worker {worker.pid} ({answered.get(worker.pid, 0)} answers, RSS "
                     f"{memory[worker.pid]:,.0f} MiB) | {len(own)} | {statistics.median(own):.0f} | "
                     f"{percentile(own, 0.95):.0f} | {percentile(own, 0.99):.0f} | {max(own):.0f} | "
                     f"{len(sent) - len(own)} |")
    lines += ["", f"Workers answering with their graphs {ready:.0f} s after the servers started. Resident memory: "
              + ", ".join(f"worker {pid} {mib:,.0f} MiB" for pid, mib in memory.items())
              + "; the `karta serve` supervisors " + ", ".join(f"{mib:,.0f} MiB" for mib in supervisors.values())
              + ("; other children " + ", ".join(f"{mib:,.0f} MiB" for mib in helpers.values()) if helpers else "")
              + "."]
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lb.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
