"""Runs a batch's phases (phases.py) in one unit of work, again when it lost a race, and answers for it.

Retry policy (tenacity): a batch runs again, from the start, when
- it lost a race to a change another transaction committed: an identifier or a relationship that
  transaction inserted first (a unique key refused this one's), or the deletion of a CI this one
  identified. Each is progress (the next attempt sees it), so up to MAX_ATTEMPTS attempts: agents
  relating machines while an operator deleted them one by one lost one race per deletion;
- the database aborted it to break a deadlock or a serialization failure: at most MAX_ABORTS times, as
  these are not progress.
Any other error is raised at once. Out of attempts, a batch that lost races answers 503 (Unavailable,
nothing applied, send it again); one the database kept aborting raises that error (503 as well).
"""

import logging
import uuid
from dataclasses import replace
from functools import partial

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from tenacity import RetryCallState, Retrying, retry_if_exception

from app.models.ingest import IngestBatch
from app.services.errors import Unavailable, field_error
from app.core.db_errors import UNIQUE_VIOLATION, aborted_for_another
from app.services.history import UnitOfWork
from app.services.ingest import phases
from app.services.ingest.batch import Batch
from app.services.ingest.outcome import AtomicBatchFailed, Outcome, Shortcuts, StalenessPolicy
from app.services.registry import RegistryCache

log = logging.getLogger("karta.ingest")
MAX_ATTEMPTS = 20  # in all: each race lost is a change another transaction committed
MAX_ABORTS = 5  # of them aborted by the database to break a deadlock
ALL_SHORTCUTS = Shortcuts()
RETRY_AFTER_SECONDS = 1  # what a 503 suggests: the batches it lost to are committed by then


def lost_race(exc: BaseException | None) -> bool:
    """Another transaction committed what this one raced for (any other integrity error is a fault).
    PostgreSQL's unique violation only: SQLite serializes writers, so it cannot lose such a race."""
    return isinstance(exc, phases.LostRace) or (
        isinstance(exc, IntegrityError) and getattr(exc.orig, "sqlstate", None) == UNIQUE_VIOLATION)


class _Budgets:
    """tenacity stop condition: MAX_ATTEMPTS attempts in all, MAX_ABORTS of them aborted by the database."""

    def __init__(self) -> None:
        self.aborts = 0

    def __call__(self, state: RetryCallState) -> bool:
        if not lost_race(state.outcome.exception()):
            self.aborts += 1
        return self.aborts >= MAX_ABORTS or state.attempt_number >= MAX_ATTEMPTS


def _log_retry(run_id: str, state: RetryCallState) -> None:
    exc = state.outcome.exception()
    what = "lost a race to a concurrent change" if lost_race(exc) else "aborted by the database"
    log.info("ingest %s: %s (%s); attempt %d", run_id, what, getattr(exc, "orig", None) or exc, state.attempt_number + 1)


def _exhausted(state: RetryCallState):
    exc = state.outcome.exception()
    if lost_race(exc):
        raise Unavailable(f"The CIs of this batch changed under it {state.attempt_number} times in a row (other batches "
                          "or deletions of the same machines); nothing was applied. Send it again.",
                          retry_after=RETRY_AFTER_SECONDS) from exc
    raise exc


def retry_policy(run_id: str) -> Retrying:
    return Retrying(retry=retry_if_exception(lambda exc: lost_race(exc) or aborted_for_another(exc)),
                    stop=_Budgets(), before_sleep=partial(_log_retry, run_id), retry_error_callback=_exhausted)


def ingest(engine: Engine, registry_cache: RegistryCache, batch: Batch | IngestBatch, *, actor: str,
           dry_run: bool = False, staleness: StalenessPolicy | None = None,
           shortcuts: Shortcuts = ALL_SHORTCUTS, token_id: uuid.UUID | None = None) -> Outcome:
    """Apply one batch, retrying when a concurrent batch won a race on an identifier."""
    if isinstance(batch, IngestBatch):
        batch = Batch.from_model(batch)
    return retry_policy(batch.run_id)(_ingest_once, engine, registry_cache, batch, actor=actor, dry_run=dry_run,
                                      staleness=staleness or StalenessPolicy(), shortcuts=shortcuts,
                                      token_id=token_id)


class _Rollback(Exception):
    """Ends the unit of work without committing (dry runs, failed atomic batches)."""


def _ingest_once(engine: Engine, registry_cache: RegistryCache, batch: Batch, *, actor: str, dry_run: bool,
                 staleness: StalenessPolicy, shortcuts: Shortcuts, token_id: uuid.UUID | None) -> Outcome:
    try:
        return _in_unit_of_work(engine, registry_cache, batch, actor=actor, dry_run=dry_run, staleness=staleness,
                                shortcuts=shortcuts, token_id=token_id)
    except phases.ConfirmedOverlap:  # rare: derive the whole batch instead
        return _in_unit_of_work(engine, registry_cache, batch, actor=actor, dry_run=dry_run, staleness=staleness,
                                shortcuts=replace(shortcuts, confirm_fingerprints=False), token_id=token_id)


def _in_unit_of_work(engine: Engine, registry_cache: RegistryCache, batch: Batch, *, actor: str, dry_run: bool,
                     staleness: StalenessPolicy, shortcuts: Shortcuts, token_id: uuid.UUID | None) -> Outcome:
    outcome = Outcome(run_id=batch.run_id, source=batch.source, dry_run=dry_run)
    try:
        with UnitOfWork(engine, actor, token_id) as uow:
            # The classes as they stand for this transaction (a class changed by another worker since
            # this one cached it is reloaded; a change waits for this batch: RegistryCache.for_write).
            registry = registry_cache.for_write(uow.conn, set(batch.classes))
            plan = phases.plan(uow.conn, registry, batch, outcome, confirm=shortcuts.confirm_fingerprints)
            found = phases.identify(uow.conn, registry, batch, plan, outcome)
            changes = phases.reconcile(registry, plan, found, outcome, source=batch.source, now=uow.now)
            phases.apply(uow, registry, batch, plan, found, changes, outcome, background=shortcuts.background_writes)
            phases.close(uow, batch, plan, outcome, staleness)
            if batch.atomic and (outcome.errors or outcome.conflicts):
                outcome.applied = False
                raise _Rollback
            if dry_run:
                raise _Rollback
    except _Rollback:
        pass
    if batch.atomic and not outcome.applied:
        raise AtomicBatchFailed(
            f"Atomic batch not applied: {len(outcome.errors)} error(s) and {len(outcome.conflicts)} conflict(s).",
            [field_error(e.get("field", "items"), e["message"]) for e in outcome.errors],
            conflicts=outcome.conflicts, outcome=outcome.as_dict(),
        )
    return outcome
