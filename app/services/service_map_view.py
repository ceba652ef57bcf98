"""A service's map as the API answers it: its CIs by layer, the relationships among them (the
service's own to its entry applications included), and how each entry point resolved.

The membership is the stored one (what the change feed told of, app.services.service_map); the
relationships among it come from the worker's impact graph, brought current first. Read only."""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from app.core.db import read_transaction
from app.models import ConfigurationItem, ServiceMapMember, ServiceMapState
from app.models.types import as_utc
from app.services.errors import InvalidInput, NotFound, field_error
from app.services.impact import describe
from app.services.registry import Registry
from app.services.service_map import ATTRIBUTE, service_classes
from graph.service_map import LAYERS

CI = ConfigurationItem.__table__
MEMBER = ServiceMapMember.__table__
STATE = ServiceMapState.__table__


@dataclass(frozen=True)
class MapView:
    """The answer, and what drawing it needs: the CIs (the service first), the relationships among
    them and per CI its name and class."""

    answer: dict[str, Any]
    nodes: list[str]
    edges: list[tuple]
    info: dict[str, dict[str, Any]]


def _stored(conn: Connection, registry: Registry, service_id: uuid.UUID) -> tuple[Any, Any, dict[str, str]]:
    service = conn.execute(select(CI.c.id, CI.c.name, CI.c.ci_class, CI.c.attributes)
                           .where(CI.c.id == service_id)).first()
    if service is None:
        raise NotFound(f"No CI with id {service_id}.")
    if service.ci_class not in service_classes(registry):
        raise InvalidInput(f"CI {service_id} is a {service.ci_class}, not a service: only a service has a map.",
                           [field_error("ci_id", "not a service")])
    state = conn.execute(select(STATE).where(STATE.c.service_id == service_id)).first()
    members = {str(ci_id): layer for ci_id, layer in conn.execute(
        select(MEMBER.c.ci_id, MEMBER.c.layer).where(MEMBER.c.service_id == service_id))}
    return service, state, members


def _status(service: Any, state: Any) -> str:
    if state is not None:
        return state.status
    # Not mapped yet: the keeper has not passed since the entry points were written, or there are none.
    return "pending" if service.attributes.get(ATTRIBUTE) else "no_entry_points"


def map_view(engine: Engine, registry: Registry, live_graph, service_id: uuid.UUID) -> MapView:
    with read_transaction(engine) as conn:
        service, state, members = _stored(conn, registry, service_id)
    key = str(service_id)
    with live_graph.reading() as graph:
        nodes = [key, *sorted(members, key=lambda ci: (LAYERS.index(members[ci]), ci))]
        edges = graph.edges_among(nodes)
        as_of_seq = graph.applied_seq
    with read_transaction(engine) as conn:
        info = describe(conn, set(nodes))
    layers: dict[str, list[dict[str, Any]]] = {layer: [] for layer in LAYERS}
    for ci in nodes[1:]:
        described = info.get(ci, {})
        layers[members[ci]].append({"id": ci, "name": described.get("name"), "class": described.get("class"),
                                    "layer": members[ci]})
    for entries in layers.values():
        entries.sort(key=lambda e: (e["name"] or "", e["id"]))
    answer = {
        "service": {"id": key, "name": service.name, "class": service.ci_class},
        "status": _status(service, state),
        "entry_points": state.entry_points if state is not None else [],
        "layers": layers,
        "edges": [{"source": s, "target": t, "type": rel_type} for s, t, rel_type in edges],
        "mapped_as_of_seq": state.as_of_seq if state is not None else None,
        "refreshed_at": as_utc(state.refreshed_at) if state is not None else None,
        "as_of_seq": as_of_seq,
    }
    drawn_info = {ci: {**described, "state": "focus" if ci == key else None} for ci, described in info.items()}
    return MapView(answer, nodes, edges, drawn_info)
