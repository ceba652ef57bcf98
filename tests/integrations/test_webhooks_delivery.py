"""Webhook deliveries end to end: a real `karta serve` (tests/server.py) delivering to a real receiver
program (webhook_receiver.py: checks signatures with the README's snippet, logs to a file, answers
what it is told), on SQLite and PostgreSQL.

What "nothing is lost" means here, exactly: the deliveries Karta logged as acknowledged, in the order
the receiver got them, hold every change record after the subscription's start once each, in seq
order. A delivery the receiver got but Karta did not log as acknowledged can only be one cut by a
SIGKILL between the receiver's answer and Karta's commit; its records must come again after it.
"""

import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from app.core.db import make_engine
from tests.conftest import create_tokens, missing_requirement
from tests.server import free_port, running_server

ROOT = Path(__file__).resolve().parents[2]
RECEIVER = Path(__file__).with_name("webhook_receiver.py")
SECRET = "receiver-secret-0123456789"
FAST = {"KARTA_WEBHOOK_POLL_SECONDS": "0.1", "KARTA_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        "KARTA_WEBHOOK_RETRY_MAX_SECONDS": "0.5", "KARTA_WEBHOOK_TIMEOUT_SECONDS": "2", "KARTA_WEBHOOK_LOG_KEEP": "5000"}


class Receiver:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.out = directory / "received.jsonl"
        self.status = directory / "status"
        self.process: subprocess.Popen | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(RECEIVER), str(self.port), str(self.out), SECRET,
                                         str(ROOT / "README.md"), str(self.status)], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def answer(self, status: int) -> None:
        self.status.write_text(str(status))

    def entries(self, path: str | None = None) -> list[dict]:
        if not self.out.exists():
            return []
        lines = [json.loads(line) for line in self.out.read_text().splitlines() if line.endswith("}")]
        return [entry for entry in lines if path is None or entry["path"] == path]


@pytest.fixture
def receiver(tmp_path):
    made = Receiver(tmp_path)
    yield made
    made.stop()


@pytest.fixture
def admin(database_url):
    engine = make_engine(database_url)
    try:
        return {"Authorization": f"Bearer {create_tokens(engine)['admin']}"}
    finally:
        engine.dispose()


def wait_until(condition, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def subscribe(client, url: str, filters: dict | None = None) -> dict:
    response = client.post("/api/v1/webhooks", json={"url": url, "secret": SECRET, "filters": filters or {}})
    assert response.status_code == 201, response.text
    return response.json()


def ingest_hosts(client, names: list[str]) -> None:
    body = {"source": "ssh", "run_id": f"run-{uuid.uuid4()}", "scope": {"hosts": names},
            "items": [{"ref": name, "class": "server", "name": name, "identifiers": {"serial_number": f"SN-{name}"}}
                      for name in names]}
    response = client.post("/api/v1/ingest", json=body)
    assert response.status_code == 200, response.text


def feed_after(client, seq: int) -> list[dict]:
    return client.get(f"/api/v1/changes?since={seq}&limit=10000").json()["items"]


def acknowledged(client, webhook_id: str) -> set[str]:
    items = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries?limit=1000").json()["items"]
    return {item["id"] for item in items if item["outcome"] == "delivered"}


def delivered_in_order(client, receiver: Receiver, webhook: dict, path: str = "/hook") -> list[int]:
    """The seqs of the acknowledged deliveries as the receiver got them; checks what every delivery
    must be (signed, its ids in headers and body, its records in seq order)."""
    acked = acknowledged(client, webhook["id"])
    entries = [entry for entry in receiver.entries(path) if entry["status"] == 200]
    for entry in entries:
        assert entry["signature_ok"] and not entry["tampered_ok"], entry
        assert entry["delivery_header"] == entry["delivery_id"] and entry["webhook_header"] == webhook["id"]
        seqs = [record["seq"] for record in entry["records"]]
        assert seqs == sorted(seqs) and (entry["first_seq"], entry["last_seq"]) == (seqs[0], seqs[-1])
    cut = [entry for entry in entries if entry["delivery_id"] not in acked]
    seqs = [record["seq"] for entry in entries if entry["delivery_id"] in acked for record in entry["records"]]
    for entry in cut:  # each came again, acknowledged this time
        assert {record["seq"] for record in entry["records"]} <= set(seqs)
    return seqs


def test_a_receiver_down_for_a_while_gets_everything_in_order(database_url, receiver, admin):
    env = {**FAST, "KARTA_WEBHOOK_BATCH_RECORDS": "7"}
    with running_server(database_url, workers=2, env=env) as base, httpx.Client(base_url=base, headers=admin,
                                                                                 timeout=30) as client:
        webhook = subscribe(client, receiver.url())
        ingest_hosts(client, [f"down-{i}" for i in range(40)])
        client.post("/api/v1/cis", json={"class": "server", "name": "one-more"}).raise_for_status()
        failed = wait_until(lambda: [d for d in client.get(f"/api/v1/webhooks/{webhook['id']}/deliveries").json()["items"]
                                     if d["outcome"] == "failed"][2:], "three failed attempts")
        assert all(d["status_code"] is None and d["error"].startswith("ConnectError") for d in failed)
        receiver.start()
        expected = [record["seq"] for record in feed_after(client, webhook["cursor_seq"])]
        assert len(expected) == 1 + 40 + 1  # the subscription's own creation, then the 41 CIs
        wait_until(lambda: client.get(f"/api/v1/webhooks/{webhook['id']}").json()["cursor_seq"] >= expected[-1],
                   "the cursor at the head")
        # Two workers, one lease: nothing twice, even without a crash to excuse it.
        assert [r["seq"] for e in receiver.entries() for r in e["records"]] == expected
        assert delivered_in_order(client, receiver, webhook) == expected
        state = client.get(f"/api/v1/webhooks/{webhook['id']}").json()
        assert (state["state"], state["failures"]) == ("active", 0)
        assert receiver.entries()[0]["attempt"] >= 4  # three failures before it


def test_karta_killed_mid_stream_loses_nothing_and_repeats_no_acknowledged_delivery(database_url, receiver, admin):
    env = {**FAST, "KARTA_WEBHOOK_BATCH_RECORDS": "3"}
    receiver.start()
    with running_server(database_url, env=env) as base, httpx.Client(base_url=base, headers=admin, timeout=30) as client:
        webhook = subscribe(client, receiver.url(), {"object_types": ["ci"]})
        ingest_hosts(client, [f"kill-{i}" for i in range(300)])
        total = 300 // 3
        wait_until(lambda: len(receiver.entries()) >= 5, "the first deliveries", timeout=30)
        base.process.send_signal(signal.SIGKILL)
        base.process.wait(timeout=10)
        got_before_kill = len(receiver.entries())
    assert 5 <= got_before_kill < total  # killed mid-stream
    with running_server(database_url, env=env) as base, httpx.Client(base_url=base, headers=admin, timeout=30) as client:
        ingest_hosts(client, [f"after-{i}" for i in range(30)])
        expected = [r["seq"] for r in feed_after(client, webhook["cursor_seq"]) if r["object_type"] == "ci"]
        assert len(expected) == 330
        wait_until(lambda: client.get(f"/api/v1/webhooks/{webhook['id']}").json()["cursor_seq"] >= expected[-1],
                   "the cursor at the head", timeout=120)
        assert delivered_in_order(client, receiver, webhook) == expected
        received = [entry for entry in receiver.entries() if entry["delivery_id"] not in acknowledged(client, webhook["id"])]
        assert len(received) <= 1, received  # at most the delivery cut by the kill


def test_the_receiver_acknowledges_no_body_cut_short(receiver):
    """A sender killed mid-body (as Karta is by SIGKILL above) leaves fewer bytes than Content-Length:
    the receiver records nothing for it, as a real receiver would not act on a body it did not get."""
    import socket

    receiver.start()
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=10) as cut:
        cut.sendall(b"POST /cut HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"X-Karta-Signature: t=1,v1=00\r\nContent-Length: 1000\r\n\r\n" + b'{"records": [')
    assert httpx.post(receiver.url("/whole"), content=b"{}", timeout=10).status_code == 200
    time.sleep(0.5)  # the cut request's handler ended with the connection, before the whole one began
    assert [entry["path"] for entry in receiver.entries()] == ["/whole"]


def test_filters_choose_the_records_each_subscription_gets(database_url, receiver, admin):
    receiver.start()
    with running_server(database_url, env=FAST) as base, httpx.Client(base_url=base, headers=admin, timeout=30) as client:
        hooks = {path: subscribe(client, receiver.url(path), filters) for path, filters in [
            ("/apps", {"classes": ["application"]}), ("/runs-on", {"relationship_types": ["runs_on"]}),
            ("/owners", {"fields": ["owner"]}), ("/links", {"object_types": ["relationship"]}),
            ("/os", {"classes": ["server"], "fields": ["attributes.os_name"]})]}
        start = max(hook["cursor_seq"] for hook in hooks.values())
        server = client.post("/api/v1/cis", json={"class": "server", "name": "s1"}).json()["id"]
        app = client.post("/api/v1/cis", json={"class": "application", "name": "a1"}).json()["id"]
        for ci, fields in ((server, {"owner": "team-s"}), (app, {"owner": "team-a"}),
                           (server, {"attributes": {"os_name": "debian"}}), (app, {"environment": "prod"})):
            client.patch(f"/api/v1/cis/{ci}", json=fields).raise_for_status()
        for rel_type in ("runs_on", "depends_on"):
            client.post("/api/v1/relationships", json={"source": app, "target": server, "type": rel_type}).raise_for_status()
        assert client.delete(f"/api/v1/cis/{app}").status_code == 204  # ends both relationships too
        records = feed_after(client, start)
        head = records[-1]["seq"]
        wait_until(lambda: all(client.get(f"/api/v1/webhooks/{h['id']}").json()["cursor_seq"] >= head
                               for h in hooks.values()), "every cursor at the head")

        def got(path):
            return [(r["object_type"], r["object_id"], r["action"]) for e in receiver.entries(path) for r in e["records"]]

        runs_on, depends_on = [r["object_id"] for r in records if r["object_type"] == "relationship" and r["action"] == "create"]
        assert got("/apps") == [("ci", app, "create"), ("ci", app, "update"), ("ci", app, "update"), ("ci", app, "delete")]
        assert got("/runs-on") == [("relationship", runs_on, "create"), ("relationship", runs_on, "delete")]
        # A deletion's diff holds every old value: the app's owner goes from team-a to nothing.
        assert got("/owners") == [("ci", server, "update"), ("ci", app, "update"), ("ci", app, "delete")]
        assert sorted(got("/links")) == sorted([("relationship", rel, action) for rel in (runs_on, depends_on)
                                                for action in ("create", "delete")])
        assert got("/os") == [("ci", server, "update")]
        assert [e["records"][0]["diff"] for e in receiver.entries("/os")] == [["attributes.os_name"]]
        for path, hook in hooks.items():
            delivered_in_order(client, receiver, hook, path)


def test_disabled_after_a_run_of_failures_then_resumed_without_a_gap(database_url, receiver, admin):
    receiver.answer(500)
    receiver.start()
    env = {**FAST, "KARTA_WEBHOOK_MAX_FAILURES": "3"}
    with running_server(database_url, env=env) as base, httpx.Client(base_url=base, headers=admin, timeout=30) as client:
        webhook = subscribe(client, receiver.url(), {"object_types": ["ci"]})
        client.post("/api/v1/cis", json={"class": "server", "name": "first"}).raise_for_status()
        url = f"/api/v1/webhooks/{webhook['id']}"
        disabled = wait_until(lambda: (h := client.get(url).json())["state"] == "disabled" and h, "disabled")
        assert disabled["failures"] == 3 and disabled["disabled_reason"].startswith("3 failed deliveries in a row")
        log = client.get(f"{url}/deliveries").json()["items"]
        assert [(d["attempt"], d["status_code"], d["outcome"]) for d in log] == [(3, 500, "failed"), (2, 500, "failed"),
                                                                                (1, 500, "failed")]
        disabling = [r for r in feed_after(client, webhook["cursor_seq"]) if r["object_type"] == "webhook"]
        assert [(r["actor"], r["action"], r["diff"]["state"]) for r in disabling] == [
            ("admin-bot", "create", [None, "active"]), ("webhook-delivery", "update", ["active", "disabled"])]
        client.post("/api/v1/cis", json={"class": "server", "name": "while-disabled"}).raise_for_status()
        time.sleep(1)
        assert len(receiver.entries()) == 3  # nothing is sent while disabled
        receiver.answer(200)
        assert client.patch(url, json={"state": "active"}).json()["state"] == "active"
        expected = [r["seq"] for r in feed_after(client, webhook["cursor_seq"]) if r["object_type"] == "ci"]
        wait_until(lambda: client.get(url).json()["cursor_seq"] >= expected[-1], "the backlog delivered")
        assert delivered_in_order(client, receiver, webhook) == expected and len(expected) == 2


@pytest.mark.tools  # curl
def test_the_readme_subscription_command_runs_as_written(database_url, admin):
    """The README's curl, against a real server that delivers nothing (its URL is not ours to call)."""
    if shutil.which("curl") is None:
        missing_requirement("the README's subscription command needs curl")
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Webhooks: changes go out"):]
    command = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)
    with running_server(database_url, env={"KARTA_WEBHOOKS_DELIVER": "false"}) as base:
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", command.replace("http://127.0.0.1:8000", base)],
                             capture_output=True, text=True, timeout=60, check=False,
                             env={"ADMIN_TOKEN": admin["Authorization"].removeprefix("Bearer "), "PATH": "/usr/bin:/bin"})
        assert run.returncode == 0, run.stderr
        made = json.loads(run.stdout)
        assert (made["url"], made["filters"], made["state"]) == (
            "https://tickets.example.com/karta", {"classes": ["server"], "fields": ["owner", "status"]}, "active")
        listed = httpx.get(f"{base}/api/v1/webhooks", headers=admin, timeout=10).json()
        assert [hook["id"] for hook in listed] == [made["id"]]
