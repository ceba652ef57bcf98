"""/ui/cis/{id}: one CI, as the people who keep the map read it: its fields, attributes with who set
them and when, identifiers, relationships both ways grouped by label, its history as field diffs
(its relationships' included, older pages loaded by htmx), and for a service its single points of
failure, the tree of what it depends on and its map from its entry points. The neighbourhood picture
(/ui/cis/{id}/picture), a service's dependencies (/ui/cis/{id}/dependencies) and its map
(/ui/cis/{id}/service-map) are requests of their own, loaded by htmx once the page is shown:
drawing, and the single points of failure of a service with thousands of CIs upstream, cost more
than the rest of the page (tens of milliseconds on a big estate), which stays a few bounded
queries. Without JavaScript each is a link to a page of its own.

The edit form is in ci_edit.py."""

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.core.db import read_transaction
from app.services import changes, ci_page, cis, impact
from app.services.errors import InvalidInput, NotFound
from app.services.service_map import ATTRIBUTE as ENTRY_POINTS
from app.services.service_map_view import map_view
from app.web import pictures
from app.web.auth import CurrentUser
from app.web.render import render, when

router = APIRouter(include_in_schema=False)

HISTORY_PAGE = 20
MAX_HISTORY_CURSOR = 200
TREE_DEPTH = 4
TREE_MAX_NODES = 100
MAX_SPOF_SHOWN = 50
MAX_VALUE_CHARS = 2000
MAX_LAYER_SHOWN = 50
# A service's map status (the API's `status`) and an entry point's, in words a change reviewer reads.
MAP_STATUS = {
    "mapped": "Mapped: every entry point resolved; the map below is what they reach.",
    "partial": "Partly mapped: some entry points did not resolve (why is below); the map is what the others reach.",
    "stale": "Stale: an entry point that resolved before no longer does; its last map is kept, flagged, "
             "until it resolves again.",
    "unresolved": "Unresolved: no entry point leads to an application, so nothing is mapped.",
    "pending": "Pending: the entry points are set but not mapped yet; the map follows the change within seconds.",
    "no_entry_points": "Not mapped: this service has no entry points.",
}
ENTRY_STATUS = {"resolved": "resolved", "stale": "stale: resolved before, no longer", "unresolved": "unresolved",
                "invalid": "invalid"}
# A service's map by layer, in the API's order (graph.service_map.LAYERS), as the page names them.
LAYER_TITLES = {"entry": "Entry", "applications": "Applications", "data_stores": "Data stores", "hosts": "Hosts",
                "infrastructure": "Infrastructure"}
ACTIONS = {("ci", "create"): "created", ("ci", "update"): "changed", ("ci", "delete"): "deleted",
           ("relationship", "create"): "related", ("relationship", "update"): "relationship changed",
           ("relationship", "delete"): "relationship ended", ("service_map", "create"): "mapped",
           ("service_map", "update"): "map changed", ("service_map", "delete"): "map removed"}
# A relationship's own fields in its history: shown as the sentence "a depends on b", not as rows.
RELATIONSHIP_ENDS = ("source", "target", "type")
TIMESTAMPS = ("first_seen", "last_seen")


def shown(value: Any, limit: int = MAX_VALUE_CHARS) -> str | None:
    """A value as text on the page (None stays None: the template says "none")."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "…"


def _end(diff: dict, name: str) -> Any:
    old, new = diff.get(name, (None, None))
    return new if new is not None else old


def timeline(conn, registry, records: list[dict]) -> list[dict]:
    """History records as the page shows them: per record who, when, what, and the fields it changed
    (old -> new); a relationship's record names its two ends (one query for ends its diff does not
    carry, one for the names of all the CIs mentioned)."""
    relationship_records = [r for r in records if r["object_type"] == "relationship"]
    lacking = {r["object_id"] for r in relationship_records if any(k not in r["diff"] for k in ("source", "target"))}
    ends = ci_page.relationship_ends(conn, lacking)
    mentioned: dict[Any, dict] = {}
    for record in relationship_records:
        known = ends.get(record["object_id"], {})
        diff = record["diff"] or {}
        mentioned[record["seq"]] = {name: _end(diff, name) if name in diff else known.get(name)
                                    for name in RELATIONSHIP_ENDS}
    ids = {str(v) for m in mentioned.values() for k, v in m.items() if k != "type" and v is not None}
    names = {key: value["name"] for key, value in impact.describe(conn, ids).items()}
    types = registry.relationship_types
    entries = []
    for record in records:
        diff = record["diff"] or {}
        entry = {"seq": record["seq"], "at": record["at"], "actor": record["actor"],
                 "what": ACTIONS.get((record["object_type"], record["action"]), record["action"]),
                 "relationship": None,
                 "fields": diff_rows(diff, skip=RELATIONSHIP_ENDS if record["object_type"] == "relationship" else ())}
        if record["object_type"] == "relationship":
            ends_of = mentioned[record["seq"]]
            rel_type = ends_of["type"]
            info = types.get(rel_type) if rel_type else None
            entry["relationship"] = {
                "source": _named(ends_of["source"], names), "target": _named(ends_of["target"], names),
                "label": info.forward_label if info else (rel_type or "related to")}
        entries.append(entry)
    return entries


def diff_rows(diff: dict, skip: tuple = ()) -> list[tuple[str, str | None, str | None]]:
    """A change record's diff as (field, old, new) text; timestamps as people read them."""
    rows = []
    for name, (old, new) in diff.items():
        if name in skip:
            continue
        show = (lambda v: None if v is None else when(v)) if name in TIMESTAMPS else shown
        rows.append((name, show(old), show(new)))
    return rows


def _named(ci_id: Any, names: dict[str, str]) -> dict | None:
    if ci_id is None:
        return None
    key = str(ci_id)
    return {"id": key, "name": names.get(key), "exists": key in names}


def _attribute_rows(ci: dict) -> list[dict]:
    provenance = ci["provenance"] or {}
    rows = []
    for key in sorted(ci["attributes"]):
        stamp = provenance.get(key) or {}
        rows.append({"key": key, "value": shown(ci["attributes"][key]), "source": stamp.get("source"),
                     "at": stamp.get("at")})
    return rows


def _relationship_groups(relationships: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for rel in relationships:  # outgoing first, then by type (the service's order)
        groups.setdefault((rel["direction"], rel["label"]), []).append(
            {**rel, "attributes_text": shown(rel["attributes"]) if rel["attributes"] else None})
    return [{"direction": direction, "label": label,
             "members": sorted(members, key=lambda r: (r["ci_name"], str(r["ci"])))}
            for (direction, label), members in groups.items()]


def _service_classes(registry) -> frozenset[str]:
    service = registry.classes.get("service")
    return frozenset() if service is None else service.descendants


def _service_view(request: Request, key: str) -> dict:
    """For a CI of class service (or a subclass): its single points of failure and what it depends
    on, from the live graph (NotFound for another CI). The names come later, from the database."""
    registry = request.app.state.registry.get()
    types = registry.relationship_types
    with request.app.state.live_graph.reading() as graph:
        found = graph.ci(key)
        if found is None or found[0] not in _service_classes(registry):
            raise NotFound(f"No service with id {key}.")
        points = graph.spof(key)
        _, edges = graph.neighborhood(key, depth=TREE_DEPTH, direction="up")
        semantics = graph.semantics

    def flips(rel_type: str) -> bool:
        meaning = semantics.get(rel_type)
        return meaning is not None and meaning.impact == "target_to_source"

    def label(rel_type: str, dependent_is_source: bool) -> str:
        info = types.get(rel_type)
        if info is None:
            return rel_type
        return info.forward_label if dependent_is_source else info.reverse_label

    tree = ci_page.dependency_tree(key, edges, flips, label, max_depth=TREE_DEPTH, max_nodes=TREE_MAX_NODES)
    return {"spof": points[:MAX_SPOF_SHOWN], "spof_total": len(points), "tree": tree}


def _tree_view(nodes: list, info: dict) -> list[dict]:
    described = [{"id": n.id, "name": info.get(n.id, {}).get("name"), "class": info.get(n.id, {}).get("class"),
                  "label": n.label, "repeated": n.repeated, "children": _tree_view(n.children, info)} for n in nodes]
    return sorted(described, key=lambda n: (n["label"], n["name"] or "", n["id"]))


@router.get("/ui/cis/{ci_id}")
def ci_page_view(ci_id: uuid.UUID, request: Request, user: CurrentUser,
                 depth: Annotated[int, Query(ge=1, le=3, description="of the neighbourhood picture")] = 1):
    state = request.app.state
    key = str(ci_id)
    with read_transaction(state.engine) as conn:
        ci = cis.get_ci_detail(conn, state.registry, ci_id)
        identifiers = ci_page.identifiers_of(conn, ci_id)
        history = changes.object_history(conn, ci_id, limit=HISTORY_PAGE, cursor=None)
        entries = timeline(conn, state.registry.get(), history["items"])
    return render(request, "ci.html", {
        "ci": ci, "attributes": _attribute_rows(ci), "name_source": (ci["provenance"] or {}).get("name"),
        "identifiers": identifiers, "groups": _relationship_groups(ci["relationships"]),
        "relationships_truncated": ci["relationships_truncated"], "relationship_limit": cis.DETAIL_RELATIONSHIP_LIMIT,
        "entries": entries, "next_cursor": history["next_cursor"], "ci_id": key, "depth": depth,
        "is_service": ci["class"] in _service_classes(state.registry.get()),
    })


@router.get("/ui/cis/{ci_id}/dependencies")
def ci_dependencies(ci_id: uuid.UUID, request: Request, user: CurrentUser):
    """A service's single points of failure and the tree of what it depends on."""
    state = request.app.state
    key = str(ci_id)
    service = _service_view(request, key)
    with read_transaction(state.engine) as conn:
        info = impact.describe(conn, {key, *service["tree"].shown, *service["spof"]})
    return render(request, "_ci_service.html", {
        "ci_id": key, "name": info.get(key, {}).get("name") or key,
        "spof": [{"id": p, **info.get(p, {})} for p in service["spof"]], "spof_total": service["spof_total"],
        "tree": _tree_view(service["tree"].children, info), "tree_truncated": service["tree"].truncated,
        "tree_depth": TREE_DEPTH})


@router.get("/ui/cis/{ci_id}/history")
def ci_history(ci_id: uuid.UUID, request: Request, user: CurrentUser,
               cursor: Annotated[str, Query(max_length=MAX_HISTORY_CURSOR)]):
    """Older changes: the timeline's next items for htmx, or a page of them without JavaScript."""
    state = request.app.state
    with read_transaction(state.engine) as conn:
        history = changes.object_history(conn, ci_id, limit=HISTORY_PAGE, cursor=cursor)
        entries = timeline(conn, state.registry.get(), history["items"])
        name = ci_page.ci_name(conn, ci_id)
    return render(request, "_ci_older.html", {"entries": entries, "next_cursor": history["next_cursor"],
                                              "ci_id": str(ci_id), "name": name})


@router.get("/ui/cis/{ci_id}/picture")
def ci_picture(ci_id: uuid.UUID, request: Request, user: CurrentUser,
               depth: Annotated[int, Query(ge=1, le=3)] = 1):
    """The CI's surroundings up to `depth` hops both ways, the CI itself in bold. Above the picture's
    limit the CIs are grouped by class: their classes come from the graph, and only the CIs drawn one
    by one are looked up in the database."""
    state = request.app.state
    settings = state.settings
    with state.live_graph.reading() as graph:
        key = impact.require_ci(graph, ci_id)
        nodes, edges = graph.neighborhood(key, depth=depth, direction="both")
        large = len(nodes) > settings.ui_picture_max_nodes
        classes = {n: {"class": (graph.ci(n) or (None,))[0]} for n in nodes} if large else {}
    if large and len(edges) > pictures.MAX_EDGES_TO_GROUP:
        edges = None
    with read_transaction(state.engine) as conn:
        info = {**classes, **impact.describe(conn, {key} if large else nodes)}
    if key not in info:
        raise NotFound(f"No CI with id {ci_id}.")
    name = info[key]["name"]
    info[key] = {**info[key], "state": "focus"}
    drawing = pictures.draw(sorted(nodes), edges, info, settings, highlight=[key], title="neighbourhood")
    return render(request, "_ci_picture.html", {"drawing": drawing, "ci_id": key, "name": name, "depth": depth})


@router.get("/ui/cis/{ci_id}/service-map")
def ci_service_map(ci_id: uuid.UUID, request: Request, user: CurrentUser):
    """A service's map (the API's /service-map, from the same service): its status, how each entry
    point resolved, its CIs by layer (each layer's list bounded) and the picture of it. Another CI
    has no map: NotFound, as for its dependencies. Its membership comes from the database, not from
    the live graph, so a service created a moment ago is found."""
    state = request.app.state
    key = str(ci_id)
    try:
        view = map_view(state.engine, state.registry.get(), state.live_graph, ci_id)
    except InvalidInput as exc:  # the one InvalidInput map_view raises: a CI of another class
        raise NotFound(f"No service with id {key}.") from exc
    answer = view.answer
    named = {ci: view.info.get(ci) for entry in answer["entry_points"]
             for ci in (entry["host"], *entry["applications"]) if ci}
    lacking = {ci for ci, described in named.items() if described is None}  # e.g. a stale entry's host
    if lacking:
        with read_transaction(state.engine) as conn:
            named.update(impact.describe(conn, lacking))

    def link(ci: str) -> dict:
        described = named.get(ci) or {}
        return {"id": ci, "name": described.get("name"), "class": described.get("class")}

    entry_points = [{**entry, "status_text": ENTRY_STATUS.get(entry["status"], entry["status"]),
                     "host": link(entry["host"]) if entry["host"] else None,
                     "applications": [link(a) for a in entry["applications"]]} for entry in answer["entry_points"]]
    layers = [{"key": layer, "title": title, "members": answer["layers"][layer][:MAX_LAYER_SHOWN],
               "more": max(0, len(answer["layers"][layer]) - MAX_LAYER_SHOWN)} for layer, title in LAYER_TITLES.items()]
    drawing = None
    if len(view.nodes) > 1:  # the service alone is no map
        drawing = pictures.draw(view.nodes, view.edges, view.info, state.settings, highlight=[key], title="service map")
    return render(request, "_ci_service_map.html", {
        "ci_id": key, "name": answer["service"]["name"], "status": answer["status"],
        "status_text": MAP_STATUS.get(answer["status"], answer["status"]), "entry_points": entry_points,
        "layers": layers, "total": len(view.nodes) - 1, "drawing": drawing, "refreshed_at": answer["refreshed_at"],
        "attribute": ENTRY_POINTS})
