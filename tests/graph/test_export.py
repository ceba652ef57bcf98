"""Exporters: each format parsed back, by a real parser, for exactly what it must carry."""

import io
import json
import os
import random
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import networkx as nx
import pytest

from graph import export
from tests.conftest import missing_requirement

NODES = ["sw", "web1", "cluster", "shop"]
EDGES = [("web1", "sw", "connects_to"), ("web1", "cluster", "member_of"), ("shop", "cluster", "depends_on"), ("shop", "cluster", "runs_on")]
INFO = {
    "sw": {"name": "core \"switch\"", "class": "switch", "state": "failed"},
    "web1": {"name": "web1", "class": "server", "state": "down"},
    "cluster": {"name": "web cluster", "class": "cluster", "state": "degraded"},
    "shop": {"name": "shop", "class": "service", "state": "at_risk"},
}
GRAPHML = "{http://graphml.graphdrawing.org/xmlns}"
SVG = "{http://www.w3.org/2000/svg}"

# Names a discovered host could report -> how a drawn label shows them, and how GraphML carries them.
HOSTILE = {
    "cr": ("web\r1", "web\u240d1", "web\r1"),
    "lf": ("web\n1\nclass: database", "web\u240a1\u240aclass: database", "web\n1\nclass: database"),
    "tab": ("a\tb", "a\u2409b", "a\tb"),
    "nul": ("nul\x00x", "nul\u2400x", "nul\ufffdx"),
    "ansi": ("web\x01\x1b[31m-1", "web\u2401\u241b[31m-1", "web\ufffd\ufffd[31m-1"),
    "del_c1": ("del\x7f nel\x85", "del\u2421 nel\ufffd", "del\x7f nel\x85"),
    "separators": ("a\u2028b\u2029c", "a\ufffdb\ufffdc", "a\u2028b\u2029c"),
    "bidi": ("evil\u202egnp.exe\u200e", "evil\ufffdgnp.exe\ufffd", "evil\u202egnp.exe\u200e"),
    "nonchars": ("x\ufffe\uffff", "x\ufffd\ufffd", "x\ufffd\ufffd"),
    "quote": ('q"uote', 'q"uote', 'q"uote'),
    "breakout": ('", shape=circle, label="pwned"]; "x" -> "y', '", shape=circle, label="pwned"]; "x" -> "y',
                 '", shape=circle, label="pwned"]; "x" -> "y'),
    "trailing_backslash": ("back\\", "back\\", "back\\"),
    "escapes": ("\\N \\G \\l \\n", "\\N \\G \\l \\n", "\\N \\G \\l \\n"),
    "entities": ("&lt;b&gt; &amp; &#65; & <i>", "&lt;b&gt; &amp; &#65; & <i>", "&lt;b&gt; &amp; &#65; & <i>"),
    "braces": ("}\ndigraph {", "}\u240adigraph {", "}\ndigraph {"),
}
HOSTILE_CLASS = 'class"\\\r'
HOSTILE_TYPE = 'type"\\\n\x00'
HOSTILE_INFO = {key: {"name": name, "class": HOSTILE_CLASS, "state": "down"} for key, (name, _, _) in HOSTILE.items()}
HOSTILE_EDGES = [("cr", "lf", HOSTILE_TYPE), ("lf", "nul", "depends_on"), ("nul", "cr", "depends_on"),
                 ("cr", "lf", "runs_on")]


def dot_program() -> str:
    dot = shutil.which("dot")
    if dot is None:
        missing_requirement("the Graphviz `dot` program is not installed (apt-get install graphviz)")
    return dot


def test_json_lists_nodes_and_edges():
    assert export.as_json(["sw", "unknown"], EDGES[:1], INFO) == {
        "nodes": [
            {"id": "sw", "name": 'core "switch"', "class": "switch", "state": "failed"},
            {"id": "unknown", "name": "unknown", "class": None},
        ],
        "edges": [{"id": "web1|connects_to|sw", "source": "web1", "target": "sw", "type": "connects_to"}],
    }


def test_json_carries_names_exactly():
    nodes = export.as_json(list(HOSTILE), [], HOSTILE_INFO)["nodes"]
    assert {n["id"]: n["name"] for n in nodes} == {key: name for key, (name, _, _) in HOSTILE.items()}


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


def test_graphml_edge_ids_are_unique_nmtokens():
    # Two pairs share depends_on, one pair has two types: the type alone repeated as an id.
    edges = [("web1", "sw", "depends_on"), ("shop", "cluster", "depends_on"), ("shop", "cluster", "runs_on"),
             ("web1", "cluster", "depends_on")]
    root = ET.fromstring(export.as_graphml(NODES, edges, INFO))
    ids = [edge.get("id") for edge in root.iter(f"{GRAPHML}edge")]
    assert len(ids) == len(set(ids)) == 4
    assert all(re.fullmatch(r"[\w.:-]+", i) for i in ids)  # GraphML's schema types ids as NMTOKEN
    g = nx.read_graphml(io.BytesIO(export.as_graphml(NODES, edges, INFO).encode()))
    assert sorted((u, v, d["type"]) for u, v, d in g.edges(data=True)) == sorted(edges)


def test_graphml_carries_hostile_names_in_valid_xml():
    text = export.as_graphml(list(HOSTILE), HOSTILE_EDGES, HOSTILE_INFO)
    ET.fromstring(text)  # well-formed whatever the names held
    g = nx.read_graphml(io.BytesIO(text.encode()))
    assert {n: d["name"] for n, d in g.nodes(data=True)} == {key: kept for key, (_, _, kept) in HOSTILE.items()}
    assert {d["class"] for _, d in g.nodes(data=True)} == {HOSTILE_CLASS}
    assert sorted((u, v, d["type"]) for u, v, d in g.edges(data=True)) == sorted(
        (u, v, t.replace("\x00", "\ufffd")) for u, v, t in HOSTILE_EDGES)


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


def test_dot_keeps_each_hostile_name_on_its_own_line():
    dot = export.as_dot(list(HOSTILE), HOSTILE_EDGES, HOSTILE_INFO)
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", dot)  # no raw control left but line ends
    statements = dot.splitlines()
    assert len(statements) == 4 + len(HOSTILE) + len(HOSTILE_EDGES) + 1
    assert all(line.endswith("];") for line in statements[4:-1])


def test_dot_hostile_names_parse_back_and_draw_as_written():
    dot = dot_program()
    source = export.as_dot(list(HOSTILE), HOSTILE_EDGES, HOSTILE_INFO)
    parsed = json.loads(subprocess.run([dot, "-Tjson"], input=source.encode(), capture_output=True, check=True,
                                       timeout=60).stdout)
    assert sorted(o["name"] for o in parsed["objects"]) == sorted(HOSTILE)  # no node injected, none lost
    assert len(parsed["edges"]) == len(HOSTILE_EDGES)
    assert {(o["shape"], o["fillcolor"]) for o in parsed["objects"]} == {("box", "red")}  # no attribute injected
    svg = ET.fromstring(subprocess.run([dot, "-Tsvg"], input=source.encode(), capture_output=True, check=True,
                                       timeout=60).stdout)  # valid XML whatever the names held
    drawn = {group.find(f"{SVG}title").text: [t.text for t in group.iter(f"{SVG}text")]
             for group in svg.iter(f"{SVG}g") if group.get("class") == "node"}
    assert drawn == {key: [shown, "class\"\\\u240d"] for key, (_, shown, _) in HOSTILE.items()}
    labels = [[t.text for t in group.iter(f"{SVG}text")] for group in svg.iter(f"{SVG}g") if group.get("class") == "edge"]
    assert sorted(labels) == sorted([['type"\\\u240a\u2400'], ["depends_on"], ["depends_on"], ["runs_on"]])


def test_svg_from_dot():
    dot_program()
    svg = export.as_svg(NODES, EDGES, INFO)
    root = ET.fromstring(svg.encode())
    assert root.tag.endswith("svg")
    assert 'fill="red"' in svg and 'fill="darkred"' in svg
    assert "web cluster" in svg


def test_svg_refuses_past_its_limits_before_running_dot():
    absent = export.SvgLimits(max_nodes=3, dot="karta-no-such-dot")  # would raise GraphvizMissing if run
    with pytest.raises(export.PictureTooLarge, match="4 CIs and 4 relationships; SVG is drawn for at most 3 CIs") as caught:
        export.as_svg(NODES, EDGES, INFO, absent)
    assert (caught.value.nodes, caught.value.edges) == (4, 4)
    with pytest.raises(export.PictureTooLarge, match="at most 4 CIs and 3 relationships"):
        export.as_svg(NODES, EDGES, INFO, export.SvgLimits(max_nodes=4, max_edges=3, dot="karta-no-such-dot"))
    with pytest.raises(export.GraphvizMissing):  # at the limits exactly, it is drawn
        export.as_svg(NODES, EDGES, INFO, export.SvgLimits(max_nodes=4, max_edges=4, dot="karta-no-such-dot"))


def test_svg_without_dot_raises_a_clear_error(monkeypatch, tmp_path):
    with pytest.raises(export.GraphvizMissing, match="'karta-no-such-dot' is not installed.*install graphviz"):
        export.as_svg(NODES, EDGES, INFO, export.SvgLimits(dot="karta-no-such-dot"))
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine set up with pip alone: no dot on PATH
    with pytest.raises(export.GraphvizMissing, match="'dot' is not installed"):
        export.as_svg(NODES, EDGES, INFO)


def slow_picture(n: int = 500) -> tuple[list, list, dict]:
    """A picture dot takes seconds to lay out: relationships crossing at random (9 s here for 500 CIs)."""
    rng = random.Random(1)
    nodes = [f"n{i}" for i in range(n)]
    edges = [(f"n{i}", f"n{rng.randrange(i)}", "depends_on") for i in range(1, n)]
    edges += [(f"n{rng.randrange(1, n)}", f"n{rng.randrange(n)}", "connects_to") for _ in range(n // 2)]
    return nodes, edges, {x: {"name": f"host-{x}.example.com", "class": "server", "state": "down"} for x in nodes}


def dot_children() -> list[int]:
    """Pids of `dot` processes this test process started and that are still there (zombies included)."""
    found = []
    for stat in os.listdir("/proc"):
        try:
            with open(f"/proc/{stat}/stat") as f:
                name, fields = f.read().rsplit(")", 1)
        except (OSError, ValueError):  # not a process, or gone meanwhile
            continue
        if name.endswith("(dot") and int(fields.split()[1]) == os.getpid():
            found.append(int(stat))
    return found


def test_svg_gives_up_after_its_timeout_and_kills_dot():
    dot_program()
    started = time.monotonic()
    with pytest.raises(export.GraphvizTimeout, match="did not finish drawing 500 CIs and 749 relationships within 0.5 s"):
        export.as_svg(*slow_picture(), export.SvgLimits(timeout_seconds=0.5))
    assert time.monotonic() - started < 5
    assert dot_children() == []


def test_exporters_registry_names_every_format():
    assert set(export.EXPORTERS) == {"json", "cytoscape", "graphml", "dot", "svg"}
