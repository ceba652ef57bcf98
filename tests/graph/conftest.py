"""Hand-built topologies for the graph tests: the web shop every impact question is asked of."""

import pytest

from graph import ImpactGraph, RelationshipSemantics
from graph.semantics import STANDARD_SEMANTICS

# A replica keeps serving (stale) when its primary stops: recorded, but no impact.
SEMANTICS = dict(STANDARD_SEMANTICS, replicates_from=RelationshipSemantics(impact="none"))

HOSTS = ["lb", "web1", "web2", "web3", "app", "db_primary", "db_replica"]

# (ci_id, ci_class, min_members)
SHOP_CIS = [
    ("shop", "service", None),
    ("reporting", "service", None),
    ("lb", "load_balancer", None),
    ("web1", "server", None),
    ("web2", "server", None),
    ("web3", "server", None),
    ("web_cluster", "cluster", 2),
    ("app", "application", None),
    ("db_primary", "database", None),
    ("db_replica", "database", None),
    ("switch", "switch", None),
    ("dns", "server", None),
]

# (source, target, type) as recorded
SHOP_RELATIONSHIPS = (
    [
        ("shop", "lb", "depends_on"),
        ("lb", "web_cluster", "depends_on"),
        ("web1", "web_cluster", "member_of"),
        ("web2", "web_cluster", "member_of"),
        ("web3", "web_cluster", "member_of"),
        ("web_cluster", "app", "depends_on"),
        ("app", "db_primary", "depends_on"),
        ("db_replica", "db_primary", "replicates_from"),
        ("reporting", "db_replica", "depends_on"),
    ]
    + [(host, "switch", "connects_to") for host in HOSTS + ["dns"]]
    + [(host, "dns", "depends_on") for host in HOSTS]
)


def mirrored(g: ImpactGraph) -> bool:
    """Whether the pred side holds exactly the succ side's edges, each on the very same data dict, and both
    sides list the CIs in the graph's order."""
    G = g.graph
    return ({(u, v, id(d)) for u, nbrs in G._succ.items() for v, d in nbrs.items()}
            == {(u, v, id(d)) for v, nbrs in G._pred.items() for u, d in nbrs.items()}
            and list(G._pred) == list(G._succ) == list(G._node))


def ids_held(g: ImpactGraph) -> dict:
    """Each id the graph holds, with the distinct string objects that spell it (nodes and both adjacencies)."""
    held: dict = {}
    for adjacency in (g.graph._succ, g.graph._pred):
        for u, nbrs in adjacency.items():
            held.setdefault(u, set()).add(id(u))
            for v in nbrs:
                held.setdefault(v, set()).add(id(v))
    for u in g.graph._node:
        held.setdefault(u, set()).add(id(u))
    return held


def build(cis, relationships, semantics=None) -> ImpactGraph:
    g = ImpactGraph(semantics or SEMANTICS)
    g.bulk_load(cis, relationships)
    return g


@pytest.fixture
def shop() -> ImpactGraph:
    return build(SHOP_CIS, SHOP_RELATIONSHIPS)
