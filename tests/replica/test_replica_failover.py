"""The replica killed (`pg_ctl stop -m immediate`) and brought back under a concurrent read/write load
through a real `karta serve` with two workers: no request fails, every write is read back at once
with its X-Karta-Seq, and the replica returns to the rotation."""

import threading
import time
from collections import Counter

import httpx
import pytest
from sqlalchemy import text

from app.core.db import make_engine
from tests.conftest import new_id
from tests.replica.test_read_replicas import create_tokens
from tests.server import running_server
from tests.thread_group import ThreadGroup

pytestmark = pytest.mark.postgres
READERS = 4
WRITERS = 2
LOAD_SECONDS_BEFORE = 1.5
DOWN_SECONDS = 2.0
LOAD_SECONDS_AFTER = 1.5


class Load(ThreadGroup):
    """Readers and writers in threads until stopped; every answer's status is counted, every failure kept."""

    def __init__(self, base: str, secret: str, known: list[str]) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.known = known
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self.last_seq = 0
        self.threads = [threading.Thread(target=self._reader, args=(n,)) for n in range(READERS)]
        self.threads += [threading.Thread(target=self._writer, args=(n,)) for n in range(WRITERS)]

    def _count(self, what: str, answer: httpx.Response, expected: int = 200) -> None:
        with self.lock:
            self.answers[what] += 1
            if answer.status_code != expected:
                self.failures.append(f"{what}: {answer.status_code} {answer.text[:300]}")

    def _failed(self, what: str, exc: Exception) -> None:
        with self.lock:
            self.failures.append(f"{what}: {type(exc).__name__}: {exc}")

    def _reader(self, n: int) -> None:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=15, trust_env=False) as http:
            for i in range(100_000):
                if self.stop.is_set():
                    return
                try:
                    if i % 3 == 0:
                        self._count("list", http.get("/api/v1/cis", params={"limit": 20}))
                    elif i % 3 == 1:
                        self._count("detail", http.get(f"/api/v1/cis/{self.known[(n + i) % len(self.known)]}"))
                    else:
                        self._count("feed", http.get("/api/v1/changes", params={"limit": 20},
                                                     headers={"X-Karta-Min-Seq": str(self.last_seq)}))
                except httpx.HTTPError as exc:
                    self._failed("read", exc)

    def _writer(self, n: int) -> None:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=15, trust_env=False) as http:
            for i in range(100_000):
                if self.stop.is_set():
                    return
                try:
                    created = http.post("/api/v1/cis", json={"class": "server", "name": f"load-{n}-{i}-{new_id()}"})
                    self._count("write", created, 201)
                    if created.status_code != 201:
                        continue
                    seq = int(created.headers["X-Karta-Seq"])
                    with self.lock:
                        self.last_seq = max(self.last_seq, seq)
                    # Its own write, at once: from a replica that has it, else the primary.
                    self._count("own write", http.get(f"/api/v1/cis/{created.json()['id']}",
                                                      headers={"X-Karta-Min-Seq": str(seq)}))
                except httpx.HTTPError as exc:
                    self._failed("write", exc)


def replica_states(base: str, polls: int = 6) -> set[bool]:
    """in_rotation as several /readyz answers (from either worker) report it."""
    states = set()
    for _ in range(polls):
        answer = httpx.get(f"{base}/readyz", timeout=5, trust_env=False)
        assert answer.status_code == 200, answer.text
        states.add(answer.json()["replicas"][0]["in_rotation"])
    return states


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        time.sleep(0.1)


def test_the_replica_killed_and_brought_back_under_load_fails_no_request(replicated):
    engine = make_engine(replicated.primary_url)
    try:
        secret = create_tokens(engine)["admin"]
    finally:
        engine.dispose()
    env = {"KARTA_DATABASE_REPLICA_URLS": replicated.replica_url, "KARTA_REPLICA_CHECK_SECONDS": "0.2",
           "KARTA_REPLICA_RETRY_MAX_SECONDS": "1", "KARTA_REPLICA_WAIT_SECONDS": "0.3", "KARTA_THREADS": "8",
           "KARTA_LOAD_GRAPH_AT_STARTUP": "false", "KARTA_WEBHOOKS_DELIVER": "false"}
    with running_server(replicated.primary_url, workers=2, env=env) as base, \
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=10,
                         trust_env=False) as http:
        known = [http.post("/api/v1/cis", json={"class": "server", "name": f"known-{n}-{new_id()}"}).json()["id"]
                 for n in range(5)]
        wait_for(lambda: replica_states(base) == {True}, 15, "both workers' replica in rotation")
        with Load(base, secret, known) as load:
            time.sleep(LOAD_SECONDS_BEFORE)
            replicated.standby.stop("immediate")
            wait_for(lambda: replica_states(base, polls=2) == {False}, 15, "the killed replica out of rotation")
            time.sleep(DOWN_SECONDS)
            replicated.standby.start()
            wait_for(lambda: replica_states(base) == {True}, 30, "the replica back in rotation")
            time.sleep(LOAD_SECONDS_AFTER)
        assert load.failures == [], load.failures[:10]
        counted = dict(load.answers)
        assert all(counted.get(kind, 0) >= 10 for kind in ("list", "detail", "feed", "write", "own write")), counted
        print(f"answers under failover: {counted}")
        # The replica serves again: it has caught up with every write of the load.
        assert http.get("/readyz").json()["replicas"][0]["in_rotation"]
        standby = make_engine(replicated.replica_url)
        try:
            def applied() -> int:
                with standby.connect() as conn:
                    return conn.execute(text("SELECT coalesce(max(seq), 0) FROM change_record")).scalar_one()

            wait_for(lambda: applied() >= load.last_seq, 15, "the replica caught up with the load")
        finally:
            standby.dispose()
