"""The real Alertmanager (Debian prometheus-alertmanager) notifying a real `karta serve` through its
webhook receiver, configured as the README tells an operator to.

Alerts are posted to Alertmanager's API v2 as Prometheus would; Alertmanager groups them by `team`
and sends each group to Karta. Each group becomes one incident with the blast radius expected on the
known topology of test_incidents; then the alerts are posted again with `endsAt` in the past, and
Alertmanager's resolved notifications resolve the incidents."""

import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import Api, missing_requirement, tokens_for
from tests.integrations.test_incidents import blast_radius_of_db_1, build_topology, radius_view, readme_block
from tests.server import free_port, running_server

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
WAIT_SECONDS = 60



def alertmanager_config(karta: str, token_file: Path, **route: str) -> str:
    """The README's alertmanager.yml with this test's Karta and token file; grouped by team, and
    within a second instead of 30 s; `route` overrides more of the route (repeat_interval)."""
    config = yaml.safe_load(readme_block("yaml", "webhook_configs"))
    config["route"].update({"group_by": ["team"], "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h", **route})
    [webhook] = config["receivers"][0]["webhook_configs"]
    assert webhook["url"] == "https://karta.example.com/api/v1/integrations/alertmanager"
    webhook["url"] = webhook["url"].replace("https://karta.example.com", karta)
    webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return yaml.safe_dump(config)


@contextmanager
def running_alertmanager(directory: Path, karta: str, token: str, **route: str):
    """Alertmanager on a free loopback port, gossip off, its data in `directory`; yields its base URL."""
    token_file = directory / "karta-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    config = directory / "alertmanager.yml"
    config.write_text(alertmanager_config(karta, token_file, **route))
    port = free_port()
    log = (directory / "alertmanager.log").open("w+")
    # No proxy variables: its webhook goes straight to Karta on this machine.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory)}
    process = subprocess.Popen([ALERTMANAGER, f"--config.file={config}", f"--storage.path={directory / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                                "--log.level=debug"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"alertmanager exited: {(directory / 'alertmanager.log').read_text()[-3000:]}"
            try:
                if httpx.get(f"{base}/-/ready", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "alertmanager did not become ready in 30 s"
            time.sleep(0.1)
        yield base
    except BaseException:
        log.seek(0)
        print("alertmanager log:\n" + log.read()[-10_000:])
        raise
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate, and kill what does not end within `timeout`."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def wait_for(read, done, what: str, seconds: float = WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}; last: {value}"
        time.sleep(0.25)


def am_post(base: str, alerts: list[dict]) -> None:
    response = httpx.post(f"{base}/api/v2/alerts", json=alerts, timeout=10, trust_env=False)
    assert response.status_code == 200, response.text


def prometheus_alert(name: str, instance: str, team: str, ends_at: datetime | None = None) -> dict:
    alert = {"labels": {"alertname": name, "instance": instance, "team": team, "severity": "critical"},
             "annotations": {"summary": f"{name} on {instance}"}, "generatorURL": "http://prometheus.example/graph",
             "startsAt": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}
    if ends_at is not None:
        alert["endsAt"] = ends_at.isoformat()
    return alert


@pytest.mark.tools
def test_alertmanager_groups_reach_karta_as_incidents_and_resolve(database_url, tmp_path):
    if not shutil.which(ALERTMANAGER):
        missing_requirement("prometheus-alertmanager is not installed (Debian: apt-get install prometheus-alertmanager)")
    secrets = tokens_for(database_url)
    with running_server(database_url) as karta, httpx.Client(base_url=karta, trust_env=False, timeout=30) as client:
        api = Api(client, secrets)
        ids = build_topology(api)
        with running_alertmanager(tmp_path, karta, secrets["write"]) as alertmanager:
            alerts = [prometheus_alert("NodeDown", "10.0.0.21:9100", "dba"),
                      prometheus_alert("PostgresDown", "db-1.example.com:9187", "dba"),
                      prometheus_alert("NodeDown", "web-1:9100", "web"),
                      prometheus_alert("NodeDown", "printer-7:9100", "web")]
            am_post(alertmanager, alerts)

            def incidents(status: str | None = None) -> dict[str, dict]:
                query = f"?status={status}" if status else ""
                listed = api.get(f"/api/v1/incidents{query}", as_="read").json()["items"]
                return {i["group_key"]: api.get(f"/api/v1/incidents/{i['id']}", as_="read").json() for i in listed}

            opened = wait_for(lambda: incidents("open"), lambda found: len(found) == 2 and all(
                i["counts"]["firing"] == 2 for i in found.values()), "two open incidents of two alerts each")
            assert set(opened) == {'{}:{team="dba"}', '{}:{team="web"}'}
            dba, web = opened['{}:{team="dba"}'], opened['{}:{team="web"}']
            assert (dba["source"], dba["receiver"], dba["group_labels"]) == ("alertmanager", "karta", {"team": "dba"})
            assert radius_view(dba) == blast_radius_of_db_1(ids)
            assert [(c["name"], c["explains_count"]) for c in dba["root_cause"]] == [("db-1", 1)]
            assert {(a["labels"]["alertname"], a["ci"]["name"], a["bound_by"]) for a in dba["alerts"]} == {
                ("NodeDown", "db-1", "instance:host"), ("PostgresDown", "db-1", "instance:host")}
            assert radius_view(web) == {
                "failed": {"web-1"}, "impacted": {("shop-web", "down", 1), ("shop", "down", 2)},
                "services": [("shop", 1, "shop-team", "down")], "risk": "critical", "owners": ["infra", "shop-team"]}
            assert {(a["labels"]["instance"], a["ci"] and a["ci"]["name"]) for a in web["alerts"]} == {
                ("web-1:9100", "web-1"), ("printer-7:9100", None)}
            assert web["counts"] == {"firing": 2, "resolved": 0, "unbound": 1}

            past = datetime.now(UTC) - timedelta(seconds=5)
            am_post(alertmanager, [{**alert, "endsAt": past.isoformat()} for alert in alerts])
            resolved = wait_for(lambda: incidents("resolved"), lambda found: len(found) == 2,
                                "both incidents resolved")
            assert incidents("open") == {}
            for incident in resolved.values():
                assert incident["counts"] == {"firing": 0, "resolved": 2, "unbound": int(incident is resolved['{}:{team="web"}'])}
                assert incident["failed"] == [] and incident["owners"] == []
                assert {a["status"] for a in incident["alerts"]} == {"resolved"}
                assert all(a["ends_at"] is not None for a in incident["alerts"])
        feed = api.get("/api/v1/changes?since=0&limit=1000", as_="read").json()["items"]
        by_incident = {}
        for record in feed:
            if record["object_type"] == "incident":
                by_incident.setdefault(record["object_id"], []).append(record["diff"].get("status", [None, None])[1])
        assert sorted(by_incident) == sorted(i["id"] for i in resolved.values())
        assert all(statuses[0] == "open" and statuses[-1] == "resolved" for statuses in by_incident.values()), by_incident


def silence(base: str, instance: str) -> None:
    now = datetime.now(UTC)
    body = {"matchers": [{"name": "instance", "value": instance, "isRegex": False, "isEqual": True}],
            "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "karta tests", "comment": "maintenance"}
    response = httpx.post(f"{base}/api/v2/silences", json=body, timeout=10, trust_env=False)
    assert response.status_code == 200, response.text


@pytest.mark.tools
def test_silenced_alerts_stop_firing_in_karta(database_url, tmp_path):
    """A silenced alert is left out of its group's next notification (absent); a group silenced whole
    gets none, and its incident expires after KARTA_ALERT_EXPIRY_SECONDS; a group that keeps firing is
    repeated every repeat_interval (shorter) and stays open. The alerts are posted again and again,
    as Prometheus does, without endsAt: Alertmanager gives them its resolve_timeout (5 min)."""
    if not shutil.which(ALERTMANAGER):
        missing_requirement("prometheus-alertmanager is not installed (Debian: apt-get install prometheus-alertmanager)")
    secrets = tokens_for(database_url)
    env = {"KARTA_ALERT_EXPIRY_SECONDS": "6", "KARTA_INCIDENT_SWEEP_SECONDS": "0.2"}
    with running_server(database_url, env=env) as karta, \
            httpx.Client(base_url=karta, trust_env=False, timeout=30) as client:
        api = Api(client, secrets)
        build_topology(api)
        with running_alertmanager(tmp_path, karta, secrets["write"], repeat_interval="2s") as alertmanager:
            alerts = [prometheus_alert("NodeDown", "10.0.0.21:9100", "dba"),
                      prometheus_alert("PostgresDown", "db-1.example.com:9187", "dba"),
                      prometheus_alert("NodeDown", "web-1:9100", "web"),
                      prometheus_alert("NodeDown", "printer-7:9100", "web")]

            def incidents() -> dict[str, dict]:
                am_post(alertmanager, alerts)  # Prometheus re-sends what fires
                listed = api.get("/api/v1/incidents", as_="read").json()["items"]
                return {i["group_key"]: api.get(f"/api/v1/incidents/{i['id']}", as_="read").json() for i in listed}

            def states(incident: dict) -> dict[str, str]:
                return {a["labels"]["instance"]: a["status"] for a in incident["alerts"]}

            dba_key, web_key = '{}:{team="dba"}', '{}:{team="web"}'
            wait_for(incidents, lambda found: {k: i["counts"]["firing"] for k, i in found.items()} == {
                dba_key: 2, web_key: 2}, "two open incidents of two alerts each")

            silence(alertmanager, "printer-7:9100")
            found = wait_for(incidents, lambda found: states(found[web_key]).get("printer-7:9100") == "absent",
                             "the silenced printer-7 alert absent from the web group")
            assert states(found[web_key]) == {"web-1:9100": "firing", "printer-7:9100": "absent"}
            assert found[web_key]["status"] == "open"

            silence(alertmanager, "web-1:9100")
            found = wait_for(incidents, lambda found: found[web_key]["status"] == "resolved",
                             "the web group, silenced whole, resolved")
            assert states(found[web_key]) == {"web-1:9100": "expired", "printer-7:9100": "absent"}
            assert found[dba_key]["status"] == "open" and found[dba_key]["counts"]["firing"] == 2
        feed = api.get("/api/v1/changes?since=0&limit=1000", as_="read").json()["items"]
        expired = [(r["object_id"], r["actor"]) for r in feed if "alerts_expired" in r["diff"]]
        assert expired == [(found[web_key]["id"], "alert-expiry")]
