"""app/api/hot_routes.py: GET /api/v1/cis/{id} answered ahead of FastAPI's routing, on both databases.

Each request is sent twice to the same application: as it runs (the hot route answers) and with the hot
routes taken out (FastAPI's route answers). Status, body and headers must be the same (but the date and
the request id), for answers and for every error the hot route can give. (Read routing through the hot
route, the context variable reaching the read's thread included: tests/replica/test_read_replicas.py.)"""

import pytest
from sqlalchemy.exc import OperationalError

from app.api import hot_routes
from tests.conftest import new_id

_VARYING = {"date", "x-request-id"}


@pytest.fixture
def both_ways(app, api, monkeypatch):
    answered_hot = []
    handle = hot_routes._HotRoute.handle

    async def counted(route, scope, receive, send):
        answered_hot.append(scope["path"])
        await handle(route, scope, receive, send)

    monkeypatch.setattr(hot_routes._HotRoute, "handle", counted)

    def ask(method: str, path: str, *, hot: bool, **kwargs):
        answered_hot.clear()
        response = api.request(method, path, **kwargs)
        if hot is not None:
            assert bool(answered_hot) is hot, f"{method} {path}: the hot route {'did not answer' if hot else 'answered'}"
        return response

    def compare(method: str, path: str, *, hot: bool | None = True, **kwargs):
        first = ask(method, path, hot=hot, **kwargs)
        routes = app.router.routes
        app.router.routes = [route for route in routes if not isinstance(route, hot_routes._HotRoute)]
        try:
            second = ask(method, path, hot=False, **kwargs)
        finally:
            app.router.routes = routes
        assert first.status_code == second.status_code, (first.text, second.text)
        assert first.content == second.content
        assert ({k: v for k, v in first.headers.items() if k not in _VARYING}
                == {k: v for k, v in second.headers.items() if k not in _VARYING})
        return first

    return compare


def test_a_ci_reads_the_same_through_the_hot_route_and_fastapis(api, both_ways):
    hub = api.create_ci("server", "hub <é>", tags=["a"], attributes={"os": "debian", "n": None})
    api.relate(api.create_ci("application", "app")["id"], "runs_on", hub["id"], port=80)
    api.relate(hub["id"], "depends_on", api.create_ci("database", "db")["id"])
    answer = both_ways("GET", f"/api/v1/cis/{hub['id']}")
    assert answer.status_code == 200 and answer.headers["etag"] == '"1"'
    assert [v["label"] for v in answer.json()["relationships"]] == ["depends on", "hosts"]
    for spelling in (hub["id"].upper(), hub["id"].replace("-", "")):  # what Starlette's uuid convertor takes
        assert both_ways("GET", f"/api/v1/cis/{spelling}").json() == answer.json()
    assert both_ways("GET", f"/api/v1/cis/{hub['id']}?unknown=1").json() == answer.json()
    for scope in ("read", "write", "discovery"):
        assert both_ways("GET", f"/api/v1/cis/{hub['id']}", as_=scope).status_code == 200


def test_errors_are_the_same_through_the_hot_route_and_fastapis(api, both_ways, engine):
    from app.services import tokens
    from app.services.history import UnitOfWork

    path = f"/api/v1/cis/{new_id()}"
    assert both_ways("GET", path).status_code == 404
    assert both_ways("GET", path, as_=None).status_code == 401
    assert both_ways("GET", path, as_=None, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert both_ways("GET", path, as_=None, headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401
    assert both_ways("GET", path, as_=None, headers={"Authorization": "Bearer "}).status_code == 401
    # A token this worker has not seen yet is checked against the database, then cached.
    for _ in range(2):
        with UnitOfWork(engine, "tests") as uow:
            secret = tokens.create_token(uow, f"reader-{new_id()[:8]}", ["read"])["secret"]
        assert both_ways("GET", path, as_=None, headers={"Authorization": f"Bearer {secret}"}).status_code == 404
    # Other methods: 405 as before (from the hot route, the first whose path matches), or FastAPI's route.
    assert both_ways("HEAD", path, hot=None).status_code == 405
    assert both_ways("POST", path, hot=None, json={}).status_code == 405
    assert both_ways("PATCH", path, hot=False, json={"owner": "x"}).status_code == 404
    # Not the hot route's: other spellings of an id, and what is not an id.
    assert both_ways("GET", "/api/v1/cis/not-an-id", hot=False).status_code == 422
    assert both_ways("GET", "/api/v1/cis/" + new_id().replace("-", "", 1), hot=False).status_code == 422
    for spelling in (new_id(), new_id().replace("-", "")):  # a newline after the id
        assert both_ways("GET", f"/api/v1/cis/{spelling}%0A", hot=False).status_code == 422
    assert both_ways("GET", "/api/v1/cis/{" + new_id() + "}", hot=False).status_code in (404, 422)


def test_database_and_unexpected_errors_are_answered_as_fastapis_route_answers_them(api, both_ways, monkeypatch):
    from app.services import cis

    ci = api.create_ci("server", "s1")

    def unavailable(*args, **kwargs):  # the connection broke: SQLAlchemy says so
        raise OperationalError("SELECT", {}, Exception("server closed the connection unexpectedly"),
                               connection_invalidated=True)

    monkeypatch.setattr(cis, "get_ci_detail", unavailable)
    same_id = {"X-Request-Id": "the-same-request"}  # a 500 names it
    answer = both_ways("GET", f"/api/v1/cis/{ci['id']}", headers=same_id)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
    assert answer.headers["content-type"] == "application/problem+json"

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cis, "get_ci_detail", broken)
    answer = both_ways("GET", f"/api/v1/cis/{ci['id']}", headers=same_id)
    assert answer.status_code == 500 and answer.json()["type"] == "urn:karta:problem:internal-error"


def test_single_ci_reads_take_turns_and_one_held_up_holds_the_others_up_no_longer_than_the_bound(app, api,
                                                                                                   monkeypatch):
    # KARTA_CI_READ_CONCURRENCY reads at once per worker, the others in order; one that waited
    # KARTA_CI_READ_TURN_SECONDS goes anyway (a read held up by the database holds the others up no longer).
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from app.services import cis

    held_up, other = api.create_ci("server", "held-up"), api.create_ci("server", "other")
    detail, gates = cis.get_ci_detail, {}

    def slow(conn, registry, ci_id):
        if str(ci_id) == held_up["id"]:
            entered, release = gates["entered"], gates["release"]
            entered.set()
            assert release.wait(20)
        return detail(conn, registry, ci_id)

    monkeypatch.setattr(cis, "get_ci_detail", slow)
    with ThreadPoolExecutor(2) as pool:
        for turn_seconds in (0.5, 30):
            app.state.settings = app.state.settings.model_copy(
                update={"ci_read_concurrency": 1, "ci_read_turn_seconds": turn_seconds})
            app.state.ci_reads = None  # made again from the settings at the next read
            gates.update(entered=threading.Event(), release=threading.Event())
            first = pool.submit(api.get, f"/api/v1/cis/{held_up['id']}")
            assert gates["entered"].wait(20)
            started = time.monotonic()
            second = pool.submit(api.get, f"/api/v1/cis/{other['id']}")
            if turn_seconds < 1:
                assert second.result(20).status_code == 200  # went after waiting its turn that long
                assert 0.5 <= time.monotonic() - started < 10 and not first.done()
                gates["release"].set()
            else:
                time.sleep(1)
                assert not second.done()  # its turn comes when the first read is done
                gates["release"].set()
                assert second.result(20).status_code == 200
            assert first.result(20).status_code == 200
    started = time.monotonic()
    for _ in range(3):  # every turn was given back
        assert api.get(f"/api/v1/cis/{other['id']}").status_code == 200
    assert time.monotonic() - started < 10


def test_read_turns_keep_a_moving_queue_in_order_and_let_a_stalled_one_go():
    # ReadTurns (app/api/cis.py): `size` at once, the rest in order; a read goes without a turn only when
    # no turn was given back for `stall_seconds`; a read cancelled while waiting, or just as a turn came
    # to it, loses no turn.
    import asyncio

    from app.api.cis import ReadTurns

    async def scenario():
        turns, order, without = ReadTurns(1, 0.05), [], []

        async def read(n: int, holds: float) -> None:
            took = await turns.take()
            (order if took else without).append(n)
            try:
                await asyncio.sleep(holds)
            finally:
                if took:
                    turns.give_back()

        # 30 reads of 20 ms each queue for up to 0.6 s, 12 times the stall bound: every one waits its turn
        await asyncio.wait_for(asyncio.gather(*(read(n, 0.02) for n in range(30))), 10)
        assert order == list(range(30)) and without == [] and turns.free == 1
        # a read held up (1 s) stalls the queue: the others go without a turn after ~0.05 s
        started = asyncio.get_running_loop().time()
        stuck = asyncio.create_task(read(-1, 1.0))
        await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*(read(n, 0.0) for n in range(3))), 10)
        assert without == [0, 1, 2] and asyncio.get_running_loop().time() - started < 0.5
        await stuck
        assert turns.free == 1 and not turns.waiting
        # cancelled while waiting, and cancelled as the turn reaches it: the turn goes on
        holder = asyncio.create_task(read(100, 0.05))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(read(101, 0.0))
        after = asyncio.create_task(read(102, 0.0))
        await asyncio.sleep(0.01)
        waiter.cancel()
        await asyncio.gather(holder, after, return_exceptions=True)
        assert order[-2:] == [100, 102] and turns.free == 1
        late = ReadTurns(1, 5.0)
        assert await late.take()
        waiting = asyncio.create_task(late.take())
        await asyncio.sleep(0.01)
        late.give_back()  # hands the turn to `waiting`, which is cancelled before it runs
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        if not waiting.cancelled():  # Python 3.11's wait_for keeps a result that came with the cancel
            assert waiting.result() is True
            late.give_back()  # as the read's `finally` does
        assert late.free == 1 and not late.waiting and await late.take()

    asyncio.run(scenario())
