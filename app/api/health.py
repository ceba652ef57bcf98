"""/healthz (the process answers) and /readyz (the database answers and its schema is at head).

With read replicas, /readyz also lists each replica's state and lag (app/core/replicas.py), by its place
in KARTA_DATABASE_REPLICA_URLS only: the endpoint needs no token, so no address, database name or error
text is shown (those are in the logs, and the addresses in the authenticated /metrics). A replica out of
rotation does not make the worker unready: the primary answers its reads."""

from fastapi import APIRouter, Request
from sqlalchemy import text

from app.api.responses import JSON, problem
from app.core import migrations

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz():
    return JSON({"status": "ok"})


@router.get("/readyz")
def readyz(request: Request):
    engine = request.app.state.engine
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = migrations.current_revision(engine)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database means "not ready", never a 500
        return problem(503, "Not ready", f"The database is unreachable: {type(exc).__name__}.", slug="not-ready")
    head = migrations.head_revision()
    if current != head:
        return problem(503, "Not ready", f"The database schema is at {current or 'nothing'}, not {head}: "
                       "run `karta db upgrade`.", slug="not-ready", current=current, head=head)
    body = {"status": "ready", "schema": current}
    if request.app.state.replicas is not None:
        body["replicas"] = request.app.state.replicas.public_status()
    return JSON(body)
