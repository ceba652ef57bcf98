"""Incidents from monitoring: Alertmanager's webhook and the generic alert form (scope `write`), and
the incidents they make (scope `read`). The formats are translated in app/integrations/, the work is
app.services.incidents."""

import uuid
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.deps import Reader, Writer, read_transaction
from app.api.responses import JSON
from app.integrations import alertmanager, alerts
from app.services import incidents

router = APIRouter(prefix="/api/v1", tags=["incidents"])


class IncidentStatus(StrEnum):
    open = "open"
    resolved = "resolved"


def _context(request: Request) -> incidents.Context:
    return incidents.context(request.app.state)


@router.post("/integrations/alertmanager")
def alertmanager_webhook(body: alertmanager.AlertmanagerPayload, request: Request, principal: Writer):
    """Alertmanager's webhook receiver (payload version 4; configure `http_config.authorization.credentials`
    with a token of scope write). One incident per `groupKey`; answers with the incident recomputed."""
    incident = incidents.receive(_context(request), principal.name, alertmanager.to_group(body),
                                 token_id=principal.token_id)
    return JSON(incident)


@router.post("/integrations/alerts")
def generic_alert(body: alerts.GenericAlert, request: Request, principal: Writer):
    """One check's state in Nagios terms (Nagios, Zabbix, `karta alert`); answers with its incident recomputed."""
    incident = incidents.receive(_context(request), principal.name, alerts.to_group(body), token_id=principal.token_id)
    return JSON(incident)


@router.get("/incidents")
def list_incidents(request: Request, principal: Reader, status: IncidentStatus | None = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None):
    """Newest first; page with `cursor` = `next_cursor`."""
    with read_transaction(request) as conn:
        return JSON(incidents.list_incidents(conn, status.value if status else None, limit, cursor))


@router.get("/incidents/{incident_id}")
def get_incident(incident_id: uuid.UUID, request: Request, principal: Reader):
    """Its alerts (bound and unbound, firing and resolved), failed CIs, blast radius, root-cause
    candidates, owners to notify, status and times."""
    with read_transaction(request) as conn:
        return JSON(incidents.get_incident(conn, incident_id))
