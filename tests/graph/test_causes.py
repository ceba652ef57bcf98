"""Root cause and single points of failure on the web shop, with redundancy counted."""

from graph import RootCauseCandidate
from tests.graph.conftest import build


def test_root_cause_ranks_the_most_specific_common_cause_first(shop):
    ranked = shop.root_cause(["shop", "reporting"])
    assert ranked == [
        # dns takes down every host and the cluster; the switch takes all that and dns too.
        RootCauseCandidate("dns", ["shop", "reporting"], 9),
        RootCauseCandidate("switch", ["shop", "reporting"], 10),
        # The symptoms themselves explain themselves with nothing extra.
        RootCauseCandidate("reporting", ["reporting"], 0),
        RootCauseCandidate("shop", ["shop"], 0),
        RootCauseCandidate("db_replica", ["reporting"], 1),
        RootCauseCandidate("lb", ["shop"], 1),
        RootCauseCandidate("web_cluster", ["shop"], 2),
        RootCauseCandidate("app", ["shop"], 3),
        RootCauseCandidate("db_primary", ["shop"], 4),
    ]
    # A single web node explains nothing (the cluster keeps two), so it is no candidate.


def test_root_cause_limit_and_unknown_symptoms(shop):
    assert shop.root_cause(["shop", "reporting", "nope"], limit=1) == [RootCauseCandidate("dns", ["shop", "reporting"], 9)]
    assert shop.root_cause(["nope"]) == []
    assert shop.root_cause(["shop"], limit=0) == []


def test_root_cause_prefers_the_symptom_over_a_root_that_adds_nothing():
    # b depends on a only; symptoms a and b: a explains both with no extra CI.
    g = build([("a", "x", None), ("b", "x", None), ("root", "x", None)], [("b", "a", "depends_on"), ("a", "root", "depends_on")])
    assert g.root_cause(["b", "a"]) == [
        RootCauseCandidate("a", ["b", "a"], 0),
        RootCauseCandidate("root", ["b", "a"], 1),
        RootCauseCandidate("b", ["b"], 0),
    ]


def test_root_cause_cap_never_drops_a_tie_won_by_id():
    # Three roots each explain the one symptom with one extra CI (themselves): ids break the tie.
    cis = [("s", "x", None), ("r3", "x", None), ("r1", "x", None), ("r2", "x", None)]
    rels = [("s", r, "depends_on") for r in ("r3", "r1", "r2")]
    g = build(cis, rels)
    assert g.root_cause(["s"], limit=3) == [
        RootCauseCandidate("s", ["s"], 0),
        RootCauseCandidate("r1", ["s"], 1),
        RootCauseCandidate("r2", ["s"], 1),
    ]


def test_switch_is_a_spof_of_the_shop_a_single_web_node_is_not(shop):
    assert shop.spof("shop") == ["lb", "dns", "switch", "web_cluster", "app", "db_primary"]
    assert "web1" not in shop.spof("shop")
    # Nearest first: app one hop up, the rest two.
    assert shop.spof("web_cluster") == ["app", "db_primary", "dns", "switch"]


def test_spof_counts_members_lost_together():
    # k=2 of three members: a switch carrying two members is a spof, one carrying one is not.
    cis = [("svc", "service", None), ("cl", "cluster", 2), ("sw_a", "switch", None), ("sw_b", "switch", None)]
    cis += [(m, "server", None) for m in ("m1", "m2", "m3")]
    rels = [(m, "cl", "member_of") for m in ("m1", "m2", "m3")]
    rels += [("m1", "sw_a", "connects_to"), ("m2", "sw_a", "connects_to"), ("m3", "sw_b", "connects_to"), ("svc", "cl", "depends_on")]
    g = build(cis, rels)
    assert g.spof("svc") == ["cl", "sw_a"]
    assert g.spof("cl") == ["sw_a"]


def test_spof_of_unknown_or_independent_ci(shop):
    assert shop.spof("nope") == []
    assert shop.spof("switch") == []
