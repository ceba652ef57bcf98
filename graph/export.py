"""Exporters: a set of CIs and relationships as JSON, GraphML, DOT, Cytoscape.js elements or SVG.

Every exporter takes the same three things: `nodes` (CI ids), `edges` ((source, target, type) as
recorded, e.g. from `ImpactGraph.neighborhood`) and `info`, a mapping ci_id -> {"name", "class",
optional "state"} that the caller fills from its database; a CI missing from `info` is shown by
its id. States are those of an impact answer ("down", "degraded", "at_risk") plus "failed" and
"changed" for the CIs the question started from. These functions never touch a database or the
network; `as_svg` runs the Graphviz `dot` program, bounded in size and time (`SvgLimits`).

Names are attacker-controlled text (discovery copies them from hosts), so each format escapes them
for itself: JSON carries them exactly; GraphML exactly too, except the code points XML 1.0 cannot
hold at all (NUL and most other C0 controls, surrogates, U+FFFE/U+FFFF), which become U+FFFD; a
drawn label (DOT, SVG) shows every control, separator and bidirectional override as a visible sign
(U+2400-U+2421 for C0 and DEL, U+FFFD for the others), so a name is always one line a reader sees
as it is, and never closes its quoted string.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from collections import Counter
from typing import Callable, Iterable, Mapping

import networkx as nx

# fill colour, font colour, extra attributes
STATE_STYLE = {
    "down": ("red", "white", ""),
    "degraded": ("orange", "black", ""),
    "at_risk": ("yellow", "black", ""),
    "failed": ("darkred", "white", ', penwidth=3, style="filled,bold"'),
    "changed": ("darkred", "white", ', penwidth=3, style="filled,bold"'),
    "focus": ("navy", "white", ', penwidth=3, style="filled,bold"'),  # the CI a page is about
}

# What XML 1.0 cannot carry, not even as a character reference.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# What a reader would not see as written in a drawn label: C0 and C1 controls and DEL (Graphviz
# breaks lines at some), line and paragraph separators, bidirectional marks and overrides, and
# what XML cannot carry (Graphviz copies it into the SVG, which then no longer parses).
_UNSEEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")


class GraphvizMissing(RuntimeError):
    """The `dot` program is not installed (Debian: apt-get install graphviz)."""


class GraphvizFailed(RuntimeError):
    """`dot` ran but failed."""


class GraphvizTimeout(GraphvizFailed):
    """`dot` did not finish in time and was killed."""


class PictureTooLarge(ValueError):
    """More CIs or relationships than `SvgLimits` lets `dot` lay out; `edges` is None when the CIs
    alone were too many (the relationships were not counted)."""

    def __init__(self, nodes: int, edges: int | None, limits: SvgLimits) -> None:
        counted = f"{nodes} CIs" + (f" and {edges} relationships" if edges is not None else "")
        super().__init__(f"the picture would have {counted}; SVG is drawn for at most {limits.max_nodes} CIs "
                         f"and {limits.max_edges} relationships")
        self.nodes, self.edges, self.limits = nodes, edges, limits


@dataclass(frozen=True)
class SvgLimits:
    """How much `as_svg` hands to `dot`, and for how long. Layout time grows much faster than the
    picture and depends on its shape (measured here, Graphviz 2.43: 2,000 CIs in layers 4 s, 500
    CIs with crossing relationships 9 s, 1,000 of those over 2 minutes); past a thousand CIs
    nobody reads the picture anyway."""

    max_nodes: int = 1000
    max_edges: int = 2000
    timeout_seconds: float = 20.0
    dot: str = "dot"  # a program name looked up on PATH, or a path

    def check(self, nodes: int, edges: int | None = None) -> None:
        if nodes > self.max_nodes or (edges is not None and edges > self.max_edges):
            raise PictureTooLarge(nodes, edges, self)


def xml_text(text: str) -> str:
    """`text` with what XML 1.0 cannot hold replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def _sign(match: re.Match) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ ␁ ... ␟
    return "\u2421" if code == 0x7F else "\ufffd"


def visible_text(text: str) -> str:
    """`text` as a label may show it: every control, separator or override as a visible sign."""
    return _UNSEEN.sub(_sign, text)


def _describe(ci_id, info: Mapping) -> dict:
    """The exported fields of one CI: id, name, class and state when known."""
    known = info.get(ci_id) or {}
    fields = {"id": str(ci_id), "name": str(known.get("name") or ci_id), "class": known.get("class")}
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
    """GraphML of a directed multigraph: one edge per relationship, its type in the `type` data."""
    g = nx.MultiDiGraph()
    for n in nodes:
        fields = _describe(n, info)
        g.add_node(xml_text(fields.pop("id")), **{k: xml_text(str(v)) for k, v in fields.items() if v is not None})
    for number, (source, target, type_name) in enumerate(edges):
        # The edge id must be unique in the document (a type alone repeats as soon as two pairs share
        # it) and an NMTOKEN, as GraphML's schema says: a counter is both.
        g.add_edge(xml_text(str(source)), xml_text(str(target)), key=f"e{number}", type=xml_text(str(type_name)))
    # Not nx.generate_graphml: it splits the document with str.splitlines, which turns a CR, NEL or
    # U+2028 inside a name into a line feed. ElementTree writes a carriage return in text as it is,
    # and every XML parser reads that back as a line feed too; as a character reference it survives
    # (the writer emits no other raw CR).
    document = io.BytesIO()
    nx.write_graphml_xml(g, document, encoding="utf-8", prettyprint=True)
    return document.getvalue().decode().replace("\r", "&#13;")


def _dot_text(text) -> str:
    """The inside of a DOT quoted string: backslash and quote escaped, nothing unseen left."""
    return visible_text(str(text)).replace("\\", "\\\\").replace('"', '\\"')


def _dot_id(text) -> str:
    return f'"{_dot_text(text)}"'


def _dot_label(*lines) -> str:
    # Graphviz decodes HTML entities in labels ("&#65;" would show "A"): an escaped & shows as written.
    return '"' + "\\n".join(_dot_text(line).replace("&", "&amp;") for line in lines) + '"'


def as_dot(nodes: Iterable, edges: Iterable[tuple], info: Mapping, title: str = "karta",
           link: Callable[[str], str | None] | None = None) -> str:
    """Graphviz DOT, CIs filled by state: down red, degraded orange, at_risk yellow,
    failed/changed dark red and bold, focus (the CI a page is about) navy and bold. `link(ci_id)`
    may give a node a URL (a page about it)."""
    lines = [
        f"digraph {_dot_id(title)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for n in nodes:
        fields = _describe(n, info)
        label = (fields["name"],) if not fields["class"] else (fields["name"], fields["class"])
        attrs = f"label={_dot_label(*label)}"
        url = link(fields["id"]) if link is not None else None
        if url:
            attrs += f", URL={_dot_id(url)}, tooltip={_dot_label(fields['name'])}"
        style = STATE_STYLE.get(fields.get("state"))
        if style:
            fill, font, extra = style
            attrs += f", fillcolor={fill}, fontcolor={font}{extra}"
        lines.append(f"  {_dot_id(fields['id'])} [{attrs}];")
    for source, target, type_name in edges:
        lines.append(f"  {_dot_id(source)} -> {_dot_id(target)} [label={_dot_label(type_name)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def as_svg(nodes: Iterable, edges: Iterable[tuple], info: Mapping, limits: SvgLimits = SvgLimits(),
           link: Callable[[str], str | None] | None = None) -> str:
    """SVG drawn by piping `as_dot` to `dot -Tsvg`: PictureTooLarge past the limits (before `dot`
    runs), GraphvizMissing without `dot`, GraphvizTimeout when it runs out of time (it is killed)."""
    nodes, edges = list(nodes), list(edges)
    limits.check(len(nodes), len(edges))
    dot = shutil.which(limits.dot)
    if dot is None:
        raise GraphvizMissing(f"the Graphviz program {limits.dot!r} is not installed (or not on PATH); "
                              "install graphviz to draw SVG")
    source = as_dot(nodes, edges, info, link=link)
    try:
        done = subprocess.run([dot, "-Tsvg"], input=source.encode(), capture_output=True,
                              timeout=limits.timeout_seconds, check=False)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has killed and reaped it
        raise GraphvizTimeout(f"dot did not finish drawing {len(nodes)} CIs and {len(edges)} relationships "
                              f"within {limits.timeout_seconds:g} s") from exc
    if done.returncode != 0:
        raise GraphvizFailed(f"dot exited with {done.returncode}: {done.stderr.decode(errors='replace')[:500]}")
    return done.stdout.decode()


GROUP_PREFIX = "group:"


def collapse_by_class(nodes: Iterable, edges: Iterable[tuple] | None, info: Mapping, *, keep: Iterable = (),
                      keep_at_most: int = 20) -> tuple[list, list[tuple], dict]:
    """A picture too big to read, made readable: CIs grouped by class and state into one node each
    ("41 server", coloured by the state), relationships between groups merged with their count
    ("depends_on ×12"), and relationships inside a group left out. Up to `keep_at_most` CIs of
    `keep` (the changed or failed ones) stay themselves. `edges` None (not listed: too many) gives
    the groups alone. Returns nodes, edges and info in the exporters' shape; a group's id starts
    with GROUP_PREFIX."""
    kept = set(list(dict.fromkeys(keep))[:keep_at_most])
    group_of: dict = {}
    sizes: Counter = Counter()
    for node in nodes:
        if node in kept:
            group_of[node] = node
            continue
        fields = info.get(node) or {}
        key = f"{GROUP_PREFIX}{fields.get('class') or 'unknown'}:{fields.get('state') or ''}"
        group_of[node] = key
        sizes[key] += 1
    new_info = {node: dict(info.get(node) or {}) for node in kept if node in group_of}
    for key, size in sizes.items():
        ci_class, state = key[len(GROUP_PREFIX):].rsplit(":", 1)
        new_info[key] = {"name": f"{size} {ci_class}", "class": "group" if size > 1 else ci_class, "state": state or None}
    merged: Counter = Counter()
    for source, target, type_name in edges or ():
        a, b = group_of.get(source), group_of.get(target)
        if a is not None and b is not None and a != b:
            merged[(a, b, type_name)] += 1
    new_edges = [(a, b, type_name if count == 1 else f"{type_name} ×{count}")
                 for (a, b, type_name), count in sorted(merged.items())]
    new_nodes = [node for node in dict.fromkeys(group_of.values())]
    return new_nodes, new_edges, new_info


# format name -> (exporter, media type); the service can offer exactly these.
EXPORTERS = {
    "json": (as_json, "application/json"),
    "cytoscape": (as_cytoscape, "application/json"),
    "graphml": (as_graphml, "application/graphml+xml"),
    "dot": (as_dot, "text/vnd.graphviz"),
    "svg": (as_svg, "image/svg+xml"),
}
