"""Alerts that stop being reported (app.services.incidents, "absent" and "expired"), through the API on
SQLite and PostgreSQL: a firing alert left out of a complete Alertmanager notification is absent, and
fires again when listed again; a truncated notification and the generic form leave unlisted alerts as
they were; an Alertmanager incident silent past `expires_at` expires, by the sweep or at the group's
next notification, each change with its record in the feed, and a repeat puts the expiry off.

Time moves by the `now` the sweep and `expire` take, not by sleeping: the incidents of `expiring`
expire an hour after their last notification, far past any test. Only the notification path reads
the real clock; where a test needs it past an expiry it waits for that, bounded, and never asserts that
something has not happened yet after a wait.
"""

import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.services import incident_expiry, incidents
from tests.conftest import Api, create_tokens
from tests.integrations.test_incidents import (
    am_alert,
    am_payload,
    build_topology,
    post_am,
)

EXPIRY = 3600.0  # KARTA_ALERT_EXPIRY_SECONDS of `expiring`: the tests move the sweep's clock past it
WINDOW = 1.0  # where the real clock must pass an expiry (a notification's, the service's own sweep)
TICK = timedelta(microseconds=1)  # what the database keeps of a time


def incident_feed(api, incident_id: str, since: int = 0) -> list[tuple[str, dict]]:
    items = api.get(f"/api/v1/changes?since={since}&limit=1000", as_="read").json()["items"]
    return [(r["actor"], r["diff"]) for r in items if r["object_id"] == incident_id]


def alert_states(api, incident_id: str) -> dict[str, str]:
    detail = api.get(f"/api/v1/incidents/{incident_id}", as_="read").json()
    return {a["fingerprint"]: a["status"] for a in detail["alerts"]}


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def wait_past(moment: datetime, seconds: float = 30) -> None:
    """Until the real clock is past `moment` (a lower bound: a slow machine only waits less)."""
    deadline = time.monotonic() + seconds
    while datetime.now(UTC) <= moment:
        assert time.monotonic() < deadline, f"the clock did not pass {moment} in {seconds} s"
        time.sleep(0.05)


@contextmanager
def expiring_app(database_url, window: float):
    """An app whose Alertmanager incidents expire after `window` seconds without news, swept only when
    a test calls the sweep (its own thread waits an hour)."""
    app = create_app(Settings(database_url=database_url, alert_expiry_seconds=window, incident_sweep_seconds=3600))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, create_tokens(app.state.engine)), incidents.context(app.state)
    finally:
        app.state.engine.dispose()


@pytest.fixture
def expiring(database_url):
    with expiring_app(database_url, EXPIRY) as found:
        yield found


def test_an_alert_left_out_of_its_group_is_absent_and_fires_again_when_listed(api):
    ids = build_topology(api)
    node, pg = am_alert("db-node", instance="10.0.0.21:9100"), am_alert("db-pg", instance="db-1.example.com:9187")
    incident = post_am(api, am_payload("g", [node, pg])).json()
    head = api.get("/api/v1/changes", as_="read").json()["head_seq"]

    half = post_am(api, am_payload("g", [node])).json()  # db-pg silenced: Alertmanager lists db-node only
    assert half["status"] == "open" and half["counts"] == {"firing": 1, "resolved": 1, "unbound": 0, "absent": 1}
    assert alert_states(api, incident["id"]) == {"db-node": "firing", "db-pg": "absent"}

    gone = post_am(api, am_payload("g", [am_alert("db-node", "resolved", instance="10.0.0.21:9100")])).json()
    assert gone["status"] == "resolved" and gone["failed"] == []
    assert gone["counts"] == {"firing": 0, "resolved": 2, "unbound": 0, "absent": 1}

    back = post_am(api, am_payload("g", [pg])).json()  # the silence ended: db-pg fires again
    assert back["status"] == "open" and [ci["id"] for ci in back["failed"]] == [ids["db-1"]]
    assert back["counts"] == {"firing": 1, "resolved": 1, "unbound": 0}
    assert alert_states(api, incident["id"]) == {"db-node": "resolved", "db-pg": "firing"}

    diffs = [diff for _, diff in incident_feed(api, incident["id"], head)]
    assert [{k: v for k, v in d.items() if k.startswith(("alerts_", "status"))} for d in diffs] == [
        {"alerts_firing": [2, 1], "alerts_resolved": [0, 1], "alerts_absent": [0, 1]},
        {"status": ["open", "resolved"], "alerts_firing": [1, 0], "alerts_resolved": [1, 2]},
        {"status": ["resolved", "open"], "alerts_firing": [0, 1], "alerts_resolved": [2, 1], "alerts_absent": [1, 0]},
    ]


def test_a_truncated_notification_and_the_generic_form_leave_unlisted_alerts_firing(api):
    build_topology(api)
    post_am(api, am_payload("t", [am_alert("a", instance="10.0.0.21:9100"), am_alert("b", instance="10.0.0.11:9100")]))
    truncated = {**am_payload("t", [am_alert("a", instance="10.0.0.21:9100")]), "truncatedAlerts": 1}
    incident = post_am(api, truncated).json()
    assert incident["counts"] == {"firing": 2, "resolved": 0, "unbound": 0}

    for service in ("PostgreSQL", "SSH"):
        response = api.post("/api/v1/integrations/alerts", as_="write",
                            json={"host": "db-1", "service": service, "state": "CRITICAL"})
    assert response.status_code == 200, response.text
    assert response.json()["counts"] == {"firing": 2, "resolved": 0, "unbound": 0}
    assert response.json()["expires_at"] is None  # the generic form does not repeat itself: no expiry


def test_a_silent_group_expires_by_the_sweep_with_a_record_and_a_repeat_puts_it_off(expiring):
    api, ctx = expiring
    build_topology(api)
    alerts = [am_alert("db-node", instance="10.0.0.21:9100"), am_alert("db-pg", instance="db-1.example.com:9187")]
    sent = datetime.now(UTC)
    incident = post_am(api, am_payload("silent", alerts)).json()
    expires = datetime.fromisoformat(incident["expires_at"])
    assert sent + timedelta(seconds=EXPIRY) <= expires <= datetime.now(UTC) + timedelta(seconds=EXPIRY)
    assert incident_expiry.sweep(ctx, 10) == 0  # not yet due (an hour ahead)
    assert incident_expiry.sweep(ctx, 10, now=expires - TICK) == 0  # nor the instant before

    head = api.get("/api/v1/changes", as_="read").json()["head_seq"]
    repeat = post_am(api, am_payload("silent", alerts)).json()  # Alertmanager repeats the group
    renewed = datetime.fromisoformat(repeat["expires_at"])
    assert renewed > expires and repeat["status"] == "open"
    assert incident_feed(api, incident["id"], head) == []  # put off without a record
    assert incident_expiry.sweep(ctx, 10, now=expires) == 0  # due at the first expiry, not since the repeat
    assert incident_expiry.sweep(ctx, 10, now=renewed - TICK) == 0

    assert incident_expiry.sweep(ctx, 10, now=renewed) == 1
    assert incident_expiry.sweep(ctx, 10, now=renewed) == 0  # once
    detail = api.get(f"/api/v1/incidents/{incident['id']}", as_="read").json()
    assert detail["status"] == "resolved" and detail["expires_at"] is None and detail["failed"] == []
    assert detail["counts"] == {"firing": 0, "resolved": 2, "unbound": 0, "expired": 2}
    assert {(a["status"], a["ends_at"]) for a in detail["alerts"]} == {("expired", repeat["expires_at"])}
    assert datetime.fromisoformat(detail["updated_at"]) == renewed  # expired at the sweep's time
    [(actor, diff)] = incident_feed(api, incident["id"], head)
    assert actor == incident_expiry.ACTOR
    assert (diff["status"], diff["alerts_firing"], diff["alerts_resolved"], diff["alerts_expired"]) == (
        ["open", "resolved"], [2, 0], [0, 2], [0, 2])

    reopened = post_am(api, am_payload("silent", alerts)).json()  # the silence ended
    assert reopened["status"] == "open" and reopened["counts"] == {"firing": 2, "resolved": 0, "unbound": 0}


def test_a_later_ends_at_puts_the_expiry_off_and_the_next_notification_applies_it(database_url):
    # A notification judges expiry by the real clock: this test waits for it to pass expires_at (a
    # short window, an endsAt 5 windows later: the first notification has 4 s to land before it).
    with expiring_app(database_url, WINDOW) as (api, ctx):
        build_topology(api)
        until = datetime.now(UTC) + timedelta(seconds=WINDOW * 5)
        node = {**am_alert("db-node", instance="10.0.0.21:9100"), "endsAt": iso(until)}
        pg = am_alert("db-pg", instance="db-1.example.com:9187")
        incident = post_am(api, am_payload("later", [node, pg])).json()
        assert datetime.fromisoformat(incident["expires_at"]) == until

        wait_past(until)
        # Past expires_at and not swept yet: a truncated notification listing db-pg expires db-node.
        truncated = {**am_payload("later", [pg]), "truncatedAlerts": 1}
        after = post_am(api, truncated).json()
        assert after["status"] == "open" and after["counts"] == {
            "firing": 1, "resolved": 1, "unbound": 0, "expired": 1}
        assert alert_states(api, incident["id"]) == {"db-node": "expired", "db-pg": "firing"}
        renewed = datetime.fromisoformat(after["expires_at"])
        assert renewed > until
        # The notification renewed the incident: not due at the old expiry, nor until the new one.
        assert incident_expiry.sweep(ctx, 10, now=renewed - TICK) == 0
        assert incident_expiry.sweep(ctx, 10, now=renewed) == 1


def test_the_sweep_is_bounded_in_count(expiring):
    api, ctx = expiring
    build_topology(api)
    expiries = [datetime.fromisoformat(post_am(api, am_payload(f"g{n}", [am_alert(f"a{n}", instance="10.0.0.21:9100")]))
                                       .json()["expires_at"]) for n in range(5)]
    assert incident_expiry.sweep(ctx, 2, now=min(expiries) - TICK) == 0  # not yet due
    assert [incident_expiry.sweep(ctx, 2, now=max(expiries)) for _ in range(4)] == [2, 2, 1, 0]
    assert api.get("/api/v1/incidents?status=open", as_="read").json()["items"] == []


def test_the_service_sweeps_by_itself(database_url):
    app = create_app(Settings(database_url=database_url, alert_expiry_seconds=WINDOW, incident_sweep_seconds=0.1))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            api = Api(client, create_tokens(app.state.engine))
            build_topology(api)
            ids = [post_am(api, am_payload(f"g{n}", [am_alert(f"a{n}", instance="10.0.0.21:9100")])).json()["id"]
                   for n in range(2)]
            deadline = time.monotonic() + WINDOW + 20
            while api.get("/api/v1/incidents?status=open", as_="read").json()["items"]:
                assert time.monotonic() < deadline, "the service's sweep did not expire the incidents"
                time.sleep(0.1)
            for incident_id in ids:
                assert [(actor, diff["status"]) for actor, diff in incident_feed(api, incident_id)][-1] == (
                    incident_expiry.ACTOR, ["open", "resolved"])
    finally:
        app.state.engine.dispose()


def test_workers_expiring_one_incident_side_by_side_expire_it_once(expiring):
    from concurrent.futures import ThreadPoolExecutor

    api, ctx = expiring
    build_topology(api)
    incident = post_am(api, am_payload("race", [am_alert("a", instance="10.0.0.21:9100")])).json()
    due = datetime.fromisoformat(incident["expires_at"])
    assert not incidents.expire(ctx, incident_expiry.ACTOR, uuid.UUID(incident["id"]), now=due - TICK)
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(lambda _: incidents.expire(ctx, incident_expiry.ACTOR, uuid.UUID(incident["id"]), now=due),
                             range(4)))
    assert sorted(done) == [False, False, False, True]
    assert [diff.get("status") for _, diff in incident_feed(api, incident["id"])] == [[None, "open"], ["open", "resolved"]]
