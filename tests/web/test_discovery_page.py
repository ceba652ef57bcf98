"""/ui/discovery with the real app: runs newest first with their counts, errors and conflicts (candidate
CIs linked), pages of runs, a source filter, hostile text."""

import re

from markupsafe import escape

from app.services import overview
from tests.web.test_home import HOSTILE
from tests.web.test_session import sign_in


def _page(api, query: str = "") -> str:
    sign_in(api.client, api.secrets["read"])
    answer = api.client.get(f"/ui/discovery{query}")
    assert answer.status_code == 200, answer.text
    return answer.text


def _ingest(api, run_id: str, items: list[dict], source: str = "ssh", scope=None) -> dict:
    answer = api.post("/api/v1/ingest", json={"source": source, "run_id": run_id, "scope": scope or {"hosts": [run_id]},
                                              "items": items})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _runs(html: str) -> list[str]:
    return re.findall(r'<td class="mono">([^<]+?)(?: <span|</td>)', html)


def test_runs_with_counts_errors_and_conflicts(api):
    a = api.create_ci("server", "a", attributes={"serial_number": "S-A"})
    b = api.create_ci("server", "b", attributes={"fqdn": "b.example.com"})
    _ingest(api, "first", [{"ref": "h1", "class": "server", "name": "h1", "identifiers": {"serial_number": "S-1"}}])
    _ingest(api, "second", [
        {"ref": "x", "class": "server", "name": "confused", "identifiers": {"serial_number": "S-A", "fqdn": "b.example.com"}},
        {"ref": "bad", "class": "server", "name": "bad", "identifiers": {"serial_number": "S-2"},
         "attributes": {"cpu_count": "many"}},
    ], source="nmap")
    html = _page(api)
    assert _runs(html) == ["second", "first"]
    second = html[html.index('<td class="mono">second'):html.index('<td class="mono">first')]
    cells = re.findall(r'<td class="num">(?:<span class="error">)?(\d+)', second)
    assert cells == ["0", "0", "0", "1", "1"]  # created, updated, unchanged, conflicts, errors
    assert "1 error recorded" in second and "cpu_count" in second
    conflicts = html[html.index('id="open-h"'):html.index('id="runs-h"')]
    assert f'<a href="/ui/cis/{a["id"]}">a</a>' in conflicts and f'<a href="/ui/cis/{b["id"]}">b</a>' in conflicts
    assert "Conflicts of run <span class=\"mono\">second</span>" in html
    assert _runs(_page(api, "?source=ssh")) == ["first"]


def test_runs_come_in_pages(api, monkeypatch):
    monkeypatch.setattr(overview, "RUNS_PER_PAGE", 2)
    for n in range(5):
        _ingest(api, f"run-{n}", [])
    seen, query = [], ""
    for _ in range(5):
        html = _page(api, query)
        seen += _runs(html)
        found = re.search(r'<a href="/ui/discovery(\?[^"]*)" rel="next">', html)
        if not found:
            break
        query = found.group(1).replace("&amp;", "&")
    assert seen == [f"run-{n}" for n in (4, 3, 2, 1, 0)]


def test_a_bad_cursor_is_a_page_that_says_why(api):
    sign_in(api.client, api.secrets["read"])
    answer = api.client.get("/ui/discovery?cursor=bm9wZQ")
    assert answer.status_code == 422 and "does not exist" in answer.text


def test_hostile_text_stays_text(api):
    target = api.create_ci("server", HOSTILE[0], attributes={"serial_number": "S-H"})
    api.create_ci("server", HOSTILE[1], attributes={"fqdn": "h.example.com"})
    _ingest(api, HOSTILE[1], [{"ref": HOSTILE[0], "class": "server", "name": HOSTILE[1],
                               "identifiers": {"serial_number": "S-H", "fqdn": "h.example.com"}}],
            scope={"hosts": [HOSTILE[0]]})
    html = _page(api)
    assert "<script>alert" not in html and "<img src=x" not in html
    assert str(escape(HOSTILE[1])) in html and f'<a href="/ui/cis/{target["id"]}">{escape(HOSTILE[0])}</a>' in html
