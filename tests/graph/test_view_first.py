"""A graph started view first from a snapshot file (snapshot.load(view_first=True)): its compiled view and its
CIs' payloads are all it holds and answer everything (impact, spof, providers, root cause, neighbourhoods, the
edges among CIs, the part upstream of CIs), changes reach the view alone (graph.view_changes), a stale view is
made fresh from itself, a snapshot is written off the view, and the dicts, laid out from the view when new
semantics need them, are the ones a usual load gives.

P is the same random graph loaded the usual way and answering with the Python loop over its dicts; every
answer the view gives is P's, before and after the dicts, and the dicts laid out are P's, entry for entry,
each CI's successors in order."""

import random
import threading

import pytest

from graph import ImpactGraph, RelationshipSemantics, compact, id_table, reach, snapshot, view_changes
from graph.impact_graph import CLASS_KEY, MIN_MEMBERS_KEY, DictsNotLaidOut
from graph.semantics import COVERED_KEY, TYPES_KEY
from tests.graph.conftest import SEMANTICS, SHOP_CIS, SHOP_RELATIONSHIPS, build, mirrored
from tests.graph.test_compact import answer, change, random_graph_with_oddities
from tests.graph.test_reference_model import TYPES, random_graph
from tests.graph.test_view_changes import Recorder

SCHEMA = "t"


def saved(g: ImpactGraph, path):
    g.applied_seq = 7
    snapshot.save(g, path, schema_revision=SCHEMA, lineage="t")
    return path


def view_first(path) -> ImpactGraph:
    g, header = snapshot.load(path, SEMANTICS, schema_revision=SCHEMA, compact_min_cis=0, view_first=True)
    assert not g.dicts_ready and g.compacted and g.applied_seq == header.applied_seq == 7
    # Its ids a table (graph.id_table), its payloads read off it: no string per CI.
    assert isinstance(g._view.ids, id_table.IdTable) and isinstance(g.graph._node, id_table.NodeTable)
    return g


def adjacency(g: ImpactGraph) -> tuple:
    """Both sides of the graph, each edge as (its types, covered): each CI's succ row in order (the compiled
    loops walk it so), pred rows as sets (a graph loaded from a file lists each CI's predecessors in CI order,
    whatever order they came in). The CIs' own order is not compared: a CI removed and made again is last in
    P's dicts, at its first place in a view (no answer depends on it)."""
    def side(rows, kind):
        return {u: kind((v, d[TYPES_KEY], d[COVERED_KEY]) for v, d in nbrs.items()) for u, nbrs in rows.items()}
    return side(g.graph._succ, list), side(g.graph._pred, frozenset)


def payloads(g: ImpactGraph) -> dict:
    return {ci: (d[CLASS_KEY], d[MIN_MEMBERS_KEY]) for ci, d in g.graph._node.items()}


def asked(p: ImpactGraph, g: ImpactGraph, rng) -> None:
    """g answers as p does: impact (type filters, depths), spof, providers, root cause; and holds p's CIs."""
    assert payloads(g) == payloads(p) and len(g) == len(p) and g.number_of_links() == p.number_of_links()
    names = sorted(p.graph._node)
    for _ in range(4):
        failed = rng.sample(names, min(len(names), rng.randint(1, 3))) + ["nowhere"]
        types = rng.choice([None, None, rng.sample(TYPES, 3)])
        max_depth = rng.choice([None, None, 1, 2])
        assert answer(g.impact(failed, max_depth=max_depth, types=types)) == \
            answer(p.impact(failed, max_depth=max_depth, types=types)), (failed, types, max_depth)
        # An answer's classes (an incident's counts): by position off the view's answer, by id off a list.
        picked = rng.sample(["app", "db", "server", "x", None], 2)
        theirs = p.impact(failed).impacted
        assert g.tally(g.impact(failed).impacted, picked) == p.tally(theirs, picked)
        assert g.tally(list(theirs) + ["nowhere"], picked) == p.tally(list(theirs) + ["nowhere"], picked)
    for ci in rng.sample(names, min(len(names), 3)) + ["nowhere"]:
        assert g.spof(ci) == p.spof(ci)
        assert g.providers(ci) == p.providers(ci)
    symptoms = rng.sample(names, min(len(names), 3))
    assert g.root_cause(symptoms) == p.root_cause(symptoms)
    assert g.classes(names[:3]) == p.classes(names[:3])
    assert g.classes(names + ["nowhere"]) == p.classes(names + ["nowhere"])
    walked(p, g, rng)


def walked(p: ImpactGraph, g: ImpactGraph, rng) -> None:
    """g walks as p does: neighbourhoods (both ways, type filters), the edges among CIs (some unknown), the part
    upstream of CIs (each CI's successors in order)."""
    names = sorted(p.graph._node)
    for ci in rng.sample(names, min(len(names), 3)) + ["nowhere"]:
        depth, direction = rng.choice([0, 1, 2, 5]), rng.choice(["up", "down", "both"])
        types = rng.choice([None, rng.sample(TYPES, 2)])
        assert g.neighborhood(ci, depth, direction, types) == p.neighborhood(ci, depth, direction, types)
    some = rng.sample(names, min(len(names), rng.randint(1, 12))) + ["nowhere"]
    assert g.edges_among(some + some[:2]) == p.edges_among(some)
    assert g.edges_among(names) == p.edges_among(names)
    starts = rng.sample(names, min(len(names), rng.randint(1, 4))) + ["nowhere"]
    part = g.upstream_part(starts)
    assert part == reach.upstream_part(p.graph, starts) and reach.reached(part, set(starts)) == \
        reach.reached(reach.upstream_part(p.graph, starts), set(starts))


def written_and_read(g: ImpactGraph, tmp_path) -> ImpactGraph:
    """The graph a snapshot of g holds, loaded the usual way (dicts)."""
    path = tmp_path / "again.snapshot"
    snapshot.save(g, path, schema_revision=SCHEMA, lineage="t")
    loaded, header = snapshot.load(path, g.semantics, schema_revision=SCHEMA)
    assert header.cis == len(g) and header.applied_seq == g.applied_seq and loaded.dicts_ready
    return loaded


def batch(rng, p, known, relations, step, size):
    recorder = Recorder()
    for _ in range(size):
        step += 1
        change(rng, [p, recorder], known, relations, step)
    return recorder.changes, step


def run(seed, cis, rels, tmp_path):
    rng = random.Random(seed)
    p = build(cis, rels)
    g = view_first(saved(build(cis, rels), tmp_path / "g.snapshot"))
    known, relations, step = {ci: k for ci, _, k in cis}, set(rels), 0
    for round_ in range(4):  # no dicts: changes to the view alone
        changes, step = batch(rng, p, known, relations, step, rng.randint(1, 10))
        g.apply_changes(changes)
        asked(p, g, rng)
        # The snapshot written off the view holds P's graph.
        again = written_and_read(g, tmp_path)
        assert adjacency(again) == adjacency(p) and payloads(again) == payloads(p) and mirrored(again)
        if round_ == 1:  # made fresh from itself, the CIs gone kept; then dropped
            g._view = g._rebased(g._view)
            assert g._view.rows == 0 and g._view.made_from == "rebased"
            # The CIs appended to the table since the file folded into a new one, the payloads' table over it.
            ids = g._view.ids
            assert ids.base_n == len(ids) and g.graph._node.table is ids and g._view.kept is None
            asked(p, g, rng)
        if round_ == 2:
            share, compact.REBUILD_SHARE = compact.REBUILD_SHARE, 0
            try:
                g._view = g._rebased(g._view)
            finally:
                compact.REBUILD_SHARE = share
            assert not g._view.gone and len(g._view) == len(p)
            # The ids numbered again into a new table: the payloads' table made over it (reading its positions).
            assert g._view.kept is None and (g.graph._node._ids is g._view.ids or isinstance(g._view.ids, list))
    assert not g.dicts_ready
    assert g.lay_out_dicts() and g.dicts_ready and not g.lay_out_dicts()
    assert adjacency(g) == adjacency(p) and payloads(g) == payloads(p) and mirrored(g)
    # The dicts' keys are the view's strings (one copy of each id); or, the view's ids a table (graph.id_table),
    # one copy of each id between the dicts.
    view = g._view
    if isinstance(view.ids, list):
        assert all(view.ids[view.index[ci]] is ci for ci in g.graph._node)
    else:
        ids = {ci: ci for ci in g.graph._node}
        assert all(ids[u] is u and all(ids[v] is v for v in nbrs) for side in (g.graph._succ, g.graph._pred)
                   for u, nbrs in side.items())
    # The dicts laid out are on the view's very edge data dicts: reading rows again adds none to its table.
    table = {id(d) for d in g._view.table}
    assert all(id(d) in table for nbrs in g.graph._succ.values() for d in nbrs.values())
    asked(p, g, rng)
    for _ in range(2):  # after: the dicts' own changes, the view kept by them as in any graph
        changes, step = batch(rng, p, known, relations, step, rng.randint(1, 10))
        g.apply_changes(changes)
        asked(p, g, rng)
    assert adjacency(g) == adjacency(p) and g.compacted


@pytest.mark.parametrize("seed", range(60))
def test_random_graphs_answer_alike_before_and_after_the_dicts(seed, tmp_path):
    run(seed, *random_graph(seed), tmp_path)


@pytest.mark.parametrize("seed", range(20))
def test_oddities_answer_alike_before_and_after_the_dicts(seed, tmp_path):
    run(seed, *random_graph_with_oddities(seed), tmp_path)


def test_only_the_view_answers_without_the_dicts(shop, tmp_path):
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    assert g.impact(["web1"]).impacted["web_cluster"].state == "degraded"
    assert g.impact(["web1", "web2"]).impacted["shop"].state == "down"
    assert g.edges_among(["shop", "app", "lb"]) == shop.edges_among(["shop", "app", "lb"])
    assert g.neighborhood("shop", 2) == shop.neighborhood("shop", 2)
    assert g.upstream_part(["shop"]) == reach.upstream_part(shop.graph, ["shop"])
    for ask in (lambda: g.relationships(), lambda: g.graph._succ["shop"], lambda: len(g.graph._pred),
                lambda: g.number_of_relationships()):
        with pytest.raises(DictsNotLaidOut):
            ask()
    assert g.number_of_links() == shop.number_of_links() and not g.dicts_ready


def test_a_stale_view_is_made_fresh_from_itself(shop, tmp_path, monkeypatch):
    p = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    g.compact_min_cis = 0
    monkeypatch.setattr(compact, "REBUILD_MIN_ROWS", 0)
    monkeypatch.setattr(compact, "REBUILD_SHARE", 0)
    changes = [("upsert_ci", "shop", "service", 2), ("remove_ci", "web2"), ("add_relationship", "dns2", "app", "depends_on")]
    g.apply_changes(changes)
    for operation, *arguments in changes:
        getattr(p, operation)(*arguments)
    assert g._view.stale and not g.maybe_compact()  # a build reads the dicts: none
    asked(p, g, random.Random(2))
    assert g._view.made_from == "rebased" and g._view.rows == 0 and not g.dicts_ready
    assert "web2" not in g._view.index  # dropped (REBUILD_SHARE 0)


def test_new_semantics_lay_the_dicts_out_first(shop, tmp_path):
    p = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    g.apply_changes([("remove_relationship", "web3", "web_cluster", "member_of")])
    p.remove_relationship("web3", "web_cluster", "member_of")
    flipped = dict(SEMANTICS, depends_on=SEMANTICS["contains"])  # impact now from source to target
    for graph in (p, g):
        graph.set_semantics(flipped)
    assert g.dicts_ready and adjacency(g) == adjacency(p)
    assert answer(g.impact(["switch"])) == answer(p.impact(["switch"]))


@pytest.mark.parametrize("added", [RelationshipSemantics(impact="source_to_target"),
                                   RelationshipSemantics(impact="target_to_source", membership=True),
                                   RelationshipSemantics(impact="none")])
def test_a_type_added_keeps_the_graph_on_its_view(shop, tmp_path, added):
    # No edge holds the new type: no kind nor coverage moves, so the view's edge data dicts are swapped for the new
    # table's in place, and the graph stays without dicts; then edges of the new type come as any change.
    p = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    before = answer(g.impact(["web1", "web2"], types=["member_of", "runs_on"]))  # a type filter's kinds kept
    semantics = dict(SEMANTICS, backs_up=added)
    for graph in (p, g):
        graph.set_semantics(semantics)
    assert not g.dicts_ready and g.compacted and g.semantics == semantics
    assert answer(g.impact(["web1", "web2"], types=["member_of", "runs_on"])) == before
    changes = [("add_relationship", "db_replica", "db_primary", "backs_up"), ("add_relationship", "dns2", "app", "backs_up"),
               ("add_relationship", "web3", "reporting", "backs_up")]
    g.apply_changes(changes)
    for operation, *arguments in changes:
        getattr(p, operation)(*arguments)
    asked(p, g, random.Random(6))
    again = written_and_read(g, tmp_path)  # a new file (written under the new semantics) holds P's graph
    assert adjacency(again) == adjacency(p)


def test_a_failed_lay_out_leaves_the_view_answering_and_is_tried_again(shop, tmp_path, monkeypatch):
    p = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    real = view_changes.lay_out

    def failing(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(view_changes, "lay_out", failing)
    with pytest.raises(MemoryError):
        g.lay_out_dicts()
    assert not g.dicts_ready and g._replay is None
    g.apply_changes([("add_relationship", "reporting", "app", "depends_on")])
    p.add_relationship("reporting", "app", "depends_on")
    asked(p, g, random.Random(3))
    monkeypatch.setattr(view_changes, "lay_out", real)
    assert g.lay_out_dicts() and adjacency(g) == adjacency(p)


def test_changes_while_the_dicts_are_laid_out_reach_them(shop, tmp_path, monkeypatch):
    # The lay-out runs outside the graph's lock: a change applied meanwhile goes to the view, and is applied to
    # the dicts under the lock before they answer. Before and after, no change is kept for them.
    p = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    g.apply_changes([("remove_ci", "dns2")])
    p.remove_ci("dns2")
    assert g._replay is None
    started, go, real = threading.Event(), threading.Event(), view_changes.lay_out

    def slow(*args, **kwargs):
        started.set()
        assert go.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(view_changes, "lay_out", slow)
    thread = threading.Thread(target=g.lay_out_dicts)
    thread.start()
    assert started.wait(30)
    changes = [("remove_ci", "web2"), ("upsert_ci", "web_cluster", "cluster", 1), ("add_relationship", "dns2", "app", "depends_on")]
    g.apply_changes(changes)
    for operation, *arguments in changes:
        getattr(p, operation)(*arguments)
    go.set()
    thread.join(30)
    assert g.dicts_ready and adjacency(g) == adjacency(p) and payloads(g) == payloads(p) and g._replay is None
    asked(p, g, random.Random(4))


def test_a_graph_whose_changes_failed_half_way_answers_nothing_more(shop, tmp_path, monkeypatch):
    # The view and the payloads hold part of the changes: neither is trusted, and nothing is left to lay the dicts
    # out from. The service lets such a graph go and loads it again (tests/test_graph_snapshot_service.py).
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    real = view_changes.apply

    def half(view, node, tables, changes):
        real(view, node, tables, changes[:1])
        raise MemoryError

    monkeypatch.setattr(view_changes, "apply", half)
    with pytest.raises(MemoryError):
        g.apply_changes([("remove_ci", "lb"), ("remove_ci", "app")])
    assert g.broken and not g.compacted and not g.dicts_ready
    monkeypatch.setattr(view_changes, "apply", real)
    for ask in (g.lay_out_dicts, lambda: g.apply_changes([("remove_ci", "web1")]), lambda: g.edges_among(["shop"]),
                lambda: g.upstream_part(["shop"]), lambda: g.neighborhood("shop")):
        with pytest.raises(DictsNotLaidOut):
            ask()


def test_a_graph_let_go_stops_laying_its_dicts_out(shop, tmp_path, monkeypatch):
    # Let go while its dicts are laid out (a rebuild), the graph's lay-out stops at its next slice instead of
    # holding a second graph's dicts for as long as the whole lay-out takes.
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    real, asked_to_stop = view_changes.lay_out, []

    def then_let_go(view, node, tables, stop):
        g.drop_compact()
        asked_to_stop.append(stop())
        return real(view, node, tables, stop)

    monkeypatch.setattr(view_changes, "lay_out", then_let_go)
    assert not g.lay_out_dicts() and not g.dicts_ready and asked_to_stop == [True]
