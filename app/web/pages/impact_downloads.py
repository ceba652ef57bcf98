"""Downloads of a change review or incident: /ui/impact.{svg,dot,json,csv} and the same under
/ui/blast-radius, with the page's query parameters and the session cookie (a link on the page).

The JSON is the API's answer; the CSV has a row per CI with its path as names, neutralised against
spreadsheet formulas (names come from discovery); the DOT is the whole answer's subgraph; the SVG is
the picture on the page (grouped by class above the page's threshold), drawn by Graphviz `dot` on the
server: without `dot` the answer is an error page that says to download the DOT instead."""

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.services import impact_views
from app.services.errors import InvalidInput, KartaError, field_error
from app.web import svg as svg_check
from app.web.auth import CurrentUser
from app.web.pages.impact import EDGES_UP_TO, INCIDENT, REVIEW, Mode, analyse, query_choice
from graph import export

router = APIRouter(include_in_schema=False)

AS_OF_SEQ = "X-Karta-As-Of-Seq"
MEDIA_TYPES = {"svg": "image/svg+xml", "dot": "text/vnd.graphviz; charset=utf-8", "json": "application/json",
               "csv": "text/csv; charset=utf-8"}


class PictureUnavailable(KartaError):
    status = 503
    title = "Graphviz unavailable"
    slug = "graphviz-unavailable"


def _choice(request: Request, mode: Mode) -> impact_views.Choice:
    raw_ids, raw_depth, raw_types = query_choice(request, mode)
    choice = impact_views.parse_choice(request.app.state.registry, raw_ids, mode.field, raw_depth, raw_types)
    if not choice.ids:
        raise InvalidInput(f"Name at least one CI ({mode.field}=ID) to download an answer.",
                           [field_error(mode.field, "no CI given")])
    return choice


def _file(request: Request, mode: Mode, ext: str, body: str | bytes, as_of_seq: int) -> Response:
    name = f"karta-{mode.path.rsplit('/', 1)[-1]}.{ext}"
    return Response(body, media_type=MEDIA_TYPES[ext],
                    headers={"Content-Disposition": f'attachment; filename="{name}"', AS_OF_SEQ: str(as_of_seq)})


def _svg(request: Request, mode: Mode, analysis) -> str:
    settings = request.app.state.settings
    failed = [ci["id"] for ci in analysis.answer["failed"]]
    nodes, edges, info = analysis.drawn, analysis.edges, analysis.info
    if len(nodes) > settings.ui_picture_max_nodes or edges is None:  # as the page draws it
        nodes, edges, info = export.collapse_by_class(nodes, edges, info, keep=failed)
    limits = export.SvgLimits(max_nodes=settings.svg_max_nodes, max_edges=settings.svg_max_edges,
                              timeout_seconds=settings.svg_timeout_seconds, dot=settings.graphviz_dot)
    instead = f"Download the DOT instead ({mode.path}.dot with the same query) and draw it with Graphviz or any DOT viewer."
    try:
        return str(svg_check.clean(export.as_svg(nodes, edges, info, limits)))
    except export.GraphvizMissing as exc:
        raise PictureUnavailable(f"This server cannot draw SVG: {exc}. {instead}") from exc
    except (export.PictureTooLarge, export.GraphvizTimeout) as exc:
        raise InvalidInput(f"The picture is too large to draw here: {exc}. {instead}",
                           [field_error("format", "too large for svg")]) from exc
    except (export.GraphvizFailed, svg_check.UnsafeSvg) as exc:
        raise PictureUnavailable(f"The picture could not be drawn: {exc}. {instead}") from exc


def download(request: Request, mode: Mode, ext: str) -> Response:
    choice = _choice(request, mode)
    analysis = analyse(request, mode, choice, with_edges=ext in ("svg", "dot"),
                       edges_up_to=EDGES_UP_TO if ext == "svg" else None)
    if ext == "json":
        body = json.dumps({**analysis.answer, "as_of_seq": analysis.as_of_seq})
    elif ext == "csv":
        body = impact_views.as_csv(analysis, mode.state)
    elif ext == "dot":
        body = export.as_dot(analysis.drawn, analysis.edges or [], analysis.info, title=mode.title)
    else:
        body = _svg(request, mode, analysis)
    return _file(request, mode, ext, body, analysis.as_of_seq)


def _route(mode: Mode, ext: str):
    def answer(request: Request, user: CurrentUser) -> Response:
        return download(request, mode, ext)

    answer.__name__ = f"{mode.field}_{ext}"
    return answer


for _mode in (REVIEW, INCIDENT):
    for _ext in MEDIA_TYPES:
        router.add_api_route(f"{_mode.path}.{_ext}", _route(_mode, _ext), methods=["GET"])
