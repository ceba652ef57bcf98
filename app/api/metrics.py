"""GET /metrics: Karta's own metrics in Prometheus's text format, for a token of scope read
(Prometheus sends it: `authorization: {credentials_file: ...}`). What is measured: app/core/metrics.py."""

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from app.api.deps import Reader
from app.core import metrics

router = APIRouter(tags=["metrics"])


def install(app: FastAPI) -> None:
    """Time every request, and keep the registry a scrape renders (also served by KARTA_METRICS_LISTEN)."""
    app.add_middleware(metrics.RequestMetrics)
    app.state.metrics_registry = metrics.registry_for(app.state.engine, app.state.live_graph,
                                                      app.state.settings.metrics_cache_seconds,
                                                      replicas=app.state.replicas)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def get_metrics(request: Request, principal: Reader) -> Response:
    """Prometheus text exposition (OpenMetrics when asked for in Accept). The database's counts are
    cached KARTA_METRICS_CACHE_SECONDS."""
    body, content_type = metrics.render(request.app.state.metrics_registry, request.headers.get("accept"))
    return Response(body, media_type=content_type)
