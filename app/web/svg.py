"""The SVG Graphviz draws, checked before a page embeds it.

Graphviz escapes labels itself, and app.graph's DOT writer escapes names before it; this is the
second wall: the picture is parsed as XML and rebuilt from an allow-list of drawing elements and
attributes, so even a Graphviz bug could not put a script, an event handler, a foreign object or a
link to another site into a page. Only what passes is marked safe for the template."""

import xml.etree.ElementTree as ET

from markupsafe import Markup

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ELEMENTS = {"svg", "g", "title", "polygon", "polyline", "path", "ellipse", "circle", "rect", "line", "text", "a",
            "defs", "tspan"}
ATTRIBUTES = {"width", "height", "viewBox", "transform", "id", "class", "points", "d", "cx", "cy", "rx", "ry", "r",
              "x", "y", "x1", "y1", "x2", "y2", "fill", "stroke", "stroke-width", "stroke-dasharray", "font-family",
              "font-size", "font-weight", "font-style", "text-anchor", "fill-opacity", "stroke-opacity",
              "preserveAspectRatio", "target", "title"}
HREF = f"{{{XLINK_NS}}}href"


class UnsafeSvg(ValueError):
    """The SVG holds something a picture never needs."""


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _allowed_link(value: str) -> bool:
    return value.startswith("/ui/") and "\\" not in value and not any(ord(c) < 0x20 for c in value)


def clean(svg_text: str) -> Markup:
    """The picture as markup safe to embed: UnsafeSvg if it holds anything outside the allow-list."""
    try:
        root = ET.fromstring(svg_text.encode())
    except ET.ParseError as exc:
        raise UnsafeSvg(f"not well-formed: {exc}") from exc
    for element in root.iter():
        if not isinstance(element.tag, str) or not element.tag.startswith(f"{{{SVG_NS}}}") \
                or _local(element.tag) not in ELEMENTS:
            raise UnsafeSvg(f"element {element.tag!r} is not drawn by a picture")
        for name, value in list(element.attrib.items()):
            if name in (HREF, "href"):
                if not _allowed_link(value):
                    raise UnsafeSvg(f"link {value[:80]!r} leaves the UI")
                continue
            if name not in ATTRIBUTES:
                del element.attrib[name]  # e.g. style: dropped rather than trusted
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    return Markup(ET.tostring(root, encoding="unicode"))
