"""Exporters: each format parsed back or checked for exactly what it must carry."""

import io
import os
import shutil
import xml.etree.ElementTree as ET

import networkx as nx
import pytest

from graph import export

NODES = ["sw", "web1", "cluster", "shop"]
EDGES = [("web1", "sw", "connects_to"), ("web1", "cluster", "member_of"), ("shop", "cluster", "depends_on"), ("shop", "cluster", "runs_on")]
INFO = {
    "sw": {"name": "core \"switch\"", "class": "switch", "state": "failed"},
    "web1": {"name": "web1", "class": "server", "state": "down"},
    "cluster": {"name": "web cluster", "class": "cluster", "state": "degraded"},
    "shop": {"name": "shop", "class": "service", "state": "at_risk"},
}


def test_json_lists_nodes_and_edges():
    assert export.as_json(["sw", "unknown"], EDGES[:1], INFO) == {
        "nodes": [
            {"id": "sw", "name": 'core "switch"', "class": "switch", "state": "failed"},
            {"id": "unknown", "name": "unknown", "class": None},
        ],
        "edges": [{"id": "web1|connects_to|sw", "source": "web1", "target": "sw", "type": "connects_to"}],
    }


def test_cytoscape_elements_shape():
    elements = export.as_cytoscape(NODES, EDGES, INFO)
    assert [e["group"] for e in elements] == ["nodes"] * 4 + ["edges"] * 4
    assert {e["data"]["id"] for e in elements if e["group"] == "nodes"} == set(NODES)
    edges = [e["data"] for e in elements if e["group"] == "edges"]
    assert {(e["source"], e["target"], e["type"]) for e in edges} == set(EDGES)
    assert len({e["id"] for e in edges}) == 4  # two types between shop and cluster stay two edges


def test_graphml_parses_back_with_networkx():
    text = export.as_graphml(NODES, EDGES, INFO)
    g = nx.read_graphml(io.BytesIO(text.encode()))
    assert set(g.nodes) == set(NODES)
    assert {(u, v, d["type"]) for u, v, d in g.edges(data=True)} == set(EDGES)
    assert g.nodes["sw"] == {"name": 'core "switch"', "class": "switch", "state": "failed"}
    assert g.is_directed() and g.is_multigraph()


def test_dot_colours_states():
    dot = export.as_dot(NODES, EDGES, INFO)
    lines = {line.strip().split(" ")[0]: line for line in dot.splitlines() if "label=" in line and "->" not in line}
    assert "fillcolor=red" in lines['"web1"']
    assert "fillcolor=orange" in lines['"cluster"']
    assert "fillcolor=yellow" in lines['"shop"']
    assert "fillcolor=darkred" in lines['"sw"'] and "bold" in lines['"sw"']
    assert 'label="core \\"switch\\"\\nswitch"' in lines['"sw"']
    assert '"shop" -> "cluster" [label="runs_on"];' in dot
    assert dot.startswith('digraph "karta" {') and dot.rstrip().endswith("}")


def test_svg_from_dot():
    if shutil.which("dot") is None:
        if os.environ.get("KARTA_REQUIRE_ALL") == "1":
            pytest.fail("KARTA_REQUIRE_ALL=1 but the Graphviz `dot` binary is missing (apt-get install graphviz)")
        pytest.skip("the Graphviz `dot` binary is not installed")
    svg = export.as_svg(NODES, EDGES, INFO)
    root = ET.fromstring(svg.encode())
    assert root.tag.endswith("svg")
    assert 'fill="red"' in svg and 'fill="darkred"' in svg
    assert "web cluster" in svg


def test_svg_without_dot_raises_a_clear_error(monkeypatch):
    monkeypatch.setattr(export.shutil, "which", lambda name: None)
    with pytest.raises(export.GraphvizMissing, match="graphviz"):
        export.as_svg(NODES, EDGES, INFO)


def test_exporters_registry_names_every_format():
    assert set(export.EXPORTERS) == {"json", "cytoscape", "graphml", "dot", "svg"}
