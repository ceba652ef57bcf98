"""/api/v1/webhooks: subscriptions validated, recorded in the change feed, their secret encrypted at
rest and never returned; the filters' matching rules. (Deliveries: test_webhooks_delivery.py.)"""

import re
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlalchemy import insert, select

from app.core.config import Settings
from app.core.db import make_engine, write_transaction
from app.models import Webhook
from app.services.history import UnitOfWork
from app.services.webhook_delivery import DeliveryWorker, next_batch
from app.services.webhooks import (
    DELIVERY,
    SecretBox,
    create_webhook,
    list_deliveries,
    matches,
)
from tests.conftest import create_tokens
from tests.integrations.webhook_receiver import readme_snippet

SECRET = "s3cret-of-the-receiver-0123"


def _feed(api, since=0):
    return [r for r in api.get(f"/api/v1/changes?since={since}&limit=1000").json()["items"] if r["object_type"] == "webhook"]


def test_create_read_update_delete_with_change_records(api, engine):
    created = api.post("/api/v1/webhooks", json={"url": "https://tickets.example.com/hook?x=1", "secret": SECRET,
                                                  "filters": {"classes": ["server", "server"], "fields": ["owner"]}})
    assert created.status_code == 201, created.text
    hook = created.json()
    assert created.headers["Location"] == f"/api/v1/webhooks/{hook['id']}"
    assert hook["filters"] == {"classes": ["server"], "fields": ["owner"]}
    assert (hook["state"], hook["failures"], hook["disabled_reason"]) == ("active", 0, None)
    assert "secret" not in hook and "secret_encrypted" not in hook
    assert api.get(f"/api/v1/webhooks/{hook['id']}").json() == hook
    assert [h["id"] for h in api.get("/api/v1/webhooks").json()] == [hook["id"]]

    # Encrypted at rest with the service's key, and nowhere in the answers or the feed.
    with engine.connect() as conn:
        sealed = conn.execute(select(Webhook.__table__.c.secret_encrypted)).scalar_one()
    assert SECRET not in sealed and SecretBox(engine).open(sealed) == SECRET

    patched = api.patch(f"/api/v1/webhooks/{hook['id']}", json={"state": "disabled", "secret": "another-secret-1234567"})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["state"], patched.json()["disabled_reason"]) == ("disabled", "disabled through the API")
    assert api.patch(f"/api/v1/webhooks/{hook['id']}", json={"state": "active", "filters": {}}).json()["filters"] == {}
    assert api.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
    assert api.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404
    assert api.get(f"/api/v1/webhooks/{hook['id']}/deliveries").status_code == 404

    records = _feed(api)
    assert [(r["action"], sorted(r["diff"])) for r in records] == [
        ("create", ["filters", "state", "url"]), ("update", ["secret", "state"]), ("update", ["filters", "state"]),
        ("delete", ["filters", "state", "url"])]
    assert all(r["object_id"] == hook["id"] and r["actor"] == "admin-bot" for r in records)
    assert records[1]["diff"]["secret"] == [None, "replaced"]
    everything = api.get("/api/v1/changes?limit=1000").text
    assert SECRET not in everything and "another-secret" not in everything


@pytest.mark.parametrize("body, field", [
    ({"url": "ftp://example.com/x", "secret": SECRET}, "url"),
    ({"url": "not a url", "secret": SECRET}, "url"),
    ({"url": "https://example.com/" + "a" * 2000, "secret": SECRET}, "url"),
    ({"url": "https://example.com/", "secret": "short"}, "secret"),
    ({"url": "https://example.com/", "secret": "x" * 201}, "secret"),
    ({"url": "https://example.com/"}, "secret"),
    ({"url": "https://example.com/", "secret": SECRET, "filters": {"kinds": ["ci"]}}, "filters.kinds"),
    ({"url": "https://example.com/", "secret": SECRET, "filters": {"classes": []}}, "filters.classes"),
    ({"url": "https://example.com/", "secret": SECRET, "filters": {"fields": ["a\nb"]}}, "filters.fields.0"),
    ({"url": "https://example.com/", "secret": SECRET, "extra": 1}, "extra"),
])
def test_bad_subscriptions_are_refused_naming_the_field(api, body, field):
    response = api.post("/api/v1/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert field in {e["field"] for e in response.json()["errors"]}
    assert _feed(api) == []


def test_only_admin_tokens_manage_webhooks(api):
    for scope in ("read", "write", "discovery"):
        assert api.post("/api/v1/webhooks", json={"url": "https://e.com/", "secret": SECRET}, as_=scope).status_code == 403
        assert api.get("/api/v1/webhooks", as_=scope).status_code == 403
    assert api.get(f"/api/v1/webhooks/{uuid.uuid4()}").status_code == 404
    assert api.patch(f"/api/v1/webhooks/{uuid.uuid4()}", json={"state": "active"}).status_code == 404


def _record(object_type, diff, action="update"):
    return {"object_type": object_type, "object_id": uuid.uuid4(), "action": action, "diff": diff}


def test_filter_rules():
    server_owner = _record("ci", {"owner": ["a", "b"]})
    server_os = _record("ci", {"attributes.os_name": [None, "debian"]})
    runs_on = _record("relationship", {"type": [None, "runs_on"]}, "create")
    token = _record("token", {"revoked_at": [None, "2026-01-01"]})
    cases = {
        "everything": ({}, [(server_owner, "server"), (server_os, "server"), (runs_on, "runs_on"), (token, None)]),
    }
    assert all(matches({}, r, k) for r, k in cases["everything"][1])
    assert matches({"classes": ["server"]}, server_owner, "server")
    assert not matches({"classes": ["server"]}, server_owner, "application")
    assert not matches({"classes": ["server"]}, token, None)  # classes alone: CIs only
    assert matches({"classes": ["server"], "object_types": ["token"]}, token, None)
    assert not matches({"classes": ["server"], "object_types": ["ci"]}, server_owner, "application")  # narrowed
    assert matches({"relationship_types": ["runs_on"]}, runs_on, "runs_on")
    assert not matches({"relationship_types": ["depends_on"]}, runs_on, "runs_on")
    assert matches({"object_types": ["relationship"]}, runs_on, "runs_on")
    assert not matches({"object_types": ["relationship"]}, server_owner, "server")
    assert matches({"fields": ["owner"]}, server_owner, "server")
    assert not matches({"fields": ["owner"]}, server_os, "server")
    assert matches({"fields": ["attributes"]}, server_os, "server")
    assert matches({"fields": ["attributes.os_name"]}, server_os, "server")
    assert not matches({"fields": ["attributes.cpu"]}, server_os, "server")
    assert not matches({"classes": ["server"], "fields": ["owner"]}, server_os, "server")


def test_a_batch_finds_the_class_of_a_ci_its_records_do_not_name(api, engine):
    """An update's diff does not name the CI's class: the worker reads it from the CI, or from the CI's
    deletion record once it is gone (even when that deletion is past the records being read)."""
    live = api.create_ci("server", "live")["id"]
    gone = api.create_ci("server", "gone")["id"]
    app = api.create_ci("application", "app")["id"]
    start = api.get("/api/v1/changes?limit=1").json()["head_seq"]
    for ci in (live, gone, app):
        assert api.patch(f"/api/v1/cis/{ci}", json={"owner": "team"}).status_code == 200
    updates = api.get(f"/api/v1/changes?since={start}").json()["items"]
    assert api.delete(f"/api/v1/cis/{gone}").status_code == 204
    with engine.connect() as conn:
        batch = next_batch(conn, {"classes": ["server"]}, start, updates[-1]["seq"], 100, 1 << 20)
    assert [orjson.loads(r)["object_id"] for r in batch.records] == [live, gone]
    assert (batch.first_seq, batch.last_seq, batch.cursor_after) == (updates[0]["seq"], updates[1]["seq"],
                                                                      updates[2]["seq"])
    with engine.connect() as conn:  # bounded by count, then by bytes: the cursor stops at the last record sent
        assert next_batch(conn, {}, start, updates[-1]["seq"], 1, 1 << 20).cursor_after == updates[0]["seq"]
        assert next_batch(conn, {}, start, updates[-1]["seq"], 100, 10).cursor_after == updates[0]["seq"]
        assert next_batch(conn, {}, updates[-1]["seq"], updates[-1]["seq"], 100, 1 << 20) is None


def test_a_receiver_that_never_answers_times_out_and_shutdown_waits_no_longer(database_url):
    """A listening socket that never answers: the attempt ends at the timeout, is logged as such, and
    stopping the worker mid-attempt returns within about that timeout. (No app here: its own worker
    would deliver too, with the default timeout.)"""
    engine = make_engine(database_url)
    settings = Settings(database_url=database_url, webhook_timeout_seconds=1.0, webhook_poll_seconds=0.1,
                        webhook_retry_base_seconds=0.05, webhook_retry_max_seconds=0.05)
    worker = DeliveryWorker(engine, settings)
    try:
        with socket.socket() as hung:
            hung.bind(("127.0.0.1", 0))
            hung.listen(8)  # connections complete in the backlog; nobody ever reads or answers
            url = f"http://127.0.0.1:{hung.getsockname()[1]}/"
            sealed = SecretBox(engine).seal(SECRET)  # before the unit of work: the key may be made now
            with UnitOfWork(engine, "tests") as uow:
                hook = create_webhook(uow, url, sealed, {})
            create_tokens(engine)  # four change records after the subscription's own
            worker.start()
            try:
                deadline = time.monotonic() + 30
                while not _deliveries(engine, hook["id"]):
                    assert time.monotonic() < deadline, "no attempt logged"
                    time.sleep(0.05)
                time.sleep(0.4)  # the second attempt is in flight: it began ~0.2 s after the first ended
            finally:
                began = time.monotonic()
                worker.stop()
                stopped_in = time.monotonic() - began
        assert stopped_in < 2.5
        attempts = _deliveries(engine, hook["id"])
        assert len(attempts) >= 2  # the one in flight at stop() ended, and was logged, before it returned
        first = attempts[-1]
        assert (first["outcome"], first["status_code"], first["error"].split(":")[0]) == ("failed", None, "ReadTimeout")
        assert 900 <= first["duration_ms"] < 2500 and (first["records"], first["attempt"]) == (5, 1)
    finally:
        engine.dispose()


def _deliveries(engine, webhook_id):
    with engine.connect() as conn:
        return list_deliveries(conn, webhook_id, 100)["items"]


def test_the_delivery_log_keeps_the_last_attempts_only(database_url):
    engine = make_engine(database_url)
    try:
        worker = DeliveryWorker(engine, Settings(database_url=database_url, webhook_log_keep=3))
        sealed = SecretBox(engine).seal(SECRET)
        with UnitOfWork(engine, "tests") as uow:
            hook = create_webhook(uow, "http://127.0.0.1:9/", sealed, {})
        base = datetime(2026, 12, 1, tzinfo=UTC)
        for minute in range(6):
            with write_transaction(engine) as conn:
                conn.execute(insert(DELIVERY), {
                    "id": uuid.uuid4(), "webhook_id": hook["id"], "attempted_at": base + timedelta(minutes=minute),
                    "attempt": minute + 1, "first_seq": 1, "last_seq": 1, "records": 1, "status_code": 503,
                    "error": "HTTP 503", "duration_ms": 3, "outcome": "failed"})
                worker._prune(conn, hook["id"])
        assert [d["attempt"] for d in _deliveries(engine, hook["id"])] == [6, 5, 4]
    finally:
        engine.dispose()


def test_an_operator_key_seals_secrets_instead_of_the_stored_one(engine):
    sealed = SecretBox(engine, "an-operator-key-kept-outside").seal(SECRET)
    assert SecretBox(engine, "an-operator-key-kept-outside").open(sealed) == SECRET
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox(engine).open(sealed)  # the key kept in the database is another one
    with pytest.raises(ValueError, match="cannot be decrypted"):
        SecretBox(engine, "another-operator-key-0000").open(sealed)


def test_the_readme_signature_check_refuses_forged_headers_without_raising():
    """The receiver's snippet, as the README has it, says False to anything forged instead of crashing
    the receiver: non-ASCII digits ("²".isdigit() is True, int() refuses it), a huge t, a non-ASCII
    v1 (hmac.compare_digest raises on non-ASCII str), garbage."""
    from pathlib import Path

    from app.integrations.webhooks import signature

    namespace: dict = {}
    exec(readme_snippet(Path(__file__).resolve().parents[2] / "README.md"), namespace)  # noqa: S102
    check = namespace["karta_signature_ok"]
    body = b'{"records": []}'
    good = signature(SECRET, body)
    now = good.split(",")[0][2:]
    assert check(SECRET, good, body) and not check(SECRET, good, body + b" ")
    for forged in ["", "garbage", "t=,v1=", "t=²,v1=00", "t=١٢٣,v1=00", f"t={now},v1=é", f"t={now},v1=\u00ff" * 2,
                   "t=" + "9" * 5000 + ",v1=00", f"t={now},v1=" + "€" * 64, f"t=-{now},v1=00", f"t= {now},v1=00",
                   f"t={now},v1", "=,=,,", f"t={now},v1=" + good.split("v1=")[1].upper()]:
        assert check(SECRET, forged, body) is False, forged


SECRET_URL = "https://hook-user:p4ssw0rd-XYZ@hooks.example.com:8443/services/T00/B00/PATHSECRET?token=QUERYSECRET"


def test_change_records_show_no_more_of_the_url_than_scheme_host_and_port(api):
    """A hook URL's userinfo, path and query hold credentials; change records reach read tokens and
    every unfiltered subscription, so they show the origin and a fingerprint only. Admins see it all."""
    hook = api.post("/api/v1/webhooks", json={"url": SECRET_URL, "secret": SECRET}).json()
    assert api.get(f"/api/v1/webhooks/{hook['id']}").json()["url"] == SECRET_URL
    assert api.patch(f"/api/v1/webhooks/{hook['id']}", json={"secret": "another-secret-1234567"}).status_code == 200
    assert api.patch(f"/api/v1/webhooks/{hook['id']}", json={"url": SECRET_URL.replace("XYZ", "ABC")}).status_code == 200
    assert api.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
    records = _feed(api)
    urls = [r["diff"].get("url") for r in records]
    assert [u is None for u in urls] == [False, True, False, False]  # a new secret alone: no url change
    (none, created), _, (was, became), (deleted, gone) = urls
    assert none is None and gone is None and became == deleted and was != became
    assert all(re.fullmatch(r"https://hooks\.example\.com:8443 \(fingerprint [0-9a-f]{16}\)", u)
               for u in (created, was, became))
    everything = api.get("/api/v1/changes?limit=1000", as_="read")
    assert everything.status_code == 200
    for secret_part in ("hook-user", "p4ssw0rd", "PATHSECRET", "QUERYSECRET", "/services/"):
        assert secret_part not in everything.text


def test_the_delivery_log_and_the_logs_hold_no_url_credentials(database_url, caplog):
    """An attempt's error and everything logged while delivering (httpx logs its request lines, URL and
    userinfo included, at INFO) leave the URL's credentials out."""
    import logging
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Ok(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    caplog.set_level(logging.DEBUG)
    engine = make_engine(database_url)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    worker = DeliveryWorker(engine, Settings(database_url=database_url))
    try:
        sealed = SecretBox(engine).seal(SECRET)
        hooks = []
        for port in (server.server_address[1], 9):  # answers; refuses
            with UnitOfWork(engine, "tests") as uow:
                hooks.append(create_webhook(uow, f"http://hook-user:p4ssw0rd@127.0.0.1:{port}/PATHSECRET?t=QUERYSECRET",
                                            sealed, {}))
        create_tokens(engine)
        for hook in hooks:
            worker._pool.submit(worker.deliver_once, hook["id"]).result()  # in a worker thread, as it runs
        logged = [_deliveries(engine, hook["id"]) for hook in hooks]
        assert [entry[0]["outcome"] for entry in logged] == ["delivered", "failed"]
        assert "HTTP Request" not in caplog.text  # the line itself was there before: check the filter bites
        for text in (caplog.text, repr(logged)):
            for secret_part in ("p4ssw0rd", "PATHSECRET", "QUERYSECRET"):
                assert secret_part not in text
    finally:
        worker._pool.shutdown()
        worker._client.close()
        server.shutdown()
        engine.dispose()


def test_a_patch_re_enabling_meanwhile_is_not_overwritten_by_the_failure_count(database_url):
    """A PATCH {"state": "active"} in flight while the worker records the failure that reaches the
    limit: the worker counts on the row as the PATCH leaves it (failures reset), never on the value
    read before the PATCH committed, so the subscription stays active."""
    import threading

    from app.services.webhook_delivery import Batch
    from app.services.webhooks import WEBHOOK, update_webhook

    engine = make_engine(database_url)
    worker = DeliveryWorker(engine, Settings(database_url=database_url, webhook_max_failures=10))
    try:
        sealed = SecretBox(engine).seal(SECRET)
        with UnitOfWork(engine, "tests") as uow:
            hook = create_webhook(uow, "http://127.0.0.1:9/", sealed, {})
        with write_transaction(engine) as conn:  # nine failures in a row, the tenth under way
            conn.execute(WEBHOOK.update().where(WEBHOOK.c.id == hook["id"]).values(
                failures=9, lease_owner=worker.owner, leased_until=datetime.now(UTC) + timedelta(minutes=1)))
        log_row = {"id": uuid.uuid4(), "webhook_id": hook["id"], "attempted_at": datetime.now(UTC), "attempt": 10,
                   "first_seq": 1, "last_seq": 1, "records": 1, "status_code": 500, "error": "HTTP 500",
                   "outcome": "failed", "duration_ms": 1}
        finish = threading.Thread(target=worker._finish, args=(hook["id"], Batch([b"{}"], 1, 1, 1), log_row))
        with UnitOfWork(engine, "admin") as patch:
            update_webhook(patch, hook["id"], {"state": "active"})  # holds the row (the write lock on SQLite)
            finish.start()
            time.sleep(0.5)  # the worker reads and writes now, or waits for the PATCH to commit
        finish.join(timeout=30)
        with engine.connect() as conn:
            row = conn.execute(select(WEBHOOK).where(WEBHOOK.c.id == hook["id"])).mappings().one()
        assert (row["state"], row["failures"]) == ("active", 1)
    finally:
        worker._pool.shutdown()
        worker._client.close()
        engine.dispose()
