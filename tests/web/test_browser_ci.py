"""The CI page in a real Chromium, on both databases: open a CI from a link, edit it and meet
someone else's change (the message says what changed, the input is kept, saving again applies it),
a read token sees no edit controls and its forged POST is refused, hostile names stay text (HTML, SVG,
attributes, URLs) and nothing executes, older history loads in place, and axe finds nothing serious.

The first test's pictures are drawn by Graphviz on the server; the second runs on a server that
leaves them to the browser (KARTA_UI_PICTURES=browser): Viz.js draws them in Chromium."""

import re

import httpx
import pytest
from sqlalchemy import create_engine

from tests.conftest import Api, create_tokens
from tests.server import running_server
from tests.web.conftest import Site, accessibility_violations, screenshot, sign_in
from tests.web.test_ci_page import HOSTILE, web_shop

pytestmark = pytest.mark.browser


@pytest.fixture
def browser_drawing_site(database_url):
    """A running Karta that leaves every picture to the browser."""
    engine = create_engine(database_url)
    tokens = create_tokens(engine)
    engine.dispose()
    env = {"KARTA_UI_PICTURES": "browser", "KARTA_TOKEN_CACHE_SECONDS": "0.3"}
    with running_server(database_url, env=env) as base:
        site = Site(base, database_url, tokens)
        yield site
        site.engine.dispose()


def seeded(site, seed):
    with httpx.Client(base_url=site.base, trust_env=False, timeout=30) as http:
        return seed(Api(http, site.tokens))


def api_call(site, method: str, url: str, **kwargs):
    with httpx.Client(base_url=site.base, trust_env=False, timeout=30) as http:
        return Api(http, site.tokens).request(method, url, **kwargs)


def watch_dialogs(page) -> list[str]:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return dialogs


def test_open_a_ci_from_a_link_edit_it_and_meet_a_conflict(page, site):
    ids = seeded(site, web_shop)
    dialogs = watch_dialogs(page)
    sign_in(page, site, "write", f"/ui/cis/{ids['shop']}?depth=3")
    page.locator('#ci-picture figure[data-render="server"] svg').wait_for()
    assert page.locator("#ci-depth").input_value() == "3"
    page.locator("ul.ci-spof li").first.wait_for()
    assert page.locator("ul.ci-spof li").all_text_contents() == [
        "shop-app application", "web-pool cluster", "shop-db database", "db-1 server"]
    assert accessibility_violations(page) == []
    screenshot(page, "ci")

    page.locator("ul.ci-related").get_by_role("link", name="shop-app").click()
    page.wait_for_url(re.compile(f".*/ui/cis/{ids['shop-app']}$"))
    assert page.locator("h1").inner_text() == "shop-app"
    page.get_by_role("link", name="Edit").click()
    page.wait_for_url(re.compile(".*/edit$"))
    page.get_by_label("Owner").fill("team-mine")
    page.get_by_label("Tags").fill("checkout\npci")
    # someone else changes the CI between the form's rendering and its sending
    other = api_call(site, "PATCH", f"/api/v1/cis/{ids['shop-app']}", json={"owner": "team-ops", "criticality": 2},
                     headers={"If-Match": '"1"'})
    assert other.status_code == 200, other.text
    page.get_by_role("button", name="Save").click()
    alert = page.locator(".ci-conflict")
    alert.wait_for()
    assert alert.locator("h2").inner_text() == "Someone changed this CI since you opened it"
    assert alert.locator("ul.ci-conflict-fields li").all_inner_texts() == [
        "criticality: none → 2", "owner: none → team-ops"]
    assert alert.locator(".ci-conflict-both").inner_text() == (
        "You both changed owner: the form holds your value; check it before saving.")
    assert page.get_by_label("Owner").input_value() == "team-mine"
    assert page.get_by_label("Tags").input_value() == "checkout\npci"
    assert page.get_by_label("Criticality").input_value() == "2"  # theirs: this user left it alone
    assert accessibility_violations(page) == []
    assert api_call(site, "GET", f"/api/v1/cis/{ids['shop-app']}").json()["owner"] == "team-ops"

    page.get_by_role("button", name="Save").click()  # having seen it: apply the edits on top of it
    page.wait_for_url(re.compile(f".*/ui/cis/{ids['shop-app']}$"))
    owner = page.locator("dl.fields dt", has_text="Owner").locator("xpath=following-sibling::dd[1]")
    assert owner.inner_text() == "team-mine"
    ci = api_call(site, "GET", f"/api/v1/cis/{ids['shop-app']}").json()
    assert (ci["owner"], ci["tags"], ci["criticality"], ci["version"]) == ("team-mine", ["checkout", "pci"], 2, 3)
    assert page.locator("p.ci-when").first.inner_text().endswith("write-bot · changed")
    assert dialogs == [] and page.script_errors == []


def _hostile_estate(api) -> dict[str, str]:
    ids = web_shop(api)
    bad = api.create_ci("server", HOSTILE[0], owner=HOSTILE[1], environment=HOSTILE[1], tags=HOSTILE,
                        attributes={"os_name": HOSTILE[1], "serial_number": HOSTILE[0]})
    api.relate(bad["id"], "connects_to", ids["web-1"], note=HOSTILE[1])
    api.relate(api.create_ci("application", HOSTILE[1])["id"], "runs_on", bad["id"])
    for n in range(20):  # enough history for an "Older changes" page
        assert api.patch(f"/api/v1/cis/{bad['id']}", json={"owner": f"{HOSTILE[1]} {n}"}).status_code == 200
    return {**ids, "bad": bad["id"]}


def test_a_read_token_sees_no_edit_controls_and_hostile_names_stay_text(page, browser_drawing_site):
    site = browser_drawing_site
    ids = seeded(site, _hostile_estate)
    dialogs = watch_dialogs(page)
    sign_in(page, site, "read", f"/ui/cis/{ids['bad']}")
    assert page.locator("h1").inner_text() == HOSTILE[0]
    assert page.title() == f"{HOSTILE[0]} · Karta"
    figure = page.locator('#ci-picture figure.picture[data-drawn="browser"]')
    figure.locator("svg").wait_for()  # drawn by Viz.js from the DOT the server sent
    assert figure.get_attribute("data-render") == "browser"
    assert {HOSTILE[0], HOSTILE[1], "web-1"} <= set(figure.locator("svg text").all_text_contents())
    owner_link = page.locator("dl.fields a", has_text="alert(1)</script>").first
    assert owner_link.get_attribute("href") == "/ui/cis?owner=%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E+19"
    assert page.locator("table.ci-attributes td.ci-value").all_inner_texts() == [HOSTILE[1], HOSTILE[0]]
    assert page.locator("main img, main script, main iframe, main foreignObject").count() == 0

    page.select_option("#ci-depth", "2")  # the depth choice redraws in place
    page.get_by_role("button", name="Draw").click()
    page.locator('#ci-picture figure[data-drawn="browser"] svg text', has_text="web-pool").first.wait_for()
    assert page.locator("#ci-depth").input_value() == "2"

    assert page.get_by_role("link", name="Edit").count() == 0 and page.locator("form[method=post] #name").count() == 0
    csrf = page.locator("body").get_attribute("data-csrf")
    forged = page.request.post(site.url(f"/ui/cis/{ids['bad']}/edit"),
                               form={"csrf_token": csrf, "version": "21", "name": "taken", "status": "active"})
    assert forged.status == 403
    assert page.request.get(site.url(f"/ui/cis/{ids['bad']}/edit")).status == 403

    assert page.locator("p.ci-when").count() == 20
    page.get_by_role("link", name="Older changes").click()
    page.locator("p.ci-when").nth(21).wait_for()
    assert page.locator("p.ci-when").count() == 23  # 20 owner changes, 2 relationships, the creation
    assert page.locator("p.ci-when").last.inner_text().endswith("admin-bot · created")
    assert page.get_by_role("link", name="Older changes").count() == 0
    assert accessibility_violations(page) == []
    assert api_call(site, "GET", f"/api/v1/cis/{ids['bad']}").json()["name"] == HOSTILE[0]
    assert dialogs == [] and page.script_errors == []
