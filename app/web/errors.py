"""Errors on pages are pages: the service's exception handlers answer problem+json everywhere, and
under /ui/ that answer is turned into an HTML page with the same status, title and detail (and
request id), so a person sees what went wrong in words, never a JSON document. A page that needs a
signed-in user sends the browser to the login page, and back afterwards."""

import json

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from app.web.auth import SignInRequired, login_url
from app.web.render import is_htmx, render
from app.web.session import SESSION_COOKIE

# Headers of the problem answer a page keeps.
KEPT_HEADERS = ("retry-after", "x-request-id", "x-karta-as-of-seq")


def _is_page(request: Request) -> bool:
    return request.url.path.startswith("/ui/") or request.url.path == "/ui"


def _as_page(request: Request, response: Response) -> Response:
    if not _is_page(request) or not response.headers.get("content-type", "").startswith("application/problem+json"):
        return response
    try:
        problem = json.loads(response.body)
    except (ValueError, AttributeError):
        problem = {}
    page = render(request, "error.html", {
        "status": response.status_code, "title": problem.get("title") or "Error", "detail": problem.get("detail") or "",
        "errors": problem.get("errors") or [], "request_id": problem.get("request_id"),
    }, status_code=response.status_code)
    for name in KEPT_HEADERS:
        if name in response.headers:
            page.headers[name] = response.headers[name]
    return page


def install(app: FastAPI) -> None:
    """Wrap the handlers problems.install registered (call it after that)."""
    for key, handler in list(app.exception_handlers.items()):
        app.exception_handlers[key] = _wrapped(handler)

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, exc: SignInRequired):
        target = login_url(exc.next_path if request.method == "GET" else "/ui/")
        if is_htmx(request):  # htmx would swap the login page into a fragment: have it navigate instead
            response: Response = Response(status_code=200, headers={"HX-Redirect": target})
        else:
            response = RedirectResponse(target, status_code=303)
        if exc.ended:
            response.delete_cookie(SESSION_COOKIE, path="/ui/")
        return response


def _wrapped(handler):
    async def page_or_problem(request: Request, exc: Exception):
        response = handler(request, exc)
        if hasattr(response, "__await__"):
            response = await response
        return _as_page(request, response)

    return page_or_problem
