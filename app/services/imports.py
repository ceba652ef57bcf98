"""Imports (POST /api/v1/import): rows of CIs and relationships, read from a spreadsheet or a bundle by
app/integrations/, applied through ingest's phases as the source `import`, and answered per row.

Why ingest's phases and not ingest(): an import is all-or-nothing whatever its size, and the CI
fields a spreadsheet sets (import_fields.py) belong in the same change record as the attributes. So
the whole import is one ingest batch run by this module in one unit of work: plan -> identify ->
reconcile -> fields -> apply -> close. Ingest's 10,000-item limit is the HTTP contract of an agent's
batch (app/core/batch_contract.py), not a limit of the phases: an import's size is bounded by its
body instead (KARTA_MAX_IMPORT_BODY_BYTES). A lost race runs the whole import again (pipeline.py's policy).

Precedence: the source `import` ranks last by default (manual > ssh > snmp > nmap > import), so an
import fills attributes nobody else set and never overwrites what discovery or an edit set (unless
the precedence rules say so). Fields without provenance (status, environment, criticality, owner,
tags) are set as an edit would, and so need a token of scope write (`may_set_fields`).

Every row is answered: create, update, unchanged or error, with the CI, every error with its column
and reason, and (when nothing was applied: a dry run, or a refused import) the diff; an applied
import's diffs are its change records. With any error, nothing is applied (unless `all_or_nothing` is off: then
the rows without errors are, and a row answered as an error writes nothing). A dry run applies nothing and answers the same.

This module never parses a file format and never speaks HTTP.
"""

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select

from app.core.batch_contract import MAX_NAME
from app.models import CIIdentifier, ConfigurationItem
from app.models.ci import CIStatus
from app.models.ingest import IngestScope
from app.services import group_identity, import_fields
from app.services.bulk import id_in
from app.services.errors import InvalidInput, field_error
from app.services.history import UnitOfWork
from app.services.identifiers import identifier_values, normalize
from app.services.identity import held_values, identifying_facts
from app.services.ingest import phases, store
from app.services.ingest.batch import Batch
from app.services.ingest.identification import PlannedItem
from app.services.ingest.outcome import Outcome, StalenessPolicy
from app.services.ingest.pipeline import retry_policy
from app.services.registry import Registry, RegistryCache
from app.services.storable import storable_problem

SOURCE = "import"
CI = ConfigurationItem.__table__
IDENT = CIIdentifier.__table__
_LIMITS = {"environment": 64, "owner": 200}
MAX_TAGS = 100


@dataclass
class ImportRow:
    """One CI as a file gives it; `where` says where it is in the file (a CSV's spreadsheet row number, a
    bundle's position), `columns` which column each attribute came from (to name it in errors)."""

    where: int
    ci_class: str | None = None
    ci_id: uuid.UUID | None = None
    name: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # of import_fields.FIELDS, those given
    identifiers: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # a CSV cell's text, per attribute read from it as JSON
    errors: list[dict[str, str]] = field(default_factory=list)  # {"column", "reason"}
    identified: bool = True  # it has an identifier its class identifies or holds by (else its id pins it)


@dataclass
class RelationshipRow:
    where: int
    source: str | None = None  # a CI id, key=value of an identifier, or name=...
    type: str | None = None
    target: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)


class ImportFailed(InvalidInput):
    """422: rows had errors, nothing was applied; the body holds the whole per-row report."""


def error(column: str, reason: str) -> dict[str, str]:
    return {"column": column, "reason": reason}


def run_import(engine: Engine, registry_cache: RegistryCache, rows: list[ImportRow],
               relationships: list[RelationshipRow], *, default_class: str | None, actor: str,
               token_id: uuid.UUID | None = None, dry_run: bool = False, all_or_nothing: bool = True,
               may_set_fields: bool = True) -> dict[str, Any]:
    """Apply (or, dry, try) the rows in one transaction; the per-row report. Raises ImportFailed when
    rows had errors and nothing was applied for that reason. Without `may_set_fields` (a discovery
    token) a row that fills one of import_fields.FIELDS is an error, and empty ones are left alone."""
    run_id = f"import-{uuid.uuid4()}"
    report = retry_policy(run_id)(_attempt, engine, registry_cache, rows, relationships, default_class, run_id,
                                  actor=actor, token_id=token_id, dry_run=dry_run, all_or_nothing=all_or_nothing,
                                  may_set_fields=may_set_fields)
    if report["errors"] and all_or_nothing and not dry_run:
        raise ImportFailed(f"{report['errors']} row(s) with errors; nothing was imported. "
                           "Every error is listed in `rows` and `relationships` (dry_run=true shows the same).",
                           [field_error(f"row {r['row']}: {e['column']}", e["reason"])
                            for r in report["rows"] + report["relationships"] for e in r.get("errors", ())][:1000],
                           report=report)
    return report


class _Rollback(Exception):
    pass


def _attempt(engine, registry_cache, rows, relationships, default_class, run_id, *, actor, token_id, dry_run,
             all_or_nothing, may_set_fields) -> dict[str, Any]:
    try:
        return _attempt_once(engine, registry_cache, rows, relationships, default_class, run_id, actor=actor,
                             token_id=token_id, dry_run=dry_run, all_or_nothing=all_or_nothing, may_set_fields=may_set_fields, confirm=True)
    except phases.ConfirmedOverlap:  # two rows of one CI, one of them confirmed: derive them all (rare)
        return _attempt_once(engine, registry_cache, rows, relationships, default_class, run_id, actor=actor,
                             token_id=token_id, dry_run=dry_run, all_or_nothing=all_or_nothing, may_set_fields=may_set_fields, confirm=False)


def _attempt_once(engine, registry_cache, rows, relationships, default_class, run_id, *, actor, token_id, dry_run,
                  all_or_nothing, may_set_fields, confirm: bool) -> dict[str, Any]:
    report: dict[str, Any] = {}
    try:
        with UnitOfWork(engine, actor, token_id) as uow:
            report = _import(uow, registry_cache, rows, relationships, default_class, run_id, may_set_fields, confirm)
            failed = report["errors"] > 0 and all_or_nothing
            report["applied"] = not (dry_run or failed)
            if not report["applied"]:
                raise _Rollback
            for row in report["rows"]:  # applied: the diffs are in the change feed (a dry run's answer is its diffs)
                row.pop("diff", None)
    except _Rollback:
        pass
    report["dry_run"] = dry_run
    return report


def _ref(row: ImportRow) -> str:
    """The row's name in the batch. It is in the item's bytes and so in its fingerprint: a row that an
    `id` identifies (`_pin`: no identifier of its own) must not be confirmed as the CI of an equal row
    with another id, or none, so its id is in it. A row its identifiers identify keeps the plain name,
    so that the same row with or without the `id` column (a file exported and imported back) is the
    same report, confirmed by its fingerprint (its id is checked against the CI all the same)."""
    return f"row-{row.where}" if row.ci_id is None or row.identified else f"row-{row.where}-{row.ci_id}"


def _import(uow: UnitOfWork, registry_cache: RegistryCache, rows: list[ImportRow],
            relationships: list[RelationshipRow], default_class: str | None, run_id: str, may_set_fields: bool,
            confirm: bool) -> dict[str, Any]:
    conn = uow.conn
    classes = {row.ci_class or default_class for row in rows} | {default_class}
    wanted = {row.ci_id for row in rows if row.ci_id is not None}
    named = {ci_id: ci_class for ci_id, ci_class in conn.execute(
        select(CI.c.id, CI.c.ci_class).where(id_in(conn, CI.c.id, wanted)))} if wanted else {}
    registry = registry_cache.for_write(conn, (classes | set(named.values())) - {None})
    found_errors = {row.where: _row_errors(registry, row, default_class, may_set_fields) for row in rows}
    _id_errors(registry, rows, default_class, named, found_errors)
    texts = _text_attributes(registry)
    while True:  # again without the rows the id check refuses: a row answered as an error writes nothing
        errors = {where: list(row_errors) for where, row_errors in found_errors.items()}
        good, items = _items(registry, rows, errors, default_class, texts)
        rel_errors = {rel.where: list(rel.errors) for rel in relationships}
        families = {info.family for info in registry.classes.values()}
        ends = _resolve_ends(conn, rows, {row.where for row in rows if errors[row.where]}, relationships, rel_errors,
                             families)
        sent_relationships = [rel for rel in relationships if not rel_errors[rel.where]]
        rel_items = [orjson.dumps({"source": ends[rel.source], "target": ends[rel.target], "type": rel.type,
                                   "attributes": rel.attributes}) for rel in sent_relationships]
        batch = Batch(SOURCE, run_id, IngestScope(), False, False, items, rel_items)
        outcome = Outcome(run_id=run_id, source=SOURCE, dry_run=False)
        # A row the source `import` reported in these very bytes before is confirmed by its fingerprint and
        # not derived (ingest's shortcut); the fields beside the report are compared below all the same.
        the_plan = phases.plan(conn, registry, batch, outcome, confirm=confirm)
        pinned = _pin(registry, batch, the_plan, outcome, {_ref(row): row.ci_id for row in good if row.ci_id in named})
        found = phases.identify(conn, registry, batch, the_plan, outcome)
        _identify_pinned(conn, found, pinned)
        changes = phases.reconcile(registry, the_plan, found, outcome, source=SOURCE, now=uow.now)
        wrong_ids = _wrong_ids(good, outcome, named, pinned)
        if not wrong_ids:
            break
        for where, wrong in wrong_ids.items():
            found_errors[where].append(wrong)
    by_ref = {_ref(row): row for row in good}
    _item_errors(outcome, by_ref, errors)
    given: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for row in good:
        ci_id = outcome.refs.get(_ref(row))
        if ci_id is not None and row.fields and may_set_fields and not errors[row.where]:
            given.setdefault(ci_id, []).append(row.fields)
    stored = found.rows
    confirmed = {ci_id for ci_id in given if ci_id in the_plan.confirmation.cis}
    if confirmed:
        stored = {**found.rows, **store.load_cis(conn, confirmed)}  # locked, as identify locks the derived ones
    field_values = import_fields.reconcile_fields(changes, given, stored, uow.now)
    rel_actions = _relationship_actions(found, outcome, sent_relationships, ends, set(the_plan.confirmation.carried))
    phases.apply(uow, registry, batch, the_plan, found, changes, outcome)
    _relationship_errors(outcome, sent_relationships, rel_errors)  # found while applying
    import_fields.write(conn, field_values)
    phases.close(uow, batch, the_plan, outcome, StalenessPolicy())
    return _report(rows, relationships, errors, rel_errors, outcome, changes, rel_actions)


def _items(registry: Registry, rows: list[ImportRow], errors: dict[int, list], default_class: str | None,
           texts: dict[str, set[str]]) -> tuple[list[ImportRow], list[bytes]]:
    """The rows without errors, and each as an ingest item (a row nested too deeply gets its errors)."""
    good, items = [], []
    for row in rows:
        if errors[row.where]:
            continue
        ci_class = row.ci_class or default_class
        item = {"class": ci_class, "name": row.name,
                "identifiers": _as_text(row.identifiers, row.texts, texts[ci_class]),
                "attributes": _as_text(row.attributes, row.texts, texts[ci_class]),
                "environment": row.fields.get("environment"), "owner": row.fields.get("owner")}
        cls = registry.classes.get(ci_class)
        if row.ci_id is not None and cls is not None:  # as ingest's plan will find it (identification.plan_items)
            facts = {**item["attributes"], **item["identifiers"]}
            row.identified = bool(identifier_values(cls.effective_rules, identifying_facts(
                row.name, item["environment"], facts)) or held_values(cls, facts))
        item = {"ref": _ref(row), **item}
        try:
            items.append(orjson.dumps(item))
        except orjson.JSONEncodeError:  # nested deeper than JSON is written here (a cell of 300 brackets)
            errors[row.where] += [error(row.columns.get(key, key), "nested too deeply") for key, value in
                                  {**item["identifiers"], **item["attributes"]}.items() if not _writable(value)]
            continue
        good.append(row)
    return good, items


def _writable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def _text_attributes(registry: Registry) -> dict[str, set[str]]:
    """Per class, the attributes its schema (or an ancestor's) declares as text."""
    declared = {name: {key for key, spec in (cls.attribute_schema.get("properties") or {}).items()
                       if isinstance(spec, dict) and spec.get("type") == "string"} for name, cls in registry.classes.items()}
    return {name: set().union(*(declared[a] for a in cls.ancestors if a in declared))
            for name, cls in registry.classes.items()}


def _as_text(values: dict[str, Any], texts: dict[str, str], text_keys: set[str]) -> dict[str, Any]:
    """A cell that reads as JSON (`12`) for an attribute the class declares as text is that text ("12"):
    a spreadsheet's os_version 12 means the text. Only cells have a text to fall back on."""
    if not texts or not text_keys:
        return values
    return {key: texts[key] if key in text_keys and key in texts and not isinstance(value, str) else value
            for key, value in values.items()}


def _row_errors(registry: Registry, row: ImportRow, default_class: str | None,
                may_set_fields: bool) -> list[dict[str, str]]:
    """What the file's reader found, then what the checks find in the other columns."""
    if any(e["column"] == "row" for e in row.errors):
        return list(row.errors)  # not a row at all (a bundle's CI that is not an object)
    seen = {e["column"] for e in row.errors}
    problems = [e for e in _check_row(registry, row, default_class) if e["column"] not in seen]
    if not may_set_fields:  # as PATCH /api/v1/cis: these fields are an edit's, and need scope write
        seen |= {e["column"] for e in problems}
        problems += [error(name, f"setting {name} needs a token with scope 'write' (a discovery token imports "
                                 "names, identifiers and attributes; leave the cell empty)")
                     for name, value in row.fields.items() if value not in (None, []) and name not in seen]
    return list(row.errors) + problems


def _check_row(registry: Registry, row: ImportRow, default_class: str | None) -> list[dict[str, str]]:
    """What ingest would refuse for the whole batch, or cannot say per column: refused per row here."""
    problems = []
    ci_class = row.ci_class or default_class
    if ci_class is None:
        problems.append(error("class", "no class: send class= with the request or fill the class column"))
    elif ci_class not in registry.classes:
        problems.append(error("class", f"unknown class '{ci_class}'"))
    elif default_class in registry.classes and ci_class not in registry.classes[default_class].descendants:
        problems.append(error("class", f"'{ci_class}' is not '{default_class}' or one of its subclasses (class=)"))
    if not row.name:
        problems.append(error("name", "a name is required"))
    elif len(row.name) > MAX_NAME:
        problems.append(error("name", f"longer than {MAX_NAME} characters"))
    for name, limit in _LIMITS.items():
        if isinstance(row.fields.get(name), str) and len(row.fields[name]) > limit:
            problems.append(error(name, f"longer than {limit} characters"))
    status = row.fields.get("status")
    if status is not None and status not in CIStatus.__members__:
        problems.append(error("status", f"'{str(status)[:40]}' is not one of {', '.join(CIStatus.__members__)}"))
    criticality = row.fields.get("criticality")
    if criticality is not None and (type(criticality) is not int or not 1 <= criticality <= 4):
        problems.append(error("criticality", "a whole number from 1 (most critical) to 4 is expected"))
    tags = row.fields.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) and 0 < len(tag) <= 100 for tag in tags):
        problems.append(error("tags", "a list of texts of 1 to 100 characters is expected"))
    elif len(tags) > MAX_TAGS:
        problems.append(error("tags", f"more than {MAX_TAGS} tags"))
    elif (problem := storable_problem(tags, "tags")) is not None:
        problems.append(error("tags", problem[1]))
    return problems


def _column(row: ImportRow, ingest_field: str) -> str:
    """The column an ingest error's field (`name`, `attributes.cpu_count`, `identifiers`) came from."""
    if ingest_field.startswith("attributes."):
        key = ingest_field.removeprefix("attributes.").split(".")[0]
        return row.columns.get(key, f"attribute.{key}")
    return ingest_field


def _item_errors(outcome: Outcome, by_ref: dict[str, ImportRow], errors: dict[int, list]) -> None:
    for item_error in outcome.errors:
        if "ref" in item_error:
            row = by_ref[item_error["ref"]]
            errors[row.where].append(error(_column(row, item_error["field"].split(".", 2)[-1]), item_error["message"]))
    for conflict in outcome.conflicts:
        errors[by_ref[conflict["ref"]].where].append(
            error("identifiers", f"{conflict['message']} (CIs {', '.join(conflict['candidates'])})"))


def _relationship_errors(outcome: Outcome, relationships: list[RelationshipRow], rel_errors: dict[int, list]) -> None:
    for rel_error in outcome.errors:
        if "relationship" in rel_error:
            rel = relationships[rel_error["relationship"]]
            rel_errors[rel.where].append(error(rel_error["field"].split(".")[-1], rel_error["message"]))


def _id_errors(registry: Registry, rows: list[ImportRow], default_class: str | None, named: dict[uuid.UUID, str],
               errors: dict[int, list]) -> None:
    """An `id` naming a CI of another identity family is that row's error (a `server` row may name a
    `network_device`: hosts are one identity domain, and ingest's source precedence decides the class)."""
    for row in rows:
        cls = registry.classes.get(row.ci_class or default_class)
        if row.ci_id not in named or cls is None or errors[row.where]:
            continue
        stored = registry.classes.get(named[row.ci_id])
        if stored is None or stored.identity_family != cls.identity_family:
            errors[row.where].append(error("id", f"CI {row.ci_id} is a {named[row.ci_id]}, not a {cls.family} "
                                                 "or one of its subclasses (nor a class identified with it)"))


def _pin(registry: Registry, batch: Batch, the_plan: phases.Plan, outcome: Outcome,
         by_id: dict[str, uuid.UUID]) -> dict[str, uuid.UUID]:
    """The rows without a usable identifier whose `id` names a CI of their family: that CI is their
    identity (a CI made by hand with only a name exports, and imports back). Planned here instead of
    refused; `_identify_pinned` says which CI each is."""
    refused = {e["ref"] for e in outcome.errors if e.get("ref") in by_id
               and e["field"].endswith(".identifiers") and e["message"].startswith("no identifier usable")}
    if not refused:
        return {}
    outcome.errors[:] = [e for e in outcome.errors if e.get("ref") not in refused]
    indexes = [index for index, ref in enumerate(batch.refs) if ref in refused]
    items, _ = batch.validated(indexes, [])
    for index, item in items:
        the_plan.counts[item.ci_class]["errors"] -= 1
        the_plan.planned.append(PlannedItem(
            index=index, ref=item.ref, cls=registry.classes[item.ci_class], name=item.name,
            facts={**item.attributes, **item.identifiers}, environment=item.environment, owner=item.owner,
            strong=[], held=[]))
    for ref in refused:
        outcome.refs[ref] = by_id[ref]  # what relationships naming the row are read against
    return {ref: by_id[ref] for ref in refused}


def _identify_pinned(conn: Connection, found: phases.Identification, pinned: dict[str, uuid.UUID]) -> None:
    if not pinned:
        return
    for resolution in found.resolutions:
        if resolution.items[0].ref in pinned:
            resolution.ci_id = pinned[resolution.items[0].ref]
    loaded = store.load_cis(conn, set(pinned.values()))  # locked, as identify locks the others
    found.rows.update(loaded)
    found.karta_groups |= group_identity.karta_groups(conn, loaded)


def _wrong_ids(rows: list[ImportRow], outcome: Outcome, named: dict[uuid.UUID, str],
               pinned: dict[str, uuid.UUID]) -> dict[int, dict[str, str]]:
    """An `id` given is a check: the row must be that CI when it exists. The error per row that is not;
    a row that is a CI another row's `id` names is the error of that other row."""
    wrong, ids = {}, {}
    for row in rows:
        found = outcome.refs.get(_ref(row))
        if row.ci_id in named and found is not None and found != row.ci_id:
            wrong[row.where] = error("id", f"the row's identifiers are CI {found}, not {row.ci_id}")
        elif found is not None:
            ids.setdefault(found, []).append(row)
    for row in rows:
        if _ref(row) in pinned and len(ids.get(row.ci_id, ())) > 1:
            wrong[row.where] = error("id", f"CI {row.ci_id} is also the CI of another row of this import")
    return wrong


def _resolve_ends(conn: Connection, rows: list[ImportRow], bad: set[int], relationships: list[RelationshipRow],
                  rel_errors: dict[int, list], families: set[str]) -> dict[str, str]:
    """Each end a relationship row names, as ingest takes it: a ref of this import or a CI's id.
    `families` are every class family: an identifier is looked up through the index's key (family,
    key, value), one probe per family, not by a scan of the whole identifier table."""
    ends: dict[str, str] = {}
    for rel in relationships:
        said = {e["column"] for e in rel_errors[rel.where]}
        for column, value in (("source", rel.source), ("target", rel.target)):
            if column in said:
                continue
            if not value:
                rel_errors[rel.where].append(error(column, "required: a CI id, key=value of an identifier or name=..."))
                continue
            if value not in ends:
                resolved = _resolve_end(conn, rows, bad, value, families)
                if resolved.startswith("!"):
                    rel_errors[rel.where].append(error(column, resolved[1:]))
                    continue
                ends[value] = resolved
            elif ends[value].startswith("!"):
                rel_errors[rel.where].append(error(column, ends[value][1:]))
        if not rel.type and "type" not in said:
            rel_errors[rel.where].append(error("type", "required"))
        elif rel.type and len(rel.type) > 64:  # no type is named so long (ingest would refuse the whole batch)
            rel_errors[rel.where].append(error("type", f"unknown relationship type '{rel.type[:64]}...'"))
    return ends


def _resolve_end(conn: Connection, rows: list[ImportRow], bad: set[int], value: str, families: set[str]) -> str:
    """A ref, a CI id, or '!' and the reason it names no single CI."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        pass
    key, sep, wanted = value.partition("=")
    key, wanted = key.strip(), wanted.strip()
    if not sep or not key or not wanted:
        return f"!'{value[:80]}' is neither a CI id nor key=value (fqdn=web-1.example.com, name=shop)"
    if key == "name":
        in_file = [row for row in rows if row.name == wanted]
        query = select(CI.c.id).where(CI.c.name == wanted)
    else:
        normalized = normalize(key, wanted)
        if normalized is None:
            return f"!'{wanted[:80]}' is not a usable {key}"
        in_file = [row for row in rows if normalized in _normalized(key, {**row.attributes, **row.identifiers}.get(key))]
        query = select(IDENT.c.ci_id).distinct().where(IDENT.c.family.in_(sorted(families)), IDENT.c.key == key,
                                                        IDENT.c.value == normalized)
    if len(in_file) == 1:
        row = in_file[0]
        return f"!{value[:80]} is row {row.where} of this import, which has errors" if row.where in bad else _ref(row)
    if len(in_file) > 1:
        return f"!{len(in_file)} rows of this import have {key}={wanted[:80]}"
    found = conn.execute(query).scalars().all()
    if len(found) == 1:
        return str(found[0])
    return f"!{'several CIs have' if found else 'no CI has'} {key}={wanted[:80]}"


def _normalized(key: str, raw: Any) -> set[str]:
    values = raw if isinstance(raw, list) else [raw]
    return {n for v in values if (n := normalize(key, v)) is not None}


def _relationship_actions(found: phases.Identification, outcome: Outcome, relationships: list[RelationshipRow],
                          ends: dict[str, str], carried: set[int]) -> dict[int, str]:
    """create, update or unchanged per relationship row, from what identify read; one a confirmed row
    carried (fingerprints.py) is unchanged."""
    ids = {**found.reads.ids, **outcome.refs}
    actions = {}
    for position, rel in enumerate(relationships):
        if position in carried:
            actions[rel.where] = "unchanged"
            continue
        key = (ids.get(ends[rel.source]), ids.get(ends[rel.target]), rel.type)
        existing = found.reads.found.get(key)
        if existing is None:
            actions[rel.where] = "create"
        else:
            merged = {**existing.attributes, **rel.attributes}
            actions[rel.where] = "unchanged" if merged == existing.attributes else "update"
    return actions


def _report(rows: list[ImportRow], relationships: list[RelationshipRow], errors: dict[int, list],
            rel_errors: dict[int, list], outcome: Outcome, changes: phases.Changes,
            rel_actions: dict[int, str]) -> dict[str, Any]:
    diffs = {(record[1], record[2]): record[3] for record in changes.records if record[0] == "ci"}
    counts = {"create": 0, "update": 0, "unchanged": 0, "error": 0}
    rel_counts = dict(counts)
    answered = []
    for row in rows:
        ci_id = outcome.refs.get(_ref(row))
        if errors[row.where] or ci_id is None:
            entry = {"row": row.where, "action": "error", "ci": None,
                     "errors": errors[row.where] or [error("identifiers", "not applied")]}
        elif (ci_id, "create") in diffs:
            entry = {"row": row.where, "action": "create", "ci": str(ci_id), "diff": diffs[(ci_id, "create")]}
        elif (ci_id, "update") in diffs:
            entry = {"row": row.where, "action": "update", "ci": str(ci_id), "diff": diffs[(ci_id, "update")]}
        else:
            entry = {"row": row.where, "action": "unchanged", "ci": str(ci_id)}
        counts[entry["action"]] += 1
        answered.append(entry)
    rel_answered = []
    for rel in relationships:
        if rel_errors[rel.where]:
            entry = {"row": rel.where, "action": "error", "errors": rel_errors[rel.where]}
        else:
            entry = {"row": rel.where, "action": rel_actions.get(rel.where, "unchanged")}
        rel_counts[entry["action"]] += 1
        rel_answered.append(entry)
    return {"counts": counts, "relationship_counts": rel_counts, "errors": counts["error"] + rel_counts["error"],
            "rows": answered, "relationships": rel_answered, "run_id": outcome.run_id}
