"""Read replicas with a real streaming standby (tests/replica/conftest.py): which database answers,
reading one's own writes, lag in /readyz and /metrics, the web UI's cookie.

A read served by the replica is proven by pausing the standby's replay: the replica then lacks a
fresh write that the primary has, so a plain read misses it while a read asking for its sequence
gets it."""

import time

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from app.models.token import Scope
from app.services import tokens as token_service
from app.services.history import UnitOfWork
from tests.conftest import new_id
from tests.integrations.metrics_text import samples
from tests.server import free_port
from tests.web.test_ci_page import _edit_form, signed_in

WAIT_SECONDS = 0.3


def create_tokens(engine) -> dict[str, str]:
    """A token per scope, named apart: the tests of this module share the pair's one database."""
    suffix = new_id()
    with UnitOfWork(engine, "tests") as uow:
        return {scope.value: token_service.create_token(uow, f"{scope.value}-{suffix}", [scope])["secret"]
                for scope in Scope}


class Client:
    def __init__(self, client: TestClient, secret: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {secret}"}

    def get(self, url: str, min_seq: int | str | None = None, **kwargs):
        headers = dict(self.headers)
        if min_seq is not None:
            headers["X-Karta-Min-Seq"] = str(min_seq)
        return self.client.get(url, headers=headers, **kwargs)

    def create_ci(self, name: str):
        answer = self.client.post("/api/v1/cis", headers=self.headers, json={"class": "server", "name": name})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"], int(answer.headers["X-Karta-Seq"])

    def impact(self, ci_id: str, min_seq: int | None = None):
        headers = {**self.headers, **({"X-Karta-Min-Seq": str(min_seq)} if min_seq is not None else {})}
        return self.client.post("/api/v1/impact", headers=headers, json={"ci_ids": [ci_id]})

    def replica(self) -> dict:
        """The first replica's full state, as the worker's logs and /metrics know it (/readyz shows less)."""
        return self.client.app.state.replicas.status()[0]


def replicated_app(replicated, **settings):
    values = {"database_url": replicated.primary_url, "database_replica_urls": replicated.replica_url,
              "token_cache_seconds": 0.3, "replica_check_seconds": 0.1, "replica_wait_seconds": WAIT_SECONDS,
              "replica_max_lag_seconds": 60, "load_graph_at_startup": False, **settings}
    return create_app(Settings(**values))


@pytest.fixture
def routed(replicated):
    """A client of an app that reads from the standby, once the standby is in rotation."""
    app = replicated_app(replicated)
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Client(client, create_tokens(app.state.engine)["admin"])
        replicated.wait_until(lambda: api.replica()["in_rotation"], 10, "the replica in rotation")
        yield api


def eventually(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(0.05)


@pytest.mark.postgres
def test_reads_go_to_the_replica_and_a_read_of_ones_write_waits_then_falls_back(routed, replicated):
    first, first_seq = routed.create_ci(f"before-{new_id()}")
    # The replica has it, or has it within the wait: either way the read finds it.
    assert routed.get(f"/api/v1/cis/{first}", min_seq=first_seq).status_code == 200
    feed = routed.get("/api/v1/changes", params={"since": first_seq - 1}, min_seq=first_seq).json()
    assert feed["items"][0]["seq"] == first_seq and feed["items"][0]["object_id"] == first

    replicated.pause_replay()
    try:
        name = f"fresh-{new_id()}"
        fresh, seq = routed.create_ci(name)
        assert seq > first_seq
        # Served by the replica, which lacks the write: the detail, the list and the feed all miss it.
        for _ in range(3):
            assert routed.get(f"/api/v1/cis/{fresh}").status_code == 404
        listed = routed.get("/api/v1/cis", params={"q": name})
        assert listed.status_code == 200, listed.text
        assert [ci["id"] for ci in listed.json()["items"]] == []
        assert [item["seq"] for item in routed.get("/api/v1/changes", params={"since": first_seq}).json()["items"]
                if item["seq"] == seq] == []
        # Asking for its sequence: the replica does not reach it within the wait, the primary answers.
        started = time.monotonic()
        answer = routed.get(f"/api/v1/cis/{fresh}", min_seq=seq)
        waited = time.monotonic() - started
        assert answer.status_code == 200 and answer.json()["name"] == name
        assert WAIT_SECONDS * 0.9 <= waited < WAIT_SECONDS + 5
        # A sequence the replica already has is served at once, from the replica (still without the write).
        assert routed.get(f"/api/v1/cis/{fresh}", min_seq=first_seq).status_code == 404
    finally:
        replicated.resume_replay()
    eventually(lambda: routed.get(f"/api/v1/cis/{fresh}").status_code == 200)
    # Replay resumed and a plain read found the write: the replica holds it, so asking for its sequence is
    # answered at once, without the wait that ran out above.
    started = time.monotonic()
    assert routed.get(f"/api/v1/cis/{fresh}", min_seq=seq).status_code == 200
    assert time.monotonic() - started < WAIT_SECONDS * 0.9


@pytest.mark.postgres
def test_a_min_seq_beyond_the_primarys_newest_change_is_answered_by_the_primary_at_once(routed, replicated):
    ci_id, seq = routed.create_ci(f"ahead-{new_id()}")
    replicated.pause_replay()  # the replica can never reach it: only skipping the wait makes it fast
    try:
        for ahead in (seq + 1, seq + 1_000_000, 10 ** 18 - 1):
            started = time.monotonic()
            answer = routed.get(f"/api/v1/cis/{ci_id}", min_seq=ahead)
            assert answer.status_code == 200 and answer.json()["id"] == ci_id
            assert time.monotonic() - started < WAIT_SECONDS * 0.9
    finally:
        replicated.resume_replay()


@pytest.mark.postgres
def test_readyz_names_no_replica_address_and_no_error(replicated):
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/secretdb"
    app = replicated_app(replicated, database_replica_urls=f"{dead},{replicated.replica_url}")
    with TestClient(app, raise_server_exceptions=False) as client:
        eventually(lambda: client.app.state.replicas.status()[1]["in_rotation"]
                   and client.app.state.replicas.status()[0]["error"] != "not checked yet")
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert [set(replica) for replica in ready.json()["replicas"]] == \
            [{"replica", "in_rotation", "lag_seconds", "lag_changes"}] * 2
        assert [(r["replica"], r["in_rotation"]) for r in ready.json()["replicas"]] == [(0, False), (1, True)]
        for secret in ("127.0.0.1", str(replicated.standby.port), "secretdb", "karta", "Error"):
            assert secret not in ready.text


@pytest.mark.postgres
def test_impact_catches_up_from_the_replica_and_reads_its_own_write(routed, replicated):
    server, _ = routed.create_ci(f"srv-{new_id()}")
    replicated.pause_replay()
    try:
        app_answer = routed.client.post("/api/v1/cis", headers=routed.headers,
                                        json={"class": "application", "name": f"app-{new_id()}"})
        app_id = app_answer.json()["id"]
        related = routed.client.post("/api/v1/relationships", headers=routed.headers,
                                     json={"source": app_id, "target": server, "type": "runs_on"})
        assert related.status_code == 201, related.text
        seq = int(related.headers["X-Karta-Seq"])
        # The graph catches up from the replica, which has neither the application nor its relationship.
        # (POST /impact only asks a question: it is routed like a GET.)
        lagging = routed.impact(server)
        assert lagging.status_code == 200 and lagging.json()["as_of_seq"] < seq
        assert app_id not in {ci["id"] for ci in lagging.json()["impacted"]}
        ours = routed.impact(server, min_seq=seq)
        assert ours.status_code == 200 and ours.json()["as_of_seq"] >= seq
        assert app_id in {ci["id"] for ci in ours.json()["impacted"]}
    finally:
        replicated.resume_replay()


@pytest.mark.postgres
def test_a_write_answers_its_sequence_and_a_bad_min_seq_is_a_400(routed):
    ci_id, seq = routed.create_ci(f"seq-{new_id()}")
    patched = routed.client.patch(f"/api/v1/cis/{ci_id}", headers=routed.headers, json={"owner": "team-x"})
    assert patched.status_code == 200 and int(patched.headers["X-Karta-Seq"]) > seq
    assert "X-Karta-Seq" not in routed.get(f"/api/v1/cis/{ci_id}").headers
    # Discovery's batches answer it too, and the read that sends it finds what the batch made.
    serial = f"SN-{new_id()}"
    batch = {"source": "ssh", "run_id": f"r-{new_id()}", "scope": {"hosts": ["h"]},
             "items": [{"ref": "h", "class": "server", "name": f"h-{serial}", "identifiers": {"serial_number": serial}}]}
    pushed = routed.client.post("/api/v1/ingest", headers=routed.headers, json=batch)
    assert pushed.status_code == 200, pushed.text
    batch_seq = int(pushed.headers["X-Karta-Seq"])
    assert batch_seq > int(patched.headers["X-Karta-Seq"])
    assert routed.get(f"/api/v1/cis/{pushed.json()['refs']['h']}", min_seq=batch_seq).status_code == 200
    for bad in ("-1", "abc", "1.5", "9" * 30):
        answer = routed.get(f"/api/v1/cis/{ci_id}", min_seq=bad)
        assert answer.status_code == 400 and answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["errors"] == [{"field": "header.X-Karta-Min-Seq", "message": "not a non-negative integer"}]


@pytest.mark.postgres
def test_lag_shows_in_readyz_and_metrics_and_a_replica_too_far_behind_leaves_the_rotation(replicated):
    app = replicated_app(replicated, replica_max_lag_seconds=1, metrics_cache_seconds=0)
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Client(client, create_tokens(app.state.engine)["admin"])
        replicated.wait_until(lambda: api.replica()["in_rotation"], 10, "the replica in rotation")
        api.create_ci(f"warm-{new_id()}")
        eventually(lambda: api.replica()["lag_changes"] == 0 and api.replica()["lag_seconds"] == 0)
        metrics = samples(api.get("/metrics").text)
        label = frozenset({"replica": api.replica()["name"]}.items())
        assert metrics[("karta_replica_in_rotation", label)] == 1
        assert metrics[("karta_replica_lag_seconds", label)] == 0
        replicated.pause_replay()
        try:
            fresh, seq = api.create_ci(f"behind-{new_id()}")
            eventually(lambda: not api.replica()["in_rotation"])
            replica = api.replica()
            assert replica["lag_seconds"] > 1 and replica["lag_changes"] >= 1 and "behind" in replica["error"]
            metrics = samples(api.get("/metrics").text)
            assert metrics[("karta_replica_in_rotation", label)] == 0
            assert metrics[("karta_replica_lag_seconds", label)] > 1
            assert metrics[("karta_replica_lag_sequences", label)] >= 1
            # Out of rotation: the primary answers plain reads, which now see the write at once.
            assert api.get(f"/api/v1/cis/{fresh}").status_code == 200
        finally:
            replicated.resume_replay()
        eventually(lambda: api.replica()["in_rotation"] and api.replica()["applied_seq"] >= seq)
        assert samples(api.get("/metrics").text)[("karta_replica_in_rotation", label)] == 1


@pytest.mark.postgres
def test_the_web_ui_reads_its_users_write_through_a_cookie(replicated):
    app = replicated_app(replicated)
    with TestClient(app, raise_server_exceptions=False) as client:
        secrets = create_tokens(app.state.engine)

        class Api:  # what signed_in needs: the client and the secrets
            pass

        holder = Api()
        holder.client, holder.secrets = client, secrets
        api = Client(client, secrets["admin"])
        replicated.wait_until(lambda: api.replica()["in_rotation"], 10, "the replica in rotation")
        ci_id, seq = api.create_ci(f"ui-{new_id()}")
        eventually(lambda: api.replica()["applied_seq"] >= seq)
        browser = signed_in(holder, "write")
        replicated.pause_replay()
        try:
            _, values = _edit_form(browser, ci_id)
            renamed = f"renamed-{new_id()}"
            answer = browser.post(f"/ui/cis/{ci_id}/edit", data={**values, "name": renamed}, follow_redirects=False)
            assert answer.status_code == 303, answer.text
            cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("karta_min_seq="))
            assert "Path=/ui/" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
            written = int(cookie.split(";")[0].split("=")[1])
            assert written == int(answer.headers["X-Karta-Seq"]) > seq
            # The browser, sending the cookie, sees its edit (from the primary after the wait) ...
            assert renamed in browser.get(f"/ui/cis/{ci_id}").text
            # ... while a read without it is served by the lagging replica.
            assert api.get(f"/api/v1/cis/{ci_id}").json()["name"] != renamed
        finally:
            replicated.resume_replay()


def test_without_replicas_nothing_changes(api):
    """No KARTA_DATABASE_REPLICA_URLS: no routing, no X-Karta-Seq, X-Karta-Min-Seq ignored."""
    assert api.client.app.state.replicas is None
    created = api.post("/api/v1/cis", json={"class": "server", "name": f"plain-{new_id()}"})
    assert created.status_code == 201 and "X-Karta-Seq" not in created.headers
    answer = api.get(f"/api/v1/cis/{created.json()['id']}", headers={"X-Karta-Min-Seq": "not-a-number"})
    assert answer.status_code == 200
    assert "replicas" not in api.client.get("/readyz").json()


def test_replica_urls_need_postgresql():
    with pytest.raises(ValueError, match="PostgreSQL database_url"):
        Settings(database_url="sqlite:///x.db", database_replica_urls="postgresql+psycopg://r/db")
    with pytest.raises(ValueError, match="must be a postgresql URL"):
        Settings(database_url="postgresql+psycopg://p/db", database_replica_urls="postgresql+psycopg://r/db,sqlite:///y")


@pytest.mark.postgres
def test_a_replica_that_is_down_stays_out_of_rotation_with_growing_backoff_and_readers_see_no_error(replicated):
    dead_port = free_port()
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{dead_port}/karta"  # nothing listens there
    app = replicated_app(replicated, database_replica_urls=f"{dead},{replicated.replica_url}",
                         replica_retry_max_seconds=4)
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Client(client, create_tokens(app.state.engine)["admin"])

        def states() -> dict[str, dict]:
            return {replica["name"].split(":")[1]: replica for replica in client.app.state.replicas.status()}

        live_port = replicated.standby.port
        eventually(lambda: states()[f"{live_port}/karta"]["in_rotation"])
        ci_id, seq = api.create_ci(f"two-{new_id()}")
        for _ in range(20):  # round-robin finds only the live one; none of these fails
            assert api.get(f"/api/v1/cis/{ci_id}", min_seq=seq).status_code == 200
            assert api.get("/api/v1/cis", params={"limit": 5}).status_code == 200
        down = states()[f"{dead_port}/karta"]
        assert not down["in_rotation"] and "OperationalError" in down["error"]
        # Checked again after 1, 2, 4 s (capped at 4): the wait before the next check grows.
        waits = []
        for _ in range(200):
            waits.append(states()[f"{dead_port}/karta"]["next_check_in_seconds"])
            if max(waits) > 2:
                break
            time.sleep(0.05)
        assert 2 < max(waits) <= 4


@pytest.mark.postgres
def test_a_read_served_by_a_lagging_replica_never_undoes_a_class_change_in_the_cache(replicated):
    app = replicated_app(replicated, registry_cache_seconds=60)
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Client(client, create_tokens(app.state.engine)["admin"])
        replicated.wait_until(lambda: api.replica()["in_rotation"], 10, "the replica in rotation")
        # The service-map keeper reloads the registry from the primary after every change: stopped, the
        # first reload after the class change is the read's own.
        app.state.service_maps.stop()
        replicated.pause_replay()
        try:
            name = f"cls_{new_id()}".lower().replace("-", "_")
            made = client.post("/api/v1/classes", headers=api.headers, json={"name": name, "parent": "application"})
            assert made.status_code == 201, made.text
            # Served by the replica, which lacks the class: the registry these reads load comes from the primary.
            assert api.get("/api/v1/search", params={"q": "nothing-like-this"}).status_code == 200
            assert name in app.state.registry.get().classes
            answer = api.get("/api/v1/search", params={"q": "nothing-like-this", "class": name})
            assert answer.status_code == 200, answer.text
            assert name in app.state.registry.get().classes
        finally:
            replicated.resume_replay()
