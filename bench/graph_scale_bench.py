"""How the impact graph and its compiled view scale: start-up, memory and answers at up to 10,000,000 CIs.

    python bench/graph_scale_bench.py --cis 10000000      # issue #14's size: 10M CIs, ~31M relationships
    python bench/graph_scale_bench.py --cis 1000000       # the size the other benches use

In one process, no database: the seeded synthetic enterprise of bench/graph_synthetic.py is generated,
then loaded with `bulk_load` (a worker's load from its database rows, without reading them), then the
compiled view is built (graph/compact.py), each timed with the resident memory it adds. Then impact of
random CIs and of the most depended-upon CIs, compiled and (for a sample) with the Python loop, checked
equal, and root cause of 20 random services. Prints a Markdown table and writes
bench/results/graph-scale.md.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from graph_measures import Measures, pct, python_impact, python_root_cause, same, timed  # noqa: E402
from graph_synthetic import SEMANTICS, generate  # noqa: E402

from bench.common import memory_mib  # noqa: E402
from graph import ImpactGraph, compact  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cis", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--samples", type=int, default=300, help="random CIs to fail one at a time")
    parser.add_argument("--top", type=int, default=30, help="most depended-upon CIs to fail one at a time")
    parser.add_argument("--python-samples", type=int, default=20, help="of those, asked of the Python loop too")
    parser.add_argument("--root-cause-runs", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "graph-scale.md"))
    args = parser.parse_args()
    measures = Measures()
    add = measures.add

    process = memory_mib()[0]
    started = time.perf_counter()
    inventory = generate(args.cis, args.seed)
    add("synthetic estate generated (not part of a start)",
        f"{len(inventory.cis):,} CIs, {len(inventory.relationships):,} relationships in {time.perf_counter() - started:.0f} s")
    g = ImpactGraph(SEMANTICS)
    _, ms = timed(g.bulk_load, inventory.cis, inventory.relationships)
    del inventory
    gc.collect()
    graph_mib = memory_mib()[0]
    add("bulk_load (the graph from rows in memory)", f"{ms / 1000:.1f} s")
    add("resident memory once the estate's rows are freed: the graph held (the process before generating)",
        f"{graph_mib:,.0f} MiB ({process:,.0f} MiB)")
    before = memory_mib()[0]
    _, ms = timed(compact.warm_up)
    add("numba's loops compiled or loaded from its cache; memory added", f"{ms / 1000:.1f} s; {memory_mib()[0] - before:,.0f} MiB")
    before = memory_mib()[0]
    _, ms = timed(g.build_compact)
    add("compiled view built (slices under the lock); memory added", f"{ms / 1000:.1f} s; {memory_mib()[0] - before:,.0f} MiB")
    rss, peak = memory_mib()
    add("resident memory, graph and view (peak of the process)", f"{rss:,.0f} MiB ({peak:,.0f} MiB)")

    rng = random.Random(args.seed)
    ids = list(g.graph._node)
    succ = g.graph._succ
    top = heapq.nlargest(args.top, rng.sample(ids, min(len(ids), 200_000)),
                         key=lambda u: sum(1 for d in succ[u].values() if d["kind"]))
    for label, sets in (("random CI", [[c] for c in rng.sample(ids, args.samples)]),
                        ("most depended-upon CI (of 200,000 sampled)", [[c] for c in top])):
        fast, slow, sizes, differ = [], [], [], 0
        for turn, failed in enumerate(sets):
            result, ms = timed(g.impact, failed)
            list(result.impacted)  # its ids, as a caller reads them
            fast.append(ms)
            sizes.append(len(result.impacted))
            if turn < args.python_samples:
                other, ms = timed(python_impact, g, failed)
                slow.append(ms)
                differ += not same(result, other)
        add(f"impact, {label}: answer size p50 / max ({len(sets)} runs)", f"{pct(sizes, .5):,} / {max(sizes):,} CIs")
        add(f"impact, {label}: compiled p50 / p99 / max", f"{pct(fast, .5):.2f} / {pct(fast, .99):.1f} / {max(fast):.1f} ms")
        add(f"impact, {label}: Python loop p50 / max (first {len(slow)}; answers differing: {differ})",
            f"{pct(slow, .5):.2f} / {max(slow):.1f} ms")
    node = g.graph._node
    services = [c for c in rng.sample(ids, min(len(ids), 2_000_000)) if node[c]["ci_class"] == "business_service"]
    fast, slow = [], []
    for turn in range(args.root_cause_runs):
        symptoms = rng.sample(services, 20)
        ranked, ms = timed(g.root_cause, symptoms)
        fast.append(ms)
        if turn < 2:
            other, ms = timed(python_root_cause, g, symptoms)
            slow.append(ms)
            assert other == ranked, "the compiled root cause ranks otherwise"
    add(f"root cause of 20 random services, compiled: p50 / max ({len(fast)} runs)", f"{pct(fast, .5):.0f} / {max(fast):.0f} ms")
    add(f"root cause of 20 random services, Python walks: p50 / max ({len(slow)} runs, same rankings)",
        f"{pct(slow, .5):.0f} / {max(slow):.0f} ms")
    measures.publish(f"graph/ at scale, {args.cis:,} CIs (seed {args.seed})", f"python bench/graph_scale_bench.py --cis {args.cis}", args.out)


if __name__ == "__main__":
    main()
