"""Impact of failures and changes on the web shop: exact states, distances and paths."""

from graph import ImpactedCI
from tests.graph.conftest import SEMANTICS, build

ALL_HOSTS_DOWN = {"lb", "web1", "web2", "web3", "app", "db_primary", "db_replica", "dns"}


def test_one_web_node_degrades_the_cluster_and_puts_dependents_at_risk(shop):
    result = shop.impact(["web1"])
    assert result.failed == ["web1"]
    assert result.unknown == []
    assert result.impacted == {
        "web_cluster": ImpactedCI("degraded", 1, ["web1", "web_cluster"]),
        "lb": ImpactedCI("at_risk", 2, ["web1", "web_cluster", "lb"]),
        "shop": ImpactedCI("at_risk", 3, ["web1", "web_cluster", "lb", "shop"]),
    }


def test_two_web_nodes_take_the_cluster_and_everything_downstream_down(shop):
    result = shop.impact(["web1", "web2"])
    assert result.impacted == {
        "web_cluster": ImpactedCI("down", 1, ["web1", "web_cluster"]),
        "lb": ImpactedCI("down", 2, ["web1", "web_cluster", "lb"]),
        "shop": ImpactedCI("down", 3, ["web1", "web_cluster", "lb", "shop"]),
    }
    assert result.count_by_state() == {"down": 3, "degraded": 0, "at_risk": 0}


def test_switch_takes_everything_down(shop):
    result = shop.impact(["switch"])
    assert result.states() == dict.fromkeys(ALL_HOSTS_DOWN | {"web_cluster", "shop", "reporting"}, "down")
    assert result.impacted["reporting"] == ImpactedCI("down", 2, ["switch", "db_replica", "reporting"])
    assert result.impacted["web_cluster"].distance == 2
    assert result.impacted["shop"] == ImpactedCI("down", 2, ["switch", "lb", "shop"])


def test_no_impact_relationship_passes_nothing_on(shop):
    # db_replica replicates_from db_primary carries no impact, so reporting survives.
    assert shop.impact(["db_primary"]).states() == dict.fromkeys(["app", "web_cluster", "lb", "shop"], "down")


def test_ci_both_upstream_and_downstream_of_the_change(shop):
    # app is downstream of db_primary and upstream of lb; both failed together.
    result = shop.impact(["db_primary", "lb"])
    assert result.impacted == {
        "app": ImpactedCI("down", 1, ["db_primary", "app"]),
        "shop": ImpactedCI("down", 1, ["lb", "shop"]),
        "web_cluster": ImpactedCI("down", 2, ["db_primary", "app", "web_cluster"]),
    }


def test_failed_ci_downstream_of_another_failed_ci_is_not_impacted(shop):
    result = shop.impact(["switch", "web1"])
    assert "web1" not in result.impacted and "switch" not in result.impacted
    assert result.failed == ["switch", "web1"]


def test_cycle_terminates_and_back_edge_adds_nothing():
    chain = [("b", "a", "depends_on"), ("c", "b", "depends_on"), ("d", "c", "depends_on")]
    cis = [(n, "app", None) for n in "abcd"]
    plain = build(cis, chain)
    cyclic = build(cis, chain + [("a", "c", "depends_on")])  # a depends on c: back edge
    assert cyclic.impact(["a"]).impacted == plain.impact(["a"]).impacted == {
        "b": ImpactedCI("down", 1, ["a", "b"]),
        "c": ImpactedCI("down", 2, ["a", "b", "c"]),
        "d": ImpactedCI("down", 3, ["a", "b", "c", "d"]),
    }
    # From the middle of the cycle, the back edge is what reaches a.
    assert cyclic.impact(["c"]).states() == {"d": "down", "a": "down", "b": "down"}


def test_cycle_through_a_degraded_group_keeps_the_worst_state():
    cis = [("g", "cluster", 1), ("m1", "server", None), ("m2", "server", None), ("x", "app", None)]
    rels = [("m1", "g", "member_of"), ("m2", "g", "member_of"), ("x", "g", "depends_on"), ("m2", "x", "depends_on")]
    result = build(cis, rels).impact(["m1"])
    # g degraded -> x at_risk -> m2 at_risk -> g at_risk, which is better than degraded.
    assert result.states() == {"g": "degraded", "x": "at_risk", "m2": "at_risk"}


def test_degraded_or_at_risk_member_makes_group_at_risk_and_lost_member_degrades():
    cis = [("inner", "cluster", 1), ("outer", "cluster", 1), ("a", "server", None), ("b", "server", None), ("c", "server", None)]
    rels = [("a", "inner", "member_of"), ("b", "inner", "member_of"), ("inner", "outer", "member_of"), ("c", "outer", "member_of")]
    g = build(cis, rels)
    assert g.impact(["a"]).states() == {"inner": "degraded", "outer": "at_risk"}
    assert g.impact(["a", "b"]).states() == {"inner": "down", "outer": "degraded"}
    assert g.impact(["a", "b", "c"]).states() == {"inner": "down", "outer": "down"}


def test_group_with_a_down_ordinary_provider_is_down():
    cis = [("g", "cluster", 1), ("m1", "server", None), ("m2", "server", None), ("san", "storage", None)]
    rels = [("m1", "g", "member_of"), ("m2", "g", "member_of"), ("g", "san", "depends_on")]
    g = build(cis, rels)
    assert g.impact(["m1", "san"]).states() == {"g": "down"}
    assert g.impact(["m1"]).states() == {"g": "degraded"}


def test_max_depth_bounds_distance(shop):
    assert shop.impact(["switch"], max_depth=1).states() == dict.fromkeys(ALL_HOSTS_DOWN, "down")
    assert shop.impact(["web1", "web2"], max_depth=1).states() == {"web_cluster": "down"}
    assert shop.impact(["web1"], max_depth=0).impacted == {}


def test_max_depth_states_use_every_edge_among_the_cis_within_reach():
    cis = [("f", "x", None), ("m1", "x", None), ("x", "x", None), ("m2", "x", None), ("g", "cluster", 1)]
    rels = [("m1", "f", "depends_on"), ("x", "f", "depends_on"), ("m2", "x", "depends_on"),
            ("m1", "g", "member_of"), ("m2", "g", "member_of")]
    g = build(cis, rels)
    # m2 (2 hops) is at the bound but still counts for g (2 hops): both members down.
    assert g.impact(["f"], max_depth=2).states() == {"m1": "down", "x": "down", "m2": "down", "g": "down"}
    assert g.impact(["f"], max_depth=1).states() == {"m1": "down", "x": "down"}


def test_types_filter_limits_the_impact_carriers(shop):
    assert shop.impact(["switch"], types=["depends_on"]).impacted == {}
    assert shop.impact(["web1", "web2"], types=["depends_on", "connects_to"]).impacted == {}
    assert shop.impact(["db_primary"], types=["depends_on"]).states() == dict.fromkeys(
        ["app", "web_cluster", "lb", "shop"], "down"
    )
    # A filter is remembered per call only: the next unfiltered question sees every type again.
    assert set(shop.impact(["switch"]).impacted) == ALL_HOSTS_DOWN | {"web_cluster", "shop", "reporting"}


def test_unknown_ids_are_reported_not_raised(shop):
    result = shop.impact(["nope", "web1", "web1", "gone"])
    assert result.failed == ["web1"]
    assert result.unknown == ["nope", "gone"]
    assert set(result.impacted) == {"web_cluster", "lb", "shop"}
    assert shop.impact([]).impacted == {}


def test_failed_set_can_be_any_iterable(shop):
    assert shop.impact(iter({"web1", "web2"})).states() == dict.fromkeys(["web_cluster", "lb", "shop"], "down")


def test_semantics_object_is_not_shared_with_the_caller():
    semantics = dict(SEMANTICS)
    g = build([("a", "x", None), ("b", "x", None)], [("b", "a", "depends_on")], semantics)
    semantics.clear()
    assert g.impact(["a"]).states() == {"b": "down"}


def test_member_that_gets_worse_before_it_is_processed_is_counted_once():
    # f1 puts q down and degrades m1 in the same step; q then puts m1 down. m1 must count as one
    # lost member of G (k=2 of 3), however often it is revisited.
    cis = [("f1", "x", None), ("q", "x", None), ("m1", "cluster", 1), ("z", "x", None),
           ("G", "cluster", 2), ("m2", "x", None), ("m3", "x", None)]
    rels = [("q", "f1", "depends_on"), ("f1", "m1", "member_of"), ("z", "m1", "member_of"), ("m1", "q", "depends_on"),
            ("m1", "G", "member_of"), ("m2", "G", "member_of"), ("m3", "G", "member_of")]
    assert build(cis, rels).impact(["f1"]).states() == {"q": "down", "m1": "down", "G": "degraded"}


def test_reading_entries_in_bulk_gives_the_same_paths_as_one_by_one(shop):
    impacted = shop.impact(["switch", "web1"]).impacted
    one_by_one = {ci: impacted[ci] for ci in impacted}
    assert dict(impacted.items()) == one_by_one
    assert list(impacted.values()) == list(one_by_one.values())
    assert [hit.distance for hit in impacted.values()] == sorted(hit.distance for hit in impacted.values())
    next(iter(impacted.values())).path.append("scribble")  # a caller's list is its own
    assert dict(impacted.items()) == one_by_one
