"""The timed questions of bench/graph_bench.py, and the Markdown report they fill."""

from __future__ import annotations

import heapq
import math
import platform
import statistics
import time

from graph import ImpactGraph
from graph_synthetic import SEMANTICS

SMALL_ANSWER = 10_000  # the latency target applies to answers up to this many CIs
NO_IMPACT_TYPES = sorted(t for t, s in SEMANTICS.items() if s.impact == "none")
CTE = """
WITH RECURSIVE reach(id) AS (
    SELECT unnest(%(failed)s::uuid[])
  UNION
    SELECT e.target FROM reach JOIN impact_edge e ON e.source = reach.id
    WHERE e.type <> ALL(%(inert)s)
)
SELECT id::text FROM reach
"""


class Report:
    def __init__(self, args):
        self.args = args
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, what: str, value: str, target: str = "", met: bool | None = None) -> None:
        verdict = "" if met is None else ("yes" if met else "**MISSED**")
        self.rows.append((what, value, target, verdict))
        print(f"{what}: {value}", flush=True)

    def markdown(self) -> str:
        a = self.args
        lines = [
            f"# graph/ benchmark, {a.cis:,} CIs (seed {a.seed})",
            "",
            f"Command: `python bench/graph_bench.py --cis {a.cis} --samples {a.samples} --top {a.top}`  ",
            f"Python {platform.python_version()}, {platform.machine()}, PostgreSQL on {a.host}:{a.port}",
            "",
            "| measure | value | target | met |",
            "| --- | --- | --- | --- |",
        ]
        lines += [f"| {w} | {v} | {t} | {m} |" for w, v, t, m in self.rows]
        return "\n".join(lines) + "\n"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))] if ordered else float("nan")


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - t0) * 1000


def cte_reach(conn, failed: list) -> tuple[set, float]:
    t0 = time.perf_counter()
    rows = conn.execute(CTE, {"failed": failed, "inert": NO_IMPACT_TYPES}).fetchall()
    return {r[0] for r in rows}, (time.perf_counter() - t0) * 1000


def measure_all(g: ImpactGraph, conn, report: Report, rng) -> None:
    ids = sorted(g.graph._node)
    random_sets = [[ci] for ci in rng.sample(ids, min(report.args.samples, len(ids)))]
    succ = g.graph._succ
    top = heapq.nlargest(report.args.top, ids, key=lambda u: sum(1 for d in succ[u].values() if d["kind"]))
    blasts = [rng.sample(ids, 10) for _ in range(50)]
    compare_impact(g, conn, report, "random CI", random_sets)
    compare_impact(g, conn, report, "most depended-upon CI", [[ci] for ci in top])
    compare_impact(g, conn, report, "blast radius of 10 failed CIs", blasts)
    measure_root_cause(g, report, rng, ids)
    measure_spof(g, report, rng, ids)
    measure_changes(g, report, rng, ids)


def compare_impact(g: ImpactGraph, conn, report: Report, label: str, failed_sets: list[list]) -> None:
    graph_ms, cte_ms, sizes, small_graph, small_cte, mismatches, timeouts = [], [], [], [], [], 0, 0
    small_read = []  # impact plus reading every entry, path included, as a response would
    for failed in failed_sets:
        result, ms = timed(g.impact, failed)
        size = len(result.impacted)
        graph_ms.append(ms)
        sizes.append(size)
        _, read_ms = timed(lambda: sum(len(hit.path) for hit in result.impacted.values()))
        if size <= SMALL_ANSWER:
            small_read.append(ms + read_ms)
        try:
            reach, cms = cte_reach(conn, failed)
        except Exception:  # statement_timeout: counted, never hidden
            conn.rollback()
            timeouts += 1
            continue
        cte_ms.append(cms)
        if reach != set(result.impacted) | set(result.failed):
            mismatches += 1
        if size <= SMALL_ANSWER:
            small_graph.append(ms)
            small_cte.append(cms)
    n = len(failed_sets)
    report.add(f"impact, {label}: answer size p50 / p99 / max ({n} runs)",
               f"{pct(sizes, .5):,} / {pct(sizes, .99):,} / {max(sizes):,} CIs")
    report.add(f"impact, {label}: graph p50 / p99 (all answers)", f"{pct(graph_ms, .5):.2f} / {pct(graph_ms, .99):.1f} ms")
    if small_graph:
        p99 = pct(small_graph, .99)
        report.add(f"impact, {label}: graph p99, answers <= {SMALL_ANSWER:,} CIs ({len(small_graph)} runs)",
                   f"{p99:.1f} ms", "<= 50 ms", p99 <= 50)
        p99 = pct(small_read, .99)
        report.add(f"impact, {label}: graph p99 incl. reading every path, answers <= {SMALL_ANSWER:,} CIs",
                   f"{p99:.1f} ms", "<= 50 ms", p99 <= 50)
    report.add(f"impact, {label}: CTE p50 / p99 (all answers)",
               f"{pct(cte_ms, .5):.2f} / {pct(cte_ms, .99):.1f} ms" + (f", {timeouts} timed out" if timeouts else ""))
    if small_cte:
        ratio = statistics.median(c / max(gm, 1e-6) for c, gm in zip(small_cte, small_graph))
        total = sum(small_cte) / max(sum(small_graph), 1e-6)
        report.add(f"impact, {label}: CTE / graph time, answers <= {SMALL_ANSWER:,} (median per query; total)",
                   f"{ratio:.1f}x; {total:.1f}x", ">= 3x", ratio >= 3)
    big = [(c, gm) for c, gm, s in zip(cte_ms, graph_ms, sizes) if s > SMALL_ANSWER]
    if big:
        report.add(f"impact, {label}: CTE / graph time, answers > {SMALL_ANSWER:,} ({len(big)} runs, total)",
                   f"{sum(c for c, _ in big) / max(sum(gm for _, gm in big), 1e-6):.1f}x")
    report.add(f"impact, {label}: same sets as the CTE", f"{n - mismatches - timeouts} of {n}", "all", mismatches == 0)


def measure_root_cause(g: ImpactGraph, report: Report, rng, ids: list) -> None:
    node = g.graph._node
    causes = [c for c in ids if node[c]["ci_class"] in ("hypervisor_cluster", "network_ha_group", "datastore", "application")]
    runs, ranks, tried = [], [], 0
    while len(runs) < 10 and tried < 500:
        tried += 1
        cause = rng.choice(causes)
        down = [c for c, hit in g.impact([cause]).impacted.items()
                if hit.state == "down" and node[c]["ci_class"] in ("business_service", "application")]
        if len(down) < 20:
            continue
        symptoms = rng.sample(sorted(down), 20)
        ranked, ms = timed(g.root_cause, symptoms)
        runs.append(ms)
        ranks.append(next((i + 1 for i, r in enumerate(ranked) if r.ci_id == cause), None))
        if len(ranked[0].explains) != 20:
            ranks[-1] = "top explains fewer than 20"
    if runs:
        report.add(f"root cause of 20 symptoms of one injected failure: p50 / max ({len(runs)} runs)",
                   f"{pct(runs, .5):.0f} / {max(runs):.0f} ms")
        report.add("root cause: rank of the injected cause (a more specific cause explaining all 20 may rank first)",
                   ", ".join(str(r) for r in ranks))
    services = [c for c in ids if node[c]["ci_class"] == "business_service"]
    rand = [timed(g.root_cause, rng.sample(services, 20))[1] for _ in range(5)]
    report.add("root cause of 20 random services: p50 / max (5 runs)", f"{pct(rand, .5):.0f} / {max(rand):.0f} ms")


def measure_spof(g: ImpactGraph, report: Report, rng, ids: list) -> None:
    node = g.graph._node
    services = [c for c in ids if node[c]["ci_class"] == "business_service"]
    times, sizes = [], []
    for service in rng.sample(services, 5):
        found, ms = timed(g.spof, service)
        times.append(ms)
        sizes.append(len(found))
    report.add("spof of 5 services: p50 / max", f"{pct(times, .5):.0f} / {max(times):.0f} ms; spofs found {sizes}")


def measure_changes(g: ImpactGraph, report: Report, rng, ids: list) -> None:
    node, succ = g.graph._node, g.graph._succ
    apps = [c for c in ids if node[c]["ci_class"] == "application"]
    records = []
    for i in range(1000):
        roll = rng.random()
        if roll < 0.35:
            records.append((g.add_relationship, (rng.choice(apps), rng.choice(apps), "depends_on")))
        elif roll < 0.70:
            u = rng.choice(ids)
            while not succ[u]:
                u = rng.choice(ids)
            v = rng.choice(sorted(succ[u]))
            type_name = sorted(succ[u][v]["types"])[0]
            source, target = (v, u) if SEMANTICS[type_name].impact == "target_to_source" else (u, v)
            records.append((g.remove_relationship, (source, target, type_name)))
        elif roll < 0.85:
            c = rng.choice(ids)
            records.append((g.upsert_ci, (c, node[c]["ci_class"], rng.choice([None, 1, 2, 3]))))
        else:
            records.append((g.upsert_ci, (f"00000000-0000-4000-8000-{i:012d}", "vm", None)))
    times = []
    t0 = time.perf_counter()
    for fn, args in records:
        _, ms = timed(fn, *args)
        g.applied_seq += 1
        times.append(ms)
    total = (time.perf_counter() - t0) * 1000
    report.add("apply 1,000 change records (35% add rel, 35% remove rel, 30% upsert CI)",
               f"{total:.1f} ms total, p99 {pct(times, .99) * 1000:.0f} us per record")
