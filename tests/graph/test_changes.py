"""Applying change records: every mutation shows in the next answer."""

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from graph import ImpactGraph, RelationshipSemantics, impact_graph
from tests.graph.conftest import SEMANTICS, SHOP_CIS, SHOP_RELATIONSHIPS, build, ids_held

ROOT = Path(__file__).resolve().parents[2]


def test_remove_relationship_changes_the_next_answer(shop):
    assert shop.impact(["app"]).states() == dict.fromkeys(["web_cluster", "lb", "shop"], "down")
    assert shop.remove_relationship("web_cluster", "app", "depends_on") is True
    assert shop.impact(["app"]).impacted == {}
    assert shop.remove_relationship("web_cluster", "app", "depends_on") is False
    assert shop.add_relationship("web_cluster", "app", "depends_on") is True
    assert shop.add_relationship("web_cluster", "app", "depends_on") is False
    assert set(shop.impact(["app"]).impacted) == {"web_cluster", "lb", "shop"}


def test_several_types_between_one_pair():
    g = build([("a", "app", None), ("b", "server", None)], [("a", "b", "depends_on"), ("a", "b", "runs_on")])
    assert sorted(g.relationships()) == [("a", "b", "depends_on"), ("a", "b", "runs_on")]
    assert g.number_of_relationships() == 2
    assert g.neighborhood("a") == ({"a", "b"}, [("a", "b", "depends_on"), ("a", "b", "runs_on")])
    g.remove_relationship("a", "b", "depends_on")
    assert g.impact(["b"]).states() == {"a": "down"}
    assert g.impact(["b"], types=["depends_on"]).impacted == {}
    g.remove_relationship("a", "b", "runs_on")
    assert g.impact(["b"]).impacted == {}
    assert g.relationships() == []


def test_opposite_directions_between_one_pair():
    # a depends_on b (b -> a) and a contains b (a -> b): each fails the other.
    g = build([("a", "x", None), ("b", "x", None)], [("a", "b", "depends_on"), ("a", "b", "contains")])
    assert g.impact(["a"]).states() == {"b": "down"}
    assert g.impact(["b"]).states() == {"a": "down"}


def test_upsert_changes_min_members(shop):
    assert shop.impact(["web1", "web2"]).impacted["web_cluster"].state == "down"
    shop.upsert_ci("web_cluster", "cluster", 1)
    assert shop.ci("web_cluster") == ("cluster", 1)
    assert shop.impact(["web1", "web2"]).states() == {"web_cluster": "degraded", "lb": "at_risk", "shop": "at_risk"}
    shop.upsert_ci("web_cluster", "cluster", None)  # None means k = 1
    assert shop.impact(["web1", "web2"]).impacted["web_cluster"].state == "degraded"


def test_remove_ci_removes_its_relationships(shop):
    assert shop.remove_ci("lb") is True
    assert shop.remove_ci("lb") is False
    assert "lb" not in shop
    assert shop.impact(["web1", "web2"]).states() == {"web_cluster": "down"}
    assert all("lb" not in (s, t) for s, t, _ in shop.relationships())
    assert shop.impact(["lb"]).unknown == ["lb"]


def test_incremental_build_equals_bulk_load(shop):
    g = ImpactGraph(SEMANTICS)
    for ci in SHOP_CIS:
        g.upsert_ci(*ci)
    for rel in SHOP_RELATIONSHIPS:
        g.add_relationship(*rel)
    assert sorted(g.relationships()) == sorted(shop.relationships()) == sorted(SHOP_RELATIONSHIPS)
    assert len(g) == len(shop) == len(SHOP_CIS)
    assert g.impact(["switch"]) == shop.impact(["switch"])


def test_relationship_to_unknown_ci_creates_it_without_class():
    g = ImpactGraph(SEMANTICS)
    g.add_relationship("a", "b", "depends_on")
    assert g.ci("a") == (None, None)
    g.upsert_ci("a", "app", None)
    assert g.ci("a") == ("app", None)
    assert g.impact(["b"]).states() == {"a": "down"}


def test_set_semantics_relays_edges_whose_direction_changed(shop):
    assert "reporting" not in shop.impact(["db_primary"]).impacted
    semantics = dict(SEMANTICS, replicates_from=RelationshipSemantics(impact="target_to_source"))
    shop.set_semantics(semantics)
    assert shop.impact(["db_primary"]).states()["reporting"] == "down"
    assert sorted(shop.relationships()) == sorted(SHOP_RELATIONSHIPS)
    # A new type is data: relationships of it carry impact once it has semantics.
    shop.add_relationship("shop", "reporting", "feeds_from")
    assert "shop" not in shop.impact(["reporting"]).impacted
    shop.set_semantics(dict(semantics, feeds_from=RelationshipSemantics(impact="target_to_source")))
    assert shop.impact(["reporting"]).states() == {"shop": "down"}
    # Membership switched off without a direction change: no re-laying, kinds refreshed.
    shop.set_semantics(dict(semantics, member_of=RelationshipSemantics(impact="source_to_target", membership=False)))
    assert shop.impact(["web1"]).states()["web_cluster"] == "down"


def test_neighborhood_directions(shop):
    nodes, edges = shop.neighborhood("app", depth=1, direction="up")
    assert nodes == {"app", "db_primary", "dns", "switch"}
    # Every relationship among the CIs found, not only those walked.
    assert edges == [
        ("app", "db_primary", "depends_on"), ("app", "dns", "depends_on"), ("app", "switch", "connects_to"),
        ("db_primary", "dns", "depends_on"), ("db_primary", "switch", "connects_to"), ("dns", "switch", "connects_to"),
    ]
    nodes, _ = shop.neighborhood("app", depth=2, direction="down")
    assert nodes == {"app", "web_cluster", "lb"}
    nodes, _ = shop.neighborhood("db_primary", depth=1, direction="both")
    assert nodes == {"db_primary", "app", "db_replica", "dns", "switch"}
    nodes, edges = shop.neighborhood("db_primary", depth=1, types=["replicates_from"])
    assert (nodes, edges) == ({"db_primary", "db_replica"}, [("db_replica", "db_primary", "replicates_from")])
    assert shop.neighborhood("nope") == (set(), [])


def test_applied_seq_starts_at_zero_and_is_the_callers(shop):
    assert shop.applied_seq == 0
    shop.applied_seq = 42
    assert shop.applied_seq == 42


def test_bulk_load_leaves_the_collector_as_it_found_it():
    gc.enable()
    build(SHOP_CIS, SHOP_RELATIONSHIPS)
    assert gc.isenabled()
    gc.disable()
    try:
        build(SHOP_CIS, SHOP_RELATIONSHIPS)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_payloads_and_edge_data_are_shared(shop):
    g = shop.graph
    assert g.nodes["web1"] is g.nodes["web2"]
    assert g.edges["switch", "web1"] is g.edges["switch", "web2"]


def test_graph_imports_nothing_from_the_service_or_the_web():
    code = (
        "import sys, graph, graph.export; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('app', 'fastapi', 'sqlalchemy', 'sqlmodel', 'httpx', 'psycopg')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not impact_graph._INTERN, reason="this Python never frees interned strings (3.12.0-3.12.5): "
                    "the graph keeps the ids as given")
def test_changes_applied_one_by_one_keep_one_string_per_id():
    # A catch-up decodes each record's ids into new strings: the graph keeps one object per id however
    # many relationships name it (two more per relationship otherwise, for as long as it lasts).
    import uuid

    g = ImpactGraph(SEMANTICS)
    app, dbs, hosts = uuid.uuid4(), [uuid.uuid4() for _ in range(3)], [uuid.uuid4() for _ in range(3)]
    g.upsert_ci(str(app), "application")
    for db, host in zip(dbs, hosts):
        g.upsert_ci(str(db), "database")
        g.add_relationship(str(app), str(db), "depends_on")
        g.add_relationship(str(db), str(host), "runs_on")  # a host first seen in a relationship
        g.add_relationship(str(app), str(host), "runs_on")
    held = ids_held(g)
    assert len(held) == 7 and all(len(objects) == 1 for objects in held.values()), held
    assert g.impact([str(hosts[0])]).states() == {str(dbs[0]): "down", str(app): "down"}
