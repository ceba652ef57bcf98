"""Templates: Jinja2 with autoescaping on everything, and the few filters the pages share.

Nothing that came from a CI is ever marked safe: names, attributes and identifiers come from
discovery and are hostile text. A page answers an htmx request (header HX-Request) with the fragment
it swaps, and any other request with the whole page, from the same template (NetBox's pattern), so
every page reads without JavaScript."""

from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(enabled_extensions=("html", "svg"), default_for_string=True, default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

STATE_LABELS = {"down": "down", "degraded": "degraded", "at_risk": "at risk", "failed": "failed", "changed": "changed",
                "focus": "this CI"}


def when(value: Any) -> str:
    """A timestamp as people read it: UTC, to the second."""
    if value is None:
        return "never"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def query(params: dict[str, Any] | list[tuple[str, Any]], **changes: Any) -> str:
    """A query string (`?a=1&b=2`) from `params` with `changes` applied; None drops a key. Values are
    URL-encoded, so a hostile value can never add a parameter or leave the attribute it sits in."""
    items = list(params.items()) if isinstance(params, dict) else list(params)
    items = [(k, v) for k, v in items if k not in changes] + [(k, v) for k, v in changes.items()]
    flat: list[tuple[str, str]] = []
    for key, value in items:
        for one in value if isinstance(value, (list, tuple)) else [value]:
            if one is not None and one != "":
                flat.append((key, str(one)))
    return "?" + urlencode(flat) if flat else ""


environment.filters["when"] = when
environment.globals["query"] = query
environment.globals["STATE_LABELS"] = STATE_LABELS


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def render(request: Request, template: str, context: dict[str, Any] | None = None, *, status_code: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    """The page (or, for htmx, the fragment the template renders when `htmx` is true)."""
    user = getattr(request.state, "web_user", None)
    values = {"request": request, "user": user, "htmx": is_htmx(request), "path": request.url.path,
              "csrf_token": user.csrf_token if user else "", **(context or {})}
    html = environment.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status_code, headers=headers)
    if is_htmx(request):
        response.headers["Vary"] = "HX-Request"
    return response
