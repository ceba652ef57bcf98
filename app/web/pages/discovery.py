"""/ui/discovery: discovery runs, newest first (what each created, updated, confirmed; its conflicts and
errors), and the open conflicts with their candidate CIs."""

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.core.db import read_transaction
from app.services import overview
from app.web.auth import CurrentUser
from app.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/ui/discovery")
def discovery(request: Request, user: CurrentUser,
              source: Annotated[str | None, Query(max_length=64)] = None,
              cursor: Annotated[str | None, Query(max_length=1000)] = None):
    source = source or None
    with read_transaction(request.app.state.engine) as conn:
        data = overview.discovery(conn, source=source, cursor=cursor or None)
    params = {"source": source}
    return render(request, "discovery.html", {**data, "source": source, "params": params,
                                              "run_conflicts_shown": overview.RUN_CONFLICTS_SHOWN})
