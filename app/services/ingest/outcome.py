"""What one batch did, as the response and the run record report it, and the policy that ages a scope.

Counts are kept per class while the phases run (created / updated / unchanged / conflicts / errors);
`Outcome.totals` sums them for the response. Nothing here reads or writes the database.
"""

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from app.services.errors import InvalidInput

COUNTED = ("created", "updated", "unchanged", "conflicts", "errors")


class AtomicBatchFailed(InvalidInput):
    """An atomic batch with any error or conflict: nothing was applied (422, with the outcome)."""


@dataclass(frozen=True)
class Shortcuts:
    """The performance shortcuts ingest takes, each giving what the plain way gives (BENCHMARKS.md).
    Off, a batch takes the plain way: tests compare the two (tests/test_ingest_shortcuts.py)."""

    confirm_fingerprints: bool = True  # an unchanged report is confirmed, not derived (fingerprints.py)
    background_writes: bool = True  # writes run on a second thread on PostgreSQL (writes.py)


@dataclass
class StalenessPolicy:
    after_runs: int = 3
    after_days: float = 14.0


@dataclass
class Outcome:
    run_id: str
    source: str
    dry_run: bool
    applied: bool = True
    counts: dict[str, Any] = field(default_factory=dict)
    relationships: dict[str, int] = field(default_factory=dict)
    refs: dict[str, uuid.UUID] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    ended_relationships: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ClassCounts(defaultdict):
    """Per class, a Counter of what happened to its items."""

    def __init__(self) -> None:
        super().__init__(Counter)

    def item_error(self, outcome: Outcome, ci_class: str | None, index: int, ref: str, field_name: str,
                   message: str) -> None:
        outcome.errors.append({"ref": ref, "field": f"items.{index}.{field_name}", "message": message})
        self[ci_class]["errors"] += 1

    def totals(self) -> dict[str, Any]:
        """The response's counts: the sums, and per class what happened."""
        totals = Counter()
        for per_class in self.values():
            totals.update(per_class)
        counts: dict[str, Any] = {name: totals.get(name, 0) for name in COUNTED}
        counts["by_class"] = {cls: dict(counter) for cls, counter in sorted(self.items(), key=lambda kv: str(kv[0]))}
        return counts
