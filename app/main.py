"""The Karta service: a FastAPI application over one database engine.

`create_app()` is the uvicorn factory (`uvicorn --factory app.main:create_app`). It never creates
tables; `karta serve` refuses to start on a database whose schema is behind.
"""

import gc
import logging
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from app import web
from app.api import (ansible, changes, cis, health, hot_routes, impact, imports, incidents, ingest, metrics, openapi,
                     problems, prometheus, registry, relationships, search, service_map, tokens, webhooks)
from app.api.limits import BoundedBody
from app.api.read_routing import ReadRouting
from app.api.responses import PROBLEM_RESPONSES
from app.core import metrics_listener
from app.core.config import Settings, get_settings
from app.core.db import make_engine, refresh_statistics
from app.core.replicas import ReplicaSet
from app.services.incident_expiry import IncidentExpirer
from app.services.live_graph import LiveGraph
from app.services.service_directory import ServiceDirectory
from app.services.registry import RegistryCache
from app.services.service_map_keeper import ServiceMapKeeper
from app.services.tokens import TokenVerifier
from app.services.webhook_delivery import DeliveryWorker
from app.services.webhooks import SecretBox

DESCRIPTION = """Karta stores configuration items (CIs), their relationships and every change to them.

Authenticate with `Authorization: Bearer <token>`; errors are `application/problem+json` (RFC 9457).

Where read replicas serve reads, a write answers `X-Karta-Seq: N`; send `X-Karta-Min-Seq: N` with a read
to see that write (README, "Read replicas")."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        app.state.ci_reads = cis.ReadTurns(settings.ci_read_concurrency, settings.ci_read_turn_seconds)
        gc.set_threshold(*settings.gc_thresholds)
        if settings.load_graph_at_startup:
            app.state.live_graph.warm_up(before=lambda: refresh_statistics(engine))
        app.state.live_graph.start_snapshots()  # only with KARTA_GRAPH_SNAPSHOT_DIR
        deliverer = DeliveryWorker(engine, settings) if settings.webhooks_deliver else None
        if deliverer:
            deliverer.start()
        if replicas is not None:
            replicas.start()
        expirer = IncidentExpirer(app.state)
        expirer.start()
        listener = metrics_listener.start(settings.metrics_listen, app.state.metrics_registry,
                                          max_connections=settings.metrics_max_connections,
                                          read_timeout=settings.metrics_read_timeout_seconds)
        if settings.service_maps_keep:
            app.state.service_maps.start()
        yield
        app.state.service_maps.stop()  # a keeper never started stops at once
        app.state.live_graph.stop_snapshots()
        if listener is not None:
            listener.stop()
        expirer.stop()
        if deliverer:
            deliverer.stop()
        if replicas is not None:
            replicas.stop()
        engine.dispose()

    # /docs is served by app.web from vendored assets (FastAPI's own loads Swagger UI from a CDN).
    app = FastAPI(title="Karta", version="0.1.0", description=DESCRIPTION, lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    engine = make_engine(settings.database_url, pool_size=settings.threads)
    app.state.settings = settings
    app.state.engine = engine
    # Read replicas (KARTA_DATABASE_REPLICA_URLS): without them, nothing below routes anything.
    replicas = ReplicaSet.from_settings(engine, settings) if settings.replica_urls else None
    app.state.replicas = replicas
    app.state.registry = RegistryCache(engine, settings.registry_cache_seconds)
    app.state.token_verifier = TokenVerifier(engine, settings.token_cache_seconds)
    app.state.webhook_secrets = SecretBox(engine, settings.webhook_key)
    app.state.live_graph = LiveGraph(engine, app.state.registry, catch_up_max=settings.graph_catch_up_max,
                                     snapshot_dir=settings.graph_snapshot_dir,
                                     snapshot_seconds=settings.graph_snapshot_seconds,
                                     compact_min_cis=settings.graph_compact_min_cis if settings.graph_compact else None)
    app.state.service_directory = ServiceDirectory(engine)
    app.state.service_maps = ServiceMapKeeper(engine, app.state.registry, app.state.live_graph)
    app.add_middleware(BoundedBody, max_bytes=settings.max_body_bytes, timeout_seconds=settings.body_timeout_seconds,
                       larger={"/api/v1/ingest": settings.max_ingest_body_bytes,
                               "/api/v1/integrations/alertmanager": settings.max_alert_body_bytes,
                               "/api/v1/import": settings.max_import_body_bytes})
    if replicas is not None:
        app.add_middleware(ReadRouting, replicas=replicas)  # inside the metrics: a read answered again counts once
    metrics.install(app)
    problems.install(app)  # last: its request ids are the outermost layer, on every answer
    for module in (health, cis, relationships, changes, registry, tokens, ingest, impact, search, webhooks, incidents,
                   metrics, prometheus, ansible, imports, service_map):
        app.include_router(module.router, responses=PROBLEM_RESPONSES if module is not health else None)
    openapi.install(app)
    web.install(app)
    hot_routes.install(app)
    logging.getLogger("karta").setLevel(logging.INFO)
    return app
