"""Benchmark: a worker starting from a snapshot file, up to its compiled view (graph/compact.py), and what
the workers of one host hold in memory, side by side with the code before.

    git worktree add ../before <commit>      # the code before, e.g. the commit before this bench
    python bench/snapshot_view_bench.py --cis 1000000 --baseline ../before --workers 4 --rounds 3

Each side runs its own code (this checkout, and --baseline's) in child processes, no database:
  1. a child generates the seeded synthetic enterprise of bench/graph_synthetic.py, loads it with
     `bulk_load` and writes its snapshot with that side's writer (and compiles numba's loops into that
     side's cache, so no later child pays compiling);
  2. --rounds times, sides alternating which goes first, one child alone: reads the snapshot
     (`snapshot.load`), then gets its compiled view as that side's worker does: before, built from the
     dicts (`build_compact`, what LiveGraph starts after a load); after, made from the file's arrays
     (`load(compact_min_cis=...)`, then `wait_compact`). Timed: to the graph, and to the view;
  3. --workers children of one side at once, each holding its graph as that side's service worker does
     (view first where the side's snapshot.load can, the networkx dicts laid out where its LiveGraph lays
     them out: before session 24 always, since then never; the view's base arrays shared between them where
     the side's code shares them, graph.shared_base): their memory from /proc/<pid>/smaps_rollup
     (resident, proportional share, and private = what the child alone holds), read once every child of the
     side holds its graph.
Every child checks five impact answers compiled against the Python loop (a child without dicts lays them out
for that once its memory was read). Writes bench/results/snapshot-view.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]  # this checkout's bench helpers; a child then puts its side's code first

from bench.common import smaps_rollup as rollup  # noqa: E402
RESULTS = ROOT / "bench" / "results"
SCHEMA = "bench"
JOIN_SECONDS = 1800


def child(args) -> None:
    """Runs in a child, with the side's code first on sys.path."""
    sys.path[:0] = [args.code, os.path.join(args.code, "bench")]
    from graph_synthetic import SEMANTICS, generate

    from graph import ImpactGraph, compact, propagation, snapshot

    if args.child == "write":
        inventory = generate(args.cis, args.seed)
        g = ImpactGraph(SEMANTICS)
        g.bulk_load(inventory.cis, inventory.relationships)
        g.applied_seq = 1
        snapshot.save(g, args.path, schema_revision=SCHEMA, lineage="bench")
        compact.warm_up()
        print(json.dumps({"cis": len(g), "bytes": os.path.getsize(args.path)}), flush=True)
        return
    started = time.perf_counter()
    adopt = "compact_min_cis" in snapshot.load.__code__.co_varnames
    dicts_at = None
    if args.view_first:  # answers from the view as soon as load returns; the dicts laid out after, if asked
        # The base arrays shared with the side's other children where its code can (graph.shared_base), as its
        # service's workers share them.
        shared = {"share": True} if "share" in snapshot.load.__code__.co_varnames else {}
        g, _ = snapshot.load(args.path, SEMANTICS, schema_revision=SCHEMA, compact_min_cis=0, view_first=True,
                             **shared)
        assert not g.dicts_ready, "not view first"
        graph_at = time.perf_counter() - started
        g.impact([next(iter(g.graph._node))])  # the first answer
        view_at = time.perf_counter() - started
        if not args.no_dicts:
            g.lay_out_dicts()
            dicts_at = time.perf_counter() - started
        viewed = True
    elif adopt:
        g, _ = snapshot.load(args.path, SEMANTICS, schema_revision=SCHEMA, compact_min_cis=0)
    else:
        g, _ = snapshot.load(args.path, SEMANTICS, schema_revision=SCHEMA)
    if not args.view_first:
        graph_at = time.perf_counter() - started
        if adopt:
            viewed = g.wait_compact(JOIN_SECONDS)
        else:
            compact.warm_up()  # as LiveGraph's background build does first (from numba's cache)
            viewed = g.build_compact()
        view_at = time.perf_counter() - started
    assert viewed and g.compacted, "no compiled view"

    def checked() -> None:
        ids = list(g.graph._node)
        rng = random.Random(args.seed)
        for ci in rng.sample(ids, 5):  # answers checked against the Python loop
            kind_key = g._types.kind_key(None)
            python = propagation.impact(g.graph, [ci], kind_key, None, g._spares_for(kind_key))
            assert g.impact([ci]).states() == python.states(), ci

    dicts = getattr(g, "dicts_ready", True)
    if dicts:
        checked()
    print(json.dumps({"graph_s": graph_at, "view_s": view_at, "dicts_s": dicts_at, "adopted": adopt, **rollup()}),
          flush=True)
    if args.hold:  # memory read again once every child of the side holds its graph and view
        sys.stdin.readline()
        print(json.dumps(rollup()), flush=True)
        sys.stdin.readline()  # held until the parent has read every child's memory
    if not dicts:  # a worker without dicts: its answers checked once its memory was read
        g.lay_out_dicts()
        checked()


def spawn(code: Path, path: Path, args, kind: str, hold: bool = False, view_first: bool = False,
          dicts: bool = True) -> subprocess.Popen:
    command = [sys.executable, __file__, "--child", kind, "--code", str(code), "--path", str(path),
               "--cis", str(args.cis), "--seed", str(args.seed)] + (["--hold"] if hold else []) + (
               ["--view-first"] if view_first else []) + ([] if dicts else ["--no-dicts"])
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=code)


def workers(args, side: str) -> int:
    return args.baseline_workers if side == "before" and args.baseline_workers else args.workers


def as_served(code: Path) -> dict:
    """How a service worker of that code holds its graph from a snapshot: view first where its snapshot.load can,
    and the networkx dicts laid out (in a thread) where its LiveGraph does so."""
    view_first = "view_first" in (code / "graph" / "snapshot.py").read_text()
    lays_out = "_lay_out_in_background" in (code / "app" / "services" / "live_graph.py").read_text()
    return {"view_first": view_first, "dicts": lays_out or not view_first}


def answer(process: subprocess.Popen, timeout: float = JOIN_SECONDS) -> dict:
    line = process.stdout.readline()
    if not line:
        process.wait(timeout)
        raise SystemExit(f"a child failed (exit {process.returncode})")
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cis", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--baseline", type=Path, help="a checkout of the code before (a git worktree)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--baseline-workers", type=int,
                        help="workers of the code before at once (default --workers): fewer where the host cannot hold as many")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=["write", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--view-first", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-dicts", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sides = {"after": ROOT} | ({"before": args.baseline.resolve()} if args.baseline else {})
    workdir = Path(tempfile.mkdtemp(prefix="karta-snapshot-view-"))
    files = {side: workdir / f"{side}.snapshot" for side in sides}
    try:
        written = {}
        for side, code in sides.items():
            process = spawn(code, files[side], args, "write")
            written[side] = answer(process)
            process.wait(JOIN_SECONDS)
            print(f"{side}: snapshot of {written[side]['cis']:,} CIs, {written[side]['bytes'] / 2**20:.0f} MiB", flush=True)
        # This checkout's code also started view first (snapshot.load(view_first=True)), from its own file.
        first = "after" in sides and "view_first" in (ROOT / "graph" / "snapshot.py").read_text()
        timed = [*sides, "after, view first"] if first else list(sides)
        times: dict[str, list[dict]] = {side: [] for side in timed}
        for round_ in range(args.rounds):
            order = timed if round_ % 2 == 0 else list(reversed(timed))
            for side in order:
                code = sides[side.split(",")[0]]
                process = spawn(code, files[side.split(",")[0]], args, "load", view_first=side != side.split(",")[0])
                times[side].append(answer(process))
                process.wait(JOIN_SECONDS)
                print(f"round {round_ + 1} {side}: {times[side][-1]}", flush=True)
        memory: dict[str, list[dict]] = {}
        for side in sides:
            processes = [spawn(sides[side], files[side], args, "load", hold=True, **as_served(sides[side]))
                         for _ in range(workers(args, side))]
            try:
                ready = [answer(p) for p in processes]  # every child holds its graph and view now
                for p in processes:
                    p.stdin.write("measure\n")
                    p.stdin.flush()
                memory[side] = [{**r, **answer(p)} for r, p in zip(ready, processes)]
            finally:
                failed = []
                for p in processes:  # one at a time: a child without dicts lays them out now, to check its answers
                    p.stdin.close()
                    if p.wait(JOIN_SECONDS) != 0:
                        failed.append(p.returncode)
            if failed:
                raise SystemExit(f"{len(failed)} {side} children failed (exits {failed})")
            print(f"{side}, {workers(args, side)} at once ({as_served(sides[side])}): {memory[side]}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(args, sides, written, times, memory)


def report(args, sides, written, times, memory) -> None:
    def med(side, key):
        return statistics.median(t[key] for t in times[side])

    def spread(key):
        return " | ".join(f"{med(s, key):.1f} ({min(t[key] for t in times[s]):.1f}-{max(t[key] for t in times[s]):.1f})"
                          if times[s][0][key] is not None else "-" for s in times)

    lines = [f"# A worker from a snapshot to its compiled view, {written['after']['cis']:,} CIs", "",
             f"`python bench/snapshot_view_bench.py --cis {args.cis} --workers {args.workers} --rounds {args.rounds}"
             + (f" --baseline {args.baseline}" if args.baseline else "")
             + (f" --baseline-workers {args.baseline_workers}`" if args.baseline_workers else "`"), "",
             "| measure | " + " | ".join(times) + " |", "|---|" + "---:|" * len(times),
             "| snapshot file, MiB | " + " | ".join(f"{written[s.split(',')[0]]['bytes'] / 2**20:.0f}" for s in times) + " |",
             "| start to snapshot.load's return, s, median (range) | " + spread("graph_s") + " |",
             "| start to the compiled view (view first: its first impact answer), s | " + spread("view_s") + " |",
             "| start to the dicts laid out (view first), s | " + spread("dicts_s") + " |"]
    lines.append("| workers at once, each as the side's service holds its graph | " + " | ".join(
        f"{workers(args, s)}: " +
        ("view first" if as_served(sides[s])["view_first"] else "loaded")
        + (", dicts laid out" if as_served(sides[s])["dicts"] else ", no dicts") if s in memory else "-"
        for s in times) + " |")
    for key, label in (("rss", "resident"), ("pss", "proportional share (Pss)"), ("private", "private (its own alone)")):
        lines.append(f"| {label} per worker, MiB, median | " + " | ".join(
            f"{statistics.median(m[key] for m in memory[s]):.0f}" if s in memory else "-" for s in times) + " |")
    lines.append("| the host's workers, sum of Pss, MiB | " + " | ".join(
        f"{sum(m['pss'] for m in memory[s]):.0f}" if s in memory else "-" for s in times) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "snapshot-view.md").write_text(text)


if __name__ == "__main__":
    main()
