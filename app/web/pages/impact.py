"""/ui/impact (change review), /ui/blast-radius (incident) and /ui/root-cause: the impact analysis
the API answers (app.services.impact.analyse), for the people who review changes and work incidents.

The pages are plain GET forms: the address of an answer is its permalink (a change ticket links to
it), and every page reads without JavaScript. A bad id, depth or relationship type is shown on the
page beside the form, naming which one and why."""

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request

from app.services import impact, impact_views
from app.services.errors import InvalidInput
from app.web import pictures
from app.web.auth import CurrentUser
from app.web.pages import suggest
from app.web.render import render

router = APIRouter(include_in_schema=False)

# Relationships are listed for pictures of answers up to this many CIs; past it the picture shows
# the groups alone. Listing and grouping those of 10,000 CIs takes ~0.1 s; the page's budget is 2 s.
EDGES_UP_TO = 20_000


@dataclass(frozen=True)
class Mode:
    """Change review and incident are one page with different words."""

    path: str
    field: str  # the query parameter naming the CIs
    title: str
    state: str  # what the chosen CIs are: changed or failed
    chosen_label: str
    intro: str


REVIEW = Mode("/ui/impact", "ci", "Change review", "changed", "Changed CIs",
              "Choose the CIs a change touches: see what it puts down, degrades or puts at risk, which services, "
              "and whom to tell.")
INCIDENT = Mode("/ui/blast-radius", "failed", "Incident", "failed", "Failed CIs",
                "Choose the CIs that failed, taken together: see what is down, degraded or at risk because of them.")


def query_choice(request: Request, mode: Mode) -> tuple[list[str], str | None, list[str]]:
    params = request.query_params
    return (params.getlist(mode.field)[:impact_views.MAX_IDS + 1], params.get("max_depth"),
            params.getlist("type")[:impact_views.MAX_TYPES + 1])


def canonical(field_name: str, choice: impact_views.Choice) -> list[tuple[str, Any]]:
    """The query of an answer (without the search box): its permalink and its downloads' query."""
    return [(field_name, str(i)) for i in choice.ids] + [("max_depth", choice.max_depth)] + \
        [("type", t) for t in choice.types or []]


def analyse(request: Request, mode: Mode, choice: impact_views.Choice, **edges: Any) -> impact.Analysis:
    state = request.app.state
    return impact.analyse(state.live_graph, state.engine, choice.ids, mode.field, max_depth=choice.max_depth,
                          types=choice.types, **edges)


def chosen_without_answer(request: Request, raw: list[str]) -> list[dict[str, Any]]:
    """What the page was asked about when it has no answer (an error, say): the ids that name a CI
    with its name, and the others as given, so the form can drop them."""
    parsed: dict[str, str | None] = {}
    for value in raw:
        try:
            parsed[value] = str(impact_views.parse_ids([value], "id")[0])
        except InvalidInput:
            parsed[value] = None
    valid = [uuid.UUID(key) for key in parsed.values() if key]
    known = impact_views.names_of(request.app.state.engine, valid) if valid else {}
    return [{"id": value, "name": known.get(key or "", {}).get("name"), "class": known.get(key or "", {}).get("class")}
            for value, key in parsed.items()]


def review_page(request: Request, mode: Mode):
    raw_ids, raw_depth, raw_types = query_choice(request, mode)
    q = suggest.search_text(request.query_params.get("q"))
    relationship_types = sorted(request.app.state.registry.get().relationship_types)
    context: dict[str, Any] = {"mode": mode, "q": q, "relationship_types": relationship_types, "problem": None,
                               "view": None, "drawing": None, "links": None, "max_depth": raw_depth or "",
                               "types": raw_types, "chosen": [],
                               "suggestions": suggest.suggestions(request, q) if q else None}
    status = 200
    try:
        choice = impact_views.parse_choice(request.app.state.registry, raw_ids, mode.field, raw_depth, raw_types)
        if choice.ids:
            analysis = analyse(request, mode, choice, with_edges=True, edges_up_to=EDGES_UP_TO)
            context["view"] = impact_views.review(analysis)
            context["chosen"] = analysis.answer["failed"]
            context["drawing"] = pictures.draw(analysis.drawn, analysis.edges, analysis.info,
                                               request.app.state.settings,
                                               highlight=[ci["id"] for ci in analysis.answer["failed"]], title=mode.title)
            context["links"] = canonical(mode.field, choice)
    except InvalidInput as exc:
        status = exc.status
        context["problem"] = {"detail": exc.detail, "errors": exc.extensions.get("errors") or []}
        context["chosen"] = chosen_without_answer(request, raw_ids)
    return render(request, "impact.html", context, status_code=status)


@router.get("/ui/impact")
def change_review(request: Request, user: CurrentUser):
    return review_page(request, REVIEW)


@router.get("/ui/blast-radius")
def incident(request: Request, user: CurrentUser):
    return review_page(request, INCIDENT)


@router.get("/ui/root-cause")
def root_cause(request: Request, user: CurrentUser):
    raw = request.query_params.getlist("symptom")[:impact_views.MAX_IDS + 1]
    q = suggest.search_text(request.query_params.get("q"))
    context: dict[str, Any] = {"q": q, "answer": None, "problem": None, "chosen": [],
                               "suggestions": suggest.suggestions(request, q) if q else None}
    status = 200
    try:
        ids = impact_views.parse_ids(raw, "symptom")
        if ids:
            answer = impact_views.root_causes(request.app.state.live_graph, request.app.state.engine, ids)
            context["answer"] = answer
            context["chosen"] = answer["symptoms"]
    except InvalidInput as exc:
        status = exc.status
        context["problem"] = {"detail": exc.detail, "errors": exc.extensions.get("errors") or []}
        context["chosen"] = chosen_without_answer(request, raw)
    return render(request, "root_cause.html", context, status_code=status)
