"""A replica that stops answering without refusing (a frozen host): a loopback TCP proxy in front of the
standby that keeps every connection open and forwards nothing. Its kernel still acknowledges what is
sent, so no TCP timeout fires: only the check's hard deadline can free what waits on it.

Proven: the check of the other replica goes on (its lag is seen rising and falling), a round of checks
ends within its deadline, and readers caught on the frozen replica are answered by the primary."""

import select
import socket
import threading
import time

import httpx
import pytest
from sqlalchemy import text

from app.core.db import make_engine
from app.core.replicas import ReplicaSet
from tests.conftest import new_id
from tests.replica.test_read_replicas import create_tokens
from tests.server import running_server

pytestmark = pytest.mark.postgres
TIMEOUT_SECONDS = 1
# A frozen replica costs a reader at most a check's deadline (timeout + 1 s) after the round that finds it
# frozen starts, plus the check interval; the rest is a margin for a loaded machine.
READ_BOUND_SECONDS = 8


class FreezingProxy:
    """127.0.0.1:port -> 127.0.0.1:upstream; freeze() stops forwarding (connections stay open)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.frozen = threading.Event()
        self.stopped = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.1)
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                self.threads.append(thread)
                thread.start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self.stopped.is_set():
                if self.frozen.is_set():
                    self.stopped.wait(0.05)
                    continue
                if not select.select([source], [], [], 0.1)[0] or self.frozen.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    return
                sink.sendall(data)
        except OSError:
            return

    def freeze(self) -> None:
        """From now on nothing is forwarded (a pipe inside its 0.1 s select sees it before reading)."""
        self.frozen.set()
        time.sleep(0.3)

    def close(self) -> None:
        self.stopped.set()
        for sock in [self.server, *self.sockets]:
            sock.close()
        for thread in self.threads:
            thread.join(timeout=2)


@pytest.fixture
def proxy(replicated):
    proxy = FreezingProxy(replicated.standby.port)
    yield proxy
    proxy.close()


def proxied_url(replicated, proxy: FreezingProxy) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/{replicated.database}"


def check_within(replicas: ReplicaSet, seconds: float) -> None:
    """One round of checks, which must end within `seconds` (run aside: a hang fails, not stalls, the test)."""
    round_ = threading.Thread(target=replicas.check, daemon=True)
    round_.start()
    round_.join(seconds)
    assert not round_.is_alive(), f"a round of checks still running after {seconds} s"


def test_a_round_of_checks_ends_within_its_deadline_and_the_frozen_replica_leaves(replicated, proxy):
    primary = make_engine(replicated.primary_url)
    replicas = ReplicaSet(primary, [proxied_url(replicated, proxy), replicated.replica_url], pool_size=2,
                          wait_seconds=0.3, check_seconds=0.1, max_lag_seconds=30,
                          timeout_seconds=TIMEOUT_SECONDS, retry_max_seconds=1)
    try:
        check_within(replicas, TIMEOUT_SECONDS + 3)
        assert [state["in_rotation"] for state in replicas.status()] == [True, True]
        frozen = replicas.replicas[0]
        reader = frozen.engine.connect()  # a reader's connection, open when the host freezes
        reader.execute(text("SELECT 1"))
        proxy.freeze()
        outcome: list = []

        def read() -> None:
            try:
                reader.execute(text("SELECT 1"))
                outcome.append("answered")
            except Exception as exc:  # noqa: BLE001 - what the reader got is the finding
                outcome.append(type(exc).__name__)

        blocked = threading.Thread(target=read, daemon=True)
        blocked.start()
        check_within(replicas, TIMEOUT_SECONDS + 3)
        states = replicas.status()
        assert [state["in_rotation"] for state in states] == [False, True]
        assert "did not answer its check" in states[0]["error"] and states[1]["error"] is None
        # The reader blocked on the frozen replica is cut off, not left hanging.
        blocked.join(5)
        assert not blocked.is_alive() and outcome == ["OperationalError"]
        reader.close()
        # The next round does not wait on the stuck replica again: its check is not due, or still stuck.
        check_within(replicas, TIMEOUT_SECONDS + 3)
        assert replicas.status()[1]["in_rotation"]
    finally:
        proxy.close()  # frees whatever still waits on it before the engines go
        replicas.stop()
        primary.dispose()


def test_readers_fall_back_and_the_other_replica_stays_checked_while_one_is_frozen(replicated, proxy):
    engine = make_engine(replicated.primary_url)
    try:
        secret = create_tokens(engine)["admin"]
    finally:
        engine.dispose()
    env = {"KARTA_DATABASE_REPLICA_URLS": f"{proxied_url(replicated, proxy)},{replicated.replica_url}",
           "KARTA_REPLICA_CHECK_SECONDS": "0.2", "KARTA_REPLICA_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
           "KARTA_REPLICA_RETRY_MAX_SECONDS": "2", "KARTA_REPLICA_WAIT_SECONDS": "0.3", "KARTA_THREADS": "8",
           "KARTA_LOAD_GRAPH_AT_STARTUP": "false", "KARTA_WEBHOOKS_DELIVER": "false"}
    with running_server(replicated.primary_url, env=env) as base, \
            httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}, timeout=30,
                         trust_env=False) as http:

        def states() -> list[dict]:
            return http.get("/readyz").json()["replicas"]

        ci_id = http.post("/api/v1/cis", json={"class": "server", "name": f"frozen-{new_id()}"}).json()["id"]
        deadline = time.monotonic() + 15
        while not all(state["in_rotation"] for state in states()):
            assert time.monotonic() < deadline, states()
            time.sleep(0.1)
        for _ in range(10):  # both replicas serve reads; their pools hold connections
            assert http.get(f"/api/v1/cis/{ci_id}").status_code == 200
        proxy.freeze()
        answers: list[tuple[int, float]] = []

        def read() -> None:
            with httpx.Client(base_url=base, headers=http.headers, timeout=30, trust_env=False) as own:
                for _ in range(5):
                    started = time.monotonic()
                    answer = own.get(f"/api/v1/cis/{ci_id}")
                    answers.append((answer.status_code, time.monotonic() - started))

        readers = [threading.Thread(target=read, daemon=True) for _ in range(4)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(60)
        assert not any(reader.is_alive() for reader in readers)
        assert len(answers) == 20 and {status for status, _ in answers} == {200}
        assert max(took for _, took in answers) < READ_BOUND_SECONDS, answers
        assert [state["in_rotation"] for state in states()] == [False, True]
        # The other replica's checks go on: paused, it is seen falling behind; resumed, catching up.
        replicated.pause_replay()
        try:
            http.post("/api/v1/cis", json={"class": "server", "name": f"behind-{new_id()}"})
            deadline = time.monotonic() + 10
            while not (states()[1]["lag_changes"] or 0) >= 1:
                assert time.monotonic() < deadline, states()
                time.sleep(0.1)
        finally:
            replicated.resume_replay()
        deadline = time.monotonic() + 10
        while states()[1]["lag_changes"] != 0:
            assert time.monotonic() < deadline, states()
            time.sleep(0.1)
        assert not states()[0]["in_rotation"]
