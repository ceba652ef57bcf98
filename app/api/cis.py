"""/api/v1/cis: configuration items."""

import asyncio
import time
import uuid
from collections import deque
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.api.ci_query import CIFilters, CIQuery, attribute_filters
from app.api.deps import (
    IfMatch,
    Reader,
    RegistryDep,
    Writer,
    parse_if_match,
    read_transaction,
    write,
)
from app.api.responses import JSON
from app.core import db
from app.integrations import csv_export
from app.models.change import HistoryPage
from app.models.ci import CICreate, CIDetail, CIPage, CIPublic, CIUpdate
from app.services import changes, cis
from app.services.errors import InvalidInput, field_error

router = APIRouter(prefix="/api/v1/cis", tags=["configuration items"])

LIST_PARAMS = CIFilters.NAMES | {"sort", "limit", "cursor", "format"}
PAGING_PARAMS = ("sort", "limit", "cursor")  # not with format=csv: an export holds every matching CI, by id


def _etag(ci: dict) -> dict[str, str]:
    return {"ETag": f'"{ci["version"]}"'}


@router.post("", status_code=201, response_model=CIPublic, response_model_by_alias=True)
def create_ci(data: CICreate, request: Request, principal: Writer, registry: RegistryDep):
    limit = request.app.state.settings.max_attributes_bytes
    ci = write(request, principal, lambda uow: cis.create_ci(uow, registry, data, max_attributes_bytes=limit))
    return JSON(ci, status_code=201, headers={**_etag(ci), "Location": f"/api/v1/cis/{ci['id']}"})


@router.get("", response_model=CIPage)
def list_cis(
    request: Request,
    principal: Reader,
    registry: RegistryDep,
    filters: CIQuery,
    sort: Annotated[str | None, Query(
        description="name, class, status, last_seen or updated_at; a leading '-' reverses (`-updated_at`: newest "
                    f"first). Without it, by id. last_seen needs filters leaving at most {cis.LAST_SEEN_SORT_MAX:,} CIs",
        max_length=20)] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: str | None = None,
    format: Annotated[Literal["json", "csv"], Query(
        description="csv: every matching CI as the spreadsheet POST /api/v1/import reads back (streamed, by id; "
                    "no sort, limit or cursor)")] = "json",
):
    """Filter with `attr.<key>=<value>` too (e.g. `attr.os_name=debian`); page with `cursor` = `next_cursor`
    (a cursor belongs to the sort it was made with)."""
    chosen = {**filters.service_kwargs(), "attributes": attribute_filters(request, LIST_PARAMS)}
    if format == "csv":
        return _export(request, registry, chosen)
    with read_transaction(request) as conn:
        page = cis.list_cis(conn, registry, **chosen, sort=sort,
                            limit=limit or request.app.state.settings.default_page_size, cursor=cursor)
    return JSON(page)


def _export(request: Request, registry, filters: dict) -> StreamingResponse:
    given = [name for name in PAGING_PARAMS if name in request.query_params]
    if given:
        raise InvalidInput(f"format=csv exports every matching CI in id order: drop {', '.join(given)}.",
                           [field_error(f"query.{name}", "not with format=csv") for name in given])
    with read_transaction(request) as conn:
        cis.list_filters(conn, registry, **filters)  # refuses bad filters now, before the answer starts
    return StreamingResponse(csv_export.export(request.app.state.engine, registry, filters), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="karta-cis.csv"'})


@router.get("/{ci_id}", response_model=CIDetail)
async def get_ci(ci_id: uuid.UUID, request: Request, principal: Reader):
    # An id in the usual spelling is answered by app/api/hot_routes.py, the same way, before this route.
    return await ci_detail(request, ci_id)


async def ci_detail(request: Request, ci_id: uuid.UUID) -> JSON:
    """The CI's detail read (authorized already), the database read in the thread pool, at most
    `ci_read_concurrency` at once in this worker (ReadTurns)."""
    engine = request.app.state.engine
    if db.read_may_wait(engine):
        # X-Karta-Min-Seq with read replicas: the wait for a replica to show it is not a read's turn
        await run_in_threadpool(db.prepare_read, engine)
    turns = _turns(request.app)
    took = await turns.take()
    try:
        ci = await run_in_threadpool(_read_detail, request, ci_id)
    finally:
        if took:
            turns.give_back()
    return JSON(ci, headers=_etag(ci))


class ReadTurns:
    """At most `size` reads at once (on one event loop), the others waiting in order. A waiting read goes
    without a turn when no read has given one back for `stall_seconds`: the reads holding the turns are
    then held up by the database (a frozen replica, a far or loaded server), and they hold the others up
    no longer. A queue that moves keeps its order however long it is (an overloaded worker still runs
    `size` at once)."""

    def __init__(self, size: int, stall_seconds: float) -> None:
        self.free = size
        self.stall_seconds = stall_seconds
        self.waiting: deque[asyncio.Future] = deque()
        self.given_back = time.monotonic()

    async def take(self) -> bool:
        """True with a turn (give it back), False when it goes without one."""
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return True
        turn = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            for _ in range(_STALL_CHECKS):
                try:
                    await asyncio.wait_for(asyncio.shield(turn), self.stall_seconds)
                    return True
                except TimeoutError:
                    if turn.done() or time.monotonic() - self.given_back >= self.stall_seconds:
                        break
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.give_back()  # handed over as this read was cancelled: to the next one
            else:
                turn.cancel()
            raise
        if turn.done() and not turn.cancelled():
            return True  # handed over just as it gave up waiting
        turn.cancel()  # give_back passes over it
        return False

    def give_back(self) -> None:
        self.given_back = time.monotonic()
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.free += 1


# A read checks this many times whether the queue moves before it goes without a turn all the same.
_STALL_CHECKS = 100


def _turns(app) -> ReadTurns:
    turns = getattr(app.state, "ci_reads", None)
    if turns is None:  # made at start-up (app.main); an application served without its lifespan makes it here
        settings = app.state.settings
        turns = app.state.ci_reads = ReadTurns(settings.ci_read_concurrency, settings.ci_read_turn_seconds)
    return turns


def _read_detail(request: Request, ci_id: uuid.UUID) -> dict:
    with read_transaction(request) as conn:
        return cis.get_ci_detail(conn, request.app.state.registry, ci_id)


@router.patch("/{ci_id}", response_model=CIPublic)
def update_ci(ci_id: uuid.UUID, data: CIUpdate, request: Request, principal: Writer, registry: RegistryDep,
              if_match: IfMatch = None):
    """Only the fields sent change; `attributes` merge key by key (a key sent as null is removed).
    Send `If-Match` with the ETag you read to get 412 instead of overwriting someone else's change."""
    version, limit = parse_if_match(if_match), request.app.state.settings.max_attributes_bytes
    ci = write(request, principal, lambda uow: cis.update_ci(uow, registry, ci_id, data.model_dump(exclude_unset=True),
                                                          version, max_attributes_bytes=limit))
    return JSON(ci, headers=_etag(ci))


@router.delete("/{ci_id}", status_code=204)
def delete_ci(ci_id: uuid.UUID, request: Request, principal: Writer, if_match: IfMatch = None):
    """Deletes the CI and ends its relationships; all of it stays in history."""
    version = parse_if_match(if_match)
    write(request, principal, lambda uow: cis.delete_ci(uow, ci_id, version))
    return Response(status_code=204)


@router.get("/{ci_id}/history", response_model=HistoryPage)
def ci_history(
    ci_id: uuid.UUID,
    request: Request,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
):
    """The CI's change records, newest first; still readable after the CI is deleted."""
    with read_transaction(request) as conn:
        return JSON(changes.object_history(conn, ci_id, limit=limit, cursor=cursor))
