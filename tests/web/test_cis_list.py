"""The CI list (/ui/cis) with the real app: filters, search box, sorting with cursor pages, the total,
htmx fragments, bad input as pages, hostile text."""

import re

import pytest
from markupsafe import escape

from app.services import cis
from tests.web.test_home import HOSTILE
from tests.web.test_session import sign_in


def _list(api, query: str = "", **headers) -> str:
    sign_in(api.client, api.secrets["read"])
    page = api.client.get(f"/ui/cis{query}", headers=headers)
    assert page.status_code == 200, page.text
    return page.text


def _names(html: str) -> list[str]:
    return re.findall(r'<td><a href="/ui/cis/[0-9a-f-]+">([^<]*)</a>', html)


def _total(html: str) -> int:
    return int(re.search(r'class="cis-total" role="status">\s*<strong>([\d,]+)</strong>', html).group(1).replace(",", ""))


def _next(html: str) -> str | None:
    found = re.search(r'<a href="/ui/cis(\?[^"]*)" hx-get="[^"]*" rel="next">', html)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.fixture
def estate(api):
    api.create_ci("server", "web-1", environment="prod", owner="web", tags=["pci", "web"])
    api.create_ci("virtual_machine", "web-2", environment="prod", owner="web", tags=["web"])
    api.create_ci("database", "pg-main", environment="stage", owner="dba", status="maintenance")
    api.create_ci("application", "Shop-Web", environment="prod")
    api.create_ci("server", "old-box", status="stale")
    return api


@pytest.mark.parametrize("query, names", [
    ("", ["old-box", "pg-main", "Shop-Web", "web-1", "web-2"]),
    ("?class=server", ["old-box", "web-1", "web-2"]),  # virtual_machine is a server
    ("?class=server&status=active", ["web-1", "web-2"]),
    ("?environment=prod&owner=web&tag=pci", ["web-1"]),
    ("?no_owner=1", ["old-box", "Shop-Web"]),
    ("?status=&class=&owner=&q=", ["old-box", "pg-main", "Shop-Web", "web-1", "web-2"]),  # the empty form
    ("?q=web", ["Shop-Web", "web-1", "web-2"]),
    ("?sort=-name", ["web-2", "web-1", "Shop-Web", "pg-main", "old-box"]),
    ("?sort=status", ["web-1", "web-2", "Shop-Web", "pg-main", "old-box"]),
    ("?sort=-updated_at&class=server", ["old-box", "web-2", "web-1"]),
])
def test_filters_and_sorts(estate, query, names):
    html = _list(estate, query)
    listed = _names(html)
    assert sorted(listed, key=str.lower) == sorted(names, key=str.lower)
    if "sort=" in query:
        assert listed == names
    assert _total(html) == len(names)


def test_the_form_keeps_the_filters_and_the_headers_sort(estate):
    html = _list(estate, "?class=server&owner=web&sort=-name")
    assert '<option value="server" selected>' in html and 'name="owner" value="web"' in html
    assert '<option value="-name" selected>' in html
    assert '<th scope="col" aria-sort="descending">' in html
    # The Name heading now sorts A to Z (the default, so no sort in the URL); the others keep the filters.
    assert 'href="/ui/cis?class=server&amp;owner=web" hx-get="/ui/cis?class=server&amp;owner=web">Name' in html
    assert 'href="/ui/cis?class=server&amp;owner=web&amp;sort=-last_seen" hx-get=' in html


def test_pages_follow_the_sort_to_the_end(api):
    made = sorted(f"host-{n:02}" for n in range(30))
    for name in reversed(made):
        api.create_ci("server", name)
    seen, query = [], "?sort=-name&limit=25"
    for _ in range(5):
        html = _list(api, query)
        assert _total(html) == 30
        seen += _names(html)
        query = _next(html)
        if query is None:
            break
        assert "First page" not in html or seen[25:]
    assert seen == list(reversed(made))


def test_htmx_gets_the_filters_and_table_only(estate):
    sign_in(estate.client, estate.secrets["read"])
    answer = estate.client.get("/ui/cis?class=server", headers={"HX-Request": "true"})
    assert answer.status_code == 200 and answer.headers["vary"] == "HX-Request"
    assert answer.text.lstrip().startswith('<div id="cis-results"') and "<html" not in answer.text
    assert sorted(_names(answer.text)) == ["old-box", "web-1", "web-2"]


@pytest.mark.parametrize("query, message", [
    ("?status=gone", "Unknown status"), ("?limit=7", "limit is one of"), ("?class=nonesuch", "Unknown class"),
    ("?sort=size", "Unknown sort"), ("?cursor=bm9wZQ&sort=name", "not one this API issued"),
    ("?q=%00%00%00", "NUL"),  # SQLite's FTS5 cannot parse a NUL: refused on both databases
])
def test_bad_input_is_a_page_that_says_why(estate, query, message):
    sign_in(estate.client, estate.secrets["read"])
    answer = estate.client.get(f"/ui/cis{query}")
    assert answer.status_code == 422 and answer.headers["content-type"].startswith("text/html")
    assert message in answer.text


@pytest.mark.parametrize("query", ["?owner=%00x", "?environment=%00", "?tag=a%00"])
def test_a_nul_in_a_filter_is_no_server_error(estate, query):
    # PostgreSQL's driver refuses a NUL in text before the query leaves (no SQLSTATE): a 422 page there;
    # SQLite compares it and finds nothing.
    sign_in(estate.client, estate.secrets["read"])
    answer = estate.client.get(f"/ui/cis{query}")
    if estate.client.app.state.engine.dialect.name == "postgresql":
        assert answer.status_code == 422 and "cannot store or compare" in answer.text
    else:
        assert answer.status_code == 200 and _names(answer.text) == []


def test_sorting_too_many_by_last_seen_falls_back_to_names(estate, monkeypatch):
    monkeypatch.setattr(cis, "LAST_SEEN_SORT_MAX", 3)
    html = _list(estate, "?sort=-last_seen")
    assert "at most 3 CIs (these leave more)" in html and "Sorted by name instead." in html
    assert _names(html) == ["old-box", "pg-main", "Shop-Web", "web-1", "web-2"]
    assert _names(_list(estate, "?sort=-last_seen&class=server")) != []  # three: allowed


def test_hostile_text_stays_text(api):
    for name in HOSTILE:
        api.create_ci("server", name, owner=name, tags=[name], environment="prod")
    html = _list(api, "?owner=" + HOSTILE[1].replace("&", "%26").replace('"', "%22").replace("<", "%3C").replace(">", "%3E"))
    assert "<script>alert" not in html and "<img src=x" not in html
    assert str(escape(HOSTILE[1])) in html
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html  # the owner field, as an attribute
    assert "owner=%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in html  # and URL-encoded in the links
    assert _total(html) == 1


def test_search_by_an_ip_address_finds_the_host(api):
    host = api.create_ci("server", "db-7", attributes={"ip_address": ["10.9.8.7"]})
    api.create_ci("server", "db-8", attributes={"ip_address": ["10.9.8.70"]})
    html = _list(api, "?q=10.9.8.7")
    assert f'<a href="/ui/cis/{host["id"]}">db-7</a>' in html
    assert "ip_address: 10.9.8.7" in html


def test_the_total_is_counted_up_to_a_bound_and_in_full_on_request(estate, monkeypatch):
    from app.web.pages import cis_list

    monkeypatch.setattr(cis_list, "COUNT_UP_TO", 3)
    html = _list(estate, "?class=server&environment=")
    assert "More than <strong>3</strong> CIs" not in html and _total(html) == 3  # exactly 3: counted
    html = _list(estate)
    assert "More than <strong>3</strong> CIs" in html and len(_names(html)) == 5
    assert 'href="/ui/cis?count=all">count them all</a>' in html
    assert _total(_list(estate, "?count=all")) == 5
    answer = estate.get("/api/v1/cis?limit=2", as_="read").json()  # the API's list is not bounded by the page's count
    assert len(answer["items"]) == 2
