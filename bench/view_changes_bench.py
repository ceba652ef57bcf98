"""Benchmark: the catch-up of a graph started view first (changes applied to its compiled view alone,
graph/view_changes.py) against the same changes applied to the dicts, and a change at a hub.

    python bench/view_changes_bench.py --cis 200000 --pages 3

A seeded random graph of `--cis` CIs (three relationships a CI, a twentieth of the CIs depending on one hub),
its snapshot loaded view first; `--pages` pages of 10,000 random changes (relationships made and removed,
min_members changed), as LiveGraph's catch-up pages them, applied to the view (timed per page), then the
dicts laid out from the view (timed), then the same pages applied to a graph with its dicts (timed). Then one change at
the hub, each way. Answers are compared at the end (impact of the hub). Prints a table.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from graph import ImpactGraph, snapshot  # noqa: E402
from graph.semantics import STANDARD_SEMANTICS  # noqa: E402

TYPES = ["depends_on", "runs_on", "member_of", "connects_to"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cis", type=int, default=200_000)
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    names = [f"c{i}" for i in range(args.cis)]
    rels = {(rng.choice(names), rng.choice(names), rng.choice(TYPES)) for _ in range(3 * args.cis)}
    rels |= {(ci, "c0", "depends_on") for ci in rng.sample(names, args.cis // 20)}  # c0: the hub
    rels = sorted(rels)
    dicts = ImpactGraph(STANDARD_SEMANTICS)
    dicts.bulk_load([(ci, "x", None) for ci in names], rels)
    dicts.applied_seq = 1
    live, pages = set(rels), []
    for _ in range(args.pages):
        page = []
        for _ in range(10_000):
            roll = rng.random()
            if roll < 0.4:
                rel = (rng.choice(names), rng.choice(names), rng.choice(["depends_on", "member_of"]))
                live.add(rel)
                page.append(("add_relationship", *rel))
            elif roll < 0.7 and live:
                page.append(("remove_relationship", *live.pop()))
            else:
                page.append(("upsert_ci", rng.choice(names), "x", rng.choice([None, 2])))
        pages.append(page)
    hub_change = [("add_relationship", "c1", "c0", "member_of")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.snapshot"
        snapshot.save(dicts, path, schema_revision="bench", lineage="bench")
        started = time.perf_counter()
        view, _ = snapshot.load(path, STANDARD_SEMANTICS, schema_revision="bench", compact_min_cis=0, view_first=True)
        rows.append(("load view first (numba loaded in it)", time.perf_counter() - started, None))
    for n, page in enumerate(pages):
        started = time.perf_counter()
        view.apply_changes(page)
        on_view = time.perf_counter() - started
        started = time.perf_counter()
        dicts.apply_changes(page)
        rows.append((f"page {n + 1} of 10,000 changes", on_view, time.perf_counter() - started))
    started = time.perf_counter()
    view.apply_changes(hub_change)
    on_view = time.perf_counter() - started
    started = time.perf_counter()
    dicts.apply_changes(hub_change)
    on_dicts = time.perf_counter() - started
    rows.append((f"one change at the hub ({args.cis // 20:,} dependents)", on_view, on_dicts))
    started = time.perf_counter()
    view.lay_out_dicts()
    rows.append(("the dicts laid out from the view (new semantics need them)", time.perf_counter() - started, None))
    assert view.impact(["c0"]).states() == dicts.impact(["c0"]).states(), "answers differ"
    print(f"| {args.cis:,} CIs, {len(rels):,} relationships | on the view (view first) | on the dicts |")
    print("|---|---:|---:|")
    for label, first, second in rows:
        print(f"| {label} | {first:.3f} s | " + ("-" if second is None else f"{second:.3f} s") + " |")


if __name__ == "__main__":
    main()
