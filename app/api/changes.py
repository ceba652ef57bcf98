"""/api/v1/changes: the change feed other tools tail."""

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.deps import Reader, read_transaction
from app.api.responses import JSON
from app.models.change import ChangePage
from app.services import changes

router = APIRouter(prefix="/api/v1/changes", tags=["history"])


@router.get("", response_model=ChangePage)
def change_feed(
    request: Request,
    principal: Reader,
    since: Annotated[int, Query(ge=0, le=2**63 - 1, description="Return records with seq greater than this")] = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
):
    """Oldest first. Poll again with `since` = `last_seq`; sequence numbers grow in commit order, so
    nothing committed before a record you have seen can appear later with a smaller number."""
    with read_transaction(request) as conn:
        return JSON(changes.change_feed(conn, since=since, limit=limit))
