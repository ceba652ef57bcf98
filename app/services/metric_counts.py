"""The estate's counts that Karta's /metrics reports at scrape time (app/core/metrics.py): CIs by
class, discovery runs by source and result, the change feed's head. A few grouped reads in one read
transaction; the caller caches the answer, so this must stay cheap and must never write."""

from typing import Any

from sqlalchemy import Engine, func, select

from app.core import db
from app.models import ConfigurationItem, DiscoveryRun
from app.models.types import as_utc
from app.services.changes import last_seq

CI = ConfigurationItem.__table__
RUN = DiscoveryRun.__table__


def read(engine: Engine, max_classes: int, max_sources: int) -> dict[str, Any]:
    """{"cis_by_class": [(class, count)], "runs": [(source, result, count, last complete finish as Unix
    time or None)], "head_seq": int}; at most `max_classes` classes and `max_sources` sources (by name)."""
    with db.read_transaction(engine) as conn:
        by_class = conn.execute(select(CI.c.ci_class, func.count()).group_by(CI.c.ci_class)
                                .order_by(CI.c.ci_class).limit(max_classes)).all()
        sources = select(RUN.c.source).distinct().order_by(RUN.c.source).limit(max_sources).subquery()
        runs = conn.execute(select(RUN.c.source, RUN.c.complete, func.count(), func.max(RUN.c.finished_at))
                            .where(RUN.c.source.in_(select(sources.c.source)))
                            .group_by(RUN.c.source, RUN.c.complete).order_by(RUN.c.source, RUN.c.complete)).all()
        head = last_seq(conn)
    return {
        "cis_by_class": [(ci_class, count) for ci_class, count in by_class],
        "runs": [(source, "complete" if complete else "incomplete", count,
                  as_utc(finished).timestamp() if complete and finished is not None else None)
                 for source, complete, count, finished in runs],
        "head_seq": head,
    }
