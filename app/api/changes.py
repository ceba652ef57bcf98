"""/api/v1/changes: the change feed other tools tail, filtered by object, kind, actor and time."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from app.api.deps import Reader, read_transaction
from app.api.responses import JSON
from app.models.change import ChangePage
from app.services import changes
from app.services.storable import require_storable

router = APIRouter(prefix="/api/v1/changes", tags=["history"])
ObjectType = Literal["ci", "relationship", "class", "relationship_type", "precedence", "token", "webhook", "incident",
                     "service_map"]


@router.get("", response_model=ChangePage)
def change_feed(
    request: Request,
    principal: Reader,
    since: Annotated[int, Query(ge=0, le=2**63 - 1, description="Return records with seq greater than this")] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    object_type: Annotated[ObjectType | None, Query(description="Only records of this kind of object")] = None,
    object_id: Annotated[uuid.UUID | None, Query(description="Only records of this object")] = None,
    actor: Annotated[str | None, Query(max_length=200, description="Only changes made by this actor (token name)")] = None,
    at_from: Annotated[datetime | None, Query(alias="from", description="Only changes made at or after this time")] = None,
    until: Annotated[datetime | None, Query(description="Only changes made before this time")] = None,
):
    """Oldest first. Poll again with `since` = `last_seq`. Sequence numbers grow in commit order, so
    nothing committed before a record you have seen can appear later with a smaller number; they are
    not dense (a transaction that did not commit leaves a gap, never a missing record).

    With `object_type`, `actor`, `from` or `until` (and no `object_id`), one request looks at no more
    than 100,000 sequence numbers past `since`: a page may hold fewer than `limit` records, even none,
    while `last_seq` moves on; read on until `last_seq` equals `head_seq`. Registry objects have
    name-based ids: `uuid5(6b617274-612d-4f62-8a65-637473000000, "class:server")` (and
    `relationship_type:NAME`; the precedence rules are `precedence:rules`)."""
    if actor is not None:
        require_storable(actor, "actor")
    with read_transaction(request) as conn:
        return JSON(changes.change_feed(conn, since=since, limit=limit, object_type=object_type, object_id=object_id,
                                        actor=actor, at_from=at_from, until=until))
