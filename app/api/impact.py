"""Impact analysis: change impact, incident blast radius, root cause, single points of failure,
and neighborhood export (scope `read`). Answers come from this worker's in-memory graph, brought up
to date with the change feed before each one; each says the change sequence it reflects
(`as_of_seq` in JSON, the `X-Karta-As-Of-Seq` header on every answer).

SVG is drawn by Graphviz `dot` in the endpoint's worker thread (never on the event loop), within
limits: past `SvgLimits` the answer is a 422 naming the counts and the limits rather than a layout
that could take minutes; without `dot` it is a 503. Both are problem+json, so `curl -f` fails."""

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
from app.services.errors import InvalidInput, KartaError, field_error
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


class TooLargeToDraw(InvalidInput):
    title = "Picture too large"
    slug = "picture-too-large"


SMALLER = "Ask with a smaller max_depth, or for format=dot (and render it yourself) or format=json."


AS_OF_SEQ = "X-Karta-As-Of-Seq"
_AS_OF_HEADER = {AS_OF_SEQ: {"description": "The change sequence (`/changes` seq) the answer reflects: every "
                                            "change up to it, none after.", "schema": {"type": "integer"}}}
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
PICTURE_RESPONSES = {
    200: {"description": "The answer as JSON, or its subgraph as DOT or SVG (`format`)", "headers": _AS_OF_HEADER,
          "content": {"application/json": {}, "text/vnd.graphviz": {"schema": {"type": "string"}},
                      "image/svg+xml": {"schema": {"type": "string"}}}},
    422: {"description": "Invalid input; or format=svg and the picture has more CIs or relationships than the "
                         "server draws, or took longer than it allows (`picture-too-large`: ask with a smaller "
                         "max_depth, or for format=dot or json)", "content": _PROBLEM},
    503: {"description": "format=svg and Graphviz `dot` is not installed on the server (`graphviz-unavailable`)",
          "content": _PROBLEM},
}
EXPORT_RESPONSES = {200: {"description": "The subgraph as JSON, GraphML, DOT or Cytoscape.js elements (`format`)",
                          "headers": _AS_OF_HEADER,
                          "content": {"application/json": {}, "application/graphml+xml": {"schema": {"type": "string"}},
                                      "text/vnd.graphviz": {"schema": {"type": "string"}}}}}
JSON_RESPONSES = {200: {"description": "The answer", "headers": _AS_OF_HEADER}}


def _svg_limits(request: Request) -> export.SvgLimits:
    """The drawing limits from the settings (KARTA_SVG_MAX_NODES, KARTA_SVG_MAX_EDGES,
    KARTA_SVG_TIMEOUT_SECONDS, KARTA_GRAPHVIZ_DOT)."""
    settings = request.app.state.settings
    return export.SvgLimits(
        max_nodes=settings.svg_max_nodes, max_edges=settings.svg_max_edges,
        timeout_seconds=settings.svg_timeout_seconds, dot=settings.graphviz_dot,
    )


def _too_large(exc: export.PictureTooLarge) -> TooLargeToDraw:
    limits = exc.limits
    return TooLargeToDraw(
        f"Not drawn: {exc}. {SMALLER}",
        [field_error("format", f"svg is drawn for at most {limits.max_nodes} CIs and {limits.max_edges} relationships")],
        nodes=exc.nodes, edges=exc.edges, max_nodes=limits.max_nodes, max_edges=limits.max_edges)


def _svg(nodes: list[str], edges: list[tuple], info: dict, limits: export.SvgLimits) -> bytes:
    try:
        return export.as_svg(nodes, edges, info, limits).encode()
    except export.PictureTooLarge as exc:
        raise _too_large(exc) from exc
    except export.GraphvizTimeout as exc:
        raise TooLargeToDraw(
            f"Not drawn: {exc}. {SMALLER}",
            [field_error("format", f"svg must be drawn within {limits.timeout_seconds:g} s")],
            nodes=len(nodes), edges=len(edges), timeout_seconds=limits.timeout_seconds) from exc
    except (export.GraphvizMissing, export.GraphvizFailed) as exc:
        raise GraphvizUnavailable(f"Cannot draw SVG here ({exc}); ask for format=dot and render it yourself.") from exc


def _check_types(request: Request, types: list[str] | None) -> None:
    impact.require_types(request.app.state.registry, types)


def _as_of(as_of_seq: int) -> dict[str, str]:
    return {AS_OF_SEQ: str(as_of_seq)}


def _answer(request: Request, ids: list[uuid.UUID], field_name: str, query: _Query, picture: Picture):
    _check_types(request, query.types)
    limits = _svg_limits(request)

    def drawable(count: int) -> None:  # before listing the relationships of a huge answer
        if picture is Picture.svg:
            try:
                limits.check(count)
            except export.PictureTooLarge as exc:
                raise _too_large(exc) from exc

    analysis = impact.analyse(request.app.state.live_graph, request.app.state.engine, ids, field_name,
                              max_depth=query.max_depth, types=query.types, before_edges=drawable,
                              with_edges=picture is not Picture.json)
    as_of_seq, drawn, edges, info = analysis.as_of_seq, analysis.drawn, analysis.edges, analysis.info
    if picture is Picture.json:
        return JSON({**analysis.answer, "as_of_seq": as_of_seq}, headers=_as_of(as_of_seq))
    if picture is Picture.dot:
        return Response(export.as_dot(drawn, edges, info), media_type="text/vnd.graphviz", headers=_as_of(as_of_seq))
    return Response(_svg(drawn, edges, info, limits), media_type="image/svg+xml", headers=_as_of(as_of_seq))


@router.post("/impact", responses=PICTURE_RESPONSES)
def impact_of_change(body: ImpactRequest, request: Request, principal: Reader,
                     format: Annotated[Picture, Query(description="json, or the impacted subgraph as dot or svg")] = Picture.json):
    """Change review: treat the CIs as failing and say what is impacted, how (state), how far
    (distance) and why (one shortest path from a changed CI), which services, the risk, and whom to tell."""
    return _answer(request, body.ci_ids, "ci_ids", body, format)


@router.post("/blast-radius", responses=PICTURE_RESPONSES)
def blast_radius(body: BlastRadiusRequest, request: Request, principal: Reader,
                 format: Annotated[Picture, Query(description="json, or the impacted subgraph as dot or svg")] = Picture.json):
    """Incident: what is down, degraded or at risk because these CIs failed together (redundancy
    counted: two of three nodes of a cluster that needs two take it down; one degrades it)."""
    return _answer(request, body.failed, "failed", body, format)


@router.post("/root-cause", responses=JSON_RESPONSES)
def root_cause(body: RootCauseRequest, request: Request, principal: Reader):
    """The CIs upstream of the symptoms whose single failure would put the most of them down; ties go
    to the one that would take down fewest other CIs (the most specific explanation)."""
    with request.app.state.live_graph.reading() as graph:
        symptoms = impact.require_known(graph, body.symptoms, "symptoms")
        candidates = graph.root_cause(symptoms, limit=body.limit)
        as_of_seq = graph.applied_seq
    with read_transaction(request) as conn:
        answer = impact.root_cause_answer(conn, symptoms, candidates)
    return JSON({**answer, "as_of_seq": as_of_seq}, headers=_as_of(as_of_seq))


@router.get("/cis/{ci_id}/spof", responses=JSON_RESPONSES)
def single_points_of_failure(ci_id: uuid.UUID, request: Request, principal: Reader):
    """The CIs whose failure alone takes this CI down, redundancy considered."""
    with request.app.state.live_graph.reading() as graph:
        key = impact.require_ci(graph, ci_id)
        points = graph.spof(key)
        as_of_seq = graph.applied_seq
    with read_transaction(request) as conn:
        answer = impact.spof_answer(conn, key, points)
    return JSON({**answer, "as_of_seq": as_of_seq}, headers=_as_of(as_of_seq))


@router.get("/cis/{ci_id}/neighborhood", responses=EXPORT_RESPONSES)
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
    with request.app.state.live_graph.reading() as graph:
        key = impact.require_ci(graph, ci_id)
        nodes, edges = graph.neighborhood(key, depth=depth, direction=direction.value, types=types)
        as_of_seq = graph.applied_seq
    with read_transaction(request) as conn:
        info = impact.describe(conn, set(nodes))
    nodes = sorted(nodes)
    headers = _as_of(as_of_seq)
    if format is Export.graphml:
        return Response(export.as_graphml(nodes, edges, info), media_type="application/graphml+xml", headers=headers)
    if format is Export.dot:
        return Response(export.as_dot(nodes, edges, info), media_type="text/vnd.graphviz", headers=headers)
    if format is Export.cytoscape:
        return JSON({"elements": export.as_cytoscape(nodes, edges, info), "as_of_seq": as_of_seq}, headers=headers)
    return JSON({**export.as_json(nodes, edges, info), "as_of_seq": as_of_seq}, headers=headers)
