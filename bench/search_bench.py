"""Benchmark: GET /api/v1/search on a big estate (1,000,000 CIs by default), SQLite and PostgreSQL.

Loads a realistic estate straight into a fresh database at migration 0008 with bulk SQL (hosts with
names like fra1-web01234, fqdns, serials, machine-ids, 1-2 MACs and 1-3 IP addresses, OS, kernel, CPU
model, vendor and model, rack location; IP address CIs; applications with versions, processes, URLs;
databases; services; clusters; network devices; their identifiers), then times the upgrade to 0009
(building the search indexes on a full table is what an existing installation pays), starts
`karta serve` with one worker and sends, one at a time, a mix of queries:
  ip (an address a host holds), mac (in upper case with dashes), fqdn (in mixed case), name fragment
  (4-8 characters from anywhere in a name), attribute value (a word or value of a kernel, CPU model,
  product, process, version, location...), nothing (matches no CI), one letter.
Latency is measured by the client per request (HTTP, auth and JSON included). Prints a Markdown table
and writes bench/results/search.md.

    python bench/search_bench.py [--cis 1000000] [--queries 200] [--backends sqlite,postgresql]
"""

import argparse
import os
import random
import shutil
import statistics
import string
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.core import migrations  # noqa: E402
from app.core.db import make_engine, refresh_statistics, write_transaction  # noqa: E402
from app.models import CIIdentifier, ConfigurationItem  # noqa: E402
from app.services.bulk import insert_rows  # noqa: E402
from app.services.identifiers import identifier_values  # noqa: E402
from app.services.identity import held_values, identifying_facts  # noqa: E402
from app.services.registry import load_registry  # noqa: E402
from bench.api_bench import make_token  # noqa: E402
from bench.common import PG_URL, fresh_database, served  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MIX = [("server", 0.15), ("virtual_machine", 0.25), ("ip_address", 0.25), ("application", 0.15),
       ("database", 0.05), ("web_server", 0.05), ("service", 0.04), ("cluster", 0.02), ("network_device", 0.04)]
SITES = ["fra1", "fra2", "ams1", "lon3", "par2", "nyc1", "sfo2", "sgp1", "syd1", "muc1"]
ROLES = ["web", "app", "db", "cache", "mq", "lb", "k8s", "batch", "build", "mon", "log", "auth", "api", "search",
         "mail", "dns", "proxy", "vpn", "etl", "ci"]
APPS = ["orders", "billing", "checkout", "catalog", "payments", "inventory", "shipping", "identity", "reporting",
        "pricing", "search", "recommend", "notify", "ledger", "crm", "hr-portal", "wiki", "grafana", "jenkins", "vault"]
PARTS = ["api", "worker", "frontend", "scheduler", "gateway", "sync", "admin", "backend"]
ENVIRONMENTS = ["prod"] * 5 + ["stage"] * 2 + ["dev"] * 3
OWNERS = [f"team-{name}" for name in ("web", "payments", "data", "platform", "network", "identity", "search", "sre")]
OSES = [("Debian GNU/Linux", "12", "6.1.0-18-amd64"), ("Debian GNU/Linux", "11", "5.10.0-28-amd64"),
        ("Ubuntu", "22.04", "5.15.0-91-generic"), ("Ubuntu", "20.04", "5.4.0-169-generic"),
        ("Red Hat Enterprise Linux", "9.3", "5.14.0-362.8.1.el9_3.x86_64"),
        ("Windows Server", "2022", "10.0.20348"), ("Rocky Linux", "8.9", "4.18.0-513.9.1.el8_9.x86_64")]
CPUS = ["Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz",
        "AMD EPYC 7763 64-Core Processor", "AMD EPYC 9354 32-Core Processor", "Intel(R) Xeon(R) Platinum 8380"]
HARDWARE = [("Dell Inc.", "PowerEdge R640"), ("Dell Inc.", "PowerEdge R750"), ("HPE", "ProLiant DL380 Gen10"),
            ("Lenovo", "ThinkSystem SR650"), ("Supermicro", "SYS-1029P-WTR")]
NETWORK = [("Cisco", "Nexus 93180YC-EX"), ("Arista", "DCS-7050SX3-48YC8"), ("Juniper", "QFX5120-48Y"),
           ("Palo Alto Networks", "PA-5220")]
ENGINES = ["PostgreSQL 15.4", "PostgreSQL 13.12", "MySQL 8.0.35", "Redis 7.2.3", "MongoDB 6.0.12", "Oracle 19c"]
CHUNK = 20_000


class Estate:
    """Rows generated chunk by chunk (a million CIs' dicts at once would take gigabytes), and a sample
    of what people would search for."""

    def __init__(self, count: int, seed: int) -> None:
        self.count, self.rng = count, random.Random(seed)
        self.samples: dict[str, list[str]] = {kind: [] for kind in ("ip", "mac", "fqdn", "name", "attribute")}
        self.ip_counter = 0

    def _sample(self, kind: str, value: str) -> None:
        if len(self.samples[kind]) < 5000:
            self.samples[kind].append(value)
        elif self.rng.random() < 0.01:
            self.samples[kind][self.rng.randrange(5000)] = value

    def _ip(self, first: int) -> str:
        self.ip_counter += 1
        n = self.ip_counter
        return f"{first}.{n // 65536 % 256}.{n // 256 % 256}.{n % 256 or 1}"

    def _mac(self) -> str:
        return "52:54:00:" + ":".join(f"{self.rng.getrandbits(8):02x}" for _ in range(3))

    def _host(self, ci_class: str, n: int, env: str) -> tuple[str, dict]:
        rng = self.rng
        site, role = rng.choice(SITES), rng.choice(ROLES)
        name = f"{site}-{role}{n:05d}" if ci_class != "virtual_machine" else f"{site}-{role}-vm{n:06d}"
        fqdn = f"{name}.{env}.corp.example.com"
        os_name, os_version, kernel = rng.choice(OSES)
        vendor, model = rng.choice(NETWORK if ci_class == "network_device" else HARDWARE)
        attributes = {
            "serial_number": f"{rng.choice(['CZ', 'SGH', 'J30', 'MXQ'])}{rng.getrandbits(36):09X}",
            "machine_id": uuid.UUID(int=rng.getrandbits(128)).hex, "fqdn": fqdn,
            "mac_address": [self._mac() for _ in range(rng.choice([1, 1, 2]))],
            "ip_address": [self._ip(10) for _ in range(rng.choice([1, 1, 2, 3]))],
            "location": f"{site.upper()} / Row {rng.randint(1, 20)} / Rack {rng.randint(1, 40)}",
        }
        if ci_class == "network_device":
            attributes.update(vendor=vendor, model=model)
        else:
            attributes.update(os_name=os_name, os_version=os_version, kernel=kernel, cpu_count=rng.choice([2, 4, 8, 16, 32]),
                              memory_mb=rng.choice([4096, 8192, 16384, 65536, 262144]))
            if ci_class == "server":
                attributes.update(cpu_model=rng.choice(CPUS), vendor=vendor, model=model)
            else:
                attributes["hypervisor"] = f"{site}-esx{rng.randint(1, 400):03d}"
        for mac in attributes["mac_address"]:
            self._sample("mac", mac)
        for address in attributes["ip_address"]:
            self._sample("ip", address)
        self._sample("fqdn", fqdn)
        return name, attributes

    def _other(self, ci_class: str, n: int, env: str) -> tuple[str, dict]:
        rng = self.rng
        if ci_class == "ip_address":
            address = self._ip(172)
            return address, {"address": address}
        app, part = rng.choice(APPS), rng.choice(PARTS)
        if ci_class in ("application", "database", "web_server"):
            name = f"{app}-{part}-{env}-{n % 1000:03d}"
            attributes = {"instance_key": f"{uuid.UUID(int=rng.getrandbits(128)).hex}/{ci_class}/{n}",
                          "version": f"{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 12)}",
                          "process": f"/opt/{app}/bin/{app}-{part}", "port": rng.choice([80, 443, 5432, 3306, 8080, 6379])}
            if ci_class == "database":
                attributes["engine"] = rng.choice(ENGINES)
            if ci_class == "web_server":
                attributes["url"] = f"https://{app}.{env}.example.com/{part}"
            return name, attributes
        if ci_class == "service":
            return f"{app.title()} {part} ({env}) #{n}", {"service_id": f"SVC{n:06d}", "sla": rng.choice(["gold", "silver", "bronze"])}
        return f"{app}-{part}-cluster-{n:05d}", {"cluster_id": f"cl-{n:06d}", "min_members": rng.choice([1, 2])}

    def chunks(self, registry):
        now = datetime.now(UTC)
        plan = [(ci_class, int(self.count * share)) for ci_class, share in MIX]
        plan[0] = (plan[0][0], plan[0][1] + self.count - sum(n for _, n in plan))
        rows, identifiers = [], []
        for ci_class, total in plan:
            cls = registry.classes[ci_class]
            for n in range(total):
                env = self.rng.choice(ENVIRONMENTS)
                host = ci_class in ("server", "virtual_machine", "network_device")
                name, attributes = (self._host if host else self._other)(ci_class, n, env)
                ci_id = uuid.UUID(int=self.rng.getrandbits(128), version=4)
                self._sample("name", name)
                if host or ci_class in ("application", "database", "web_server"):
                    key = self.rng.choice([k for k in ("kernel", "cpu_model", "model", "location", "version",
                                                       "process", "engine", "url", "os_name") if k in attributes])
                    self._sample("attribute", str(attributes[key]))
                rows.append({"id": ci_id, "ci_class": ci_class, "name": name, "status": "active", "environment": env,
                             "criticality": self.rng.randint(1, 4), "owner": self.rng.choice(OWNERS), "tags": [],
                             "attributes": attributes, "first_seen": now, "last_seen": now, "created_at": now,
                             "updated_at": now, "version": 1, "provenance": {}})
                facts = identifying_facts(name, env, attributes)
                for key, value in dict.fromkeys([*identifier_values(cls.effective_rules, facts), *held_values(cls, facts)]):
                    identifiers.append({"family": cls.family, "key": key, "value": value, "ci_id": ci_id})
                if len(rows) >= CHUNK:
                    yield rows, identifiers
                    rows, identifiers = [], []
        if rows:
            yield rows, identifiers

    def queries(self, per_kind: int) -> list[tuple[str, str]]:
        rng, out = self.rng, []
        for _ in range(per_kind):
            out.append(("ip", rng.choice(self.samples["ip"])))
            out.append(("mac (upper case, dashes)", rng.choice(self.samples["mac"]).upper().replace(":", "-")))
            fqdn = rng.choice(self.samples["fqdn"])
            out.append(("fqdn (mixed case)", fqdn[:1].upper() + fqdn[1:8] + fqdn[8:].upper()))
            name = rng.choice(self.samples["name"])
            size = rng.randint(4, 8)
            start = rng.randrange(max(1, len(name) - size))
            out.append(("name fragment", name[start:start + size].strip() or name))
            value = rng.choice(self.samples["attribute"])
            words = [w for w in value.replace("/", " ").split() if len(w) >= 3]
            out.append(("attribute value", value if len(value) <= 20 or not words else rng.choice(words)))
            out.append(("nothing", "zq" + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(8))))
            out.append(("one letter", rng.choice(string.ascii_lowercase)))
        rng.shuffle(out)
        return out


def load(url: str, estate: Estate) -> dict[str, float]:
    engine = make_engine(url)
    migrations.upgrade(engine, "0008")
    started = time.perf_counter()
    with write_transaction(engine) as conn:
        registry = load_registry(conn)
        for rows, identifiers in estate.chunks(registry):
            insert_rows(conn, ConfigurationItem.__table__, rows)
            insert_rows(conn, CIIdentifier.__table__, identifiers, on_conflict_do_nothing=True)
    loaded = time.perf_counter()
    size_before = _size(engine, url)
    migrations.upgrade(engine)  # 0009: the search indexes, built on the full table
    migrated = time.perf_counter()
    if not refresh_statistics(engine, force=True):  # SQLite: as `karta serve` does after bulk loads
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    figures = {"load_s": loaded - started, "migrate_s": migrated - loaded, "size_before_mb": size_before,
               "size_after_mb": _size(engine, url)}
    engine.dispose()
    return figures


def _size(engine, url: str) -> float:
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return os.path.getsize(url.removeprefix("sqlite:///")) / 2**20
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_database_size(current_database())")).scalar() / 2**20


def measure(base: str, secret: str, queries: list[tuple[str, str]]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        for _, q in queries[:100]:  # warm-up: caches, the registry, the connection pool
            client.get("/api/v1/search", params={"q": q})
        for kind, q in queries:
            started = time.perf_counter()
            response = client.get("/api/v1/search", params={"q": q})
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise RuntimeError(f"{q!r}: {response.status_code} {response.text[:300]}")
            if kind == "nothing" and response.json()["results"]:
                raise RuntimeError(f"{q!r} was meant to match nothing")
            times.setdefault(kind, []).append(elapsed)
        # The floor on this machine at this moment: an answer with no database work and no token check.
        for _ in range(len(queries) // 7):
            started = time.perf_counter()
            client.get("/healthz")
            times.setdefault("(floor: GET /healthz)", []).append((time.perf_counter() - started) * 1000)
    return times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cis", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200, help="per kind")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--keep", type=Path, help="load into this directory (SQLite) and keep the databases")
    parser.add_argument("--reuse", action="store_true", help="measure the databases --keep left, loading nothing")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="karta-search-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    lines = [f"GET /api/v1/search, {args.cis:,} CIs, {args.queries} queries per kind sent one at a time to "
             f"`karta serve` (1 worker), latency measured by the client, on {os.cpu_count()} cores", "",
             "| backend | query kind | p50 ms | p95 ms | p99 ms | max ms | mean results | cut by the time budget |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for backend in args.backends.split(","):
        estate = Estate(args.cis, 20261203)
        if args.reuse:
            url = kept_database(backend, workdir)
            for _ in estate.chunks(_registry(url)):
                pass  # the same samples as the load drew
        else:
            url = fresh_database(backend, "karta_bench_search", workdir)
            figures = load(url, estate)
            notes.append(f"{backend}: loaded in {figures['load_s']:.0f} s; migration 0009 on the full table took "
                         f"{figures['migrate_s']:.0f} s; database {figures['size_before_mb']:,.0f} MiB -> "
                         f"{figures['size_after_mb']:,.0f} MiB")
            print(notes[-1], file=sys.stderr)
        queries = estate.queries(args.queries)
        secret = make_token(url)
        with served({**os.environ, "KARTA_DATABASE_URL": url}, Path(__file__).resolve().parent.parent) as base:
            times = measure(base, secret, queries)
            counts, cut = _result_counts(base, secret, queries)
        for kind, values in sorted(times.items()):
            print(f"{backend} {kind}: p50 {statistics.median(values):.1f} p99 {percentile(values, 0.99):.1f} ms",
                  file=sys.stderr)
        everything = [t for kind, values in times.items() if not kind.startswith("(") for t in values]
        for kind, values in [*sorted(times.items()), ("all", everything)]:
            results = f"{counts[kind]:.1f} | {cut[kind]:.0f}%" if kind in counts else " | "
            lines.append(f"| {backend} | {kind} | {statistics.median(values):.1f} | {percentile(values, 0.95):.1f} | "
                         f"{percentile(values, 0.99):.1f} | {max(values):.1f} | {results} |")
        if backend == "postgresql" and not args.keep:
            _drop_postgres(url)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    report = "\n".join(lines + [""] + notes)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search.md").write_text(report + "\n")


def kept_database(backend: str, workdir: Path) -> str:
    from sqlalchemy.engine import make_url

    if backend == "sqlite":
        return f"sqlite:///{workdir / 'karta_bench_search.db'}"
    return make_url(PG_URL).set(database="karta_bench_search").render_as_string(hide_password=False)


def _registry(url: str):
    engine = make_engine(url)
    with engine.connect() as conn:
        registry = load_registry(conn)
    engine.dispose()
    return registry


def _result_counts(base: str, secret: str, queries: list[tuple[str, str]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean results per kind, and the share of answers the time budget cut (truncated with fewer than
    the limit of 20), over every query of the run."""
    counts: dict[str, list[int]] = {}
    cut: dict[str, list[bool]] = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as client:
        for kind, q in queries:
            answer = client.get("/api/v1/search", params={"q": q}).json()
            counts.setdefault(kind, []).append(len(answer["results"]))
            cut.setdefault(kind, []).append(answer["truncated"] and len(answer["results"]) < 20)
    for table in (counts, cut):
        table["all"] = [v for values in list(table.values()) for v in values]
    return ({kind: statistics.mean(values) for kind, values in counts.items()},
            {kind: 100 * statistics.mean(values) for kind, values in cut.items()})


def _drop_postgres(url: str) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


if __name__ == "__main__":
    main()
