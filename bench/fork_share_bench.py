"""Experiment: how much of one loaded impact graph stays shared between worker processes forked from the
process that loaded it (copy-on-write), while they answer questions and apply changes.

    python bench/fork_share_bench.py --cis 1000000 --workers 4 --seconds 60

Issue #14 asks that a host's memory not grow with its worker count; today each worker loads its own
graph. This measures the alternative of loading once and forking: the parent generates the seeded
synthetic enterprise of bench/graph_synthetic.py, loads it (`bulk_load`), builds the compiled view,
compiles numba's loops, moves everything it holds out of the collector's reach (`gc.freeze()`) and forks
--workers children. Each child then, for --seconds, asks what a worker is asked (impact of random CIs and
of the most depended-upon ones, compiled; root cause of random services; spof; neighborhoods) and applies
a change now and then as a worker's catch-up does (a CI's min_members, relationships added and removed),
and reports /proc/self/smaps_rollup: the pages it made its own (Private) are what forking did not save.
Measured against the parent's own resident memory, which is what each worker holds alone today. Nothing
here is in the service: `karta serve` runs uvicorn's workers, which are started, not forked.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench.common import smaps_rollup as rollup  # noqa: E402


def work(g, seconds: float, seed: int, top: list, services: list, changes_per_second: float) -> dict:
    rng = random.Random(seed)
    ids = list(g.graph._node)
    asked = changed = 0
    deadline = time.monotonic() + seconds
    next_change = time.monotonic()
    while time.monotonic() < deadline and asked < 10_000_000:
        roll = rng.random()
        if roll < 0.5:
            g.impact([rng.choice(ids)])
        elif roll < 0.6:
            g.impact([rng.choice(top)])
        elif roll < 0.65:
            g.root_cause(rng.sample(services, 5), limit=10, extra_cap=10_000)
        elif roll < 0.8:
            g.spof(rng.choice(ids))
        else:
            g.neighborhood(rng.choice(ids), depth=2)
        asked += 1
        if time.monotonic() >= next_change:
            ci = rng.choice(ids)
            if rng.random() < 0.5:
                g.upsert_ci(ci, g.ci(ci)[0], rng.choice([None, 1, 2]))
            else:
                g.add_relationship(f"app-{seed}-{changed}", ci, "depends_on")
            changed += 1
            next_change += 1 / changes_per_second
    return {"questions": asked, "changes": changed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cis", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--changes-per-second", type=float, default=20)
    args = parser.parse_args()

    from graph_synthetic import SEMANTICS, generate

    from graph import ImpactGraph, compact

    inventory = generate(args.cis, args.seed)
    g = ImpactGraph(SEMANTICS)
    g.bulk_load(inventory.cis, inventory.relationships)
    services = [ci for ci, ci_class, _ in inventory.cis if ci_class == "business_service"]
    del inventory
    compact.warm_up()
    assert g.build_compact()
    top = sorted(g.graph._pred, key=lambda v: len(g.graph._pred[v]), reverse=True)[:100]
    gc.collect()
    gc.freeze()
    alone = rollup()
    print(f"parent: {len(g):,} CIs, graph and view loaded: {alone}", flush=True)
    children = []
    for n in range(args.workers):
        read, write = os.pipe()
        go_read, go_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: work, report, wait to be measured by the parent, exit
            os.close(read)
            os.close(go_write)
            code = 1
            try:
                done = work(g, args.seconds, args.seed + n, top, services, args.changes_per_second)
                os.write(write, (json.dumps(done) + "\n").encode())
                os.read(go_read, 1)  # the parent measures every child while all are alive
                code = 0
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(write)
        os.close(go_read)
        children.append((pid, read, go_write))
    curve = []  # (seconds since the fork, the children's private MiB, median), read while they work
    forked = time.monotonic()
    while time.monotonic() - forked < args.seconds - 1 and len(curve) < 1000:
        time.sleep(min(args.seconds / 8, max(0.1, args.seconds - 1 - (time.monotonic() - forked))))
        try:
            private = sorted(rollup(pid)["private"] for pid, _, _ in children)
        except OSError:
            break
        curve.append((time.monotonic() - forked, private[len(private) // 2]))
    results = []
    for pid, read, _ in children:
        with os.fdopen(read) as f:
            line = f.readline()
        results.append({**json.loads(line), **rollup(pid)} if line else {"failed": True})
    for pid, _, go_write in children:
        os.write(go_write, b"x")
        os.close(go_write)
        os.waitpid(pid, 0)
    lines = [f"# {args.workers} workers forked from one process holding a {len(g):,}-CI graph and its view", "",
             f"`python bench/fork_share_bench.py --cis {args.cis} --workers {args.workers} --seconds {args.seconds:g} "
             f"--changes-per-second {args.changes_per_second:g}`", "",
             f"The parent alone (what each worker holds today): {alone['rss']:.0f} MiB resident.", "",
             "| child | questions | changes | resident MiB | Pss MiB | private MiB (its own) |", "|---|---:|---:|---:|---:|---:|"]
    for n, r in enumerate(results):
        lines.append(f"| {n + 1} | {r.get('questions', 0):,} | {r.get('changes', 0):,} | {r.get('rss', 0):.0f} | "
                     f"{r.get('pss', 0):.0f} | {r.get('private', 0):.0f} |")
    parent = rollup()
    total = parent["pss"] + sum(r.get("pss", 0) for r in results)
    lines += ["", "Private MiB of a child (median) as they worked: " + ", ".join(
        f"{private:.0f} at {at:.0f} s" for at, private in curve) + "."]
    lines += ["", f"Host total (Pss of the parent and the {args.workers} children): {total:.0f} MiB, against "
              f"{alone['rss'] * args.workers:.0f} MiB for {args.workers} workers loading their own."]
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "fork-share.md").write_text(text)


if __name__ == "__main__":
    main()
