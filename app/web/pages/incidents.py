"""/ui/incidents and /ui/incidents/{id}: the incidents monitoring raised (app.services.incidents), for
the on-call: what is down, why, who to call. Read-only pages; a token of scope read sees them. Every
label, annotation and name came from outside (monitoring or discovery): the templates escape it all."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.core.db import read_transaction
from app.services import incidents
from app.web.auth import CurrentUser
from app.web.render import render

router = APIRouter(include_in_schema=False)
PAGE = 50


@router.get("/ui/incidents")
def incident_list(request: Request, user: CurrentUser,
                  status: Annotated[str | None, Query(pattern="^(open|resolved)?$")] = None,
                  cursor: Annotated[str | None, Query(max_length=200)] = None):
    status = status or None
    with read_transaction(request.app.state.engine) as conn:
        page = incidents.list_incidents(conn, status, PAGE, cursor or None)
    return render(request, "incidents.html", {**page, "status": status, "params": {"status": status}})


@router.get("/ui/incidents/{incident_id}")
def incident_detail(incident_id: uuid.UUID, request: Request, user: CurrentUser):
    with read_transaction(request.app.state.engine) as conn:
        incident = incidents.get_incident(conn, incident_id)
    return render(request, "incident.html", {"incident": incident})
