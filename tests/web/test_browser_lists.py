"""In a real Chromium, on both databases: the home page of a small web shop (and its screenshot), the
header's search box finding a host by its IP address, the CI list's filters, sort and next page
(swapped by htmx), the discovery page, hostile names that must not execute, and axe on each page."""

import re

import httpx
import pytest

from tests.web.conftest import accessibility_violations, screenshot, sign_in
from tests.web.test_home import HOSTILE, seed_web_shop

pytestmark = pytest.mark.browser


def poster(site):
    client = httpx.Client(base_url=site.base, headers={"Authorization": f"Bearer {site.tokens['admin']}"}, timeout=30)

    def post(url: str, body: dict) -> dict:
        response = client.post(url, json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()
    return post


def no_dialogs(page) -> list[str]:
    opened: list[str] = []

    def dismiss(dialog):
        opened.append(dialog.message)
        dialog.dismiss()
    page.on("dialog", dismiss)
    return opened


def test_the_home_page_of_a_web_shop_and_searching_it_by_ip(page, site):
    ids = seed_web_shop(poster(site))
    post = poster(site)
    post("/api/v1/ingest", {"source": "nmap", "run_id": "nmap-weekly", "scope": {"hosts": ["shop"]},
                            "items": [{"ref": "x", "class": "server", "name": "web-host-1.shop.example",
                                       "identifiers": {"serial_number": "SN-web-host-1", "fqdn": "web-host-2.shop.example"}}]})
    httpx.patch(site.url(f"/api/v1/cis/{ids['web-host-3']}"), json={"status": "stale"},
                headers={"Authorization": f"Bearer {site.tokens['admin']}"}).raise_for_status()
    sign_in(page, site, "read")
    assert page.locator("section", has=page.locator("#stale-h")).get_by_role("link", name="web-host-3").is_visible()
    risk = page.locator("section", has=page.locator("#risk-h"))
    assert risk.get_by_role("link", name="shop", exact=True).get_attribute("href") == f"/ui/cis/{ids['shop']}"
    assert risk.get_by_role("link", name="shop-lb").is_visible()
    conflicts = page.locator("section", has=page.locator("#conflicts-h"))
    assert conflicts.get_by_role("link", name="web-host-2").is_visible()
    assert accessibility_violations(page) == []
    screenshot(page, "home")
    # The header's search box finds a host by its IP address.
    page.get_by_label("Search CIs").fill("10.0.1.12")
    page.get_by_label("Search CIs").press("Enter")
    page.wait_for_url(re.compile(r".*/ui/cis\?q=10\.0\.1\.12$"))
    link = page.locator("table.cis-table tbody").get_by_role("link", name="web-host-2")
    assert link.get_attribute("href") == f"/ui/cis/{ids['web-host-2']}"
    assert page.locator("table.cis-table tbody tr").count() == 1
    assert page.get_by_text("10.0.1.12").first.is_visible()
    assert accessibility_violations(page) == []
    assert page.script_errors == []


def test_filters_sort_and_the_next_page(page, site):
    post = poster(site)
    for n in range(30):
        post("/api/v1/cis", {"class": "server" if n % 3 else "virtual_machine", "name": f"node-{n:02}",
                             "owner": "team-a" if n < 28 else None})
    post("/api/v1/cis", {"class": "application", "name": "node-app", "owner": "team-a"})
    sign_in(page, site, "read", "/ui/cis")
    assert page.locator(".cis-total strong").inner_text() == "31"
    page.get_by_label("Class").select_option("server")
    page.get_by_label("Sort").select_option("-name")
    page.get_by_label("Per page").select_option("25")
    page.get_by_label("Owner", exact=True).fill("team-a")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r".*/ui/cis\?.*sort=-name.*"))
    assert page.locator(".cis-total strong").inner_text() == "28"
    names = page.locator("table.cis-table tbody tr td:first-child a")
    assert names.first.inner_text() == "node-27" and names.count() == 25
    page.get_by_role("link", name="Next page").click()
    page.wait_for_url(re.compile(r".*cursor=.*"))
    page.locator("table.cis-table tbody tr td:first-child a").first.wait_for()
    assert page.locator("table.cis-table tbody tr td:first-child a").all_inner_texts() == ["node-02", "node-01", "node-00"]
    assert page.get_by_label("Class").input_value() == "server"  # the form still says what is shown
    page.get_by_role("link", name="Updated").click()  # a heading sorts, newest first
    page.wait_for_url(re.compile(r".*sort=-updated_at.*"))
    assert page.locator("table.cis-table tbody tr td:first-child a").first.inner_text() == "node-27"
    assert accessibility_violations(page) == []
    assert page.script_errors == []


def test_hostile_names_do_not_execute(page, site):
    post = poster(site)
    for n, name in enumerate(HOSTILE):
        service = post("/api/v1/cis", {"class": "service", "name": name, "owner": name, "tags": [name]})
        host = post("/api/v1/cis", {"class": "server", "name": f"{name} host", "attributes": {"serial_number": f"S-{n}"}})
        post("/api/v1/relationships", {"source": service["id"], "target": host["id"], "type": "runs_on"})
    post("/api/v1/ingest", {"source": "ssh", "run_id": HOSTILE[1], "scope": {"hosts": [HOSTILE[0]]},
                            "items": [{"ref": HOSTILE[0], "class": "server", "name": HOSTILE[1],
                                       "identifiers": {"serial_number": "S-0", "fqdn": HOSTILE[0]}}]})
    dialogs = no_dialogs(page)
    sign_in(page, site, "read")
    for path in ("/ui/", "/ui/cis?" + str(httpx.QueryParams({"owner": HOSTILE[1]})), "/ui/cis?q=script",
                 "/ui/discovery"):
        page.goto(site.url(path))
        assert page.get_by_text(HOSTILE[1]).first.is_visible(), path
        assert page.locator("img[src=x]").count() == 0
        if path == "/ui/discovery":
            assert accessibility_violations(page) == []
    assert dialogs == [] and page.script_errors == []
