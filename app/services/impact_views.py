"""Impact answers shaped for the web UI's change review, incident and root-cause pages, and their
downloads: the same analysis as the API (app.services.impact), read for people: names instead of
ids along each path, a bounded table, and a CSV safe to open in a spreadsheet.

Query parameters come from URLs people paste from change tickets: every one is checked here and a
bad one is an InvalidInput naming it (which parameter, which position, why), never a 500."""

import csv
import io
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from app.core.csv_cells import neutralise  # shared with the CI export (app/integrations/csv_export.py)
from app.core.db import read_transaction
from app.services import impact
from app.services.errors import InvalidInput, field_error

# Bounds of what a page lists (the downloads hold everything).
TABLE_LIMIT = 200
SERVICE_LIMIT = 200
# The most CIs one URL may name (the API takes 10,000 in a body; a URL of 1,000 ids is ~37 kB).
MAX_IDS = 1000
MAX_DEPTH = 1000
MAX_TYPES = 100
ROOT_CAUSE_LIMIT = 10


@dataclass(frozen=True)
class Choice:
    """What a change review or incident is about: the CIs, how deep, along which relationship types."""

    ids: list[uuid.UUID]
    max_depth: int | None
    types: list[str] | None


def parse_ids(values: list[str], field_name: str) -> list[uuid.UUID]:
    """The ids in order, without repeats; InvalidInput naming every value that is not a CI id."""
    if len(values) > MAX_IDS:
        raise InvalidInput(f"At most {MAX_IDS} CIs at once; this asks for more.",
                           [field_error(field_name, f"at most {MAX_IDS} ids")])
    ids, bad = [], []
    for n, value in enumerate(values):
        try:
            ids.append(uuid.UUID(value.strip()))
        except ValueError:
            bad.append(field_error(f"{field_name}.{n}", f"'{value[:100]}' is not a CI id (a UUID)"))
    if bad:
        raise InvalidInput(f"{len(bad)} of the CI ids given {'is' if len(bad) == 1 else 'are'} not a CI id.", bad)
    return list(dict.fromkeys(ids))


def parse_depth(value: str | None) -> int | None:
    """None (no limit) for nothing or an empty field, else a whole number from 0 to MAX_DEPTH."""
    if value is None or value.strip() == "":
        return None
    text = value.strip()
    if len(text) <= 4 and text.isascii() and text.isdigit() and int(text) <= MAX_DEPTH:
        return int(text)
    raise InvalidInput(f"max_depth must be a whole number from 0 to {MAX_DEPTH}, or empty for no limit.",
                       [field_error("max_depth", f"'{value[:50]}' is not a depth from 0 to {MAX_DEPTH}")])


def parse_choice(registry_cache, values: list[str], field_name: str, max_depth: str | None,
                 types: list[str]) -> Choice:
    ids = parse_ids(values, field_name)
    depth = parse_depth(max_depth)
    chosen_types = list(dict.fromkeys(t for t in types if t)) or None
    if chosen_types and len(chosen_types) > MAX_TYPES:
        raise InvalidInput(f"At most {MAX_TYPES} relationship types.", [field_error("type", "too many")])
    impact.require_types(registry_cache, chosen_types, "type")
    return Choice(ids, depth, chosen_types)


def name_of(info: dict[str, dict[str, Any]], ci_id: str) -> str:
    return (info.get(ci_id) or {}).get("name") or ci_id


def chain(info: dict[str, dict[str, Any]], path: list[str]) -> str:
    """A path as people read it: "orders-db -> orders-app -> shop"."""
    return " -> ".join(name_of(info, ci_id) for ci_id in path)


def review(analysis: impact.Analysis) -> dict[str, Any]:
    """The page's view of an analysis: services with their distance and path, the first TABLE_LIMIT
    impacted CIs with owner and path, and how many more there are."""
    answer, info = analysis.answer, analysis.info
    shown = answer["services"][:SERVICE_LIMIT]
    wanted = {service["id"] for service in shown}
    entries = {entry["id"]: entry for entry in answer["impacted"] if entry["id"] in wanted}
    services = []
    for service in shown:
        entry = entries.get(service["id"], {})
        services.append({**service, "distance": entry.get("distance"), "path": chain(info, entry.get("path") or [])})
    rows = [{**entry, "owner": (info.get(entry["id"]) or {}).get("owner"), "path": chain(info, entry["path"])}
            for entry in answer["impacted"][:TABLE_LIMIT]]
    total = answer["counts"]["total"]
    return {"risk": answer["risk"], "failed": answer["failed"], "services": services,
            "more_services": len(answer["services"]) - len(services), "rows": rows, "more_rows": total - len(rows),
            "counts": answer["counts"], "owners": answer["owners"], "as_of_seq": analysis.as_of_seq}


CSV_COLUMNS = ["id", "name", "class", "state", "distance", "owner", "criticality", "path"]


def as_csv(analysis: impact.Analysis, failed_state: str) -> str:
    """One row per CI of the answer: the changed (or failed) ones first with `failed_state` at distance
    0, then every impacted CI in distance order, each with its path as names."""
    info = analysis.info
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)

    def row(ci_id: str, state: str, distance: int, path: list[str]) -> list[Any]:
        ci = info.get(ci_id) or {}
        return [neutralise(v) for v in (ci_id, ci.get("name"), ci.get("class"), state, distance, ci.get("owner"),
                                        ci.get("criticality"), chain(info, path))]

    for failed in analysis.answer["failed"]:
        writer.writerow(row(failed["id"], failed_state, 0, [failed["id"]]))
    for entry in analysis.answer["impacted"]:
        writer.writerow(row(entry["id"], entry["state"], entry["distance"], entry["path"]))
    return out.getvalue()


def root_causes(live_graph, engine: Engine, ids: list[uuid.UUID], limit: int = ROOT_CAUSE_LIMIT) -> dict[str, Any]:
    """The API's root-cause answer (graph.root_cause + impact.root_cause_answer) with its change sequence."""
    with live_graph.reading() as graph:
        symptoms = impact.require_known(graph, ids, "symptom")
        candidates = graph.root_cause(symptoms, limit=limit)
        as_of_seq = graph.applied_seq
    with read_transaction(engine) as conn:
        answer = impact.root_cause_answer(conn, symptoms, candidates)
    names = {s["id"]: s["name"] or s["id"] for s in answer["symptoms"]}
    for candidate in answer["candidates"]:
        candidate["explains_names"] = [names.get(s, s) for s in candidate["explains"]]
    return {**answer, "as_of_seq": as_of_seq}


def names_of(engine: Engine, ids: list[uuid.UUID]) -> dict[str, dict[str, Any]]:
    """Name and class of the CIs among `ids` that exist (to show what a page was asked about)."""
    with read_transaction(engine) as conn:
        return impact.describe(conn, {str(i) for i in ids})
