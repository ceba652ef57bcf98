"""graph.reach (the services each host serves, in one pass) and the services label, without a database."""

import random

import networkx as nx

from app.integrations.prometheus import MAX_SERVICES_IN_LABEL, services_label
from graph import reach


def _by_walks(g: nx.DiGraph, targets: set) -> dict:
    """The plain way: what each node reaches, by a walk from each node."""
    return {node: frozenset(({node} | nx.descendants(g, node)) & targets) for node in g}


def test_cycles_chains_and_shared_sets():
    g = nx.DiGraph([("h1", "a1"), ("a1", "s1"), ("h2", "a2"), ("a2", "a3"), ("a3", "a2"), ("a3", "s2"),
                    ("a2", "s1"), ("h3", "x"), ("s1", "s3")])
    part = reach.upstream_part(g, ["s1", "s2", "s3"])
    assert set(part) == {"h1", "a1", "h2", "a2", "a3", "s1", "s2", "s3"}  # h3 and x reach no service
    found = reach.reached(part, {"s1", "s2", "s3"})
    assert found["h1"] == {"s1", "s3"} and found["h2"] == {"s1", "s2", "s3"}
    assert found["a2"] is found["a3"]  # one cycle, one set
    assert found["h1"] is found["a1"]  # a chain shares its set


def test_matches_a_walk_per_node_on_random_graphs():
    rng = random.Random(13)
    for _ in range(30):
        g = nx.gnp_random_graph(60, 0.04, seed=rng.randrange(10**6), directed=True)
        targets = set(rng.sample(list(g), 8))
        found = reach.reached(reach.upstream_part(g, targets), targets)
        expected = _by_walks(g, targets)
        assert {node: found.get(node, frozenset()) for node in g} == expected


def test_the_services_label_is_bounded_and_escaped():
    assert services_label(("a,b", "c%d", "...", "shop")) == "a%2Cb,c%25d,%2E%2E%2E,shop"
    many = tuple(f"s{n:03d}" for n in range(MAX_SERVICES_IN_LABEL + 5))
    assert services_label(many).split(",") == [*many[:MAX_SERVICES_IN_LABEL], "..."]
    assert services_label(many[:MAX_SERVICES_IN_LABEL]).split(",") == list(many[:MAX_SERVICES_IN_LABEL])
