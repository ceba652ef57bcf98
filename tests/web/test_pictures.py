"""Pictures on pages, both ways: SVG drawn by Graphviz `dot` on the server (and checked by
app.web.svg), and the same DOT drawn in Chromium by the vendored Viz.js when the server does not
draw (KARTA_UI_PICTURES=browser, or no `dot`). A picture with more CIs than
KARTA_UI_PICTURE_MAX_NODES is grouped by class with counts. Hostile names stay text both ways.

The browser's own drawing (Viz.js in Chromium, hostile names included) is tested on the CI page by
tests/web/test_browser_ci.py::test_a_read_token_sees_no_edit_controls_and_hostile_names_stay_text,
on a server that leaves every picture to the browser: one server start for both concerns."""

import shutil
import xml.etree.ElementTree as ET

import pytest

from app.core.config import Settings
from app.web import pictures, svg
from graph import export
from tests.conftest import missing_requirement
from tests.test_impact_api import picture_api
from tests.web.html_text import elements, texts
from tests.web.test_ci_page import HOSTILE, web_shop
from tests.web.test_session import sign_in

SVG = "{http://www.w3.org/2000/svg}"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"


def require_dot() -> None:
    if shutil.which("dot") is None:
        missing_requirement("Graphviz `dot` is not installed (Debian: apt-get install graphviz)")


def picture_of(api, ci_id: str, depth: int = 1) -> str:
    assert sign_in(api.client, api.secrets["read"]).status_code == 303
    answer = api.client.get(f"/ui/cis/{ci_id}/picture?depth={depth}", headers={"HX-Request": "true"})
    assert answer.status_code == 200, answer.text
    return answer.text


def drawn_svg(fragment: str) -> ET.Element:
    start, end = fragment.index("<svg"), fragment.index("</svg>") + len("</svg>")
    return ET.fromstring(fragment[start:end])


def labels(root: ET.Element) -> list[str]:
    return [text.text for text in root.iter(f"{SVG}text")]


def test_the_server_draws_svg_with_names_links_and_the_ci_in_bold(database_url):
    require_dot()
    with picture_api(database_url) as api:
        ids = web_shop(api)
        fragment = picture_of(api, ids["shop-app"])
    assert elements(fragment, "figure.picture")[0]["attrs"]["data-render"] == "server"
    assert "<pre" not in fragment and "<html" not in fragment
    root = drawn_svg(fragment)
    assert sorted(labels(root)) == sorted(["shop-app", "application", "shop", "service", "shop-db", "database",
                                           "web-pool", "cluster", "depends_on", "depends_on", "runs_on"])
    links = {a.get(XLINK_HREF) for a in root.iter(f"{SVG}a")}
    assert links == {f"/ui/cis/{ids[name]}" for name in ("shop-app", "shop", "shop-db", "web-pool")}
    filled = {text.text: shape.get("fill") for group in root.iter(f"{SVG}g") if group.get("class") == "node"
              for shape in group.iter() if shape.tag in (f"{SVG}polygon", f"{SVG}path")
              for text in group.iter(f"{SVG}text")}
    assert filled["shop-app"] == "navy" and filled["shop-db"] == "white"
    assert texts(fragment, "figcaption")[0].startswith("4 CIs.")
    assert elements(fragment, "#ci-depth option")[0]["attrs"].get("selected") == ""


def test_depth_widens_the_picture(database_url):
    require_dot()
    with picture_api(database_url) as api:
        ids = web_shop(api)
        names = [sorted(n for n in labels(drawn_svg(picture_of(api, ids["shop"], depth)))
                        if n in ("shop", "shop-app", "shop-db", "web-pool", "db-1", "web-1", "web-2"))
                 for depth in (1, 2, 3)]
    assert names == [["shop", "shop-app"], ["shop", "shop-app", "shop-db", "web-pool"],
                     ["db-1", "shop", "shop-app", "shop-db", "web-1", "web-2", "web-pool"]]


@pytest.mark.parametrize("settings", [{"ui_pictures": "browser"}, {"graphviz_dot": "/nonexistent/dot"}],
                         ids=["browser-setting", "no-dot"])
def test_without_server_drawing_the_page_carries_the_dot(database_url, settings):
    with picture_api(database_url, **settings) as api:
        ids = web_shop(api)
        bad = api.create_ci("server", HOSTILE[0])
        api.relate(bad["id"], "connects_to", ids["web-1"])
        fragment = picture_of(api, ids["web-1"])
    assert elements(fragment, "figure.picture")[0]["attrs"]["data-render"] == "browser"
    assert "<svg" not in fragment
    dot = texts(fragment, "pre.dot-source")[0]
    assert dot.startswith('digraph "neighbourhood" {')
    assert f'label="{HOSTILE[0]}\\nserver"' in dot and 'fillcolor=navy' in dot
    assert "&lt;img src=x onerror=alert(1)&gt;" in fragment and "<img" not in fragment


def test_a_picture_past_the_limit_is_grouped_by_class_with_counts(database_url):
    require_dot()
    with picture_api(database_url, ui_picture_max_nodes=5) as api:
        host = api.create_ci("server", "big-host")
        for n in range(6):
            api.relate(api.create_ci("application", f"app-{n}")["id"], "runs_on", host["id"])
        for n in range(2):
            api.relate(api.create_ci("database", f"db-{n}")["id"], "runs_on", host["id"])
        fragment = picture_of(api, host["id"])
    assert texts(fragment, "figcaption")[0].startswith(
        "9 CIs, grouped by class and state (more than 5 to draw one by one).")
    assert sorted(labels(drawn_svg(fragment))) == sorted(
        ["big-host", "server", "6 application", "group", "2 database", "group", "runs_on ×6", "runs_on ×2"])


def test_grouping_keeps_the_highlighted_ci_merges_edges_and_says_when_edges_are_left_out():
    info = {f"a{n}": {"name": f"a{n}", "class": "application"} for n in range(4)}
    info |= {"s": {"name": "s", "class": "server", "state": "focus"}, "d": {"name": "d", "class": "database"}}
    edges = [(f"a{n}", "s", "runs_on") for n in range(4)] + [("a0", "a1", "depends_on"), ("d", "s", "runs_on")]
    nodes, merged, grouped = export.collapse_by_class(list(info), edges, info, keep=["s"])
    assert nodes == ["group:application:", "s", "group:database:"]
    assert merged == [("group:application:", "s", "runs_on ×4"), ("group:database:", "s", "runs_on")]
    assert grouped["group:application:"] == {"name": "4 application", "class": "group", "state": None}
    assert grouped["s"] == info["s"]
    settings = Settings(database_url="sqlite://", ui_picture_max_nodes=3, ui_pictures="browser")
    drawing = pictures.draw(list(info), edges, info, settings, highlight=["s"])
    assert (drawing.collapsed, drawing.total_nodes, drawing.note) == (True, 6, None)
    assert '"s" [label="s\\nserver", URL="/ui/cis/s"' in drawing.dot and "group:application:" in drawing.dot
    unlisted = pictures.draw(list(info), None, info, settings, highlight=["s"])
    assert unlisted.note == "Relationships between the groups are not drawn for an answer this large."
    # Only relationships inside one group: all of them are left out by grouping, none for being unlisted.
    inside = pictures.draw([f"a{n}" for n in range(4)], [("a0", "a1", "depends_on")], info, settings)
    assert (inside.collapsed, inside.note, "->" in inside.dot) == (True, None, False)


def test_the_svg_check_refuses_what_a_picture_never_holds():
    base = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">{}</svg>'
    for hostile in ('<script>alert(1)</script>', '<foreignObject><p>x</p></foreignObject>',
                    '<a xlink:href="javascript:alert(1)"><text>x</text></a>', '<a href="//evil.example/"><text>x</text></a>',
                    '<image href="/ui/x.png"/>'):
        with pytest.raises(svg.UnsafeSvg):
            svg.clean(base.format(hostile))
    cleaned = svg.clean(base.format('<g onload="alert(1)" style="x"><text onclick="alert(1)">&lt;b&gt;</text></g>'))
    assert "onload" not in cleaned and "onclick" not in cleaned and "style" not in cleaned
    assert "&lt;b&gt;" in cleaned
