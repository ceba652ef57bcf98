"""Benchmark: what a worker without dicts (a graph started view first, graph/view_changes.py) pays to keep its
view, to share its base and to write the snapshot, on the seeded synthetic enterprise of bench/graph_synthetic.py.

    python bench/view_upkeep_bench.py --cis 1000000

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
Answers are checked against the Python loop over those dicts at the end. Prints a table.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from graph_synthetic import SEMANTICS, generate  # noqa: E402

from graph import ImpactGraph, compact, propagation, shared_base, snapshot  # noqa: E402

SLICE = 4096  # app.services.live_graph.CAPTURE_SLICE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cis", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    inventory = generate(args.cis, args.seed)
    names = [ci for ci, _, _ in inventory.cis]
    source = ImpactGraph(SEMANTICS)
    source.bulk_load(inventory.cis, inventory.relationships)
    source.applied_seq = 1
    del inventory
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "impact-graph.snapshot"
        snapshot.save(source, path, schema_revision="bench", lineage="bench")
        del source
        compact.warm_up()
        started = time.perf_counter()
        first, _ = snapshot.load(path, SEMANTICS, schema_revision="bench", compact_min_cis=0, view_first=True, share=True)
        rows.append(("load view first, the base made and offered", f"{time.perf_counter() - started:.2f} s"))
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
        g, _ = snapshot.load(path, SEMANTICS, schema_revision="bench", compact_min_cis=0, view_first=True, share=True)
        rows.append(("load view first, the base of the first mapped", f"{time.perf_counter() - started:.2f} s"))
        shared_base._problem = real
        assert g._view.shared_base is not None and checks, "the base was not shared"
        rows.append(("of which the base checked against the file", f"{checks[0]:.2f} s"))
        del first
        rng = random.Random(args.seed)
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
            g.apply_changes(batch)
            applied += len(batch)
            batches += 1
        assert g._view.stale, "the view did not grow stale"
        rows.append((f"changes applied until the view was stale ({g._view.rows:,} rows in its overlay)",
                     f"{applied:,}"))
        started = time.perf_counter()
        g.impact([names[0]])  # the question that finds it stale makes it fresh, under the lock
        rows.append(("rebase (CIs gone kept), under the lock", f"{time.perf_counter() - started:.2f} s"))
        assert g._view.made_from == "rebased" and g._view.rows == 0
        share, compact.REBUILD_SHARE = compact.REBUILD_SHARE, 0.0
        try:
            started = time.perf_counter()
            g._view = g._view.rebased(g.graph._node)  # the drop path: the CIs gone dropped, a new index
            rows.append(("rebase dropping the CIs gone (a new index)", f"{time.perf_counter() - started:.2f} s"))
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
        rows.append(("snapshot off the view: the rows taken (one hold of the lock)", f"{holds[0] * 1000:.0f} ms"))
        rows.append(("snapshot off the view: longest payload slice / all holds",
                     f"{max(holds[1:]) * 1000:.1f} ms / {sum(holds):.2f} s"))
        started = time.perf_counter()
        parts = snapshot.encode(capture, schema_revision="bench", lineage="bench")
        rows.append(("snapshot off the view: encoded (no lock)", f"{time.perf_counter() - started:.2f} s"))
        del parts, capture
        started = time.perf_counter()
        assert g.lay_out_dicts()
        rows.append(("the dicts laid out from the view", f"{time.perf_counter() - started:.2f} s"))
        kind_key = g._types.kind_key(None)
        for ci in rng.sample(list(g.graph._node), 5):
            python = propagation.impact(g.graph, [ci], kind_key, None, g._spares_for(kind_key))
            assert g.impact([ci]).states() == python.states(), ci
    print(f"| {args.cis:,} CIs | |")
    print("|---|---:|")
    for label, value in rows:
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
