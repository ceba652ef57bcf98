"""In a real Chromium, on the web shop (test_impact_pages.py) served by `karta serve`: review the
impact of a change to the db chosen with the type-ahead, an incident with two of three web nodes
failed and with one after root cause from symptoms, and hostile names that stay text; axe on each page."""

import re

import httpx
import pytest

from tests.web.conftest import accessibility_violations, screenshot, sign_in
from tests.web.test_impact_pages import HOSTILE_IMG, HOSTILE_SCRIPT, add_hostile, build_shop

pytestmark = pytest.mark.browser


def seed(site, hostile: bool = False) -> dict[str, str]:
    with httpx.Client(base_url=site.base, timeout=30,
                      headers={"Authorization": f"Bearer {site.tokens['admin']}"}) as http:
        def post(path, body):
            answer = http.post(path, json=body)
            assert answer.status_code == 201, answer.text
            return answer.json()

        ids = build_shop(post)
        return add_hostile(post, ids) if hostile else ids


def table_rows(page, table_id: str) -> list[list[str]]:
    return [[cell.strip() for cell in row.locator("td").all_inner_texts()]
            for row in page.locator(f"#{table_id} tbody tr").all()]


def test_review_a_change_to_the_database(page, site):
    ids = seed(site)
    sign_in(page, site, "read", "/ui/impact")
    assert accessibility_violations(page) == []
    page.get_by_label("Find a CI by name").fill("db")
    page.locator(f'#suggest-ci input[value="{ids["db"]}"]').check()
    assert page.locator(f'#chosen-ci input[value="{ids["db"]}"]').is_checked()  # moved to the chosen CIs
    page.get_by_role("button", name="Review the change").click()
    page.wait_for_url(re.compile(r".*/ui/impact\?.*ci=" + ids["db"]))
    assert table_rows(page, "impacted-services") == [
        ["shop", "1", "team-shop", "down", "5", "db -> app -> web-1 -> web -> lb -> shop"],
        ["reporting", "3", "team-bi", "down", "1", "db -> reporting"]]
    assert page.locator("#impact-owners li").all_inner_texts() == [
        "team-app", "team-bi", "team-net", "team-shop", "team-web"]
    assert page.locator(".impact-summary h2").inner_text() == "Risk: critical"
    page.locator("figure.picture[data-drawn], figure.picture[data-render=server]").locator("svg").wait_for()
    page.evaluate("document.getElementById('summary-title').scrollIntoView()")
    screenshot(page, "impact")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.base)
    page.get_by_role("button", name="Copy the list").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()").split() == [
        "team-app", "team-bi", "team-net", "team-shop", "team-web"]
    assert accessibility_violations(page) == []
    # the depth control narrows the same question
    page.get_by_label("Depth").fill("1")
    page.get_by_role("button", name="Review the change").click()
    page.wait_for_url(re.compile(r".*max_depth=1.*"))
    assert sorted(row[0] for row in table_rows(page, "impacted-cis")) == ["app", "reporting"]
    assert page.script_errors == []


def test_root_cause_then_incidents(page, site):
    ids = seed(site)
    sign_in(page, site, "read", "/ui/root-cause")
    page.goto(site.url(f"/ui/root-cause?symptom={ids['shop']}&symptom={ids['reporting']}"))
    rows = table_rows(page, "root-causes")
    assert [row[1] for row in rows[:2]] == ["db", "db-host"] and rows[0][3] == "2 of 2: shop, reporting"
    assert accessibility_violations(page) == []
    page.locator("#root-causes tbody tr").first.get_by_role("link", name="Blast radius").click()
    page.wait_for_url(re.compile(r".*/ui/blast-radius\?failed=" + ids["db"]))
    assert {row[0] for row in table_rows(page, "impacted-services")} == {"shop", "reporting"}
    # two web nodes of three down take the cluster, and so the shop, down
    page.goto(site.url(f"/ui/blast-radius?failed={ids['web-1']}&failed={ids['web-2']}"))
    assert {row[0]: row[2] for row in table_rows(page, "impacted-cis")} == {"web": "down", "lb": "down", "shop": "down"}
    assert table_rows(page, "impacted-services") == [["shop", "1", "team-shop", "down", "3", "web-1 -> web -> lb -> shop"]]
    assert page.locator(".impact-summary h2").inner_text() == "Risk: critical"
    assert accessibility_violations(page) == []
    page.locator(f'#chosen-failed input[value="{ids["web-2"]}"]').uncheck()  # web-2 is back: one down
    page.get_by_role("button", name="Show the blast radius").click()
    page.wait_for_url(re.compile(r".*/ui/blast-radius\?failed=" + ids["web-1"] + "&q=&max_depth=$"))
    assert {row[0]: row[2] for row in table_rows(page, "impacted-cis")} == {
        "web": "degraded", "lb": "at risk", "shop": "at risk"}
    assert page.locator(".impact-summary h2").inner_text() == "Risk: low"
    assert page.script_errors == []


def test_hostile_names_stay_text(page, site):
    ids = seed(site, hostile=True)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_in(page, site, "read", "/ui/impact")
    page.goto(site.url(f"/ui/impact?ci={ids['db']}"))
    rows = {row[0]: row for row in table_rows(page, "impacted-cis")}
    assert rows[HOSTILE_IMG][4] == HOSTILE_SCRIPT and rows['=HYPERLINK("http://x")'][5].startswith("db -> " + HOSTILE_IMG)
    assert page.locator("#impact-owners li").first.inner_text() == HOSTILE_SCRIPT
    assert page.locator("figure.picture svg text", has_text=HOSTILE_IMG).count() == 1  # an SVG label, as text
    assert page.locator("main img, main script").count() == 0
    # the type-ahead shows it as text too, and choosing it keeps it text
    page.get_by_label("Find a CI by name").fill("img")
    choice = page.locator(f'#suggest-ci input[value="{ids["hostile"]}"]')
    choice.check()
    page.get_by_role("button", name="Review the change").click()
    page.wait_for_url(re.compile(".*" + ids["hostile"] + ".*"))
    assert page.locator(f'#chosen-ci label:has(input[value="{ids["hostile"]}"])').inner_text().strip() == HOSTILE_IMG + " (application)"
    page.goto(site.url(f"/ui/root-cause?symptom={ids['formula']}"))
    assert page.get_by_role("link", name=HOSTILE_IMG, exact=True).count() == 1
    assert accessibility_violations(page) == []
    assert dialogs == [] and page.script_errors == []
