"""Impact analysis: change impact, incident blast radius, root cause, single points of failure,
and neighborhood export (scope `read`). Answers come from this worker's in-memory graph, brought up
to date with the change feed before each one."""

import uuid
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from app.api.deps import Reader, read_transaction
from app.api.responses import JSON
from app.models.ci_class import CLASS_NAME_PATTERN
from app.services import impact
from app.services.errors import InvalidInput, KartaError, NotFound, field_error
from graph import export

router = APIRouter(prefix="/api/v1", tags=["impact"])


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_depth: int | None = Field(default=None, ge=0, le=1000, description="Stop propagating after this many hops")
    types: list[Annotated[str, Field(pattern=CLASS_NAME_PATTERN)]] | None = Field(
        default=None, max_length=100, description="Follow only these relationship types")


class ImpactRequest(_Query):
    ci_ids: list[uuid.UUID] = Field(min_length=1, max_length=10_000, description="The CIs a change touches")


class BlastRadiusRequest(_Query):
    failed: list[uuid.UUID] = Field(min_length=1, max_length=10_000, description="The CIs that failed, together")


class RootCauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symptoms: list[uuid.UUID] = Field(min_length=1, max_length=1000, description="CIs that alerted")
    limit: int = Field(default=10, ge=1, le=100)


class Picture(StrEnum):
    json = "json"
    dot = "dot"
    svg = "svg"


class Export(StrEnum):
    json = "json"
    graphml = "graphml"
    dot = "dot"
    cytoscape = "cytoscape"


class Direction(StrEnum):
    up = "up"
    down = "down"
    both = "both"


class GraphvizUnavailable(KartaError):
    status = 503
    title = "Graphviz unavailable"
    slug = "graphviz-unavailable"


def _check_types(request: Request, types: list[str] | None) -> None:
    known = request.app.state.registry.get().relationship_types
    for n, name in enumerate(types or []):
        if name not in known:
            raise InvalidInput(f"Unknown relationship type '{name}'.", [field_error(f"types.{n}", "unknown type")])


def _answer(request: Request, ids: list[uuid.UUID], field_name: str, query: _Query, picture: Picture):
    _check_types(request, query.types)
    graph = request.app.state.live_graph.current()
    failed = impact.require_known(graph, ids, field_name)
    with read_transaction(request) as conn:
        answer, info = impact.impact_answer(conn, graph, failed, query.max_depth, query.types)
    if picture is Picture.json:
        return JSON(answer)
    nodes = list(info)
    edges = graph.edges_among(nodes)
    if picture is Picture.dot:
        return Response(export.as_dot(nodes, edges, info), media_type="text/vnd.graphviz")
    try:
        return Response(export.as_svg(nodes, edges, info), media_type="image/svg+xml")
    except (export.GraphvizMissing, export.GraphvizFailed) as exc:
        raise GraphvizUnavailable(f"Cannot draw SVG here ({exc}); ask for format=dot and render it yourself.") from exc


@router.post("/impact")
def impact_of_change(body: ImpactRequest, request: Request, principal: Reader,
                     format: Annotated[Picture, Query(description="json, or the impacted subgraph as dot or svg")] = Picture.json):
    """Change review: treat the CIs as failing and say what is impacted, how (state), how far
    (distance) and why (one shortest path from a changed CI), which services, the risk, and whom to tell."""
    return _answer(request, body.ci_ids, "ci_ids", body, format)


@router.post("/blast-radius")
def blast_radius(body: BlastRadiusRequest, request: Request, principal: Reader,
                 format: Annotated[Picture, Query()] = Picture.json):
    """Incident: what is down, degraded or at risk because these CIs failed together (redundancy
    counted: two of three nodes of a cluster that needs two take it down; one degrades it)."""
    return _answer(request, body.failed, "failed", body, format)


@router.post("/root-cause")
def root_cause(body: RootCauseRequest, request: Request, principal: Reader):
    """The CIs upstream of the symptoms whose single failure would put the most of them down; ties go
    to the one that would take down fewest other CIs (the most specific explanation)."""
    graph = request.app.state.live_graph.current()
    symptoms = impact.require_known(graph, body.symptoms, "symptoms")
    with read_transaction(request) as conn:
        return JSON(impact.root_cause_answer(conn, graph, symptoms, body.limit))


@router.get("/cis/{ci_id}/spof")
def single_points_of_failure(ci_id: uuid.UUID, request: Request, principal: Reader):
    """The CIs whose failure alone takes this CI down, redundancy considered."""
    graph = request.app.state.live_graph.current()
    with read_transaction(request) as conn:
        return JSON(impact.spof_answer(conn, graph, ci_id))


@router.get("/cis/{ci_id}/neighborhood")
def neighborhood(
    ci_id: uuid.UUID,
    request: Request,
    principal: Reader,
    depth: Annotated[int, Query(ge=0, le=10)] = 1,
    direction: Annotated[Direction, Query(description="up: what it depends on; down: what depends on it")] = Direction.both,
    format: Annotated[Export, Query()] = Export.json,
    types: Annotated[list[str] | None, Query(description="Follow only these relationship types")] = None,
):
    """The CI's surroundings as a subgraph, for other tools."""
    _check_types(request, types)
    graph = request.app.state.live_graph.current()
    key = str(ci_id)
    if key not in graph:
        raise NotFound(f"No CI with id {ci_id}.")
    nodes, edges = graph.neighborhood(key, depth=depth, direction=direction.value, types=types)
    with read_transaction(request) as conn:
        info = impact.describe(conn, set(nodes))
    nodes = sorted(nodes)
    if format is Export.graphml:
        return Response(export.as_graphml(nodes, edges, info), media_type="application/graphml+xml")
    if format is Export.dot:
        return Response(export.as_dot(nodes, edges, info), media_type="text/vnd.graphviz")
    if format is Export.cytoscape:
        return JSON({"elements": export.as_cytoscape(nodes, edges, info)})
    return JSON(export.as_json(nodes, edges, info))
