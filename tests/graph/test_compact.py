"""The compiled impact loop over the integer-indexed view (graph.compact) against the Python loop.

Both walk each CI's successors in its dict's order, so their answers must be identical entry for entry:
states, distances, the parent picked on each shortest path, the discovery order. Random graphs bring
cycles, groups of any k, several types between one pair, covered edges and no-impact relationships;
random changes after the view is built (and while it is being built) exercise its overlay.
"""

import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from graph import causes, compact
from graph.providers import providers
from graph.semantics import EdgeTypeSets
from tests.graph.conftest import SHOP_CIS, SHOP_RELATIONSHIPS, build
from tests.graph.test_reference_model import TYPES, random_graph


def answer(result):
    """Everything an answer holds, in its order: the failed and unknown CIs, each impacted CI's entry
    (state, distance, path) in discovery order, the states of every CI reached, and what each reading
    of the map gives (the compiled answer reads its arrays where the Python one reads dicts)."""
    hit = result.impacted
    keys = list(hit)
    asked = keys[::3] + ["nowhere", *result.failed]
    return (result.failed, result.unknown, list(hit.items()), list(hit.values()), hit._state, list(hit._parent.items()),
            keys, len(hit), [ci in hit for ci in asked], [hit[ci] for ci in keys[::2]], [hit.path(ci) for ci in keys[1::2]],
            result.distances(), list(result.distances()), result.states(), result.count_by_state(),
            result.states_of(keys[::2]), [result.nearest(n) for n in (0, 1, 2, 3, 5, 8, len(keys), len(keys) + 3)])


def ask(a, b, rng, names, unknown=False):
    failed = rng.sample(names, min(len(names), rng.randint(1, 3)))
    if unknown:
        failed.append("nowhere")
    types = rng.choice([None, None, rng.sample(TYPES, 3)])
    max_depth = rng.choice([None, None, 0, 1, 2, 3])
    assert answer(a.impact(failed, max_depth=max_depth, types=types)) == \
        answer(b.impact(failed, max_depth=max_depth, types=types)), (failed, types, max_depth)


def twins(seed):
    """random_graph(seed) built twice (one for the Python loops, one to compact), with its CIs as
    {ci: min_members} and its relationships as a set, for change() to keep in step."""
    cis, rels = random_graph(seed)
    return build(cis, rels), build(cis, rels), {ci: k for ci, _, k in cis}, set(rels)


def change(rng, graphs, cis, rels, step):
    """One random change, applied to every graph alike; returns nothing, updates cis and rels."""
    names = sorted(cis)
    roll = rng.random()
    if roll < 0.3 and len(names) > 1:
        rel = (*rng.sample(names, 2), rng.choice(TYPES))
        for g in graphs:
            g.add_relationship(*rel)
        rels.add(rel)
    elif roll < 0.55 and rels:
        rel = rng.choice(sorted(rels))
        for g in graphs:
            g.remove_relationship(*rel)
        rels.discard(rel)
    elif roll < 0.75:
        ci = rng.choice(names)
        cis[ci] = rng.choice([None, 1, 2, 3])
        for g in graphs:
            g.upsert_ci(ci, "x", cis[ci])
    elif roll < 0.85 and len(names) > 3:
        ci = rng.choice(names)
        for g in graphs:
            g.remove_ci(ci)
        del cis[ci]
        for rel in [r for r in rels if ci in r[:2]]:
            rels.discard(rel)
    else:
        ci = f"n{step}"
        cis[ci] = None
        other = rng.choice(names)
        rel = (ci, other, rng.choice(TYPES)) if rng.random() < 0.5 else (other, ci, rng.choice(TYPES))
        for g in graphs:
            g.add_relationship(*rel)  # an end the graph does not know yet becomes a CI
        rels.add(rel)


def test_the_shop_answers_alike():
    python, compiled = build(SHOP_CIS, SHOP_RELATIONSHIPS), build(SHOP_CIS, SHOP_RELATIONSHIPS)
    assert compiled.build_compact() and compiled.compacted and not python.compacted
    for failed in (["db_primary"], ["web1"], ["web1", "web2"], ["switch"], ["web1", "web2", "web3"], ["nowhere"]):
        assert answer(python.impact(failed)) == answer(compiled.impact(failed))
    # The compiled answer is the one documented: two of three web servers lost take the cluster down.
    hit = compiled.impact(["web1", "web2"]).impacted
    assert hit["web_cluster"].state == "down" and hit["shop"].state == "down"
    assert compiled.impact(["web1"]).impacted["web_cluster"].state == "degraded"


@pytest.mark.parametrize("seed", range(120))
def test_random_graphs_answer_alike(seed):
    cis, rels = random_graph(seed)
    python, compiled = build(cis, rels), build(cis, rels)
    assert compiled.build_compact(slice_size=rng_slice(seed))
    rng = random.Random(seed)
    names = [ci for ci, _, _ in cis]
    for i in range(6):
        ask(python, compiled, rng, names, unknown=i == 5)


def rng_slice(seed):
    return 1 + seed % 7


@pytest.mark.parametrize("seed", range(80))
def test_changes_after_the_build_are_read_through_the_overlay(seed):
    python, compiled, cis, rels = twins(seed)
    assert compiled.build_compact()
    rng = random.Random(seed * 31 + 7)
    for step in range(40):
        change(rng, (python, compiled), cis, rels, step)
        if rng.random() < 0.6:  # several changes may be waiting when a question comes
            ask(python, compiled, rng, sorted(cis))
        if step == 25:  # built again over a graph that changed: the new view takes over
            assert compiled.build_compact(slice_size=3)
    ask(python, compiled, rng, sorted(cis))


@pytest.mark.parametrize("seed", range(60))
def test_changes_while_the_view_is_built_are_not_lost(seed):
    python, compiled, *state = twins(seed)
    rng = random.Random(seed + 1000)
    steps = iter(range(10_000))

    def between():  # the lock is not held here: another thread's changes land between slices
        for _ in range(rng.randint(0, 3)):
            change(rng, (python, compiled), *state, next(steps))

    assert compiled.build_compact(slice_size=2, between=between)
    for _ in range(5):
        ask(python, compiled, rng, sorted(state[0]))


def test_a_load_during_the_build_gives_it_up():
    cis, rels = random_graph(3)
    g = build(cis, rels)

    def between():
        g.bulk_load([("late", "x", None)], [])

    assert not g.build_compact(slice_size=4, between=between)
    assert not g.compacted and g._sinks == []


def test_a_load_or_new_semantics_drop_the_view():
    g = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    assert g.build_compact()
    g.bulk_load([("extra", "server", None)], [("app", "extra", "runs_on")])
    assert not g.compacted and g._sinks == []
    python = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    python.bulk_load([("extra", "server", None)], [("app", "extra", "runs_on")])
    assert g.build_compact()
    assert answer(g.impact(["extra"])) == answer(python.impact(["extra"]))
    semantics = dict(g.semantics)
    del semantics["member_of"]  # member_of now carries no impact
    g.set_semantics(semantics)
    python.set_semantics(semantics)
    assert not g.compacted
    assert answer(g.impact(["web1", "web2", "web3"])) == answer(python.impact(["web1", "web2", "web3"]))


def test_a_stale_overlay_asks_for_a_build_in_the_background(monkeypatch):
    monkeypatch.setattr(compact, "REBUILD_MIN_ROWS", 3)
    monkeypatch.setattr(compact, "REBUILD_SHARE", 0.0)
    g = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    g.compact_min_cis = 5
    assert g.build_compact()
    first = g._view
    for i in range(5):
        g.add_relationship(f"extra{i}", "app", "depends_on")
    g.impact(["app"])  # the overlay holds 10 rows now: stale, a build is started
    # The build's thread compiles what this process has not yet (with numba's cache cold, ~17 s here for
    # every loop): waited for as long as the snapshot tests wait for theirs, a tenth of a second at a time.
    deadline = time.monotonic() + 120
    while (g._view is first or g._building) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert g._view is not first and not g._view.stale
    assert set(g.impact(["app"]).impacted) >= {f"extra{i}" for i in range(5)}


def test_a_graph_under_its_threshold_is_not_compacted():
    g = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    assert not g.maybe_compact()  # compact_min_cis None: never
    g.compact_min_cis = 1_000
    assert not g.maybe_compact()


@pytest.mark.parametrize("cheap", [20_000, 0], ids=["exact", "bounded"])
@pytest.mark.parametrize("seed", range(60))
def test_root_cause_walks_compiled_rank_alike(seed, cheap, monkeypatch):
    # Whole-graph walks (causes.ExtraWalk) run compiled over the view: the same ranking, the same counts
    # and bounds, with a cap or without, before and after changes read through the overlay.
    monkeypatch.setattr(causes, "CHEAP_EXTRA", cheap)
    python, compiled, cis, rels = twins(seed)
    assert compiled.build_compact()
    rng = random.Random(seed * 13 + 5)
    for step in range(12):
        symptoms = rng.sample(sorted(cis), min(len(cis), rng.randint(1, 4)))
        for cap in (None, 0, 1, 3):
            assert compiled.root_cause(symptoms, limit=10, extra_cap=cap) == \
                python.root_cause(symptoms, limit=10, extra_cap=cap), (symptoms, cap)
        change(rng, (python, compiled), cis, rels, step)


def counted(monkeypatch, loop: str) -> list:
    """A list that grows by one at each call of graph.compact's compiled `loop` (it still runs)."""
    calls = []
    real = getattr(compact, loop)
    monkeypatch.setattr(compact, loop, lambda *args: calls.append(1) or real(*args))
    return calls


@pytest.mark.parametrize("seed", range(60))
def test_spof_compiled_finds_alike(seed, monkeypatch):
    # Single points of failure found compiled over the view (graph.compact._spof): the same CIs, in the same
    # order, before and after changes read through the overlay.
    calls = counted(monkeypatch, "_spof")
    python, compiled, cis, rels = twins(seed)
    assert compiled.build_compact(slice_size=rng_slice(seed))
    rng = random.Random(seed * 7 + 3)
    found = asked = 0
    for step in range(12):
        known = rng.sample(sorted(cis), min(len(cis), 5))
        for ci in known + ["nowhere"]:
            points = python.spof(ci)
            assert compiled.spof(ci) == points, (ci, step)
            found += len(points)
        asked += len(known)
        change(rng, (python, compiled), cis, rels, step)
    assert found  # every seed's graph has CIs with single points of failure
    assert len(calls) == asked  # each known CI's asked of the view, not of the dicts


@pytest.mark.parametrize("seed", range(60))
def test_providers_compiled_walk_alike(seed, monkeypatch):
    # graph.providers' walk compiled over the view (graph.compact._providers): the same CIs, before and
    # after changes read through the overlay, interleaved with spof questions sharing its scratch arrays.
    calls = counted(monkeypatch, "_providers")
    python, compiled, cis, rels = twins(seed)
    assert compiled.build_compact(slice_size=rng_slice(seed))
    rng = random.Random(seed * 11 + 7)
    found = asked = 0
    for step in range(12):
        known = rng.sample(sorted(cis), min(len(cis), 5))
        for ci in known + ["nowhere"]:
            walked = providers(python, ci)
            assert providers(compiled, ci) == walked, (ci, step)
            assert providers(compiled, ci, keep={ci, *sorted(walked)[::2]}) == set(sorted(walked)[::2])
            assert compiled.spof(ci) == python.spof(ci)
            found += len(walked)
        asked += len(known)
        change(rng, (python, compiled), cis, rels, step)
    assert found and len(calls) == 2 * asked


@pytest.mark.parametrize("seed", range(60))
def test_neighborhoods_compiled_walk_alike(seed, monkeypatch):
    # ImpactGraph.neighborhood's walk compiled over the view (graph.compact._neighborhood): the same CIs and
    # edges, every direction, depth and type filter, before and after changes read through the overlay.
    calls = counted(monkeypatch, "_neighborhood")
    python, compiled, cis, rels = twins(seed)
    assert compiled.build_compact(slice_size=rng_slice(seed))
    rng = random.Random(seed * 5 + 1)
    asked = sizes = 0
    for step in range(10):
        known = rng.sample(sorted(cis), min(len(cis), 3))
        for ci in known + ["nowhere"]:
            for direction in ("up", "down", "both"):
                depth = rng.choice([0, 1, 1, 2, 3, 10])
                types = rng.choice([None, None, rng.sample(TYPES, rng.randint(1, 3)), [], ["unheard_of", TYPES[0]]])
                answer = python.neighborhood(ci, depth, direction, types)
                assert compiled.neighborhood(ci, depth, direction, types) == answer, (ci, depth, direction, types)
                sizes += len(answer[0]) + len(answer[1])
        asked += 3 * len(known)
        change(rng, (python, compiled), cis, rels, step)
    assert sizes > 2 * asked and len(calls) == asked  # answers beyond the CI itself, all from the view


@pytest.mark.parametrize("seed", range(40))
def test_the_overlays_predecessors_are_patched_as_rows_change(seed):
    # After changes, the overlay rows' edges by head (what walks over providers read) are patched, not sorted
    # again (made afresh only once half the overlay's rows are due): the edges of every overlay row as the
    # dicts hold them, ordered by head, whatever changed in between. A neighborhood walked down reads none of
    # them and leaves them to be patched later.
    python, compiled, cis, rels = twins(seed)
    assert compiled.build_compact(slice_size=rng_slice(seed))
    view = compiled._view
    patches = []
    patch = view._patched
    view._patched = lambda *args: patches.append(1) or patch(*args)
    rng = random.Random(seed * 3 + 11)
    for step in range(25):
        for _ in range(rng.randint(1, 4)):
            change(rng, (python, compiled), cis, rels, step)
        ci = rng.choice(sorted(cis))
        if rng.random() < 0.3:
            assert compiled.neighborhood(ci, 2, "down") == python.neighborhood(ci, 2, "down")
            assert view._pred_overlay is None or view._pred_dirty  # left for the next walk up
        assert compiled.providers(ci) == python.providers(ci)
        heads, tails, edata = view._pred_overlay
        assert (np.diff(heads) >= 0).all() and not view._pred_dirty
        succ, index = compiled.graph._succ, view.index
        # Read from the dicts, not from the view's own rows: each changed CI's successors as (head, tail, edge).
        expected = sorted((index[v], i, view.table.index(data)) for i in view.changed
                          for v, data in succ.get(view.ids[i], {}).items())
        got = sorted((h, t, view.table.index(view.table[e])) for h, t, e in zip(heads.tolist(), tails.tolist(),
                                                                              edata.tolist()))
        assert got == expected
        assert (heads.dtype, tails.dtype, edata.dtype) == (np.int32, np.int64, np.int32)
    assert patches  # patched, not only made afresh


def test_a_failed_allocation_while_reading_rows_leaves_the_view_whole(monkeypatch):
    # An allocation that fails while a refresh grows the view for a new CI, or reads a row into the overlay,
    # leaves the view as it was, the CI still due: the next question reads it and answers as the dicts do.
    cis = [(ci, cls, 1 if ci == "web_cluster" else k) for ci, cls, k in SHOP_CIS]
    python, compiled = build(cis, SHOP_RELATIONSHIPS), build(cis, SHOP_RELATIONSHIPS)
    assert compiled.build_compact()
    view = compiled._view
    for g in (python, compiled):
        g.remove_relationship("web1", "web_cluster", "member_of")  # web1's row changes: one member fewer
        g.add_relationship("newcomer", "shop", "depends_on")  # a CI the view appends
    monkeypatch.setattr(compact, "REBUILD_MIN_ROWS", 10 ** 6)  # no rebuild of the view behind the test's back

    def once(owner, name):
        real = getattr(owner, name)

        def fail(*args):
            monkeypatch.setattr(owner, name, real)
            raise MemoryError("injected")
        monkeypatch.setattr(owner, name, fail)

    once(compact, "_grown")  # the view's arrays grown for "newcomer"
    with pytest.raises(MemoryError):
        compiled.impact(["web2"])
    assert "newcomer" not in view.index and len(view.ids) == view.base_n
    once(compact.CompactView, "_room")  # web1's row read into the overlay
    with pytest.raises(MemoryError):
        compiled.impact(["web2"])
    assert answer(compiled.impact(["web2"])) == answer(python.impact(["web2"]))
    assert compiled.spof("shop") == python.spof("shop")
    assert compiled.impact(["newcomer"]).impacted.keys() == python.impact(["newcomer"]).impacted.keys()
    assert len(view.changed) == len(set(view.changed))  # each changed CI's row counted once in its groups


def test_member_counts_kept_through_refreshes_and_counted_afresh_after_a_failed_one(monkeypatch):
    # The groups' member counts are made at the first question, then moved by each refresh (the rows read
    # again: old edges out, new in). A refresh that fails after some rows were read, or while moving the
    # counts, must not leave them as they were: the next question counts afresh.
    cis = [(ci, cls, 1 if ci == "web_cluster" else k) for ci, cls, k in SHOP_CIS]
    python, compiled = build(cis, SHOP_RELATIONSHIPS), build(cis, SHOP_RELATIONSHIPS)
    assert compiled.build_compact()
    monkeypatch.setattr(compact, "REBUILD_MIN_ROWS", 10 ** 6)
    view = compiled._view
    assert answer(compiled.impact(["web1"])) == answer(python.impact(["web1"]))  # web_cluster degraded
    counts = view._counts["kind"]
    cluster = view.index["web_cluster"]
    assert counts[cluster] == 3
    for g in (python, compiled):
        g.remove_relationship("web1", "web_cluster", "member_of")
    assert answer(compiled.impact(["web2"])) == answer(python.impact(["web2"]))
    assert view._counts["kind"] is counts and counts[cluster] == 2  # moved in place, not counted afresh
    for g in (python, compiled):
        g.add_relationship("web1", "web_cluster", "member_of")  # the row read again: back from the overlay's
        g.remove_relationship("web2", "web_cluster", "member_of")
        g.add_relationship("portal", "web1", "depends_on")  # web1's row: web_cluster, then portal
    assert answer(compiled.impact(["web3"])) == answer(python.impact(["web3"]))
    assert view._counts["kind"][cluster] == 2  # grown for portal, a CI the view appended
    row = view.slot[view.index["web1"]]
    for g in (python, compiled):  # its first edge gone: the row rewritten in place, over the edge counted out
        g.remove_relationship("web1", "web_cluster", "member_of")
    assert answer(compiled.impact(["web3"])) == answer(python.impact(["web3"]))
    assert view.slot[view.index["web1"]] == row and view._counts["kind"][cluster] == 1
    for g in (python, compiled):
        g.add_relationship("web1", "web_cluster", "member_of")
    assert answer(compiled.impact(["web3"])) == answer(python.impact(["web3"]))
    assert view._counts["kind"][cluster] == 2
    real_clipped = compact.clipped_k
    calls = []

    def failing_at_the_second_row(k):  # called as each row's reading starts
        calls.append(k)
        if len(calls) == 2:
            raise MemoryError("injected")
        return real_clipped(k)

    monkeypatch.setattr(compact, "clipped_k", failing_at_the_second_row)
    for g in (python, compiled):  # three rows to read, each moving the cluster's count: the second fails
        g.remove_relationship("web3", "web_cluster", "member_of")
        g.remove_relationship("web1", "web_cluster", "member_of")
        g.add_relationship("web2", "web_cluster", "member_of")
    with pytest.raises(MemoryError):
        compiled.impact(["web2"])
    assert len(compiled._view.pending) == 2 and not view._counts  # one row read, its move not made: let go
    monkeypatch.setattr(compact, "clipped_k", real_clipped)
    assert answer(compiled.impact(["web2"])) == answer(python.impact(["web2"]))  # web2 alone: the cluster down
    assert view._counts["kind"][cluster] == 1
    real_move = compact.CompactView._moved

    def move_failing(self, *args):
        monkeypatch.setattr(compact.CompactView, "_moved", real_move)
        raise MemoryError("injected")

    monkeypatch.setattr(compact.CompactView, "_moved", move_failing)
    for g in (python, compiled):
        g.add_relationship("web3", "web_cluster", "member_of")
    with pytest.raises(MemoryError):
        compiled.impact(["web2"])
    assert not compiled._view.pending and not view._counts  # every row read, the counts let go
    assert answer(compiled.impact(["web2"])) == answer(python.impact(["web2"]))
    assert view._counts["kind"][cluster] == 2


def test_member_counts_of_a_type_filter_the_graph_forgot_are_let_go(monkeypatch):
    # The graph forgets every type filter past EdgeTypeSets.MAX_FILTERS (their kinds leave the edge data); the
    # view's counts kept for them must not make a later refresh look those kinds up.
    monkeypatch.setattr(EdgeTypeSets, "MAX_FILTERS", 3)
    python, compiled = build(SHOP_CIS, SHOP_RELATIONSHIPS), build(SHOP_CIS, SHOP_RELATIONSHIPS)
    assert compiled.build_compact()
    filters = [["depends_on", "member_of", f"t{i}"] for i in range(5)]
    for types in filters[:4]:  # the fourth: the first three forgotten
        assert answer(compiled.impact(["web1"], types=types)) == answer(python.impact(["web1"], types=types))
    for g in (python, compiled):
        g.add_relationship("web1", "app", "runs_on")  # a new edge data dict: every kept key's kinds made again
    assert answer(compiled.impact(["web1"])) == answer(python.impact(["web1"]))
    for types in filters:
        assert answer(compiled.impact(["web1"], types=types)) == answer(python.impact(["web1"], types=types))


def test_warm_up_compiles_every_loop():
    # A loop left out is compiled at a worker's first question that needs it, under the graph's lock.
    script = ("from numba.core.registry import CPUDispatcher\n"
              "from graph import compact\n"
              "compact.warm_up()\n"
              "print(' '.join(sorted(name for name, f in vars(compact).items() if isinstance(f, CPUDispatcher)"
              " and not f.signatures)))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2], check=True).stdout
    # These two are called by compiled loops only, and compiled into them.
    assert set(out.split()) <= {"_grow", "_upstream"}


def test_a_large_refresh_leaves_no_large_set_behind():
    # The CIs due are discarded one by one as their rows are read: a set keeps the table it grew to, and each
    # later refresh would walk all of it (0.5 ms a question after 50,000 CIs were read at once).
    cis = [(f"ci{i}", "server", None) for i in range(20_000)]
    g = build(cis, [(f"ci{i}", f"ci{i + 1}", "depends_on") for i in range(19_999)])
    assert g.build_compact()
    view = g._view
    small = sys.getsizeof(set())
    for ci, _, _ in cis:
        g.upsert_ci(ci, "server", 2)
    assert sys.getsizeof(view.pending) > 100 * small
    g.impact(["ci0"])
    assert not view.pending and sys.getsizeof(view.pending) == small


def test_a_neighborhood_is_a_whole_number_of_hops():
    python, compiled = build(SHOP_CIS, SHOP_RELATIONSHIPS), build(SHOP_CIS, SHOP_RELATIONSHIPS)
    assert compiled.build_compact()
    for g in (python, compiled):
        with pytest.raises(TypeError):
            g.neighborhood("db_primary", 1.5)
    assert compiled.neighborhood("db_primary", np.int64(2)) == python.neighborhood("db_primary", 2)


def test_the_walks_scratch_is_left_zero_and_let_go_when_a_walk_fails(monkeypatch):
    # spof, providers and neighborhoods share per-CI arrays kept between questions: zero after each, and
    # dropped (made afresh at the next question) when a walk fails midway, so no later answer reads them dirty.
    python, compiled = build(SHOP_CIS, SHOP_RELATIONSHIPS), build(SHOP_CIS, SHOP_RELATIONSHIPS)
    assert compiled.build_compact()
    assert python.spof("shop")
    for ci in ("shop", "web_cluster", "db_primary"):
        assert compiled.spof(ci) == python.spof(ci)
        assert compiled.providers(ci) == python.providers(ci)
        assert compiled.neighborhood(ci, 2) == python.neighborhood(ci, 2)
    view = compiled._view
    assert len(view._walk_scratch) == 5 and not any(array.any() for array in view._walk_scratch)
    real = compact._spof

    def failing(*args):
        for array in args[-5:]:
            array[:] = 1
        raise MemoryError

    monkeypatch.setattr(compact, "_spof", failing)
    with pytest.raises(MemoryError):
        compiled.spof("shop")
    assert view._walk_scratch is None
    monkeypatch.setattr(compact, "_spof", real)
    assert compiled.providers("shop") == python.providers("shop")
    assert compiled.spof("shop") == python.spof("shop")
    assert not any(array.any() for array in view._walk_scratch)


def random_graph_with_oddities(seed):
    """random_graph's, with self-loops, groups of huge, zero and negative min_members and a hub."""
    cis, rels = random_graph(seed)
    rng = random.Random(seed + 77)
    names = [ci for ci, _, _ in cis]
    cis = [(ci, cls, rng.choice([k, k, 0, -1, 2 ** 31, 2 ** 40, -(2 ** 33)])) for ci, cls, k in cis]
    rels = set(rels)
    for _ in range(3):
        ci = rng.choice(names)
        rels.add((ci, ci, rng.choice(TYPES)))
    hub = names[0]
    for ci in names[1:]:
        rels.add((ci, hub, "depends_on"))
    return cis, sorted(rels)


@pytest.mark.parametrize("seed", range(60))
def test_oddities_answer_alike(seed, monkeypatch):
    # Self-loops, min_members past int32 or below 1, a hub every CI depends on whose row is written again at
    # each change, CIs removed and made again with the same id, and more type filters than are cached.
    monkeypatch.setattr(compact, "FILTERS_KEPT", 3)
    cis, rels = random_graph_with_oddities(seed)
    python, compiled = build(cis, rels), build(cis, rels)
    assert compiled.build_compact(slice_size=4)
    names = [ci for ci, _, _ in cis]
    rng = random.Random(seed)
    for step in range(30):
        roll = rng.random()
        if roll < 0.3:  # the hub gains a dependent: its row grows by one
            rel = (f"d{step}", names[0], "depends_on")
        elif roll < 0.5:
            rel = (names[0], names[0], rng.choice(TYPES))
        else:
            rel = (*rng.sample(names, 2), rng.choice(TYPES))
        for g in (python, compiled):
            g.add_relationship(*rel)
        if roll > 0.85:  # removed, then made again under the same id with another k
            gone = rng.choice(names[1:])
            k = rng.choice([None, 2 ** 35, 0])
            for g in (python, compiled):
                g.remove_ci(gone)
                g.upsert_ci(gone, "x", k)
                g.add_relationship(gone, names[0], "member_of")
        types = rng.choice([None, rng.sample(TYPES, rng.randint(1, len(TYPES)))])
        failed = rng.sample(names, rng.randint(1, 3))
        assert answer(python.impact(failed, types=types)) == answer(compiled.impact(failed, types=types))
        assert python.root_cause(failed) == compiled.root_cause(failed)
        for ci in (names[0], *failed):
            assert python.spof(ci) == compiled.spof(ci)
            assert python.providers(ci) == compiled.providers(ci)
            assert python.neighborhood(ci, 2, "both", types) == compiled.neighborhood(ci, 2, "both", types)
    view = compiled._view
    # A row is written again in place while it fits (it has a quarter more room): rows are few more than the
    # CIs changed, however often the hub's row was written.
    assert view.rows <= len(view.changed) + 5


def test_a_build_given_up_leaves_the_live_view_current():
    # A build that gives up removes its own set from the graph's, not the live view's (equal when both are empty).
    cis, rels = random_graph(4)
    python, compiled = build(cis, rels), build(cis, rels)
    assert compiled.build_compact()
    live = compiled._view

    def between():
        compiled._epoch += 1  # as a load would, without dropping the live view

    assert not compiled.build_compact(slice_size=2, between=between)
    assert compiled._view is live and any(sink is live.pending for sink in compiled._sinks)
    for g in (python, compiled):
        g.add_relationship("c0", "c1", "depends_on")
        g.add_relationship("c2", "c0", "depends_on")
    for failed in (["c1"], ["c0"], ["c2"]):
        assert answer(python.impact(failed)) == answer(compiled.impact(failed))


def test_a_failed_build_is_not_tried_again_at_once(monkeypatch):
    g = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    g.compact_min_cis = 1

    def broken(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(compact, "build", broken)
    assert g.maybe_compact()
    deadline = time.monotonic() + 120  # the build's thread runs warm_up first: ~17 s with numba's cache cold
    while g._building and time.monotonic() < deadline:
        time.sleep(0.05)
    assert g._compact_failed is not None and not g.compacted
    assert not g.maybe_compact()  # within COMPACT_RETRY_SECONDS
