"""/api/v1/import: spreadsheets and bundles of CIs and relationships, applied through ingest as the
source `import` (app/services/imports.py; the formats in app/integrations/csv_import.py and bundle.py)."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from app.api.deps import Forbidden, RegistryDep, require
from app.api.responses import JSON, PROBLEM_RESPONSES
from app.core.db import refresh_statistics
from app.integrations import bundle, csv_import
from app.models.token import Scope
from app.services import imports
from app.services.errors import KartaError
from app.services.tokens import Principal

router = APIRouter(prefix="/api/v1", tags=["import and export"])
CSV_TYPES = ("text/csv", "application/csv", "text/plain", "text/tab-separated-values")
BUNDLE_TYPES = {"application/json": "json", "application/yaml": "yaml", "application/x-yaml": "yaml",
                "text/yaml": "yaml", "text/x-yaml": "yaml"}
BULK_LOAD_ROWS = 1000  # as ingest: a load this big refreshes SQLite's statistics


class UnsupportedMediaType(KartaError):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


_BODY = {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}, "example": "name,identifier.fqdn,owner\nweb-1,web-1.example.com,web-team\n"},
    "application/json": {"schema": {"type": "object"},
                         "example": {"cis": [{"class": "server", "name": "web-1", "identifiers": {"fqdn": "web-1.example.com"}}],
                                     "relationships": []}},
    "application/yaml": {"schema": {"type": "string"}}}}


@router.post("/import", openapi_extra={"requestBody": _BODY},
             responses={415: {**PROBLEM_RESPONSES[422], "description": "Not CSV, JSON or YAML"}})
async def import_file(
    request: Request,
    principal: Annotated[Principal, require(Scope.write, Scope.discovery)],
    registry: RegistryDep,
    ci_class: Annotated[str | None, Query(alias="class", max_length=64,
                                          description="The CSV's class (rows may name a subclass in a class column)")] = None,
    relationships: Annotated[bool, Query(description="The CSV holds relationships (source, type, target)")] = False,
    dry_run: Annotated[bool, Query(description="Answer per row what would happen; write nothing")] = False,
    all_or_nothing: Annotated[bool, Query(description="With any error, apply nothing (false: apply the good rows)")] = True,
):
    """Import CIs from CSV (one class per file: `class=`), relationships from CSV (`relationships=true`),
    or a JSON/YAML bundle of CIs of several classes and relationships, as the source `import` (its
    precedence applies). Answers every row: create, update, unchanged or error, with the CI, the diff
    and each error's column and reason. With any error nothing is applied (422 with the same report)."""
    if not principal.may_report_as(imports.SOURCE):
        raise Forbidden(f"Token '{principal.name}' may report as {', '.join(sorted(principal.sources or ()))}, "
                        f"not as source '{imports.SOURCE}'.", source=imports.SOURCE)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if media_type in CSV_TYPES:
        reader = csv_import.read_relationships if relationships else csv_import.read_cis
        parsed = await run_in_threadpool(reader, body)
        rows, rels = ([], parsed) if relationships else (parsed, [])
    elif media_type in BUNDLE_TYPES:
        rows, rels = await run_in_threadpool(bundle.read, body, BUNDLE_TYPES[media_type])
    else:
        raise UnsupportedMediaType(f"Send text/csv, application/json or application/yaml, not '{media_type[:80]}'.",
                                   errors=[{"field": "header.Content-Type", "message": "unsupported"}])
    return await run_in_threadpool(_import, request, principal, registry, rows, rels, ci_class, dry_run, all_or_nothing)


def _import(request: Request, principal: Principal, registry, rows, rels, ci_class, dry_run: bool,
            all_or_nothing: bool):
    engine = request.app.state.engine
    report = imports.run_import(engine, registry, rows, rels, default_class=ci_class, actor=principal.name,
                                token_id=principal.token_id, dry_run=dry_run, all_or_nothing=all_or_nothing,
                                may_set_fields=principal.has(Scope.write))
    if report["applied"] and report["counts"]["create"] >= BULK_LOAD_ROWS:
        refresh_statistics(engine)  # throttled; SQLite only
    return JSON(report)
