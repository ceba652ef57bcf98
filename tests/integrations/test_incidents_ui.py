"""/ui/incidents and /ui/incidents/{id} with the real app: what a read token sees, filtered and paged,
and labels from monitoring escaped."""

from markupsafe import escape

from tests.integrations.test_incidents import am_alert, am_payload, build_topology, post_am
from tests.web.test_home import HOSTILE
from tests.web.test_session import sign_in


def test_incident_pages_show_the_incident_and_escape_what_monitoring_sent(api):
    ids = build_topology(api)
    hostile = am_alert("evil", instance="10.0.0.21:9100", note=HOSTILE[0])
    hostile["annotations"] = {"summary": HOSTILE[1]}
    opened = post_am(api, am_payload("g-open", [hostile, am_alert("ghost", instance="nowhere:1")])).json()
    resolved = post_am(api, am_payload("g-done", [am_alert("r", "resolved", instance="10.0.0.11:9100")])).json()
    sign_in(api.client, api.secrets["read"])

    listing = api.client.get("/ui/incidents")
    assert listing.status_code == 200, listing.text
    assert listing.text.index(f"/ui/incidents/{resolved['id']}") < listing.text.index(f"/ui/incidents/{opened['id']}")
    only_open = api.client.get("/ui/incidents?status=open").text
    assert f"/ui/incidents/{opened['id']}" in only_open and f"/ui/incidents/{resolved['id']}" not in only_open
    assert api.client.get("/ui/incidents?status=closed").status_code == 422

    detail = api.client.get(f"/ui/incidents/{opened['id']}")
    assert detail.status_code == 200, detail.text
    html = detail.text
    for text in HOSTILE:
        assert text not in html and str(escape(text)) in html
    for name in ("db-1", "shop", "reports", "bi-team", "shop-team", "infra", "unbound", "instance:host"):
        assert name in html, name
    assert f"/ui/cis/{ids['db-1']}" in html and f"/ui/blast-radius?failed={ids['db-1']}" in html
    assert api.client.get(f"/ui/incidents/{ids['db-1']}").status_code == 404
    api.client.cookies.clear()
    assert api.client.get("/ui/incidents", follow_redirects=False).status_code in (302, 303, 401)
