"""Discovery ingest: identify, reconcile and age what sources report, in bulk.

One batch is one transaction doing a fixed number of statements, whatever its size, in named phases
(phases.py): plan (batch.py, fingerprints.py) -> identify (identification.py) -> reconcile
(reconciliation.py) -> apply (store.py, relationships.py) -> close (staleness.py, runs.py); pipeline.py
runs them and runs a batch again when it lost a race.

Idempotence: an item whose reconciled values equal the stored ones changes nothing but last_seen:
no version bump, no change record. Sending the same batch twice writes no history the second time.

Concurrency: the identifier index's primary key is the guard. Two agents reporting the same new
machine at once both try to index its serial number; the second transaction fails on the key, rolls
back and runs again, and now finds the CI the first one created. CIs being updated are locked in id
order (PostgreSQL), so overlapping batches serialize on them instead of losing an update or
deadlocking; SQLite serializes writers anyway.

Per-item errors (unknown class, no usable identifier, schema violation, a relationship to an unknown
ref, id or type) are reported with the ref and the reason while the rest of the batch applies; with
`atomic`, any error or conflict applies nothing.

This module only hands on the names callers use.
"""

from app.services.ingest.outcome import AtomicBatchFailed, Outcome, Shortcuts, StalenessPolicy
from app.services.ingest.pipeline import ingest
from app.services.ingest.runs import scope_key

__all__ = ["AtomicBatchFailed", "Outcome", "Shortcuts", "StalenessPolicy", "ingest", "scope_key"]
