"""A business service's map (scope `read`): the CIs below its entry points by layer (entry,
applications, data stores, hosts, infrastructure), the relationships among them, and how each entry
point resolved, as JSON, DOT or SVG. The map is the one the service keeps in step with the change
feed (app.services.service_map_keeper); its changes are `service_map` records in /changes.

SVG is drawn by Graphviz as the impact pictures are (same limits, same errors: app.api.impact) and
checked by the picture allow-list (app.web.svg) before it is sent: names come from discovery."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.api.deps import Reader
from app.api.impact import (
    PICTURE_RESPONSES,
    GraphvizUnavailable,
    Picture,
    _as_of,
    _svg,
    _svg_limits,
)
from app.api.responses import JSON
from app.services.service_map_view import map_view
from app.web import svg as svg_check
from graph import export

router = APIRouter(prefix="/api/v1", tags=["service maps"])


@router.get("/cis/{ci_id}/service-map", responses=PICTURE_RESPONSES)
def service_map(ci_id: uuid.UUID, request: Request, principal: Reader,
                format: Annotated[Picture, Query(description="json, or the map as dot or svg")] = Picture.json):
    """The map of a service (a CI of the service family): `layers` holds its CIs, `edges` the
    relationships among them, `entry_points` each entry point with its status (resolved, stale:
    resolved before and no longer, its last map kept; unresolved or invalid, with the reason) and
    `status` the service's (mapped, partial, stale, unresolved; pending before the first mapping)."""
    state = request.app.state
    view = map_view(state.engine, state.registry.get(), state.live_graph, ci_id)
    headers = _as_of(view.answer["as_of_seq"])
    if format is Picture.json:
        return JSON(view.answer, headers=headers)
    if format is Picture.dot:
        title = f"service map {ci_id}"
        return Response(export.as_dot(view.nodes, view.edges, view.info, title=title), media_type="text/vnd.graphviz",
                        headers=headers)
    drawn = _svg(view.nodes, view.edges, view.info, _svg_limits(request)).decode()
    try:
        checked = str(svg_check.clean(drawn))
    except svg_check.UnsafeSvg as exc:
        raise GraphvizUnavailable(f"The picture Graphviz drew was refused ({exc}); ask for format=dot.") from exc
    return Response(checked, media_type="image/svg+xml", headers=headers)
