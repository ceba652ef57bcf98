"""Karta's own metrics for Prometheus: their definitions, the request middleware, and the collector
that reads the estate's counts at scrape time.

Counted as things happen (prometheus-client, in every worker):
  - karta_http_request_duration_seconds{method,route,status}: a histogram per route TEMPLATE
    (`/api/v1/cis/{ci_id}`), never the raw path, so a scan of random URLs cannot mint series
    (unmatched paths are `route="unmatched"`); its `_count` is the number of requests;
  - karta_ingest_items_total{outcome}, karta_ingest_relationships_total{outcome}: what applied
    ingest batches did (created, updated, unchanged, conflicts, errors; dry runs are not counted);
  - karta_database_errors_total{kind}: database errors answered, by app.core.db_errors kind.

Read at scrape time (KartaCollector): CIs by class, discovery runs by source and result and the last
complete run's time, the change feed's head; all from the database in one read transaction, cached
`metrics_cache_seconds` so that scrapes, however frequent, cannot load the database. And the impact
graph of the worker answering the scrape (CIs, related pairs of CIs, applied sequence, lag behind
the head), read as it is, never caught up for a scrape, and left out while it is being built. With
read replicas, each replica's lag and whether it is in rotation, as the answering worker's last check
found them (app/core/replicas.py; the label is the replica's host:port/database).

Several workers (`karta serve --workers N`): `karta serve` gives every start its own directory in
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) and removes it on exit, so counters
from all workers add up into one series, whichever worker answers the scrape. Label values here are
fixed sets or registry names (classes, sources); nothing from a CI's attributes becomes a label.
This module must never catch the graph up or write anything.
"""

import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OUTCOMES = ("created", "updated", "unchanged", "conflicts", "errors")
# A scrape waits at most this long for the graph's lock (held while a big catch-up or rebuild runs):
# past it the graph's metrics are left out of that scrape rather than holding the scrape.
GRAPH_WAIT_SECONDS = 0.5
# Bounds on the series the database can mint (classes and sources are names an admin or a token made).
MAX_CLASSES = 500
MAX_SOURCES = 100

# `_created` series double every counter's series for a time Prometheus does not need (and multiprocess
# mode has none): both modes expose the same names.
disable_created_metrics()
# In multiprocess mode the values live in the directory's files, and MultiProcessCollector reads them;
# otherwise (tests, an app made without `karta serve`) in this process's own registry.
_LOCAL = CollectorRegistry(auto_describe=True)

REQUEST_SECONDS = Histogram(
    "karta_http_request_duration_seconds", "Time to answer an HTTP request, by route template and status.",
    ("method", "route", "status"), registry=_LOCAL,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
INGEST_ITEMS = Counter("karta_ingest_items", "Items of applied ingest batches, by what happened to them.",
                       ("outcome",), registry=_LOCAL)
INGEST_RELATIONSHIPS = Counter("karta_ingest_relationships", "Relationships of applied ingest batches, by "
                               "what happened to them.", ("outcome",), registry=_LOCAL)
DATABASE_ERRORS = Counter("karta_database_errors", "Database errors answered, by kind (unique, retry, value, "
                          "fault: app/core/db_errors.py).", ("kind",), registry=_LOCAL)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


# ---- what happens --------------------------------------------------------------------------------

def route_template(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


class RequestMetrics:
    """Times every HTTP request and counts it by method, route template and status. A request whose
    handler raised counts as a 500 (Starlette's outermost layer answers it so)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_seeing_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_seeing_status)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            REQUEST_SECONDS.labels(method, route_template(scope), str(status)).observe(time.perf_counter() - started)


def ingest_done(outcome: Any, dry_run: bool) -> None:
    """Count what an ingest batch did (its Outcome), unless nothing was applied."""
    if dry_run or not outcome.applied:
        return
    for name in _OUTCOMES:
        if outcome.counts.get(name):
            INGEST_ITEMS.labels(name).inc(outcome.counts[name])
        if outcome.relationships.get(name):
            INGEST_RELATIONSHIPS.labels(name).inc(outcome.relationships[name])


def database_error(kind: str) -> None:
    DATABASE_ERRORS.labels(str(kind)).inc()


# ---- what is, at scrape time ---------------------------------------------------------------------

class KartaCollector:
    """The estate's counts (cached) and the answering worker's graph, as gauges."""

    def __init__(self, engine, live_graph, cache_seconds: float, replicas=None) -> None:
        self._engine = engine
        self._replicas = replicas
        self._live_graph = live_graph
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()  # one database read at a time; the others use its answer
        self._cached: tuple[float, dict[str, Any]] | None = None

    def describe(self) -> list:
        return []  # nothing to check at registration (which would otherwise read the database)

    def _counts(self) -> dict[str, Any]:
        from app.services import (
            metric_counts,  # the service layer, imported when first scraped
        )

        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self._cache_seconds:
                self._cached = (time.monotonic(), metric_counts.read(self._engine, MAX_CLASSES, MAX_SOURCES))
            return self._cached[1]

    def collect(self) -> Iterable[Metric]:
        counts = self._counts()
        cis = GaugeMetricFamily("karta_cis", "CIs in the database, by class.", labels=["class"])
        for ci_class, count in counts["cis_by_class"]:
            cis.add_metric([ci_class], count)
        yield cis
        runs = GaugeMetricFamily("karta_discovery_runs", "Discovery runs recorded, by source and result "
                                 "(complete: its complete batch arrived; incomplete: not yet, or never).",
                                 labels=["source", "result"])
        last = GaugeMetricFamily("karta_discovery_last_complete_run_timestamp_seconds",
                                 "When the source's latest complete run finished (Unix time).", labels=["source"])
        for source, result, count, finished in counts["runs"]:
            runs.add_metric([source, result], count)
            if finished is not None:
                last.add_metric([source], finished)
        yield runs
        yield last
        head = counts["head_seq"]
        yield GaugeMetricFamily("karta_change_feed_head_sequence", "The newest change record's sequence number.",
                                value=head)
        if self._replicas is not None:
            yield from _replica_gauges(self._replicas.status())
        snapshot = self._live_graph.snapshot(GRAPH_WAIT_SECONDS) if self._live_graph is not None else None
        if snapshot is None:
            return
        graph_cis, pairs, applied, overlay_rows = snapshot
        yield GaugeMetricFamily("karta_graph_cis", "CIs in the impact graph of the worker that answered.",
                                value=graph_cis)
        yield GaugeMetricFamily("karta_graph_related_pairs", "Pairs of CIs related in the impact graph of the "
                                "worker that answered (several relationship types between two CIs: one pair).",
                                value=pairs)
        yield GaugeMetricFamily("karta_graph_applied_sequence", "The last change record applied to that "
                                "worker's graph.", value=applied)
        # The head was read up to metrics_cache_seconds ago; the graph may have moved past it since.
        yield GaugeMetricFamily("karta_graph_lag_sequences", "Change-feed sequence numbers the graph is behind "
                                "(head minus applied; caught up before the worker's next impact answer).",
                                value=max(0, head - applied))
        yield GaugeMetricFamily("karta_graph_compact", "1 when that worker answers impact questions with the "
                                "compiled loop over its integer-indexed view of the graph, 0 with the Python loop "
                                "(the view is built after the graph, past KARTA_GRAPH_COMPACT_MIN_CIS).",
                                value=0 if overlay_rows is None else 1)
        if overlay_rows is not None:
            yield GaugeMetricFamily("karta_graph_compact_overlay_rows", "CIs changed since that worker's view was "
                                    "built, read from its overlay (built again past an eighth of the graph).",
                                    value=overlay_rows)


def _replica_gauges(replicas: list[dict[str, Any]]) -> Iterable[Metric]:
    in_rotation = GaugeMetricFamily("karta_replica_in_rotation", "1 when the read replica serves reads, 0 when "
                                    "it is out of rotation (down, not a standby, or too far behind).",
                                    labels=["replica"])
    lag = GaugeMetricFamily("karta_replica_lag_seconds", "How long ago the primary had the oldest change the "
                            "replica has not applied (0: it has them all), at the last check.", labels=["replica"])
    behind = GaugeMetricFamily("karta_replica_lag_sequences", "Change-feed sequence numbers the replica is behind "
                               "the primary, at the last check.", labels=["replica"])
    for replica in replicas:
        in_rotation.add_metric([replica["name"]], 1 if replica["in_rotation"] else 0)
        if replica["lag_seconds"] is not None:
            lag.add_metric([replica["name"]], replica["lag_seconds"])
        if replica["lag_changes"] is not None:
            behind.add_metric([replica["name"]], replica["lag_changes"])
    yield in_rotation
    yield lag
    yield behind


class _Counted:
    """What was counted: every worker's files in multiprocess mode, else this process's registry."""

    def collect(self) -> Iterable[Metric]:
        path = multiprocess_dir()
        if path is None:
            return _LOCAL.collect()
        return MultiProcessCollector(None, path).collect()


def registry_for(engine, live_graph, cache_seconds: float, replicas=None) -> CollectorRegistry:
    """The registry a scrape renders: what was counted, then what is."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Counted())
    registry.register(KartaCollector(engine, live_graph, cache_seconds, replicas))
    return registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The exposition (Prometheus text, or OpenMetrics when the scraper asks for it) and its content type."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
