"""/ui/cis/{id}/edit: manual edits of a CI, through the same service call as the API's PATCH
(cis.update_ci in a unit of work, as the token's actor), with If-Match semantics.

The form carries the version it was rendered at. When the CI changed since, nothing is written: the
form comes back with a message that someone changed the CI and what changed (field by field, from
the history since that version), holding their values where the user changed nothing and the
user's edits everywhere else (attributes key by key), at the current version: saving again applies
the user's edits on top of the other change, and a field both changed is pointed out. Neither side's
change is lost. Input the class's schema refuses comes back with the errors by field."""

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from app.api.deps import Forbidden
from app.core.db import read_transaction
from app.models.ci import CIStatus, CIUpdate
from app.services import ci_page, cis
from app.services.errors import InvalidInput, PreconditionFailed, field_error
from app.services.history import in_unit_of_work
from app.web.auth import CurrentUser, FormWriter
from app.web.pages.ci import diff_rows, timeline
from app.web.render import render

router = APIRouter(include_in_schema=False)

FIELDS = ("name", "status", "environment", "criticality", "owner", "tags", "attributes")
# Form fields are bounded by the request body's limit (KARTA_MAX_BODY_BYTES); these bound each one.
MAX_FIELD_CHARS = 1000
MAX_TAGS_CHARS = 20_000
MAX_ATTRIBUTES_CHARS = 4 * 1024 * 1024
_MISSING = object()
# The changes a stale form's message lists (all of them, up to ci_page.MAX_CHANGES_SINCE, are merged).
MAX_CHANGES_LISTED = 50
SCALARS = ("name", "status", "environment", "criticality", "owner", "tags")


def form_values(ci: dict) -> dict[str, str]:
    """The CI as the form shows it: text in every field."""
    return {"name": ci["name"], "status": ci["status"], "environment": ci["environment"] or "",
            "criticality": "" if ci["criticality"] is None else str(ci["criticality"]), "owner": ci["owner"] or "",
            "tags": "\n".join(ci["tags"]),
            "attributes": json.dumps(ci["attributes"], ensure_ascii=False, indent=2, sort_keys=True)}


def _parse(values: dict[str, str]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The form's text as the API's PATCH fields, validated by the API's own model."""
    errors = []
    wanted: dict[str, Any] = {"name": values["name"], "status": values["status"],
                              "environment": values["environment"].strip() or None,
                              "owner": values["owner"].strip() or None,
                              "tags": [tag.strip() for tag in values["tags"].splitlines() if tag.strip()]}
    criticality = values["criticality"].strip()
    if criticality:
        try:
            wanted["criticality"] = int(criticality)
        except ValueError:
            errors.append(field_error("criticality", "must be 1, 2, 3, 4 or empty"))
    else:
        wanted["criticality"] = None
    try:
        attributes = json.loads(values["attributes"] or "{}")
    except ValueError as exc:
        errors.append(field_error("attributes", f"not valid JSON: {exc}"))
    else:
        if isinstance(attributes, dict):
            wanted["attributes"] = attributes
        else:
            errors.append(field_error("attributes", "must be a JSON object: {\"key\": value, ...}"))
    try:
        parsed = CIUpdate.model_validate(wanted).model_dump(exclude_unset=True)
    except ValidationError as exc:
        for error in exc.errors():
            location = [str(part) for part in error["loc"]]
            errors.append(field_error(".".join(location) or "form", error["msg"]))
        parsed = {}
    return parsed, errors


def _changes(parsed: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """Only what differs from the CI as it is; attributes as the PATCH merges them (null removes)."""
    changes = {name: value for name, value in parsed.items() if name != "attributes" and value != current[name]}
    if "attributes" in parsed:
        old, new = current["attributes"], parsed["attributes"]
        merged = {key: value for key, value in new.items() if old.get(key, _MISSING) != value}
        merged.update({key: None for key in old if key not in new})
        if merged:
            changes["attributes"] = merged
    return changes


def _field_errors(errors: list[dict[str, str]]) -> dict[str, list[str]]:
    by_field: dict[str, list[str]] = {}
    for error in errors:
        name = error["field"].split(".", 1)[0]
        by_field.setdefault(name if name in FIELDS else "form", []).append(
            error["message"] if name == error["field"] else f"{error['field']}: {error['message']}")
    return by_field


def _form_page(request: Request, ci: dict, values: dict[str, str], version: int, *, errors=(), conflict=None,
               status_code: int = 200):
    return render(request, "ci_edit.html", {
        "ci": ci, "values": values, "version": version, "errors": list(errors),
        "field_errors": _field_errors(list(errors)), "conflict": conflict, "statuses": [s.value for s in CIStatus],
    }, status_code=status_code)


def _comparable(name: str, text: str) -> Any:
    """A form field's text as the value it stands for, so that retyping the same value is no edit."""
    if name in ("environment", "owner", "criticality"):
        return text.strip() or None
    if name == "tags":
        return [tag.strip() for tag in text.splitlines() if tag.strip()]
    return text


def _at_version(current: dict, fields: dict[str, list]) -> dict:
    """The CI as it was at the version the form was rendered at: now, with the changes undone."""
    base = {**current, "attributes": dict(current["attributes"])}
    for name, (old, _) in fields.items():
        if name.startswith("attributes."):
            key = name.removeprefix("attributes.")
            if old is None:
                base["attributes"].pop(key, None)
            else:
                base["attributes"][key] = old
        elif name in SCALARS:
            base[name] = old
    return base


def merge(values: dict[str, str], base: dict, current: dict) -> tuple[dict[str, str], list[str], list[str]]:
    """The form to show after a conflict: their value where the user left the field as it was at
    `base`, the user's input elsewhere; attributes key by key. Returns it, the fields the user
    edited, and those both sides changed to different values (the user's kept: they must look)."""
    at_base, now = form_values(base), form_values(current)
    merged, mine, both = {}, [], []
    for name in SCALARS:
        edited = _comparable(name, values[name]) != _comparable(name, at_base[name])
        merged[name] = values[name] if edited else now[name]
        if edited:
            mine.append(name)
            theirs = _comparable(name, now[name])
            if theirs != _comparable(name, at_base[name]) and theirs != _comparable(name, values[name]):
                both.append(name)
    try:
        typed = json.loads(values["attributes"] or "{}")
    except ValueError:
        typed = None
    if not isinstance(typed, dict):  # not JSON the form can merge: kept as typed
        merged["attributes"] = values["attributes"]
        mine.append("attributes")
        if current["attributes"] != base["attributes"]:
            both.append("attributes")
        return merged, mine, both
    old, theirs = base["attributes"], current["attributes"]
    attributes = dict(theirs)
    for key in sorted(typed.keys() | old.keys()):
        value = typed.get(key, _MISSING)
        if value == old.get(key, _MISSING):
            continue
        mine.append(f"attributes.{key}")
        if theirs.get(key, _MISSING) not in (old.get(key, _MISSING), value):
            both.append(f"attributes.{key}")
        if value is _MISSING:
            attributes.pop(key, None)
        else:
            attributes[key] = value
    merged["attributes"] = json.dumps(attributes, ensure_ascii=False, indent=2, sort_keys=True)
    return merged, mine, both


def _conflict(request: Request, ci_id: uuid.UUID, seen_version: int, values: dict[str, str]):
    """The CI now, the form merged over what changed on it since `seen_version`, and what to say."""
    state = request.app.state
    with read_transaction(state.engine) as conn:
        ci = cis.get_ci(conn, ci_id)
        since = ci_page.changes_since(conn, ci_id, seen_version, ci["version"])
        entries = timeline(conn, state.registry.get(), since["items"][:MAX_CHANGES_LISTED])
    complete = since["more"] == 0
    if complete:
        merged, mine, both = merge(values, _at_version(ci, since["fields"]), ci)
    else:  # too many changes to undo them all: the input stays as typed, and the message says so
        merged, mine, both = values, [], []
    return ci, merged, {"seen_version": seen_version, "version": ci["version"], "fields": diff_rows(since["fields"]),
                        "entries": entries, "more": len(since["items"]) - len(entries) + since["more"],
                        "complete": complete, "mine": mine, "both": both}


def _conflict_page(request: Request, ci_id: uuid.UUID, seen_version: int, values: dict[str, str]):
    current, merged, conflict = _conflict(request, ci_id, seen_version, values)
    return _form_page(request, current, merged, current["version"], conflict=conflict, status_code=409)


@router.get("/ui/cis/{ci_id}/edit")
def edit_form(ci_id: uuid.UUID, request: Request, user: CurrentUser):
    if not user.can_write:
        raise Forbidden(f"Editing needs a token with scope 'write'; token '{user.name}' has "
                        f"{', '.join(sorted(user.principal.scopes)) or 'none'}.")
    with read_transaction(request.app.state.engine) as conn:
        ci = cis.get_ci(conn, ci_id)
    return _form_page(request, ci, form_values(ci), ci["version"])


@router.post("/ui/cis/{ci_id}/edit")
def edit(ci_id: uuid.UUID, request: Request, user: FormWriter,
         version: Annotated[str, Form(max_length=20)] = "",
         name: Annotated[str, Form(max_length=MAX_FIELD_CHARS)] = "",
         status: Annotated[str, Form(max_length=MAX_FIELD_CHARS)] = "",
         environment: Annotated[str, Form(max_length=MAX_FIELD_CHARS)] = "",
         criticality: Annotated[str, Form(max_length=MAX_FIELD_CHARS)] = "",
         owner: Annotated[str, Form(max_length=MAX_FIELD_CHARS)] = "",
         tags: Annotated[str, Form(max_length=MAX_TAGS_CHARS)] = "",
         attributes: Annotated[str, Form(max_length=MAX_ATTRIBUTES_CHARS)] = ""):
    state = request.app.state
    values = {"name": name, "status": status, "environment": environment, "criticality": criticality,
              "owner": owner, "tags": tags, "attributes": attributes}
    try:
        seen_version = int(version)
    except ValueError:
        seen_version = None
    with read_transaction(state.engine) as conn:
        current = cis.get_ci(conn, ci_id)
    if seen_version is None:  # never written without knowing what the user saw
        return _form_page(request, current, values, current["version"], status_code=422, errors=[
            field_error("form", "The form did not say which version of the CI it edits; check the values and save again.")])
    if seen_version != current["version"]:
        return _conflict_page(request, ci_id, seen_version, values)
    parsed, errors = _parse(values)
    if errors:
        return _form_page(request, current, values, seen_version, errors=errors, status_code=422)
    changes = _changes(parsed, current)
    if changes:
        limit = state.settings.max_attributes_bytes
        try:
            in_unit_of_work(state.engine, user.principal.name,
                            lambda uow: cis.update_ci(uow, state.registry, ci_id, changes, seen_version,
                                                      max_attributes_bytes=limit),
                            token_id=user.principal.token_id)
        except PreconditionFailed:  # changed between our read and the write
            return _conflict_page(request, ci_id, seen_version, values)
        except InvalidInput as exc:
            errors = exc.extensions.get("errors") or [field_error("form", exc.detail)]
            return _form_page(request, current, values, seen_version, errors=errors, status_code=422)
    return RedirectResponse(f"/ui/cis/{ci_id}", status_code=303)
