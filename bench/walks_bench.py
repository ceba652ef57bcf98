"""The graph's walks at scale (single points of failure, providers): compiled over its view against Python.

    python bench/walks_bench.py --cis 1000000

In one process, no database: the seeded synthetic enterprise of bench/graph_synthetic.py is generated,
loaded with `bulk_load`, and its compiled view built (graph/compact.py). Then each walk as the service
asks it (compiled once the view exists) and over the dicts (the Python walks, what every worker ran
before) is asked of the same CIs, which goes first alternating, each answer checked equal:
  - `ImpactGraph.spof` against `graph.causes.spof`, of business services and of CIs of any class; then
    the overview's "services at risk" panel as app/services/overview.py runs it: spof of up to
    SERVICES_EXAMINED services, one after the other, until SPOF_SECONDS have passed; how many it gets
    through each way;
  - `graph.providers.providers` against `graph.providers.walk` over the dicts, of 2,000 business services
    (what the Ansible inventory's ServiceWalks walks again, for every service, after a relationship changes);
  - `ImpactGraph.neighborhood` both ways (the CI page's picture, `/cis/{id}/neighborhood`) against its walk
    over the dicts: random CIs at depth 2, and the most depended-upon CIs at depth 1;
  - then impact, spof and providers again on a view whose overlay holds 0.1%, 2% and 5% of the CIs changed (before
    its overlay grows past what makes it be built again), one more change before each question (a worker
    following a stream of writes); here the compiled question is asked first, right after the change, as the
    service asks it (the overlay brought up to date first), then the Python walk; impact's compiled answer
    is timed as it is returned (read lazily), the Python loop's as it builds its dicts.
Prints a Markdown table and writes bench/results/walks.md.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from graph_measures import Measures, pct, python_impact, python_spof, timed  # noqa: E402
from graph_synthetic import SEMANTICS, generate  # noqa: E402

from app.services.overview import SERVICES_EXAMINED, SPOF_SECONDS  # noqa: E402
from graph import ImpactGraph, compact  # noqa: E402
from graph import providers as graph_providers  # noqa: E402


def python_providers(g: ImpactGraph, ci_id) -> set:
    """graph.providers' walk over the dicts, as a graph without its compiled view walks."""
    with g._lock:
        return graph_providers.walk(g.graph._pred, ci_id)


def python_neighborhood(g: ImpactGraph, ci_id, depth: int) -> tuple[set, list]:
    """ImpactGraph.neighborhood (both ways, every type) walked over the dicts, as without the view."""
    with g._lock:
        seen, among = g._neighborhood_walk(ci_id, depth, "both", None)
        return seen, g._edges_allowed(among, None)


def side_by_side(compiled, python, targets: list) -> tuple[list, list, list, int]:
    """(compiled ms, Python ms, answer sizes, answers differing), which goes first alternating."""
    fast, slow, sizes, differ = [], [], [], 0
    for turn, ci in enumerate(targets):
        if turn % 2:
            other, pms = timed(python, ci)
        found, ms = timed(compiled, ci)
        if not turn % 2:
            other, pms = timed(python, ci)
        fast.append(ms)
        slow.append(pms)
        sizes.append(len(found))
        differ += found != other
    return fast, slow, sizes, differ


def panel(spof, services: list) -> int:
    """How many services the overview's panel examines before its deadline (its own loop's rule)."""
    looked_at = 0
    deadline = time.monotonic() + SPOF_SECONDS
    for service in services[:SERVICES_EXAMINED]:
        if time.monotonic() > deadline:
            break
        looked_at += 1
        spof(service)
    return looked_at


def impact_answer(result) -> tuple:
    """An impact answer as a comparable value: who failed, who is unknown, each CI's state and parent, in order."""
    impacted = result.impacted
    return result.failed, result.unknown, impacted._state, impacted._parent, list(impacted._parent)


def after_changes(g: ImpactGraph, rng, ids: list, services: list, add) -> None:
    """Impact and the walks on a view whose overlay holds many changed CIs, each question right after one more
    change (a worker following a stream of writes): the overlay's edges by head are then brought up to date
    before a walk over providers (CompactView.predecessors), and the groups' member counts (moved by the
    row read again) before any compiled question. Changed CIs: their min_members written, which puts their
    rows in the overlay as any change to them does."""
    node = g.graph._node
    changed = 0
    for size in (len(ids) // 1000, len(ids) // 50, len(ids) // 20):  # 0.1%, 2%, 5%: the view not stale yet
        for ci in rng.sample(ids, size - changed):
            g.upsert_ci(ci, node[ci]["ci_class"], rng.choice([None, 1, 2]))
        batch, changed = size - changed, size
        # The batch's rows read into the overlay (and the member counts brought up to date), then the
        # overlay's edges by head made, before the timing of single changes below.
        _, ms = timed(g.impact, [services[0]])
        g.spof(services[0])
        view = g._view
        label = f"after {size:,} CIs changed ({view.rows:,} overlay rows, {view.o_used:,} overlay edges' room)"
        add(f"the first impact question after a batch of {batch:,} changed CIs (their rows read into the "
            f"overlay), {label}", f"{ms:.1f} ms")
        # Impact answers compared once timed: turning them into comparable values is no part of answering.
        for name, ask, python, compared in (("impact of a random CI", lambda ci: g.impact([ci]),
                                             lambda ci: python_impact(g, [ci]), impact_answer),
                                            ("spof of a service", g.spof, lambda ci: python_spof(g, ci), None),
                                            ("providers of a service", lambda ci: graph_providers.providers(g, ci),
                                             lambda ci: python_providers(g, ci), None)):
            fast, slow, differ = [], [], 0
            for ci in rng.sample(ids if compared else services, 20):
                poked = rng.choice(ids)
                g.upsert_ci(poked, node[poked]["ci_class"], rng.choice([None, 1, 2]))
                found, ms = timed(ask, ci)  # what the service pays: the overlay brought up to date first
                other, pms = timed(python, ci)
                fast.append(ms)
                slow.append(pms)
                differ += (compared(found) != compared(other)) if compared else found != other
            add(f"{name}, {label}, one more change before each: as the service answers p50 / max; Python walk "
                f"p50 / max (20 questions; answers differing: {differ})",
                f"{pct(fast, .5):.2f} / {max(fast):.2f} ms; {pct(slow, .5):.2f} / {max(slow):.2f} ms")
    add("the view at the end not stale (no rebuild was asked for during these questions)", f"{not g._view.stale}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cis", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--services", type=int, default=50, help="business services asked, each both ways")
    parser.add_argument("--random", type=int, default=200, help="CIs of any class asked, each both ways")
    parser.add_argument("--panels", type=int, default=5, help="overview panels run each way, alternating")
    parser.add_argument("--walked", type=int, default=2000, help="business services whose providers are walked")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "walks.md"))
    args = parser.parse_args()
    measures = Measures()
    add = measures.add

    started = time.perf_counter()
    inventory = generate(args.cis, args.seed)
    g = ImpactGraph(SEMANTICS)
    g.bulk_load(inventory.cis, inventory.relationships)
    del inventory
    compact.warm_up()
    assert g.build_compact(), "the compiled view was not built"
    add("estate generated, loaded and its view built",
        f"{len(g):,} CIs, {g.number_of_relationships():,} relationships in {time.perf_counter() - started:.0f} s")

    rng = random.Random(args.seed)
    ids = list(g.graph._node)
    node = g.graph._node
    services = [c for c in ids if node[c]["ci_class"] == "business_service"]
    for label, targets in ((f"business services ({len(services):,} in the estate)", rng.sample(services, args.services)),
                           ("CIs of any class", rng.sample(ids, args.random))):
        fast, slow, sizes, differ = side_by_side(g.spof, lambda ci: python_spof(g, ci), targets)
        ratio = statistics.median(s / max(f, 1e-6) for s, f in zip(slow, fast))
        add(f"spof of {len(targets)} {label}: points found p50 / max", f"{pct(sizes, .5):,} / {max(sizes):,}")
        add(f"spof of {len(targets)} {label}: compiled p50 / p90 / max",
            f"{pct(fast, .5):.2f} / {pct(fast, .9):.2f} / {max(fast):.2f} ms")
        add(f"spof of {len(targets)} {label}: Python walks p50 / p90 / max",
            f"{pct(slow, .5):.2f} / {pct(slow, .9):.2f} / {max(slow):.2f} ms")
        add(f"spof of {len(targets)} {label}: Python / compiled, median per question; total; answers differing",
            f"{ratio:.1f}x; {sum(slow) / max(sum(fast), 1e-6):.1f}x; {differ}")
    examined = {"compiled": [], "Python walks": []}
    for turn in range(args.panels):
        shown = rng.sample(services, min(len(services), SERVICES_EXAMINED))
        ways = [("compiled", g.spof), ("Python walks", lambda ci: python_spof(g, ci))]
        for name, spof in ways if turn % 2 == 0 else ways[::-1]:
            examined[name].append(panel(spof, shown))
    for name, counts in examined.items():
        add(f"overview's services-at-risk panel, {name}: services examined in its {SPOF_SECONDS} s "
            f"(of {SERVICES_EXAMINED}; {args.panels} panels; the loop copied from there)", ", ".join(map(str, counts)))
    walked = rng.sample(services, min(len(services), args.walked))
    fast, slow, sizes, differ = side_by_side(lambda ci: graph_providers.providers(g, ci),
                                             lambda ci: python_providers(g, ci), walked)
    label = f"providers of {len(walked):,} business services"
    add(f"{label}: CIs found p50 / max", f"{pct(sizes, .5):,} / {max(sizes):,}")
    add(f"{label}: compiled p50 / p99 / max; all of them", f"{pct(fast, .5):.3f} / {pct(fast, .99):.2f} / "
        f"{max(fast):.2f} ms; {sum(fast) / 1000:.2f} s")
    add(f"{label}: Python walk p50 / p99 / max; all of them", f"{pct(slow, .5):.3f} / {pct(slow, .99):.2f} / "
        f"{max(slow):.2f} ms; {sum(slow) / 1000:.2f} s")
    add(f"{label}: Python / compiled, median per walk; total; answers differing",
        f"{statistics.median(s / max(f, 1e-6) for s, f in zip(slow, fast)):.1f}x; "
        f"{sum(slow) / max(sum(fast), 1e-6):.1f}x; {differ}")
    succ = g.graph._succ
    sampled = min(len(ids), 200_000)
    hubs = heapq.nlargest(20, rng.sample(ids, sampled), key=lambda u: len(succ[u]))
    for label, targets, depth in ((f"{args.random} CIs of any class, depth 2", rng.sample(ids, args.random), 2),
                                  (f"the 20 most depended-upon CIs (of {sampled:,} sampled), depth 1", hubs, 1)):
        fast, slow, sizes, differ = side_by_side(lambda ci: g.neighborhood(ci, depth, "both"),
                                                 lambda ci: python_neighborhood(g, ci, depth), targets)
        sizes = [len(edges) for _, edges in (g.neighborhood(ci, depth, "both") for ci in targets)]
        add(f"neighborhood (both ways) of {label}: relationships p50 / max", f"{pct(sizes, .5):,} / {max(sizes):,}")
        add(f"neighborhood of {label}: compiled p50 / p90 / max", f"{pct(fast, .5):.2f} / {pct(fast, .9):.2f} / "
            f"{max(fast):.2f} ms")
        add(f"neighborhood of {label}: Python walk p50 / p90 / max", f"{pct(slow, .5):.2f} / {pct(slow, .9):.2f} / "
            f"{max(slow):.2f} ms")
        add(f"neighborhood of {label}: Python / compiled, median per question; total; answers differing",
            f"{statistics.median(s / max(f, 1e-6) for s, f in zip(slow, fast)):.1f}x; "
            f"{sum(slow) / max(sum(fast), 1e-6):.1f}x; {differ}")
    after_changes(g, rng, ids, services, add)
    measures.publish(f"The graph's walks, compiled and Python, {args.cis:,} CIs (seed {args.seed})", f"python bench/walks_bench.py --cis {args.cis}", args.out)


if __name__ == "__main__":
    main()
