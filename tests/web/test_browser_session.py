"""In a real Chromium: sign in, the header a read token sees, sign out, /docs offline, accessibility."""

import re

import pytest

from tests.web.conftest import accessibility_violations, sign_in

pytestmark = pytest.mark.browser


def test_sign_in_and_out(page, site):
    page.goto(site.url("/"))
    assert page.url.endswith("/ui/login?next=/ui/")
    assert accessibility_violations(page) == []
    sign_in(page, site, "read")
    assert page.get_by_text("read only").is_visible()
    assert accessibility_violations(page) == []
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/ui/login$"))
    page.goto(site.url("/ui/"))
    assert "/ui/login" in page.url
    assert page.script_errors == []


def test_docs_render_offline_from_vendored_assets(page, site):
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(site.url("/docs"))
    page.get_by_text("/api/v1/cis", exact=False).first.wait_for()
    assert all(url.startswith(site.base) for url in requested), [u for u in requested if not u.startswith(site.base)]
    assert page.script_errors == []
