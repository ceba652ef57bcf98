"""The timed questions of bench/graph_bench.py, and the Markdown report they fill."""

from __future__ import annotations

import heapq
import math
import os
import platform
import statistics
import time
from pathlib import Path

from graph import ImpactGraph, propagation
from graph import causes as graph_causes
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


class Measures:
    """A bench's (measure, value) rows, each printed as it comes, published as one Markdown table."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    def add(self, what: str, value: str) -> None:
        self.rows.append((what, value))
        print(f"{what}: {value}", flush=True)

    def publish(self, title: str, command: str, out: str) -> None:
        """The machine's load at the end as the last row, then the table under `title` and `command`."""
        self.add("load average (1 min) at the end", f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        publish("\n".join([f"# {title}", "", f"Command: `{command}`", "", "| measure | value |", "| --- | --- |"]
                          + [f"| {w} | {v} |" for w, v in self.rows]) + "\n", out)


def publish(text: str, out: str) -> None:
    """Print a bench's Markdown report and write it to `out` (bench/results/ by default)."""
    print(text)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))] if ordered else float("nan")


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - t0) * 1000


def python_impact(g: ImpactGraph, failed: list):
    """The Python loop over the dicts (graph.propagation), as a graph without its compiled view answers."""
    with g._lock:
        kind_key = g._types.kind_key(None)
        return propagation.impact(g.graph, failed, kind_key, None, g._spares_for(kind_key))


def same(a, b) -> bool:
    return (a.failed, a.unknown, a.impacted._state, a.impacted._parent) == (b.failed, b.unknown, b.impacted._state,
                                                                             b.impacted._parent) and \
        list(a.impacted._parent) == list(b.impacted._parent)


def ratios(report: Report, what: str, slow: list[float], fast: list[float], target: float | None = None) -> None:
    if not slow:
        return
    median = statistics.median(s / max(f, 1e-6) for s, f in zip(slow, fast))
    total = sum(slow) / max(sum(fast), 1e-6)
    report.add(what + f" ({len(slow)} runs; median per query; total)", f"{median:.1f}x; {total:.1f}x",
               "" if target is None else f">= {target:g}x", None if target is None else min(median, total) >= target)


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
    if g.compacted:  # the same questions once the changes are read through the view's overlay (no CTE: they are in memory only)
        compare_impact(g, conn, report, "most depended-upon CI, after the 1,000 changes", [[ci] for ci in top if ci in g],
                       cte=False)


def compare_impact(g: ImpactGraph, conn, report: Report, label: str, failed_sets: list[list], cte: bool = True) -> None:
    """Each question asked of the graph as the service answers it (the compiled loop when the graph has its
    view), of the Python loop over the dicts right after (when there is a view: side by side, same answer
    checked), and of the CTE."""
    graph_ms, cte_ms, sizes, mismatches, timeouts = [], [], [], 0, 0
    py_ms, differ, ids_ms = [], 0, []
    small_read = []  # impact plus reading every entry, path included, as a response would
    for turn, failed in enumerate(failed_sets):
        if g.compacted and turn % 2:  # which goes first alternates: neither always finds the caches warm
            slow, pms = timed(python_impact, g, failed)
        result, ms = timed(g.impact, failed)
        size = len(result.impacted)
        graph_ms.append(ms)
        sizes.append(size)
        if g.compacted:
            if not turn % 2:
                slow, pms = timed(python_impact, g, failed)
            py_ms.append(pms)
            differ += not same(result, slow)
        _, listed_ms = timed(list, result.impacted)  # the ids, as the CTE hands them over
        ids_ms.append(ms + listed_ms)
        _, read_ms = timed(lambda: sum(len(hit.path) for hit in result.impacted.values()))
        if size <= SMALL_ANSWER:
            small_read.append(ms + read_ms)
        if not cte:
            continue
        try:
            reach, cms = cte_reach(conn, failed)
        except Exception:  # statement_timeout: counted, never hidden
            conn.rollback()
            timeouts += 1
            cte_ms.append(None)
            continue
        cte_ms.append(cms)
        if reach != set(result.impacted) | set(result.failed):
            mismatches += 1
    n = len(failed_sets)
    how = "compiled view" if g.compacted else "graph"
    report.add(f"impact, {label}: answer size p50 / p99 / max ({n} runs)",
               f"{pct(sizes, .5):,} / {pct(sizes, .99):,} / {max(sizes):,} CIs")
    report.add(f"impact, {label}: {how} p50 / p99 (all answers)", f"{pct(graph_ms, .5):.2f} / {pct(graph_ms, .99):.1f} ms")
    if py_ms:
        report.add(f"impact, {label}: Python loop p50 / p99 (all answers)", f"{pct(py_ms, .5):.2f} / {pct(py_ms, .99):.1f} ms")
    small = [i for i, size in enumerate(sizes) if size <= SMALL_ANSWER]
    big = [i for i, size in enumerate(sizes) if size > SMALL_ANSWER]
    if small:
        small_graph = [graph_ms[i] for i in small]
        p99 = pct(small_graph, .99)
        report.add(f"impact, {label}: {how} p99, answers <= {SMALL_ANSWER:,} CIs ({len(small)} runs)",
                   f"{p99:.1f} ms", "<= 50 ms", p99 <= 50)
        p99 = pct(small_read, .99)
        report.add(f"impact, {label}: {how} p99 incl. reading every path, answers <= {SMALL_ANSWER:,} CIs",
                   f"{p99:.1f} ms", "<= 50 ms", p99 <= 50)
    if not cte:
        if py_ms:
            ratios(report, f"impact, {label}: Python loop / compiled view with the ids listed", py_ms, ids_ms)
            report.add(f"impact, {label}: same answers as the Python loop (states, parents, order)",
                       f"{n - differ} of {n}", "all", differ == 0)
        return
    done = [c for c in cte_ms if c is not None]
    report.add(f"impact, {label}: CTE p50 / p99 (all answers)",
               f"{pct(done, .5):.2f} / {pct(done, .99):.1f} ms" + (f", {timeouts} timed out" if timeouts else ""))
    for part, name in ((small, f"answers <= {SMALL_ANSWER:,}"), (big, f"answers > {SMALL_ANSWER:,}")):
        timed_part = [i for i in part if cte_ms[i] is not None]
        ratios(report, f"impact, {label}: CTE / {how}, {name}", [cte_ms[i] for i in timed_part],
               [graph_ms[i] for i in timed_part], 5)
        ratios(report, f"impact, {label}: CTE / {how} with the impacted ids listed, {name}",
               [cte_ms[i] for i in timed_part], [ids_ms[i] for i in timed_part], 5)
        if py_ms:
            ratios(report, f"impact, {label}: CTE / Python loop, {name}", [cte_ms[i] for i in timed_part],
                   [py_ms[i] for i in timed_part])
            ratios(report, f"impact, {label}: Python loop / compiled view with the ids listed, {name}",
                   [py_ms[i] for i in part], [ids_ms[i] for i in part])
    report.add(f"impact, {label}: same sets as the CTE", f"{n - mismatches - timeouts} of {n}", "all", mismatches == 0)
    if py_ms:
        report.add(f"impact, {label}: same answers as the Python loop (states, parents, order)",
                   f"{n - differ} of {n}", "all", differ == 0)


def python_root_cause(g: ImpactGraph, symptoms: list):
    """graph.causes.root_cause with every walk over the dicts, as a graph without its compiled view ranks."""
    with g._lock:
        kind_key = g._types.kind_key(None)
        return graph_causes.root_cause(g.graph, symptoms, 10, kind_key, g._spares_for(kind_key))


def root_cause_both(g: ImpactGraph, symptoms: list, compiled: list, python: list, turn: int) -> list:
    """The ranking as the service computes it, timed (into `compiled`); with a compiled view, the Python
    walks' too (into `python`), which goes first alternating, and the two rankings checked equal."""
    if g.compacted and turn % 2:
        slow, ms = timed(python_root_cause, g, symptoms)
        python.append(ms)
    ranked, ms = timed(g.root_cause, symptoms)
    compiled.append(ms)
    if g.compacted and not turn % 2:
        slow, ms = timed(python_root_cause, g, symptoms)
        python.append(ms)
    if g.compacted and slow != ranked:
        raise AssertionError(f"the compiled root cause ranks otherwise than the Python one for {symptoms}")
    return ranked


def measure_root_cause(g: ImpactGraph, report: Report, rng, ids: list) -> None:
    node = g.graph._node
    causes = [c for c in ids if node[c]["ci_class"] in ("hypervisor_cluster", "network_ha_group", "datastore", "application")]
    runs, ranks, tried, python = [], [], 0, []
    how = "compiled view" if g.compacted else "graph"
    while len(runs) < 10 and tried < 500:
        tried += 1
        cause = rng.choice(causes)
        down = [c for c, hit in g.impact([cause]).impacted.items()
                if hit.state == "down" and node[c]["ci_class"] in ("business_service", "application")]
        if len(down) < 20:
            continue
        symptoms = rng.sample(sorted(down), 20)
        ranked = root_cause_both(g, symptoms, runs, python, len(runs))
        ranks.append(next((i + 1 for i, r in enumerate(ranked) if r.ci_id == cause), None))
        if len(ranked[0].explains) != 20:
            ranks[-1] = "top explains fewer than 20"
    if runs:
        report.add(f"root cause of 20 symptoms of one injected failure, {how}: p50 / max ({len(runs)} runs)",
                   f"{pct(runs, .5):.0f} / {max(runs):.0f} ms")
        if python:
            report.add("root cause of 20 symptoms of one injected failure, Python walks: p50 / max (same rankings)",
                       f"{pct(python, .5):.0f} / {max(python):.0f} ms")
        report.add("root cause: rank of the injected cause (a more specific cause explaining all 20 may rank first)",
                   ", ".join(str(r) for r in ranks))
    services = [c for c in ids if node[c]["ci_class"] == "business_service"]
    rand, python = [], []
    for turn in range(report.args.root_cause_runs):
        root_cause_both(g, rng.sample(services, 20), rand, python, turn)
    n = len(rand)
    report.add(f"root cause of 20 random services, {how}: p50 / p99 / max ({n} runs)",
               f"{pct(rand, .5):.0f} / {pct(rand, .99):.0f} / {max(rand):.0f} ms", "p99 <= 500 ms", pct(rand, .99) <= 500)
    if python:
        report.add(f"root cause of 20 random services, Python walks: p50 / p99 / max ({n} runs, same rankings)",
                   f"{pct(python, .5):.0f} / {pct(python, .99):.0f} / {max(python):.0f} ms")


def python_spof(g: ImpactGraph, ci_id) -> list:
    """graph.causes.spof walked over the dicts, as a graph without its compiled view finds them."""
    with g._lock:
        kind_key = g._types.kind_key(None)
        return graph_causes.spof(g.graph, ci_id, kind_key, g._spares_for(kind_key))


def measure_spof(g: ImpactGraph, report: Report, rng, ids: list) -> None:
    node = g.graph._node
    services = [c for c in ids if node[c]["ci_class"] == "business_service"]
    times, sizes, slow, differ = [], [], [], 0
    for turn, service in enumerate(rng.sample(services, 5)):
        if g.compacted and turn % 2:
            other, pms = timed(python_spof, g, service)
        found, ms = timed(g.spof, service)
        times.append(ms)
        sizes.append(len(found))
        if g.compacted:
            if not turn % 2:
                other, pms = timed(python_spof, g, service)
            slow.append(pms)
            differ += other != found
    report.add("spof of 5 services: p50 / max", f"{pct(times, .5):.0f} / {max(times):.0f} ms; spofs found {sizes}")
    if slow:
        report.add(f"spof of the same 5 services, Python walks: p50 / max (answers differing: {differ})",
                   f"{pct(slow, .5):.0f} / {max(slow):.0f} ms")


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
    if g.compacted:  # the first question after them reads the changed CIs' rows into the view's overlay
        view = g._view
        t0 = time.perf_counter()
        with g._lock:
            view.refresh(g.graph)
        refresh_ms = (time.perf_counter() - t0) * 1000
        _, first = timed(g.impact, [rng.choice(apps)])
        report.add("compiled view: reading those changes into its overlay; the next question",
                   f"{refresh_ms:.1f} ms ({view.rows:,} rows); {first:.1f} ms")
