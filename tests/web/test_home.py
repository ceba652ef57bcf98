"""The home page (/ui/) with the real app: counts, services at risk, stale and unowned CIs, open ingest
conflicts, the latest changes and runs; hostile names stay text. `seed_web_shop` is the small realistic
estate the browser tests and the screenshot use too."""

from markupsafe import escape
from collections.abc import Callable

from app.services import overview
from tests.conftest import new_id
from tests.web.test_session import sign_in

HOSTILE = ['<img src=x onerror=alert(1)>', '"><script>alert(1)</script>']
HOSTS = {"web-host-1": "10.0.1.11", "web-host-2": "10.0.1.12", "web-host-3": "10.0.1.13",
         "app-host": "10.0.2.10", "db-host": "10.0.3.10"}


def seed_web_shop(post: Callable[[str, dict], dict]) -> dict[str, str]:
    """A web shop: service `shop` -> load balancer -> a cluster of three web nodes (two must be up), each
    on its own host -> the shop application -> its database; hosts found by an ssh discovery run
    (POST /api/v1/ingest). `post(url, body)` sends one API request as admin and gives the JSON answer.
    Returns the ids by name."""
    run = post("/api/v1/ingest", {
        "source": "ssh", "run_id": f"ssh-{new_id()}", "scope": {"subnets": ["10.0.0.0/16"]}, "complete": True,
        "items": [{"ref": name, "class": "server", "name": name,
                   "identifiers": {"serial_number": f"SN-{name}", "fqdn": f"{name}.shop.example"},
                   "attributes": {"ip_address": [ip], "os_name": "debian"}} for name, ip in HOSTS.items()]})
    ids = dict(run["refs"])

    def ci(ci_class: str, name: str, **fields) -> str:
        ids[name] = post("/api/v1/cis", {"class": ci_class, "name": name, **fields})["id"]
        return ids[name]

    def relate(source: str, rel_type: str, target: str) -> None:
        post("/api/v1/relationships", {"source": ids[source], "target": ids[target], "type": rel_type})

    ci("service", "shop", criticality=1, owner="team-shop", environment="prod", tags=["pci"])
    ci("load_balancer", "shop-lb", owner="team-net", environment="prod")
    ci("cluster", "web-cluster", owner="team-web", environment="prod", attributes={"min_members": 2})
    ci("application", "shop-app", owner="team-shop", environment="prod")
    ci("database", "shop-db", owner="team-data", environment="prod", criticality=1)
    for n in (1, 2, 3):
        ci("web_server", f"web-{n}", owner="team-web", environment="prod", tags=["web"])
        relate(f"web-{n}", "member_of", "web-cluster")
        relate(f"web-{n}", "runs_on", f"web-host-{n}")
        relate(f"web-{n}", "depends_on", "shop-app")
    relate("shop", "depends_on", "shop-lb")
    relate("shop-lb", "depends_on", "web-cluster")
    relate("shop-app", "runs_on", "app-host")
    relate("shop-app", "depends_on", "shop-db")
    relate("shop-db", "runs_on", "db-host")
    return ids


def api_post(api) -> Callable[[str, dict], dict]:
    def post(url: str, body: dict) -> dict:
        response = api.post(url, json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()
    return post


def _home(api, scope="read") -> str:
    sign_in(api.client, api.secrets[scope])
    page = api.client.get("/ui/")
    assert page.status_code == 200, page.text
    return page.text


def _section(html: str, heading_id: str) -> str:
    start = html.index(f'id="{heading_id}"')
    end = html.find("</section>", start)
    return html[start:end]


def test_an_empty_estate(api):
    html = _home(api)
    assert "0 CIs" in html and "No services yet." in html and "No discovery runs yet." in html
    assert "No open conflicts" in html and "Every CI has an owner." in html


def test_the_web_shop_at_a_glance(api):
    ids = seed_web_shop(api_post(api))
    api.patch(f"/api/v1/cis/{ids['web-host-3']}", json={"status": "stale"})
    html = _home(api)
    assert "13 CIs" in html
    counts = _section(html, "counts-h")
    assert '<a href="/ui/cis?class=server">server</a></td><td class="num">5</td>' in counts
    assert '<a href="/ui/cis?status=stale">stale</a></td><td class="num">1</td>' in counts
    risk = _section(html, "risk-h")
    # The cluster keeps the shop up when one web node or its host fails; everything on the single path does not.
    assert f'<a href="/ui/cis/{ids["shop"]}">shop</a>' in risk
    named = [name for name in ids if f'<a href="/ui/cis/{ids[name]}">{name}</a>' in risk]
    # Nearest first, five per service: db-host is the sixth.
    assert named == ["app-host", "shop", "shop-lb", "web-cluster", "shop-app", "shop-db"]
    assert risk.index(">shop-lb<") < risk.index(">web-cluster<") < risk.index(">shop-app<") < risk.index(">app-host<")
    assert "6 single points of failure" in risk and "and 1 more" in risk
    stale = _section(html, "stale-h")
    assert f'<a href="/ui/cis/{ids["web-host-3"]}">web-host-3</a>' in stale
    assert 'href="/ui/cis?status=stale&amp;sort=-updated_at"' in stale
    unowned = _section(html, "unowned-h")
    assert ">5</span>" in unowned and 'href="/ui/cis?no_owner=1"' in unowned  # the discovered hosts
    changes = _section(html, "changes-h")
    assert "admin-bot" in changes and "<code>status</code>: <del>active</del> → <ins>stale</ins>" in changes
    runs = _section(html, "runs-h")
    assert "10.0.0.0/16" in runs and '<td class="num">5</td>' in runs  # five hosts created


def test_open_conflicts_name_their_candidates_until_a_later_run_clears_them(api):
    ids = seed_web_shop(api_post(api))
    scope = {"hosts": ["confused"]}
    confused = {"ref": "x", "class": "server", "name": "confused",
                "identifiers": {"serial_number": "SN-web-host-1", "fqdn": "web-host-2.shop.example"}}
    first = api.post("/api/v1/ingest", json={"source": "nmap", "run_id": "nmap-1", "scope": scope, "items": [confused]})
    assert first.json()["counts"]["conflicts"] == 1, first.text
    conflicts = _section(_home(api), "conflicts-h")
    assert "<strong>x</strong>" in conflicts and "nmap-1" in conflicts
    for host in ("web-host-1", "web-host-2"):
        assert f'<a href="/ui/cis/{ids[host]}">{host}</a>' in conflicts
    resolved = {**confused, "identifiers": {"serial_number": "SN-web-host-1"}}
    api.post("/api/v1/ingest", json={"source": "nmap", "run_id": "nmap-2", "scope": scope, "items": [resolved]})
    assert "No open conflicts" in _section(_home(api), "conflicts-h")


def test_hostile_names_are_text_everywhere_on_the_home_page(api):
    for n, name in enumerate(HOSTILE):
        service = api.create_ci("service", name, owner=name, tags=[name])
        host = api.create_ci("server", f"{name}-host-{n}")
        api.relate(service["id"], "runs_on", host["id"])
        api.patch(f"/api/v1/cis/{host['id']}", json={"status": "stale"})
    ingest = api.post("/api/v1/ingest", json={"source": "ssh", "run_id": HOSTILE[1], "scope": {"hosts": [HOSTILE[0]]},
                                              "items": [{"ref": HOSTILE[0], "class": "server", "name": HOSTILE[1]}]})
    assert ingest.status_code == 200, ingest.text
    html = _home(api)
    assert "<script>alert" not in html and "<img src=x" not in html
    for name in HOSTILE:
        assert str(escape(name)) in html


def test_services_at_risk_are_bounded_and_say_so(api, monkeypatch):
    host = api.create_ci("server", "shared-host")
    for n in range(4):
        service = api.create_ci("service", f"svc-{n}", criticality=n + 1)
        api.relate(service["id"], "runs_on", host["id"])
    monkeypatch.setattr(overview, "SERVICES_EXAMINED", 3)
    risk = _section(_home(api), "risk-h")
    assert [n for n in range(4) if f">svc-{n}</a>" in risk] == [0, 1, 2]  # the most critical first
    assert "Examined the 3 most critical of 4 services." in risk
