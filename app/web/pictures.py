"""Pictures on pages: Graphviz `dot` layouts (layered, deterministic, printable) of an impact answer
or a CI's surroundings, coloured by state, with the changed or failed CIs in bold.

Drawn on the server when `dot` is installed (and KARTA_UI_PICTURES=auto), embedded as SVG after
app.web.svg has checked it; otherwise the page carries the same DOT as text and the browser draws it
with the vendored Viz.js (Graphviz compiled to WebAssembly), so a machine set up with pip alone shows
the same picture. Above KARTA_UI_PICTURE_MAX_NODES CIs the picture groups CIs by class and state
(with counts) instead of drawing a hairball."""

from dataclasses import dataclass
from typing import Iterable, Mapping

from markupsafe import Markup

from app.core.config import Settings
from app.web import svg as svg_check
from graph import export

# The most relationships listed for a picture that will be grouped anyway (merging is linear).
MAX_EDGES_TO_GROUP = 200_000
LEGEND_ORDER = ("focus", "changed", "failed", "down", "degraded", "at_risk")


@dataclass(frozen=True)
class Drawing:
    dot: str
    svg: Markup | None  # None: the browser draws `dot`
    collapsed: bool
    total_nodes: int
    max_nodes: int
    note: str | None = None
    states: tuple[str, ...] = ()  # the states drawn, in legend order: the legend shows only these


def ci_link(ci_id: str) -> str | None:
    return None if ci_id.startswith(export.GROUP_PREFIX) else f"/ui/cis/{ci_id}"


def draw(nodes: Iterable[str], edges: Iterable[tuple] | None, info: Mapping, settings: Settings, *,
         highlight: Iterable[str] = (), title: str = "karta") -> Drawing:
    """The drawing of `nodes` and `edges` (None: not listed, too many) with `info` from the impact
    service; `highlight` (the changed or failed CIs) stay themselves when the picture is grouped."""
    nodes = list(nodes)
    total, limit = len(nodes), settings.ui_picture_max_nodes
    collapsed = total > limit or edges is None
    note = None
    if collapsed:
        # Said only when the relationships were not listed: grouping alone may leave none to draw
        # (all of them inside one group), and then nothing was held back.
        if edges is None and total > 1:
            note = "Relationships between the groups are not drawn for an answer this large."
        nodes, edges, info = export.collapse_by_class(nodes, edges, info, keep=highlight)
    dot = export.as_dot(nodes, edges or [], info, title=title, link=ci_link)
    picture = None
    if settings.ui_pictures == "auto":
        limits = export.SvgLimits(max_nodes=settings.svg_max_nodes, max_edges=settings.svg_max_edges,
                                  timeout_seconds=settings.svg_timeout_seconds, dot=settings.graphviz_dot)
        try:
            picture = svg_check.clean(export.as_svg(nodes, edges or [], info, limits, link=ci_link))
        except (export.GraphvizMissing, export.GraphvizFailed, export.PictureTooLarge, svg_check.UnsafeSvg):
            picture = None  # the browser draws the DOT instead
    drawn_states = {(info.get(node) or {}).get("state") for node in nodes}
    states = tuple(state for state in LEGEND_ORDER if state in drawn_states)
    return Drawing(dot=dot, svg=picture, collapsed=collapsed, total_nodes=total, max_nodes=limit, note=note,
                   states=states)
