"""Fixtures for the web UI's tests: a real `karta serve` and a real headless Chromium (Debian's
`chromium`, driven by Playwright for Python; no browser is downloaded), with axe-core for the
accessibility check. Without Chromium or Playwright, browser tests skip and say why (in CI they fail).

`KARTA_TEST_CHROMIUM` names another Chromium executable."""

import os
import re
import shutil
import tempfile
from urllib.parse import quote
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from tests.conftest import create_tokens, missing_requirement
from tests.server import running_server

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# axe-core impacts that fail a page; "moderate" and "minor" are reported in the message only.
FAILING_IMPACTS = ("serious", "critical")


def chromium_path() -> str | None:
    named = os.environ.get("KARTA_TEST_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def launched_browser():
    """A headless Chromium driven by Playwright's sync API, for as long as the generator is open. While it
    is, Playwright's event loop runs in this thread and `asyncio.run` cannot: a fixture yielding it from
    outside tests/web (which pytest runs last) must be scoped to its module, never the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_requirement("Playwright for Python is not installed (pip install playwright)")
    executable = chromium_path()
    if executable is None:
        missing_requirement("Chromium is not installed (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def browser():
    yield from launched_browser()


class Site:
    """A running Karta with tokens of every scope, and the engine its tests seed data with."""

    def __init__(self, base: str, database_url: str, tokens: dict[str, str]) -> None:
        self.base, self.database_url, self.tokens = base, database_url, tokens
        self.engine = create_engine(database_url)

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def site(database_url):
    engine = create_engine(database_url)
    tokens = create_tokens(engine)
    engine.dispose()
    with running_server(database_url, env={"KARTA_TOKEN_CACHE_SECONDS": "0.3"}) as base:
        running = Site(base, database_url, tokens)
        yield running
        running.engine.dispose()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(15_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.script_errors = errors
    yield opened
    context.close()


def sign_in(page, site: Site, scope: str = "write", next_path: str = "/ui/") -> None:
    page.goto(site.url("/ui/login?next=" + quote(next_path, safe="/")))
    page.get_by_label("API token").fill(site.tokens[scope])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(".*" + re.escape(next_path.split("?")[0]) + ".*"))


def accessibility_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is (WCAG 2.1 A and AA rules).
    axe is evaluated through the DevTools protocol, which the page's CSP does not govern, so the page
    keeps its real policy."""
    page.evaluate(AXE.read_text() + "\n;undefined")
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    return [v for v in result if v["impact"] in FAILING_IMPACTS]


def screenshot(page, name: str) -> None:
    """A picture of the page for the README: written to docs/screenshots/NAME.png when
    KARTA_UPDATE_SCREENSHOTS=1 (`make screenshots`), else to a temporary folder, so that a test run
    leaves the checkout as it was while still taking the picture the same way."""
    folder = SCREENSHOTS if os.environ.get("KARTA_UPDATE_SCREENSHOTS") == "1" else Path(tempfile.gettempdir()) / "karta-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=False)
