"""Benchmark: what a worker without dicts (a graph started view first, graph/view_changes.py) pays to keep its
view, to share its base and to write the snapshot, on the seeded synthetic enterprise of bench/graph_synthetic.py.

    python bench/view_upkeep_bench.py --cis 1000000 --rounds 2

Two sides in one run, alternating (`--sides`): `table`, the code as it is (the ids and payloads of a graph without
dicts as graph/id_table.py lays them out), and `list`, the same code with the ids made a Python string each and the
index and payloads dicts, as before session 25 (id_table.MAX_WIDTH set to 0: the loader's fallback for ids too wide
for a table).

In one process, no database: the graph is generated, loaded (`bulk_load`) and written as a snapshot, then
  1. loaded view first with its base shared (graph/shared_base.py), twice: the first load makes the base and
     offers it, the second maps it and checks it against the file (timed: each load, and the check alone);
  2. changes applied to the second graph until its view's overlay is stale (random relationships added and
     removed, min_members changed, CIs removed: the catch-up's operations), then one question, which makes the
     view fresh from itself (`CompactView.rebased`, under the graph's lock): timed, and with the CIs gone over
     REBUILD_SHARE of the view (the drop path, a new index);
  3. a snapshot taken off the view as LiveGraph takes it (`snapshot.Capture`: the rows under the lock, then the
     payloads in slices of 4,096 CIs): the longest hold of the graph's lock and the whole, then the encoding;
  4. the dicts laid out from the view (`lay_out_dicts`: what new semantics under present edges need).
Before the changes, the questions whose answers name many CIs are timed (impact of the most depended-upon CIs
with the answer's ids listed, their classes, neighborhoods, root cause). Answers are checked against the Python
loop over those dicts at the end. Prints a table, each side a column (median, and range over the rounds).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from graph_synthetic import SEMANTICS, generate  # noqa: E402

from graph import ImpactGraph, compact, id_table, propagation, shared_base, snapshot  # noqa: E402

SLICE = 4096  # app.services.live_graph.CAPTURE_SLICE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cis", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--sides", default="table,list",
                        help="table: the ids and payloads as graph/id_table.py lays them out (the code as it is); "
                             "list: a Python string per id, the index and payloads as dicts (what a view first "
                             "worker held before session 25; id_table.MAX_WIDTH set to 0 makes the loader fall "
                             "back to it)")
    parser.add_argument("--rounds", type=int, default=1, help="each side this many times, sides alternating")
    args = parser.parse_args()
    inventory = generate(args.cis, args.seed)
    names = [ci for ci, _, _ in inventory.cis]
    source = ImpactGraph(SEMANTICS)
    source.bulk_load(inventory.cis, inventory.relationships)
    source.applied_seq = 1
    del inventory
    # The most depended-upon CIs (the most direct dependents): the largest answers.
    widths = dict(zip(source.graph._succ, map(len, source.graph._succ.values())))
    hubs = sorted(widths, key=widths.__getitem__, reverse=True)[:20]
    del widths
    sides = args.sides.split(",")
    results: dict[str, dict[str, list]] = {side: {} for side in sides}
    labels: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "impact-graph.snapshot"
        snapshot.save(source, path, schema_revision="bench", lineage="bench")
        del source
        compact.warm_up()
        for side in sides:  # a file of each side's own: no side checks (and refuses) the other's base
            (Path(tmp) / side).mkdir()
            shutil.copy(path, Path(tmp) / side / path.name)
        for round_ in range(args.rounds):
            for side in (sides if round_ % 2 == 0 else sides[::-1]):
                for label, value in run(side, Path(tmp) / side / path.name, names, hubs, args.seed + round_):
                    if label not in labels:
                        labels.append(label)
                    results[side].setdefault(label, []).append(value)
    print(f"| {args.cis:,} CIs | " + " | ".join(sides) + " |")
    print("|---|" + "---:|" * len(sides))
    for label in labels:
        cells = []
        for side in sides:
            values = results[side].get(label, [])
            cells.append(_shown(values))
        print(f"| {label} | " + " | ".join(cells) + " |")


def _shown(values: list) -> str:
    if not values:
        return "-"
    unit, numbers = values[0][1], sorted(v for v, _ in values)
    form = (lambda v: f"{v:,.0f}") if unit in ("", "ms") and numbers[-1] >= 100 else (lambda v: f"{v:,.2f}")
    if len(numbers) == 1:
        return f"{form(numbers[0])} {unit}".strip()
    return f"{form(statistics.median(numbers))} ({form(numbers[0])}-{form(numbers[-1])}) {unit}".strip()


def run(side: str, path: Path, names: list, hubs: list, seed: int) -> list[tuple[str, tuple[float, str]]]:
    """One side's pass: (label, (value, unit)) rows."""
    rows: list[tuple[str, tuple[float, str]]] = []
    width, id_table.MAX_WIDTH = id_table.MAX_WIDTH, (id_table.MAX_WIDTH if side == "table" else 0)
    try:
        started = time.perf_counter()
        first, _ = snapshot.load(path, SEMANTICS, schema_revision="bench", compact_min_cis=0, view_first=True, share=True)
        rows.append(("load view first, the base made and offered", (time.perf_counter() - started, "s")))
        checks = []
        real = shared_base._problem

        def timed(*a):
            began = time.perf_counter()
            try:
                return real(*a)
            finally:
                checks.append(time.perf_counter() - began)

        shared_base._problem = timed
        started = time.perf_counter()
        try:
            g, _ = snapshot.load(path, SEMANTICS, schema_revision="bench", compact_min_cis=0, view_first=True,
                                 share=True)
        finally:
            shared_base._problem = real
        rows.append(("load view first, the base of the first mapped", (time.perf_counter() - started, "s")))
    finally:
        id_table.MAX_WIDTH = width
    assert g._view.shared_base is not None and checks, "the base was not shared"
    assert isinstance(g._view.ids, id_table.IdTable) == (side == "table"), side
    rows.append(("of which the base checked against the file", (checks[0], "s")))
    del first
    rng = random.Random(seed)
    rows += questions(g, names, hubs, rng)
    applied, batches = 0, 0
    types = ["depends_on", "runs_on", "member_of"]
    while not g._view.stale and batches < 1000:
        batch = []
        for _ in range(10_000):
            roll = rng.random()
            if roll < 0.6:
                batch.append(("add_relationship", rng.choice(names), rng.choice(names), rng.choice(types)))
            elif roll < 0.95:
                batch.append(("upsert_ci", rng.choice(names), "application", rng.choice([None, 2])))
            else:
                batch.append(("remove_ci", rng.choice(names)))
        started = time.perf_counter()
        g.apply_changes(batch)
        rows.append(("a batch of 10,000 changes applied to the view", ((time.perf_counter() - started) * 1000, "ms")))
        applied += len(batch)
        batches += 1
    assert g._view.stale, "the view did not grow stale"
    started = time.perf_counter()
    g.impact([names[0]])  # the question that finds it stale makes it fresh, under the lock
    rows.append(("rebase (CIs gone kept), under the lock", (time.perf_counter() - started, "s")))
    assert g._view.made_from == "rebased" and g._view.rows == 0
    share, compact.REBUILD_SHARE = compact.REBUILD_SHARE, 0.0
    try:
        started = time.perf_counter()
        g._view = g._rebased(g._view)  # the drop path: the CIs gone dropped, a new index
        rows.append(("rebase dropping the CIs gone (a new index)", (time.perf_counter() - started, "s")))
    finally:
        compact.REBUILD_SHARE = share
    holds = []
    started = time.perf_counter()
    capture = snapshot.Capture(g)
    holds.append(time.perf_counter() - started)
    while not capture.done:
        began = time.perf_counter()
        capture.take(SLICE)
        holds.append(time.perf_counter() - began)
    rows.append(("snapshot off the view: the rows taken (one hold of the lock)", (holds[0] * 1000, "ms")))
    rows.append(("snapshot off the view: longest payload slice", (max(holds[1:]) * 1000, "ms")))
    rows.append(("snapshot off the view: all holds", (sum(holds), "s")))
    started = time.perf_counter()
    parts = snapshot.encode(capture, schema_revision="bench", lineage="bench")
    rows.append(("snapshot off the view: encoded (no lock)", (time.perf_counter() - started, "s")))
    del parts, capture
    started = time.perf_counter()
    assert g.lay_out_dicts()
    rows.append(("the dicts laid out from the view", (time.perf_counter() - started, "s")))
    kind_key = g._types.kind_key(None)
    for ci in rng.sample(list(g.graph._node), 5):
        python = propagation.impact(g.graph, [ci], kind_key, None, g._spares_for(kind_key))
        assert g.impact([ci]).states() == python.states(), ci
    return rows


def questions(g: ImpactGraph, names: list, hubs: list, rng: random.Random) -> list:
    """The questions whose answers name many CIs (where ids are made from the table), timed (ms, median)."""
    timings: dict[str, list[float]] = {}

    def timed(label: str, call):
        began = time.perf_counter()
        out = call()
        timings.setdefault(label, []).append((time.perf_counter() - began) * 1000)
        return out

    sizes = []
    for ci in hubs:
        result = timed("impact of one of the 20 most depended-upon CIs, the answer's ids listed and counted",
                       lambda: _read(g.impact([ci])))
        sizes.append(len(result.impacted))
        timed("classes of that answer's CIs (ImpactGraph.tally, an incident's counts, as incidents ask)",
              lambda: g.tally(result.impacted, ["service"]))
        timed("neighborhood of that CI, 2 hops both ways", lambda: g.neighborhood(ci, 2))
    for _ in range(20):
        symptoms = rng.sample(names, 50)
        timed("root cause of 50 symptoms spread across the estate", lambda: g.root_cause(symptoms))
    rows = [(f"{label} ({min(sizes):,}-{max(sizes):,} CIs)" if label.startswith(("impact", "classes")) else label,
             (statistics.median(values), "ms")) for label, values in timings.items()]
    return rows


def _read(result):
    """The answer with its CIs' ids listed, and their counts by state (what an impact answer's first page needs)."""
    list(result.impacted)
    result.count_by_state()
    return result


if __name__ == "__main__":
    main()
