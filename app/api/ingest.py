"""/api/v1/ingest, /api/v1/discovery/runs and /api/v1/precedence: what discovery pushes, and its record."""

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from starlette.concurrency import run_in_threadpool

from app.api.deps import Admin, Forbidden, Reader, RegistryDep, read_transaction, require, write
from app.api.responses import JSON
from app.core import metrics
from app.core.batch_contract import MAX_ITEMS, MAX_RELATIONSHIPS
from app.core.db import refresh_statistics
from app.models.discovery import MANUAL_SOURCE
from app.models.ingest import DiscoveryRunPage, DiscoveryRunPublic, IngestBatch, IngestOutcome, PrecedenceRuleModel
from app.models.token import Scope
from app.services import discovery_runs, precedence
from app.services.errors import InvalidInput, KartaError, field_error
from app.services.ingest import StalenessPolicy, ingest
from app.services.ingest.batch import Batch
from app.services.storable import require_storable
from app.services.tokens import RESERVED_SOURCES, Principal

router = APIRouter(prefix="/api/v1", tags=["discovery"])
# A batch that creates this many CIs changes the tables enough to refresh SQLite's statistics.
BULK_LOAD_ROWS = 1000


class PayloadTooLarge(KartaError):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


@router.post("/ingest", response_model=IngestOutcome, openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": IngestBatch.model_json_schema(by_alias=True)}}}})
async def ingest_batch(
    request: Request,
    principal: Annotated[Principal, require(Scope.discovery, Scope.write)],
    registry: RegistryDep,
    dry_run: Annotated[bool, Query(description="Compute and return the outcome; write nothing")] = False,
):
    """Identify, reconcile and record what a source saw. Items are matched to existing CIs through their
    class's identification rules; attributes follow source precedence; a `complete` run ages what it
    did not see. The response maps every ref to its CI id and counts what happened, per class."""
    # The body is parsed here rather than declared: items a source reports unchanged are confirmed by
    # their fingerprint and never need validating into models (services/ingest/fingerprints.py).
    batch = await run_in_threadpool(Batch.from_json, await request.body())  # a big batch: off the event loop
    if not principal.may_report_as(batch.source):
        raise Forbidden(_refused_source(principal, batch.source), source=batch.source)
    _refuse_oversized_items(batch, request.app.state.settings.max_attributes_bytes)
    if len(batch.items) > MAX_ITEMS:
        raise PayloadTooLarge(f"{len(batch.items)} items in one batch; the limit is {MAX_ITEMS}. "
                              "Split the run into several batches with the same run_id.", limit=MAX_ITEMS)
    if len(batch.relationships) > MAX_RELATIONSHIPS:
        raise PayloadTooLarge(f"{len(batch.relationships)} relationships in one batch; the limit is "
                              f"{MAX_RELATIONSHIPS}.", limit=MAX_RELATIONSHIPS)
    require_storable(batch.run_id, "run_id")
    require_storable(batch.scope.model_dump(), "scope")
    return await run_in_threadpool(_ingest, request, principal, registry, batch, dry_run)


def _refuse_oversized_items(batch: Batch, limit: int) -> None:
    """One item, as sent, is bounded like one CI's attributes (KARTA_MAX_ATTRIBUTES_BYTES): a CI is a
    record, not a file store. Refused for the whole batch, naming the item, before anything is derived."""
    for index, raw in enumerate(batch.items):
        if len(raw) > limit:
            raise InvalidInput(f"items.{index} takes {len(raw):,} bytes; one item may take {limit:,} "
                               "(KARTA_MAX_ATTRIBUTES_BYTES).", [field_error(f"items.{index}", "too large")])


def _refused_source(principal: Principal, source: str) -> str:
    if source == MANUAL_SOURCE:
        return ("Source 'manual' is reserved for edits through the CI API (/api/v1/cis), which outrank "
                "every discovery source; ingest never accepts it. Report as the source that saw it (ssh, nmap, ...).")
    if source in RESERVED_SOURCES:
        return RESERVED_SOURCES[source] + " Report as the source that saw it (ssh, nmap, ...)."
    return (f"Token '{principal.name}' may report as {', '.join(sorted(principal.sources or ()))}, "
            f"not as source '{source}'. Create a token with `--source {source}` for it.")


def _ingest(request: Request, principal: Principal, registry, batch: Batch, dry_run: bool):
    settings = request.app.state.settings
    outcome = ingest(request.app.state.engine, registry, batch, actor=principal.name, dry_run=dry_run,
                     staleness=StalenessPolicy(settings.stale_after_runs, settings.stale_after_days),
                     token_id=principal.token_id)
    metrics.ingest_done(outcome, dry_run)
    if not dry_run:
        request.app.state.service_maps.notify()  # the maps this batch touched: soon, in their own transaction
    if not dry_run and outcome.counts.get("created", 0) >= BULK_LOAD_ROWS:
        refresh_statistics(request.app.state.engine)  # throttled; SQLite only
    return JSON(outcome.as_dict())


@router.get("/discovery/runs", response_model=DiscoveryRunPage)
def list_runs(
    request: Request,
    principal: Reader,
    source: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
):
    """Newest first."""
    with read_transaction(request) as conn:
        return JSON(discovery_runs.list_runs(conn, source=source, limit=limit, cursor=cursor))


@router.get("/discovery/runs/{run_id}", response_model=DiscoveryRunPublic)
def get_run(run_id: str, request: Request, principal: Reader):
    with read_transaction(request) as conn:
        return JSON(discovery_runs.get_run(conn, run_id))


@router.get("/precedence", response_model=list[PrecedenceRuleModel])
def list_precedence(request: Request, principal: Reader):
    """Source precedence rules, highest source first; class/attribute null means any."""
    with read_transaction(request) as conn:
        return JSON(precedence.list_rules(conn))


@router.put("/precedence", response_model=list[PrecedenceRuleModel])
def replace_precedence(rules: Annotated[list[PrecedenceRuleModel], Body(max_length=1000)], request: Request,
                       principal: Admin):
    """Replace all rules. A rule without class and attribute is the default; without one, the
    manual > ssh > snmp > nmap > import default applies. Unknown classes and a source named twice in
    one rule are refused. The change feed records the set before and after."""
    return JSON(write(request, principal, lambda uow: precedence.replace_rules(uow, rules)))
