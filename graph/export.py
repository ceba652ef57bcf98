"""Exporters: a set of CIs and relationships as JSON, GraphML, DOT, Cytoscape.js elements or SVG.

Every exporter takes the same three things: `nodes` (CI ids), `edges` ((source, target, type) as
recorded, e.g. from `ImpactGraph.neighborhood`) and `info`, a mapping ci_id -> {"name", "class",
optional "state"} that the caller fills from its database; a CI missing from `info` is shown by
its id. States are those of an impact answer ("down", "degraded", "at_risk") plus "failed" and
"changed" for the CIs the question started from. These functions never touch a database or the
network; `as_svg` runs the Graphviz `dot` binary, with a timeout.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Iterable, Mapping

import networkx as nx

# fill colour, font colour, extra attributes
STATE_STYLE = {
    "down": ("red", "white", ""),
    "degraded": ("orange", "black", ""),
    "at_risk": ("yellow", "black", ""),
    "failed": ("darkred", "white", ', penwidth=3, style="filled,bold"'),
    "changed": ("darkred", "white", ', penwidth=3, style="filled,bold"'),
}


class GraphvizMissing(RuntimeError):
    """The `dot` binary is not installed (Debian: apt-get install graphviz)."""


class GraphvizFailed(RuntimeError):
    """`dot` ran but failed or timed out."""


def _printable(text: str) -> str:
    """Names come from discovered hosts: drop the control characters XML 1.0 cannot carry at all."""
    return "".join(char for char in text if char >= " " or char in "\t\n\r")


def _describe(ci_id, info: Mapping) -> dict:
    """The exported fields of one CI: id, name, class and state when known."""
    known = info.get(ci_id) or {}
    fields = {"id": str(ci_id), "name": _printable(str(known.get("name") or ci_id)), "class": known.get("class")}
    if known.get("state"):
        fields["state"] = known["state"]
    return fields


def _edge_fields(source, target, type_name) -> dict:
    return {"id": f"{source}|{type_name}|{target}", "source": str(source), "target": str(target), "type": type_name}


def as_json(nodes: Iterable, edges: Iterable[tuple], info: Mapping) -> dict:
    """{"nodes": [{id, name, class, state?}], "edges": [{id, source, target, type}]}."""
    return {
        "nodes": [_describe(n, info) for n in nodes],
        "edges": [_edge_fields(*e) for e in edges],
    }


def as_cytoscape(nodes: Iterable, edges: Iterable[tuple], info: Mapping) -> list[dict]:
    """Cytoscape.js elements (array form): [{"group": "nodes"|"edges", "data": {...}}]."""
    elements = [{"group": "nodes", "data": _describe(n, info)} for n in nodes]
    elements += [{"group": "edges", "data": _edge_fields(*e)} for e in edges]
    return elements


def as_graphml(nodes: Iterable, edges: Iterable[tuple], info: Mapping) -> str:
    """GraphML of a directed multigraph: one edge per relationship type, keyed by the type."""
    g = nx.MultiDiGraph()
    for n in nodes:
        fields = _describe(n, info)
        g.add_node(fields.pop("id"), **{k: v for k, v in fields.items() if v is not None})
    for source, target, type_name in edges:
        g.add_edge(str(source), str(target), key=type_name, type=type_name)
    return "\n".join(nx.generate_graphml(g))


def _quote(text) -> str:
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def as_dot(nodes: Iterable, edges: Iterable[tuple], info: Mapping, title: str = "karta") -> str:
    """Graphviz DOT, CIs filled by state: down red, degraded orange, at_risk yellow,
    failed/changed dark red and bold."""
    lines = [
        f"digraph {_quote(title)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for n in nodes:
        fields = _describe(n, info)
        label = fields["name"] if not fields["class"] else f"{fields['name']}\n{fields['class']}"
        attrs = f"label={_quote(label)}"
        style = STATE_STYLE.get(fields.get("state"))
        if style:
            fill, font, extra = style
            attrs += f", fillcolor={fill}, fontcolor={font}{extra}"
        lines.append(f"  {_quote(fields['id'])} [{attrs}];")
    for source, target, type_name in edges:
        lines.append(f"  {_quote(source)} -> {_quote(target)} [label={_quote(type_name)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def as_svg(nodes: Iterable, edges: Iterable[tuple], info: Mapping, timeout: float = 30.0) -> str:
    """SVG drawn by piping `as_dot` to Graphviz `dot -Tsvg`."""
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizMissing("the Graphviz `dot` binary is not on PATH; install graphviz to export SVG")
    source = as_dot(nodes, edges, info)
    try:
        done = subprocess.run([dot, "-Tsvg"], input=source.encode(), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise GraphvizFailed(f"dot did not finish within {timeout} s") from exc
    if done.returncode != 0:
        raise GraphvizFailed(f"dot exited with {done.returncode}: {done.stderr.decode(errors='replace')[:500]}")
    return done.stdout.decode()


# format name -> (exporter, media type); the service can offer exactly these.
EXPORTERS = {
    "json": (as_json, "application/json"),
    "cytoscape": (as_cytoscape, "application/json"),
    "graphml": (as_graphml, "application/graphml+xml"),
    "dot": (as_dot, "text/vnd.graphviz"),
    "svg": (as_svg, "image/svg+xml"),
}
