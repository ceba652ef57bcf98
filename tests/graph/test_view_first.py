"""A graph started view first from a snapshot file (snapshot.load(view_first=True)): its compiled view and its
CIs' payloads answer before its succ and pred dicts are laid out, changes applied meanwhile reach the view
(graph.view_changes) and then the dicts, and once laid out the graph is the one a usual load gives.

P is the same random graph loaded the usual way and answering with the Python loop; every answer the view
gives is P's, before and after the dicts, and the dicts laid out are P's, entry for entry and in order."""

import random
import threading

import pytest

from graph import ImpactGraph, snapshot
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
    return g


def adjacency(g: ImpactGraph) -> tuple:
    """Both sides of the graph, each edge as (its types, covered): succ in order (the compiled loops walk it
    so), pred as sets (a graph loaded from a file lists each CI's predecessors in CI order, whatever order
    they came in)."""
    def side(rows, kind):
        return {u: kind((v, d[TYPES_KEY], d[COVERED_KEY]) for v, d in nbrs.items()) for u, nbrs in rows.items()}
    return list(side(g.graph._succ, list).items()), side(g.graph._pred, frozenset)


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
    for ci in rng.sample(names, min(len(names), 3)) + ["nowhere"]:
        assert g.spof(ci) == p.spof(ci)
        assert g.providers(ci) == p.providers(ci)
    symptoms = rng.sample(names, min(len(names), 3))
    assert g.root_cause(symptoms) == p.root_cause(symptoms)
    assert g.classes(names[:3]) == p.classes(names[:3])


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
    for _ in range(3):  # before the dicts: changes to the view alone
        changes, step = batch(rng, p, known, relations, step, rng.randint(1, 10))
        g.apply_changes(changes)
        asked(p, g, rng)
    with pytest.raises(DictsNotLaidOut):
        g.edges_among(sorted(known))
    assert g.lay_out_dicts() and g.dicts_ready and not g.lay_out_dicts()
    assert adjacency(g) == adjacency(p) and mirrored(g)
    # The dicts' keys are the view's strings (one copy of each id), for every CI the file held.
    view = g._view
    assert all(view.ids[view.index[ci]] is ci for ci in g.graph._node if view.index[ci] < view.base_n)
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


def test_only_the_view_answers_before_the_dicts(shop, tmp_path):
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    assert g.impact(["web1"]).impacted["web_cluster"].state == "degraded"
    assert g.impact(["web1", "web2"]).impacted["shop"].state == "down"
    for ask in (lambda: g.edges_among(["shop", "lb"]), lambda: g.neighborhood("shop"), lambda: g.relationships(),
                lambda: g.graph._succ["shop"], lambda: len(g.graph._pred)):
        with pytest.raises(DictsNotLaidOut):
            ask()
    assert g.number_of_links() == shop.number_of_links()


def test_a_stale_view_is_not_built_again_before_the_dicts(shop, tmp_path, monkeypatch):
    from graph import compact

    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    g.compact_min_cis = 0
    monkeypatch.setattr(compact, "REBUILD_MIN_ROWS", 0)
    monkeypatch.setattr(compact, "REBUILD_SHARE", 0)
    g.apply_changes([("upsert_ci", "shop", "service", 2)])
    assert g._view.stale and not g.maybe_compact()  # a build reads the dicts
    assert g.lay_out_dicts() and g.maybe_compact()


def test_new_semantics_lay_the_dicts_out_first(shop, tmp_path):
    p = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    g.apply_changes([("remove_relationship", "web3", "web_cluster", "member_of")])
    p.remove_relationship("web3", "web_cluster", "member_of")
    flipped = dict(SEMANTICS, depends_on=SEMANTICS["connects_to"])
    for graph in (p, g):
        graph.set_semantics(flipped)
    assert g.dicts_ready and adjacency(g) == adjacency(p)
    assert answer(g.impact(["switch"])) == answer(p.impact(["switch"]))


def test_a_failed_lay_out_leaves_the_view_answering_and_is_tried_again(shop, tmp_path):
    p = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    due = g._dicts_due

    def failing():
        raise MemoryError

    g._dicts_due = failing
    with pytest.raises(MemoryError):
        g.lay_out_dicts()
    assert not g.dicts_ready
    g.apply_changes([("add_relationship", "reporting", "app", "depends_on")])
    p.add_relationship("reporting", "app", "depends_on")
    asked(p, g, random.Random(3))
    g._dicts_due = due
    assert g.lay_out_dicts() and adjacency(g) == adjacency(p)


def test_changes_while_the_dicts_are_laid_out_reach_them(shop, tmp_path, monkeypatch):
    # The lay-out runs outside the graph's lock: a change applied meanwhile goes to the view, and is applied to
    # the dicts under the lock before they answer.
    p = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    started, go, real = threading.Event(), threading.Event(), snapshot._lay_out_nodes

    def slow(*args):
        started.set()
        assert go.wait(30)
        real(*args)

    monkeypatch.setattr(snapshot, "_lay_out_nodes", slow)
    thread = threading.Thread(target=g.lay_out_dicts)
    thread.start()
    assert started.wait(30)
    changes = [("remove_ci", "web2"), ("upsert_ci", "web_cluster", "cluster", 1), ("add_relationship", "dns2", "app", "depends_on")]
    g.apply_changes(changes)
    for operation, *arguments in changes:
        getattr(p, operation)(*arguments)
    go.set()
    thread.join(30)
    assert g.dicts_ready and adjacency(g) == adjacency(p) and payloads(g) == payloads(p)
    asked(p, g, random.Random(4))


def test_changes_failing_half_way_fall_back_to_the_dicts(shop, tmp_path, monkeypatch):
    # The view and the payloads hold part of the changes: neither is trusted. The dicts are laid out from the file
    # with the changes applied before those, and the failed ones can then be applied to them.
    from graph import view_changes

    p = build(SHOP_CIS, SHOP_RELATIONSHIPS)
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    before = [("add_relationship", "reporting", "app", "depends_on")]
    g.apply_changes(before)
    real = view_changes.apply

    def half(view, node, tables, changes):
        real(view, node, tables, changes[:1])
        raise MemoryError

    monkeypatch.setattr(view_changes, "apply", half)
    failing = [("remove_ci", "lb"), ("remove_ci", "app")]
    with pytest.raises(MemoryError):
        g.apply_changes(failing)
    assert g.broken and not g.compacted and not g.dicts_ready
    assert g.lay_out_dicts() and g.dicts_ready and not g.broken
    g.apply_changes(failing)
    for operation, *arguments in before + failing:
        getattr(p, operation)(*arguments)
    assert adjacency(g) == adjacency(p) and payloads(g) == payloads(p)
    asked(p, g, random.Random(5))


def test_a_graph_let_go_stops_laying_its_dicts_out(shop, tmp_path, monkeypatch):
    # Let go while its dicts are laid out (a rebuild), the graph's lay-out stops at its next slice instead of
    # holding a second graph's dicts for as long as the whole lay-out takes.
    g = view_first(saved(shop, tmp_path / "g.snapshot"))
    real = snapshot._lay_out_nodes

    def then_let_go(*args):
        real(*args)
        g.drop_compact()

    ordered = []
    monkeypatch.setattr(snapshot, "_lay_out_nodes", then_let_go)
    monkeypatch.setattr(snapshot, "_by_head", lambda *args: ordered.append(args))
    assert not g.lay_out_dicts() and not g.dicts_ready
    assert not ordered  # stopped in the succ side's first slice, before the pred side
