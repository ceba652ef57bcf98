"""graph.view_changes: changes applied to a compiled view with no dicts but the CIs' payloads leave it the
view the dicts would give, row for row, and its answers the Python loop's.

Each random graph is held three ways: P answers with the Python loop over its dicts, A with its compiled
view kept by the dicts (the reference for the rows), and B is a view (built from the dicts, or made from a
snapshot file) whose graph's dicts are then let go: only `view_changes.apply` moves it. Random batches of
changes (relationships made and removed, CIs changed, removed and made again, ends the graph does not know)
bring covered edges, groups and type flips with them."""

import random

import pytest

from graph import snapshot, view_changes
from graph.impact_graph import CLASS_KEY, MIN_MEMBERS_KEY
from graph.semantics import COVERED_KEY, TYPES_KEY
from tests.graph.conftest import SEMANTICS, SHOP_CIS, SHOP_RELATIONSHIPS, build
from tests.graph.test_compact import answer, change, random_graph_with_oddities
from tests.graph.test_reference_model import TYPES, random_graph


class Recorder:
    """Takes ImpactGraph's change calls as view_changes' tuples."""

    def __init__(self):
        self.changes = []

    def __getattr__(self, operation):
        return lambda *arguments: self.changes.append((operation, *arguments))


def detached(g):
    """g, answering from its compiled view alone: its succ and pred dicts let go, nothing feeding the view
    but view_changes."""
    view = g._view
    assert view is not None
    g._g._succ, g._g._pred = {}, {}
    g._sinks.clear()
    return g


def made(how, cis, rels, tmp_path):
    g = build(cis, rels)
    if how == "graph":
        assert g.build_compact()
        return detached(g)
    g.applied_seq = 1
    path = tmp_path / "g.snapshot"
    snapshot.save(g, path, schema_revision="t", lineage="t")
    loaded, _ = snapshot.load(path, SEMANTICS, schema_revision="t", compact_min_cis=0)
    assert loaded.wait_compact(120) and loaded._view.made_from == "snapshot"
    return detached(loaded)


def rows(view, node):
    """Each CI's row as the compiled loops read it: (head, types, covered) in order, and its k."""
    return {ci: ([(view.ids[h], view.table[d][TYPES_KEY], view.table[d][COVERED_KEY])
                  for h, d in zip(*map(list, view_changes._succ_row(view, view.index[ci])))],
                 int(view.kk[view.index[ci]])) for ci in node}


def same(p, a, b, rng):
    """B's view and payloads are A's; B's answers P's."""
    assert {ci: (d[CLASS_KEY], d[MIN_MEMBERS_KEY]) for ci, d in b.graph._node.items()} == \
        {ci: (d[CLASS_KEY], d[MIN_MEMBERS_KEY]) for ci, d in p.graph._node.items()}
    with a._lock:
        a._current_view()
    assert rows(b._view, b.graph._node) == rows(a._view, a.graph._node)
    names = sorted(p.graph._node)
    for _ in range(4):
        failed = rng.sample(names, min(len(names), rng.randint(1, 3)))
        types = rng.choice([None, None, rng.sample(TYPES, 3)])
        max_depth = rng.choice([None, None, 1, 2])
        assert answer(b.impact(failed, max_depth=max_depth, types=types)) == \
            answer(p.impact(failed, max_depth=max_depth, types=types)), (failed, types, max_depth)
    for ci in rng.sample(names, min(len(names), 3)):
        assert b.spof(ci) == p.spof(ci)
        assert b.providers(ci) == p.providers(ci)
    symptoms = rng.sample(names, min(len(names), 3))
    assert b.root_cause(symptoms) == p.root_cause(symptoms)


def run(seed, how, tmp_path, cis, rels, batches=5):
    rng = random.Random(seed)
    p, a, b = build(cis, rels), build(cis, rels), made(how, cis, rels, tmp_path)
    assert a.build_compact()
    known, relations = {ci: k for ci, _, k in cis}, set(rels)
    step = 0
    for _ in range(batches):
        recorder = Recorder()
        for _ in range(rng.randint(1, 12)):
            step += 1
            change(rng, [p, a, recorder], known, relations, step)
        touched = view_changes.apply(b._view, b.graph._node, b, recorder.changes)
        assert not b._view.pending and touched
        same(p, a, b, rng)


@pytest.mark.parametrize("how", ["graph", "snapshot"])
@pytest.mark.parametrize("seed", range(50))
def test_random_changes_leave_the_view_the_dicts_would(seed, how, tmp_path):
    cis, rels = random_graph(seed)
    run(seed, how, tmp_path, cis, rels)


@pytest.mark.parametrize("seed", range(30))
def test_oddities_leave_the_view_the_dicts_would(seed, tmp_path):
    # Self-loops, min_members past int32 or below 1, a hub every CI depends on (its pred row is every CI's).
    cis, rels = random_graph_with_oddities(seed)
    run(seed, "snapshot" if seed % 2 else "graph", tmp_path, cis, rels)


def test_the_shop_after_a_cluster_member_moves(tmp_path):
    # web3 leaves the cluster and depends on the load balancer straight: covered edges decided again.
    p, a, b = (build(SHOP_CIS, SHOP_RELATIONSHIPS), build(SHOP_CIS, SHOP_RELATIONSHIPS),
               made("snapshot", SHOP_CIS, SHOP_RELATIONSHIPS, tmp_path))
    assert a.build_compact()
    changes = [("remove_relationship", "web3", "web_cluster", "member_of"), ("add_relationship", "lb", "web3", "depends_on"),
               ("upsert_ci", "web_cluster", "cluster", 1), ("add_relationship", "web4", "web_cluster", "member_of"),
               ("remove_ci", "db_replica")]
    for operation, *arguments in changes:
        for g in (p, a):
            getattr(g, operation)(*arguments)
    view_changes.apply(b._view, b.graph._node, b, changes)
    same(p, a, b, random.Random(1))
    assert b.impact(["web1", "web2"]).impacted["web_cluster"].state == "degraded"


@pytest.mark.parametrize("how", ["graph", "snapshot"])
def test_a_ci_removed_and_made_again_in_one_batch_has_only_its_new_edges(how, tmp_path):
    p, a, b = (build(SHOP_CIS, SHOP_RELATIONSHIPS), build(SHOP_CIS, SHOP_RELATIONSHIPS),
               made(how, SHOP_CIS, SHOP_RELATIONSHIPS, tmp_path))
    assert a.build_compact()
    changes = [("remove_ci", "web1"), ("add_relationship", "web1", "web_cluster", "member_of"),
               ("remove_ci", "app"), ("upsert_ci", "app", "application", None), ("add_relationship", "app", "dns", "depends_on")]
    for operation, *arguments in changes:
        for g in (p, a):
            getattr(g, operation)(*arguments)
    view_changes.apply(b._view, b.graph._node, b, changes)
    same(p, a, b, random.Random(2))
    assert [ci for ci, _, _ in rows(b._view, b.graph._node)["web1"][0]] == ["web_cluster"]


def test_a_view_at_odds_with_the_payloads_is_refused(tmp_path):
    b = made("graph", SHOP_CIS, SHOP_RELATIONSHIPS, tmp_path)
    del b.graph._node["lb"]  # the view still has lb's edges: shop's pred row, read to relate shop, names it
    with pytest.raises(view_changes.ViewOutOfStep):
        view_changes.apply(b._view, b.graph._node, b, [("add_relationship", "shop", "dns", "depends_on")])
    b = made("graph", SHOP_CIS, SHOP_RELATIONSHIPS, tmp_path)
    b.graph._node["stray"] = b.graph._node["shop"]  # in the payloads, not in the view
    with pytest.raises(view_changes.ViewOutOfStep):
        view_changes.apply(b._view, b.graph._node, b, [("add_relationship", "stray", "lb", "depends_on")])


def test_what_is_not_a_change_is_refused(tmp_path):
    b = made("graph", SHOP_CIS, SHOP_RELATIONSHIPS, tmp_path)
    for bad in ([("set_semantics", {})], [()], ["upsert_ci"]):
        with pytest.raises(ValueError):
            view_changes.apply(b._view, b.graph._node, b, bad)
