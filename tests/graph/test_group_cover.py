"""Covered dependencies: a group covers its members for its dependents (rules in graph.semantics).

Discovery reports each instance behind a proxy as a direct dependency of the proxy; once the proxy
depends on a redundancy group of them, an instance's failure reaches the proxy only through the
group. The graph keeps that exact under every change: checked here on the proxy, and against a
graph loaded afresh and a brute-force reading of the rule after every step of random changes.
"""

import random

import pytest

from graph import ImpactGraph, RelationshipSemantics
from graph.providers import providers
from graph.semantics import COVERED_KEY, KIND_KEY, MEMBER, ORDINARY, TYPES_KEY, EdgeTypeSets
from tests.graph.conftest import SEMANTICS, build

WEBS = ["web1", "web2", "web3"]


def proxy_shop(min_members=None, group=True):
    cis = [("shop", "service", None), ("proxy", "proxy", None), ("pool", "cluster", min_members)]
    cis += [(web, "server", None) for web in WEBS]
    rels = [("shop", "proxy", "depends_on")] + [("proxy", web, "depends_on") for web in WEBS]
    if group:
        rels += [("proxy", "pool", "depends_on")] + [(web, "pool", "member_of") for web in WEBS]
    return build(cis, rels), rels


@pytest.mark.parametrize("min_members", [None, 1, 2])
def test_a_group_the_proxy_depends_on_covers_its_direct_edges_to_the_members(min_members):
    g, rels = proxy_shop(min_members)
    assert g.impact(["web1"]).states() == {"pool": "degraded", "proxy": "at_risk", "shop": "at_risk"}
    assert g.impact(WEBS).states() == {"pool": "down", "proxy": "down", "shop": "down"}
    two = g.impact(["web1", "web3"]).states()
    if min_members == 2:
        assert two == {"pool": "down", "proxy": "down", "shop": "down"}
    else:
        assert two == {"pool": "degraded", "proxy": "at_risk", "shop": "at_risk"}
    # The proxy reaches a member's failure through the group: one hop further than the direct edge.
    assert g.impact(["web1"]).impacted["proxy"].path == ["web1", "pool", "proxy"]
    # No single instance takes the shop down any more; the group does.
    assert g.spof("shop") == ["proxy", "pool"]
    assert [(c.ci_id, c.explains, c.extra_down) for c in g.root_cause(["proxy", "shop"])] == [
        ("proxy", ["proxy", "shop"], 0), ("pool", ["proxy", "shop"], 1), ("shop", ["shop"], 0)]
    # The service still depends on every instance, and the relationships stay as recorded.
    assert providers(g, "shop") == {"proxy", "pool", *WEBS}
    assert sorted(g.relationships()) == sorted(rels)
    assert g.number_of_relationships() == len(rels)
    assert g.neighborhood("proxy", direction="up")[1] == sorted(r for r in rels if r[0] != "shop")
    assert ("proxy", "web2", "depends_on") in g.edges_among(["proxy", "web2"])


def test_without_the_group_every_instance_takes_the_proxy_down():
    g, _ = proxy_shop(group=False)
    assert g.impact(["web1"]).states() == {"proxy": "down", "shop": "down"}
    assert g.spof("shop") == ["proxy", *WEBS]
    # A group the proxy does not depend on covers nothing.
    g.add_relationship("web1", "pool", "member_of")
    g.add_relationship("web2", "pool", "member_of")
    assert g.impact(["web1"]).states() == {"pool": "degraded", "proxy": "down", "shop": "down"}


def test_changes_uncover_and_cover_again():
    g, _ = proxy_shop()
    covered = {"pool": "degraded", "proxy": "at_risk", "shop": "at_risk"}
    assert g.impact(["web1"]).states() == covered
    g.remove_relationship("web1", "pool", "member_of")  # web1 leaves the group: its edge carries again
    assert g.impact(["web1"]).states() == {"proxy": "down", "shop": "down"}
    assert g.impact(["web2"]).states() == covered
    g.add_relationship("web1", "pool", "member_of")
    assert g.impact(["web1"]).states() == covered
    g.add_relationship("proxy", "web1", "runs_on")  # another type on a covered edge: still covered
    assert g.impact(["web1"]).states() == covered
    g.remove_relationship("proxy", "pool", "depends_on")  # the proxy no longer relies on the group
    assert g.impact(["web2"]).states() == {"pool": "degraded", "proxy": "down", "shop": "down"}
    g.add_relationship("proxy", "pool", "runs_on")  # any ordinary type makes it a dependency again
    assert g.impact(["web2"]).states() == covered
    g.remove_ci("pool")
    assert g.impact(["web2"]).states() == {"proxy": "down", "shop": "down"}


def test_set_semantics_decides_coverage_again():
    g, _ = proxy_shop()
    # member_of no longer a membership: no group, the direct edges carry.
    plain = dict(SEMANTICS, member_of=RelationshipSemantics(impact="source_to_target"))
    g.set_semantics(plain)
    assert g.impact(["web1"]).states() == {"pool": "down", "proxy": "down", "shop": "down"}
    assert_kinds_exact(g, g.relationships(), plain)
    g.set_semantics(SEMANTICS)
    assert g.impact(["web1"]).states() == {"pool": "degraded", "proxy": "at_risk", "shop": "at_risk"}
    # depends_on turned round: every edge re-laid, coverage decided afresh (here: none).
    turned = dict(SEMANTICS, depends_on=RelationshipSemantics(impact="source_to_target"))
    g.set_semantics(turned)
    assert_kinds_exact(g, g.relationships(), turned)
    assert g.impact(["proxy"]).states() == {"pool": "down", "web1": "down", "web2": "down", "web3": "down"}
    g.set_semantics(SEMANTICS)
    assert_kinds_exact(g, g.relationships(), SEMANTICS)
    assert g.impact(["web1"]).states() == {"pool": "degraded", "proxy": "at_risk", "shop": "at_risk"}


def test_type_filters_keep_the_direct_edge_covered():
    g, _ = proxy_shop()
    g.impact(["web1"], types=["depends_on"])  # a filter registered before anything changes
    g.remove_relationship("web1", "pool", "member_of")
    assert g.impact(["web1"], types=["depends_on"]).states() == {"proxy": "down", "shop": "down"}
    g.add_relationship("web1", "pool", "member_of")
    # Coverage is decided on the full semantics: leaving membership out of the filter does not
    # bring the direct dependency back, so web1 reaches nothing.
    assert g.impact(["web1"], types=["depends_on"]).impacted == {}
    assert g.impact(["web1"], types=["depends_on", "member_of"]).states() == {
        "pool": "degraded", "proxy": "at_risk", "shop": "at_risk"}
    assert g.impact(["pool"], types=["depends_on"]).states() == {"proxy": "down", "shop": "down"}


def test_forgotten_filters_leave_no_kinds_on_covered_edges(monkeypatch):
    monkeypatch.setattr(EdgeTypeSets, "MAX_FILTERS", 2)
    g, rels = proxy_shop()
    for allowed in (["depends_on"], ["member_of"], ["runs_on"]):  # the third forgets the first two
        g.impact(["web1"], types=allowed)
    data = g.graph._succ["web1"]["proxy"]
    assert data[COVERED_KEY] and set(data) == {TYPES_KEY, KIND_KEY, COVERED_KEY, g._types.kind_key(["runs_on"])}
    assert_kinds_exact(g, rels, SEMANTICS, [None, ["runs_on"], ["depends_on"]])


# ---- against a graph loaded afresh and a brute-force reading of the rule ----------------------

TYPES = ["depends_on", "runs_on", "member_of", "contains", "replicates_from"]  # the last: no impact
VARIANTS = [
    SEMANTICS,
    dict(SEMANTICS, member_of=RelationshipSemantics(impact="source_to_target")),  # membership off
    dict(SEMANTICS, runs_on=RelationshipSemantics(impact="source_to_target", membership=True)),
    dict(SEMANTICS, depends_on=RelationshipSemantics(impact="source_to_target")),  # turned round
]
EARLY, LATE = ["depends_on", "member_of"], ["runs_on", "contains", "replicates_from"]


def brute_force_kinds(rels, semantics, allowed=None) -> dict:
    """(provider, dependent) -> kind under `allowed` types, straight from the rule."""
    def kind(names, allowed=None):
        bits = 0
        for name in names:
            if allowed is None or name in allowed:
                bits |= semantics.get(name, RelationshipSemantics(impact="none")).kind()
        return bits

    types_of: dict = {}
    for s, t, name in rels:
        u, v = (t, s) if semantics[name].impact == "target_to_source" else (s, t)
        types_of.setdefault((u, v), set()).add(name)
    full = {edge: kind(names) for edge, names in types_of.items()}
    nodes = {ci for edge in types_of for ci in edge}
    out = {}
    for (m, a), names in types_of.items():
        covered = any(full.get((m, g), 0) & MEMBER and full.get((g, a), 0) & ORDINARY
                      for g in nodes if m != a and g not in (m, a))
        out[m, a] = kind(names, allowed) & ~(ORDINARY if covered else 0)
    return out


def kinds(g, allowed=None) -> dict:
    key = g._types.kind_key(allowed)
    return {(u, v): data[key] for u, nbrs in g.graph._succ.items() for v, data in nbrs.items()}


def assert_kinds_exact(g, rels, semantics, filters=(None,)):
    for allowed in filters:
        assert kinds(g, allowed) == brute_force_kinds(rels, semantics, allowed), allowed


@pytest.mark.parametrize("seed", range(60))
def test_coverage_stays_exact_under_every_change(seed):
    rng = random.Random(seed)
    names = [f"c{i}" for i in range(5)]
    cis = {ci: ("x", rng.choice([None, 2])) for ci in names}
    # (member, group, dependent): the proxy's pattern, loaded whole, then broken and made again.
    triples = [rng.sample(names, 3) for _ in range(2)]
    rels = {rel for m, group, a in triples for rel in [(m, group, "member_of"), (a, group, "depends_on"), (a, m, "depends_on")]}
    rels |= {(rng.choice(names), rng.choice(names), rng.choice(TYPES)) for _ in range(4)}
    semantics = SEMANTICS
    g = ImpactGraph(semantics)
    filters = [None, EARLY]
    kinds(g, EARLY)  # registered before any edge exists
    g.bulk_load([(ci, *rest) for ci, rest in cis.items()], sorted(rels))
    assert_kinds_exact(g, rels, semantics, filters)
    for step in range(50):
        roll = rng.random()
        if roll < 0.45:
            if rng.random() < 0.6:  # a piece of the proxy's pattern, or its twin over runs_on
                m, group, a = rng.choice(triples)
                rel = rng.choice([(m, group, "member_of"), (a, group, "depends_on"), (a, m, "depends_on"),
                                  (a, m, "runs_on"), (group, a, "contains")])
            else:
                rel = (rng.choice(names), rng.choice(names), rng.choice(TYPES))  # self-loops too
            assert g.add_relationship(*rel) == (rel not in rels)
            rels.add(rel)
            cis.update({ci: cis.get(ci, (None, None)) for ci in rel[:2]})
        elif roll < 0.75 and rels:
            rel = rng.choice(sorted(rels))
            assert g.remove_relationship(*rel)
            rels.discard(rel)
        elif roll < 0.82 and cis:
            ci = rng.choice(sorted(cis) + [group for _, group, _ in triples if group in cis])
            assert g.remove_ci(ci)
            del cis[ci]
            rels = {r for r in rels if ci not in r[:2]}
        elif roll < 0.93:
            ci = rng.choice(names)
            cis[ci] = ("x", rng.choice([None, 1, 2, 3]))
            g.upsert_ci(ci, *cis[ci])
        else:
            semantics = rng.choice([SEMANTICS, SEMANTICS, *VARIANTS])  # back to the standard often
            g.set_semantics(semantics)
        if step == 25:
            filters.append(LATE)  # registered after edges exist, some of them covered
        assert sorted(g.relationships()) == sorted(rels)
        assert_kinds_exact(g, rels, semantics, filters)
        fresh = build([(ci, *rest) for ci, rest in cis.items()], sorted(g.relationships()), semantics)
        for allowed in filters:
            assert kinds(g, allowed) == kinds(fresh, allowed)
        # Answers agree too (cached group sizes included).
        failed = rng.sample(sorted(cis), min(2, len(cis))) if cis else []
        types = rng.choice([None, EARLY, LATE])
        got, want = g.impact(failed, types=types), fresh.impact(failed, types=types)
        assert {ci: hit[:2] for ci, hit in got.impacted.items()} == {ci: hit[:2] for ci, hit in want.impacted.items()}
        if cis:
            target = rng.choice(sorted(cis))
            assert g.spof(target) == fresh.spof(target)


def test_loading_into_a_graph_that_holds_edges_covers_around_its_old_groups():
    g, _ = proxy_shop(group=False)
    for web in WEBS:
        g.add_relationship(web, "pool", "member_of")
    g.bulk_load([], [("proxy", "pool", "depends_on")])  # the members and their direct edges are old
    assert g.impact(["web1"]).states() == {"pool": "degraded", "proxy": "at_risk", "shop": "at_risk"}
    g2, _ = proxy_shop(group=True)
    g2.remove_relationship("proxy", "web1", "depends_on")
    g2.bulk_load([], [("proxy", "web1", "depends_on")])  # the group is old, the edge new
    assert kinds(g2)["web1", "proxy"] == kinds(g2)["web2", "proxy"] == 0
    assert kinds(g2)["pool", "proxy"] == ORDINARY and g2.graph._succ["web1"]["pool"][KIND_KEY] == MEMBER
