"""Karta's web UI: server-rendered pages (Jinja2, htmx) for the people a CMDB is for, served by the
same FastAPI app as the API and calling the same services (never Karta's own HTTP API).

Pages live under /ui/ (URLs are fixed: other tools and bookmarks link to them), their assets under
/ui/static/ (vendored, listed with versions and licences in static/vendor/VENDORED.md: nothing comes
from a CDN), and /docs is Swagger UI from those assets. `install(app)` adds all of it, with the
security headers every answer carries."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.web import errors
from app.web.pages import (account, ci, ci_edit, cis_list, discovery, docs, home, impact, impact_downloads, incidents,
                           suggest)
from app.web.security import SecurityHeaders

STATIC = Path(__file__).resolve().parent / "static"
PAGES = (account, docs, home, cis_list, discovery, ci, ci_edit, impact, impact_downloads, suggest, incidents)


def install(app: FastAPI) -> None:
    """Call after app.api.problems.install: page errors wrap its handlers."""
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="static")
    for module in PAGES:
        app.include_router(module.router)
    errors.install(app)
    app.add_middleware(SecurityHeaders)
