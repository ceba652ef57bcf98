"""Reading pages in tests without a browser: the text (and attributes) of the elements that match a
simple selector (`tag`, `.class`, `#id`, `tag.class`, and descendants of those: `div.x li`), with Python's own HTML parser, so tests
assert what a person reads rather than how the markup happens to be spelt."""

from html.parser import HTMLParser

# Elements inside a line of text; any other element's edges separate words (table cells, list items).
INLINE = {"a", "abbr", "b", "code", "del", "em", "i", "ins", "kbd", "label", "mark", "small", "span", "strong", "sub",
          "sup", "time", "u"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def _matches(selector: str, tag: str, attrs: dict[str, str]) -> bool:
    if selector.startswith("#"):
        return attrs.get("id") == selector[1:]
    name, _, css_class = selector.partition(".")
    return (not name or name == tag) and (not css_class or css_class in (attrs.get("class") or "").split())


class _Collector(HTMLParser):
    def __init__(self, selector: str) -> None:
        super().__init__(convert_charrefs=True)
        *self.ancestors, self.selector = selector.split()
        self.found: list[dict] = []
        self.open: list[tuple[str, dict, dict | None]] = []  # (tag, attributes, the match it starts, if any)

    def _inside(self) -> bool:
        wanted = iter(self.ancestors)
        part = next(wanted, None)
        for tag, attrs, _ in self.open:
            if part is not None and _matches(part, tag, attrs):
                part = next(wanted, None)
        return part is None

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self._edge(tag)
        match = {"attrs": attrs, "text": []} if _matches(self.selector, tag, attrs) and self._inside() else None
        if match is not None:
            self.found.append(match)
        if tag in VOID:
            return
        self.open.append((tag, attrs, match))

    def handle_endtag(self, tag):
        self._edge(tag)
        for depth in range(len(self.open) - 1, -1, -1):
            if self.open[depth][0] == tag:
                del self.open[depth:]
                return

    def _edge(self, tag):
        if tag not in INLINE:
            self.handle_data(" ")

    def handle_data(self, data):
        for _, _, match in self.open:
            if match is not None:
                match["text"].append(data)


def elements(html: str, selector: str) -> list[dict]:
    """[{"attrs": {...}, "text": "normalized text"}] of the elements matching `selector`, in order."""
    collector = _Collector(selector)
    collector.feed(html)
    collector.close()
    return [{"attrs": m["attrs"], "text": " ".join("".join(m["text"]).split())} for m in collector.found]


def texts(html: str, selector: str) -> list[str]:
    return [element["text"] for element in elements(html, selector)]
