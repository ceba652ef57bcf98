"""edges_among: the relationships inside a set of CIs, as recorded (not in impact direction)."""

from graph import STANDARD_SEMANTICS, ImpactGraph


def test_edges_among_keeps_recorded_direction_and_every_type():
    g = ImpactGraph(STANDARD_SEMANTICS)
    g.bulk_load([("a", "application", None), ("h", "server", None), ("c", "cluster", 2), ("x", "server", None)],
                [("a", "h", "runs_on"), ("a", "h", "depends_on"), ("h", "c", "member_of"), ("x", "c", "member_of")])
    assert g.edges_among({"a", "h", "c", "nope"}) == [("a", "h", "depends_on"), ("a", "h", "runs_on"),
                                                     ("h", "c", "member_of")]
    assert g.edges_among({"a"}) == []

