"""Benchmark: what one string per id (graph.impact_graph._one_copy) costs a catch-up, and what it saves.

A graph grown change by change, as a worker's follows a load: `--cis` CI records, then `--relationships`
relationship records between random pairs, each decoded from JSON as a catch-up reads it, applied through
the catch-up's own `_change` and `ImpactGraph.apply_changes` (app.services.live_graph) to an empty graph. Timed with interning off and on,
alternating, `--rounds` times each, in one process; then what the graph alone holds (pymalloc blocks,
once the records are dropped and collected). Prints a Markdown table.

    python bench/catch_up_apply_bench.py [--cis 50000] [--relationships 150000] [--rounds 2]
"""

import argparse
import gc
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graph.impact_graph as impact_graph  # noqa: E402
from app.services.live_graph import _change  # noqa: E402
from graph import ImpactGraph  # noqa: E402
from graph.semantics import STANDARD_SEMANTICS  # noqa: E402


def one_run(cis: int, relationships: int, intern: bool) -> tuple[float, int]:
    """(seconds to apply the records, pymalloc blocks held once they are dropped)."""
    impact_graph._INTERN = intern
    rng = random.Random(7)
    ids = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(cis)]
    current = dict.fromkeys(ids, ("server", None))
    records = [SimpleNamespace(seq=n, object_type="ci", action="update", object_id=ci_id, diff={})
               for n, ci_id in enumerate(ids, 1)]
    for n in range(relationships):
        source, target = rng.sample(ids, 2)
        diff = {"source": [None, str(source)], "target": [None, str(target)], "type": [None, "depends_on"]}
        records.append(SimpleNamespace(seq=cis + n + 1, object_type="relationship", action="create",
                                       object_id=uuid.UUID(int=rng.getrandbits(128)),
                                       diff=orjson.loads(orjson.dumps(diff))))
    graph = ImpactGraph(dict(STANDARD_SEMANTICS))
    gc.collect()
    started = time.perf_counter()
    for record in records:  # a record at a time, as the catch-up turned them into changes before
        graph.apply_changes([_change(record, current)])
    seconds = time.perf_counter() - started
    del records, current, ids
    gc.collect()
    return seconds, sys.getallocatedblocks()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cis", type=int, default=50_000)
    parser.add_argument("--relationships", type=int, default=150_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    mortal = impact_graph._INTERN
    seconds: dict[bool, list[float]] = {False: [], True: []}
    blocks: dict[bool, int] = {}
    for _ in range(args.rounds):
        for intern in (False, True):
            took, held = one_run(args.cis, args.relationships, intern)
            seconds[intern].append(took)
            blocks[intern] = held
    impact_graph._INTERN = mortal
    records = args.cis + args.relationships
    print(f"Catch-up apply, {args.cis:,} CI and {args.relationships:,} relationship records, {args.rounds} rounds\n")
    print("| ids | apply, median (range) | per record | pymalloc blocks held after |")
    print("|---|---:|---:|---:|")
    for intern, name in ((False, "as decoded (before)"), (True, "one string per id")):
        median = statistics.median(seconds[intern])
        print(f"| {name} | {median:.2f} s ({min(seconds[intern]):.2f}-{max(seconds[intern]):.2f}) | "
              f"{median / records * 1e6:.2f} µs | {blocks[intern]:,} |")
    if not mortal:
        print("\nThis Python never frees interned strings: the service keeps ids as given here.")


if __name__ == "__main__":
    main()
