"""Benchmark: the Ansible inventory of 100,000 hosts, service groups included (target <= 2 s).

Loads an estate straight into a fresh database of each backend: 10,000 hypervisors (class server),
90,000 VMs running on them, 2,000 services each with 30 application instances (web, application,
database) on VMs of their own, the databases in a cluster per service, one in ten services also
depending on one of 20 shared platform services; hosts carry the attributes discovery writes
(addresses, fqdn, OS, interfaces, disks, filesystems, listening ports: ~1.5 KB each). Then starts
`karta serve` (1 worker) and times `GET /api/v1/integrations/ansible/inventory` end to end (the
answer read whole by an HTTP client), after one warm-up request that also loads the impact graph:
  - the whole inventory, service groups included, after a host's tags are edited, and after a
    relationship from a service to a host is created or deleted (the service groups walked again),
  - ?environment=prod&status=active (the CI list's filters),
  - ?attributes=true (every host's attributes),
and `karta inventory --list` (the executable inventory, answer from Karta then from its cache).

    python bench/inventory_bench.py [--hosts 100000] [--runs 5] [--backends sqlite,postgresql] [--reuse]
"""

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core.db import make_engine
from app.services import tokens
from app.services.history import UnitOfWork
from bench.api_bench import load, make_token
from bench.common import PG_URL, cpu_seconds, fresh_database, served, settle

RESULTS = Path(__file__).resolve().parent / "results"
ENVIRONMENTS = ["prod"] * 5 + ["stage"] * 2 + ["dev"] * 3
OWNERS = [f"team-{name}" for name in ("web", "payments", "data", "platform", "network", "identity", "search")]
TAGS = ["pci", "gdpr", "web", "batch", "edge", "legacy"]
OSES = [("debian", "12"), ("ubuntu", "22.04"), ("rhel", "9.3")]
STACK = [("web_server", 10), ("application", 15), ("database", 5)]  # instances per service
SHARED_SERVICES = 20


class Estate:
    def __init__(self, rng: random.Random) -> None:
        self.rng, self.now = rng, datetime.now(UTC)
        self.cis: list[dict] = []
        self.relationships: list[dict] = []

    def ci(self, ci_class: str, name: str, env: str, attributes: dict) -> uuid.UUID:
        rng = self.rng
        ci_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        self.cis.append({"id": ci_id, "ci_class": ci_class, "name": name, "environment": env,
                         "status": rng.choice(["active"] * 19 + ["maintenance"]), "criticality": rng.randint(1, 4),
                         "owner": rng.choice(OWNERS), "tags": rng.sample(TAGS, k=rng.randint(0, 2)),
                         "attributes": attributes, "first_seen": self.now, "last_seen": self.now,
                         "created_at": self.now, "updated_at": self.now, "version": 1})
        return ci_id

    def relate(self, source: uuid.UUID, rel_type: str, target: uuid.UUID) -> None:
        self.relationships.append({"id": uuid.UUID(int=self.rng.getrandbits(128), version=4), "source_id": source,
                                   "target_id": target, "type": rel_type, "attributes": {}, "first_seen": self.now,
                                   "last_seen": self.now, "created_at": self.now})

    def host(self, ci_class: str, n: int) -> uuid.UUID:
        rng, env = self.rng, self.rng.choice(ENVIRONMENTS)
        name = f"{'hv' if ci_class == 'server' else 'vm'}-{n:06d}"
        address = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        os_name, os_version = rng.choice(OSES)
        attributes = {
            "machine_id": uuid.UUID(int=rng.getrandbits(128)).hex, "fqdn": f"{name}.{env}.example.com",
            "ip_address": [address, f"172.16.{n // 256 % 256}.{n % 256}"],
            "mac_address": ["52:54:00:" + ":".join(f"{rng.getrandbits(8):02x}" for _ in range(3))],
            "os_name": os_name, "os_version": os_version, "kernel": "6.1.0-18-amd64", "architecture": "x86_64",
            "cpu_count": rng.choice([2, 4, 8, 16]), "memory_mb": rng.choice([4096, 8192, 32768]),
            "interfaces": [{"name": "eth0", "mac_address": "52:54:00:00:00:01", "state": "up", "mtu": 1500,
                            "addresses": [f"{address}/16"]}],
            "disks": [{"name": "vda", "size_bytes": 107374182400, "rotational": False}],
            "filesystems": [{"device": "/dev/vda1", "type": "ext4", "mountpoint": "/", "size_kb": 102687672},
                            {"device": "tmpfs", "type": "tmpfs", "mountpoint": "/run", "size_kb": 817604}],
            "listening": [{"address": "0.0.0.0", "port": 22, "process": "sshd"}],
            "services": ["ssh.service", "cron.service", "systemd-journald.service"],
        }
        if ci_class == "virtual_machine":
            attributes["hypervisor"] = "kvm"
        return self.ci(ci_class, name, env, attributes)


def generate(hosts: int, rng: random.Random) -> Estate:
    estate = Estate(rng)
    hypervisors = [estate.host("server", n) for n in range(hosts // 10)]
    vms = [estate.host("virtual_machine", n) for n in range(hosts - len(hypervisors))]
    for n, vm in enumerate(vms):
        estate.relate(vm, "runs_on", hypervisors[n % len(hypervisors)])
    per_service = sum(count for _, count in STACK)
    services = []
    for s in range(min(2000, len(vms) // per_service)):
        env = rng.choice(ENVIRONMENTS)
        service = estate.ci("service", f"service-{s:04d}", env, {"service_id": f"SVC{s:05d}"})
        services.append(service)
        cluster = estate.ci("cluster", f"db-cluster-{s:04d}", env, {"cluster_id": f"cl-{s:05d}", "min_members": 2})
        estate.relate(service, "depends_on", cluster)
        instances = {}
        for ci_class, count in STACK:
            for i in range(count):
                vm = vms[s * per_service + len(instances.get("all", []))]
                app = estate.ci(ci_class, f"{ci_class}-{s:04d}-{i:02d}", env,
                                {"instance_key": f"{vm.hex}/{ci_class}/{8000 + i}", "port": 8000 + i})
                instances.setdefault("all", []).append(app)
                instances.setdefault(ci_class, []).append(app)
                estate.relate(app, "runs_on", vm)
                if ci_class == "database":
                    estate.relate(vm, "member_of", cluster)
        for web in instances["web_server"]:
            estate.relate(service, "depends_on", web)
            for api in rng.sample(instances["application"], 3):
                estate.relate(web, "depends_on", api)
        for api in instances["application"]:
            estate.relate(api, "depends_on", rng.choice(instances["database"]))
    for service in services[SHARED_SERVICES::10]:
        estate.relate(service, "depends_on", services[rng.randrange(SHARED_SERVICES)])
    return estate


def timed_get(client: httpx.Client, url: str, pid: int) -> tuple[float, float, int, dict]:
    cpu, started = cpu_seconds(pid), time.perf_counter()
    response = client.get(url)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    assert response.status_code == 200, response.text[:500]
    return elapsed, cpu, len(response.content), response.json()


def measure(base: str, token: str, writer: str, runs: int, pid: int) -> list[tuple[str, list[float], list[float], int, str]]:
    """Each timed request follows a write (a host's tags edited through the API, or a relationship
    from a service to it created or deleted), as in a CMDB that discovery keeps current: the answer is
    computed, not the one cached for an unmoved change feed. The cached answer is timed on its own, last."""
    rows = []
    path = "/api/v1/integrations/ansible/inventory"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=600, trust_env=False) as client:
        first, cpu, _, answer = timed_get(client, path, pid)
        rows.append(("first request (loads the impact graph)", [first], [cpu], 0, ""))
        some_host = next(iter(answer["_meta"]["hostvars"].values()))["karta_id"]

        some_service = client.get("/api/v1/cis", params={"class": "service", "limit": 1}).json()["items"][0]["id"]
        added: list[str] = []
        as_writer = {"Authorization": f"Bearer {writer}"}

        def write(n: int) -> None:
            # A tag never written before: the same tags again would change nothing (and leave the answer cached).
            response = client.patch(f"/api/v1/cis/{some_host}", json={"tags": [f"bench-{n}-{uuid.uuid4().hex[:8]}"]},
                                    headers=as_writer)
            assert response.status_code == 200, response.text

        def relate(n: int) -> None:
            """A relationship created, then deleted: the host joins a service group, then leaves it."""
            if added:
                response = client.delete(f"/api/v1/relationships/{added.pop()}", headers=as_writer)
                assert response.status_code == 204, response.text
                return
            response = client.post("/api/v1/relationships", headers=as_writer, json={
                "source": some_service, "target": some_host, "type": "depends_on"})
            if response.status_code == 409:  # left by an interrupted run: deleting it is the write
                response = client.delete(f"/api/v1/relationships/{response.json()['existing_relationship']}",
                                         headers=as_writer)
                assert response.status_code == 204, response.text
                return
            assert response.status_code == 201, response.text
            added.append(response.json()["id"])

        for label, url, change in (
            ("whole inventory", path, write),
            ("whole inventory, after a relationship write", path, relate),
            ("?environment=prod&status=active", f"{path}?environment=prod&status=active", write),
            ("?attributes=true", f"{path}?attributes=true", write),
            ("whole inventory, cached (nothing changed)", path, None),
        ):
            times, cpus, size, answer = [], [], 0, {}
            if change is None:
                client.get(url)  # the answer the next ones find cached
            for n in range(runs):
                if change is not None:
                    change(n)
                elapsed, cpu, size, answer = timed_get(client, url, pid)
                times.append(elapsed)
                cpus.append(cpu)
            if added:  # the estate as it was
                relate(runs)
            hosts = len(answer["_meta"]["hostvars"])
            services = [name for name in answer if name.startswith("service_")]
            members = sum(len(answer[name]["hosts"]) for name in services)
            rows.append((label, times, cpus, size, (f"{hosts:,} hosts, {len(answer) - 2:,} groups ({len(services):,} "
                                                    f"service groups holding {members:,} hosts)")))
    return rows


def make_writer(database_url: str) -> str:
    engine = make_engine(database_url)
    with UnitOfWork(engine, "bench") as uow:
        secret = tokens.create_token(uow, f"bench-writer-{uuid.uuid4().hex[:6]}", ["write"])["secret"]
    engine.dispose()
    return secret


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_cli(base: str, token: str, runs: int) -> list[tuple[str, list[float], list[float], int, str]]:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "KARTA_URL": base, "KARTA_TOKEN": token, "KARTA_INVENTORY_CACHE_DIR": cache,
               "KARTA_INVENTORY_CACHE_SECONDS": "600"}
        rows = []
        for label, fresh in (("karta inventory --list (asks Karta, which has it cached)", True),
                             ("karta inventory --list (from its cache file)", False)):
            times, cpus, size = [], [], 0
            for _ in range(runs):
                if fresh:
                    for leftover in Path(cache).glob("*.json"):
                        leftover.unlink()
                before, started = children_cpu(), time.perf_counter()
                result = subprocess.run([sys.executable, "-m", "app.cli", "inventory", "--list"], env=env,
                                        capture_output=True, timeout=600, check=False)
                times.append(time.perf_counter() - started)
                cpus.append(children_cpu() - before)
                assert result.returncode == 0, result.stderr[-500:]
                size = len(result.stdout)
            rows.append((label, times, cpus, size, ""))
    return rows


def database(backend: str, estate_of, reuse: bool) -> str:
    """The benchmark's database of `backend`, loaded; with `reuse`, the one a previous run loaded."""
    workdir = Path(tempfile.gettempdir()) / "karta-bench-inventory"
    workdir.mkdir(exist_ok=True)
    if reuse:
        if backend == "sqlite":
            return f"sqlite:///{workdir / 'karta_bench_inventory.db'}"
        return make_url(PG_URL).set(database="karta_bench_inventory").render_as_string(hide_password=False)
    url = fresh_database(backend, "karta_bench_inventory", workdir)
    started = time.perf_counter()
    estate = estate_of()
    load(url, estate.cis, estate.relationships)
    settle(url)
    print(f"{backend}: loaded {len(estate.cis):,} CIs, {len(estate.relationships):,} relationships in "
          f"{time.perf_counter() - started:.1f}s", file=sys.stderr)
    return url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--reuse", action="store_true", help="Measure the databases the last run loaded")
    args = parser.parse_args()
    made: list[Estate] = []

    def estate_of() -> Estate:
        if not made:
            made.append(generate(args.hosts, random.Random(20261202)))
        return made[0]

    lines = [(f"Ansible inventory, {args.hosts:,} hosts, `karta serve` 1 worker, {args.runs} runs each, on "
              f"{os.cpu_count()} cores shared with other work (load average {os.getloadavg()[0]:.1f} at the start); "
              "CPU = the server's (or the command's) user + system seconds"), "",
             "| backend | request | median s | min s | max s | CPU median s | answer MB | what |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for backend in args.backends.split(","):
        url = database(backend, estate_of, args.reuse)
        token = make_token(url)
        with served({**os.environ, "KARTA_DATABASE_URL": url}, Path(__file__).resolve().parent.parent) as base:
            rows = (measure(base, token, make_writer(url), args.runs, base.process.pid)
                    + measure_cli(base, token, args.runs))
        for label, times, cpus, size, what in rows:
            line = (f"| {backend} | {label} | {statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} | "
                    f"{statistics.median(cpus):.2f} | {size / 1e6:.1f} | {what} |")
            lines.append(line)
            print(line, file=sys.stderr)
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "inventory.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
