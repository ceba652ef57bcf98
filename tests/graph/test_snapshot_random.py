"""Randomized: a graph grown by changes (self loops, groups, covered edges, several types on one pair,
classless CIs), saved and loaded, holds what the original and a fresh bulk_load hold, shares the data dicts
as they do, and gives the same answer to every analysis; and goes on changing like the original.

A graph grown by changes lists its predecessors in another order than the file does (format 2 builds pred
from succ): no answer may depend on it. Root-cause bounds past a cap (inexact) follow succ order, which the
file keeps: those are compared with the original exactly, and with a fresh load without the bound."""

import random

import pytest

from graph import providers as providers_mod
from graph import reach, snapshot
from graph.propagation import spare_members
from graph.semantics import COVERED_KEY, TYPES_KEY, KIND_KEY
from tests.graph.conftest import SEMANTICS, build, mirrored

TYPES = sorted(SEMANTICS)


def content(g):
    G = g.graph
    nodes = {u: (G._node[u]["ci_class"], G._node[u]["min_members"]) for u in G._node}
    succ = {u: {v: (sorted(d[TYPES_KEY]), d[COVERED_KEY], d[KIND_KEY]) for v, d in n.items()} for u, n in G._succ.items()}
    pred = {u: {v: (sorted(d[TYPES_KEY]), d[COVERED_KEY], d[KIND_KEY]) for v, d in n.items()} for u, n in G._pred.items()}
    return nodes, succ, pred


def invariants(g):
    G, types = g.graph, g._types
    assert mirrored(g)
    for n in G._succ.values():
        for d in n.values():
            assert d is (types.covered if d[COVERED_KEY] else types.of)(d[TYPES_KEY])
    for u in G._node:
        assert G._node[u] is g._payload(G._node[u]["ci_class"], G._node[u]["min_members"])


def analyses(g, rng_seed, loose=False):
    rng = random.Random(rng_seed)
    names = sorted(g.graph._node)
    out = []
    for _ in range(6):
        failed = rng.sample(names, min(rng.randint(1, 3), len(names)))
        for types in (None, ["member_of", "depends_on"], ["contains"]):
            r = g.impact(failed, types=types)
            out.append(("impact", {ci: hit[:2] for ci, hit in r.impacted.items()}))
            out.append(("impact-d", {ci: hit[:2] for ci, hit in g.impact(failed, max_depth=2, types=types).impacted.items()}))
        out.append(("rc", g.root_cause(failed)))
        out.append(("rc-cap", [c if c.extra_exact or not loose else (c.ci_id, c.explains) for c in g.root_cause(failed, extra_cap=1)]))
    for ci in names:
        out.append(("spof", ci, g.spof(ci)))
        for direction in ("up", "down", "both"):
            out.append(("nb", ci, g.neighborhood(ci, 2, direction)))
        out.append(("prov", ci, providers_mod.providers(g, ci)))
        for kk in (KIND_KEY,):
            out.append(("spare", ci, spare_members(g.graph._node, g.graph._pred, ci, kk)))
    part = reach.upstream_part(g.graph, names[:3])
    out.append(("reach", {k: sorted(v) for k, v in reach.reached(part, set(names[:3])).items()}))
    out.append(("rels", sorted(g.relationships())))
    out.append(("links", g.number_of_links(), g.number_of_relationships()))
    return out


def step(g, cis, rels, rng, st):
    names = sorted(cis)
    roll = rng.random()
    if roll < 0.35 and names:
        s, t = rng.choice(names), rng.choice(names)  # self loops too
        rel = (s, t, rng.choice(TYPES))
        g.add_relationship(*rel); rels.add(rel)
    elif roll < 0.55 and rels:
        rel = rng.choice(sorted(rels)); g.remove_relationship(*rel); rels.discard(rel)
    elif roll < 0.75:
        ci = rng.choice(names); cis[ci] = (rng.choice(["x", "y", None]), rng.choice([None, 1, 2, 3]))
        g.upsert_ci(ci, *cis[ci])
    elif roll < 0.85 and len(names) > 3:
        ci = rng.choice(names); g.remove_ci(ci); del cis[ci]
        rels.difference_update({r for r in rels if ci in r[:2]})
    else:
        ci = f"n{st}"; cis[ci] = ("x", None); g.upsert_ci(ci, "x", None)


@pytest.mark.parametrize("seed", range(200))
def test_a_graph_grown_by_changes_loads_back_equal_for_every_analysis(seed, tmp_path):
    rng = random.Random(seed)
    n = rng.randint(4, 20)
    cis = {f"c{i}": (rng.choice(["x", "y", None]), rng.choice([None, None, 1, 2, 3])) for i in range(n)}
    rels = set()
    for _ in range(rng.randint(n, 3 * n)):
        rels.add((f"c{rng.randrange(n)}", f"c{rng.randrange(n)}", rng.choice(TYPES)))
    g = build([(c, *r) for c, r in cis.items()], sorted(rels))
    for st in range(rng.randint(0, 40)):
        step(g, cis, rels, rng, st)
    # an answer first so that spares caches are filled in g
    g.impact([sorted(cis)[0]])
    path = tmp_path / "s"
    snapshot.save(g, path, schema_revision="r", lineage="l")
    loaded, _ = snapshot.load(path, SEMANTICS, schema_revision="r")
    fresh = build([(c, *r) for c, r in cis.items()], sorted(rels))
    invariants(loaded)
    assert content(loaded) == content(fresh) == content(g)
    assert analyses(loaded, seed) == analyses(g, seed)
    assert analyses(loaded, seed, True) == analyses(fresh, seed, True)
    # further changes to both
    r1, r2 = random.Random(seed + 1000), random.Random(seed + 1000)
    cis2, rels2 = dict(cis), set(rels)
    for st in range(30):
        step(loaded, cis, rels, r1, 100 + st)
        step(g, cis2, rels2, r2, 100 + st)
    fresh = build([(c, *r) for c, r in cis.items()], sorted(rels))
    invariants(loaded)
    assert content(loaded) == content(fresh) == content(g)
    assert analyses(loaded, seed) == analyses(g, seed)
    assert analyses(loaded, seed, True) == analyses(fresh, seed, True)
