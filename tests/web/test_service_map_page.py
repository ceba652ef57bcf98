"""A service's map on its page (/ui/cis/{id}/service-map, loaded by htmx into the CI page, a page of
its own without JavaScript), with the real app on both databases, and once in a real Chromium: the
status and each entry point in words (the reason when it did not resolve), the CIs by layer as links,
the picture, the how-to for a service without entry points, hostile names as text, and 404 for a CI
that is not a service. The estate is the one of tests/test_service_map.py."""

import time

import httpx
import pytest

from tests.conftest import Api, new_id
from tests.test_service_map import estate_batch, hostile_shop, ingest, keep_in_step
from tests.test_service_map_redundancy import estate_batch as redundant_estate_batch
from tests.web.conftest import accessibility_violations, screenshot
from tests.web.conftest import sign_in as browser_sign_in
from tests.web.html_text import elements, texts
from tests.web.test_ci_page import signed_in

HOSTILE = "<script>alert(1)</script>\"' {{ 7*7 }}"


def layer_blocks(html: str) -> dict[str, str]:
    """The layers the card lists, each as its text: "Hosts app-1 server db-1 server"."""
    return {e["attrs"]["data-layer"]: e["text"] for e in elements(html, "div.map-layer")}


@pytest.fixture
def shop(api, app):
    ids = ingest(api, estate_batch())
    service = api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})
    keep_in_step(app)
    return {"shop": service["id"], **ids}


def test_the_card_of_a_mapped_service_lists_its_layers_entry_points_and_picture(api, shop):
    client = signed_in(api, "read")
    whole = client.get(f"/ui/cis/{shop['shop']}").text
    loader = elements(whole, "#ci-map")[0]["attrs"]
    assert (loader["hx-get"], loader["hx-trigger"]) == (f"/ui/cis/{shop['shop']}/service-map", "load")
    fragment = client.get(loader["hx-get"], headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    alone = client.get(loader["hx-get"])  # without JavaScript: a page of its own
    assert "<html" in alone.text and texts(alone.text, "h1") == ["Service map of shop"]
    for html in (fragment.text, alone.text):
        assert texts(html, "p.map-status strong") == [
            "Mapped: every entry point resolved; the map below is what they reach."]
        assert texts(html, "ul.map-entries li") == ["10.0.0.5:80 resolved on web-1 server → nginx web_server"]
        assert layer_blocks(html) == {"entry": "Entry nginx web_server", "applications": "Applications shop-app application",
                         "data_stores": "Data stores orders-db database",
                         "hosts": "Hosts app-1 server db-1 server web-1 server",
                         "infrastructure": "Infrastructure switch-1 network_device"}
        links = {e["attrs"]["href"] for e in elements(html, "div.map-layer a")}
        assert links == {f"/ui/cis/{shop[name]}" for name in
                         ("nginx", "shop-app", "orders-db", "app-1", "db-1", "web-1", "switch-1")}
        figure = elements(html, "figure.picture")
        assert len(figure) == 1 and "8 CIs." in figure[0]["text"]  # the service and its 7
        assert f"/api/v1/cis/{shop['shop']}/service-map" in html
        assert f"/api/v1/changes?object_type=service_map&amp;object_id={shop['shop']}" in html
    picture = fragment.text[fragment.text.index('<figure class="picture"'):]
    if 'data-render="server"' in picture[:80]:  # Graphviz drew it: the CIs are links in the SVG
        assert f'href="/ui/cis/{shop["orders-db"]}"' in picture and ">orders-db<" in picture
    else:  # no Graphviz on the server (a machine set up with pip alone): the browser draws it from the DOT
        assert f'URL="/ui/cis/{shop["orders-db"]}"' in texts(picture, "pre.dot-source")[0]
    # the map's changes are in the service's history, in words
    assert [t.split(" · ", 1)[1] for t in texts(whole, "p.ci-when")] == [
        "service_mapping · mapped", "service_mapping · related", "admin-bot · created"]


def test_without_graphviz_on_the_server_the_card_carries_the_dot_to_draw(api, app, shop):
    app.state.settings = app.state.settings.model_copy(update={"graphviz_dot": "karta-no-such-dot"})
    html = signed_in(api).get(f"/ui/cis/{shop['shop']}/service-map", headers={"HX-Request": "true"}).text
    [figure] = elements(html, "figure.picture")
    assert figure["attrs"]["data-render"] == "browser" and "<svg" not in html
    assert f'URL="/ui/cis/{shop["orders-db"]}"' in texts(html, "pre.dot-source")[0]
    assert layer_blocks(html)["data_stores"] == "Data stores orders-db database"


def test_each_layer_is_bounded(api, app, monkeypatch):
    from app.web.pages import ci as ci_page
    monkeypatch.setattr(ci_page, "MAX_LAYER_SHOWN", 2)
    ingest(api, estate_batch())
    service = api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})
    keep_in_step(app)
    html = signed_in(api).get(f"/ui/cis/{service['id']}/service-map", headers={"HX-Request": "true"}).text
    assert layer_blocks(html)["hosts"] == "Hosts app-1 server db-1 server and 1 more."


def test_an_unresolved_entry_point_shows_why(api, app, shop):
    service = api.create_ci("service", "half", attributes={"entry_points": ["10.0.0.5:80", "10.0.0.5:9999"]})
    nowhere = api.create_ci("service", "nowhere", attributes={"entry_points": ["10.9.9.9:80"]})
    keep_in_step(app)
    client = signed_in(api)
    html = client.get(f"/ui/cis/{service['id']}/service-map", headers={"HX-Request": "true"}).text
    assert texts(html, "p.map-status strong")[0].startswith("Partly mapped: some entry points did not resolve")
    assert texts(html, "ul.map-entries li") == [
        "10.0.0.5:80 resolved on web-1 server → nginx web_server",
        "10.0.0.5:9999 unresolved nothing listens on port 9999 of that host on web-1 server"]
    html = client.get(f"/ui/cis/{nowhere['id']}/service-map", headers={"HX-Request": "true"}).text
    assert texts(html, "p.map-status strong") == [
        "Unresolved: no entry point leads to an application, so nothing is mapped."]
    assert texts(html, "ul.map-entries li") == [
        "10.9.9.9:80 unresolved no host has that address (10.9.9.9), or more than one has"]
    assert elements(html, "figure") == [] and texts(html, "p.muted")[0] == "No CIs are mapped."


def test_a_service_without_entry_points_says_how_to_define_them(api):
    service = api.create_ci("service", "bare")
    html = signed_in(api).get(f"/ui/cis/{service['id']}/service-map").text
    assert texts(html, "p.map-status strong") == ["Not mapped: this service has no entry points."]
    assert "give it the attribute entry_points, a list of host:port or URLs" in texts(html, "#ci-map p")[1]
    assert elements(html, "ul.map-entries") == [] and elements(html, "figure") == []


def test_hostile_names_are_text_in_the_card_and_the_picture(api, app):
    service = hostile_shop(api, app, HOSTILE)
    client = signed_in(api)
    for headers in ({"HX-Request": "true"}, {}):
        html = client.get(f"/ui/cis/{service['id']}/service-map", headers=headers).text
        assert "<script>alert" not in html and "{{ 7*7 }}" in html  # not run as a template either
        assert layer_blocks(html)["data_stores"] == f"Data stores {HOSTILE} database"
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert texts(html, "h1") == [f"Service map of {HOSTILE}"]
    picture = html[html.index('<figure class="picture"'):]
    assert "<script" not in picture and "&lt;script&gt;" in picture


def test_a_ci_that_is_not_a_service_has_no_map_page(api, shop):
    client = signed_in(api)
    assert client.get(f"/ui/cis/{shop['shop']}/service-map").status_code == 200
    for ci_id in (shop["web-1"], new_id()):
        for headers in ({}, {"HX-Request": "true"}):
            answer = client.get(f"/ui/cis/{ci_id}/service-map", headers=headers)
            assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert "ci-map" not in client.get(f"/ui/cis/{shop['web-1']}").text
    assert client.get("/ui/cis/not-an-id/service-map").status_code == 422


def test_the_map_needs_a_session(api, shop):
    answer = api.client.get(f"/ui/cis/{shop['shop']}/service-map", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login?next=")


@pytest.mark.browser
def test_the_map_card_loads_in_the_browser_with_its_picture(page, site):
    """With the estate of tests/test_service_map_redundancy.py (three instances behind nginx, grouped
    by Karta): the card on the service's page, then the map's own page, the README's picture."""
    with httpx.Client(base_url=site.base, trust_env=False, timeout=30) as http:
        api = Api(http, site.tokens)
        ingest(api, redundant_estate_batch())
        service = api.create_ci("service", "shop", attributes={"entry_points": ["10.0.0.5:80"]})["id"]
        deadline = time.monotonic() + 20  # the server's keeper maps it after the write, in its own time
        while True:
            answer = api.get(f"/api/v1/cis/{service}/service-map").json()
            if answer["status"] == "mapped" and answer["layers"]["infrastructure"]:  # the group joined
                break
            assert time.monotonic() < deadline, f"the service was not mapped with its group in 20 s: {answer}"
            time.sleep(0.2)
    browser_sign_in(page, site, "read", f"/ui/cis/{service}")
    page.locator("#ci-map figure.picture svg").wait_for()
    assert page.locator("#ci-map p.map-status strong").inner_text().startswith("Mapped:")
    assert page.locator('#ci-map div.map-layer[data-layer="data_stores"] li').all_inner_texts() == ["orders-db database"]
    assert "orders-db" in page.locator("#ci-map figure.picture svg text").all_text_contents()
    assert accessibility_violations(page) == [] and page.script_errors == []
    page.goto(site.url(f"/ui/cis/{service}/service-map"))
    page.locator("figure.picture svg").wait_for()
    texts_drawn = page.locator("figure.picture svg text").all_text_contents()
    assert any("instances behind nginx" in text for text in texts_drawn), texts_drawn
    assert accessibility_violations(page) == [] and page.script_errors == []
    screenshot(page, "service-map")
