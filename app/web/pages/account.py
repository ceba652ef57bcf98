"""Signing in and out: `/` and `/ui` lead to `/ui/`, `/ui/login` takes a pasted API token, `/ui/logout`
ends the session.

The login form is guarded against cross-site posting like every other form, before any session
exists, by a double-submitted random value (a cookie and a hidden field that must match). The token
travels only in the POST body and the encrypted cookie: never in a URL, so never in a log."""

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse

from app.web.auth import CSRF_FIELD, FormUser, SignInRequired, current_user, local_path, principal_for, session_codec
from app.web.render import render
from app.web.session import LOGIN_CSRF_COOKIE, SESSION_COOKIE, same_token

router = APIRouter(include_in_schema=False)
LOGIN_CSRF_SECONDS = 3600
MAX_TOKEN_CHARS = 200


@router.get("/")
def root():
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
def ui_root():
    return RedirectResponse("/ui/", status_code=307)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(request: Request, next_path: str, *, error: str | None = None, status_code: int = 200):
    csrf = secrets.token_urlsafe(24)
    response = render(request, "login.html", {"next": next_path, "login_csrf": csrf, "error": error},
                      status_code=status_code)
    response.set_cookie(LOGIN_CSRF_COOKIE, csrf, max_age=LOGIN_CSRF_SECONDS, path="/ui/login", httponly=True,
                        samesite="strict", secure=_secure(request))
    return response


@router.get("/ui/login")
def login_form(request: Request, next: Annotated[str | None, Query(max_length=2000)] = None):
    return _login_page(request, local_path(next))


@router.post("/ui/login")
async def login(request: Request, token: Annotated[str, Form(max_length=MAX_TOKEN_CHARS)] = "",
                next: Annotated[str, Form(max_length=2000)] = "/ui/",
                csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=200)] = ""):
    target = local_path(next)
    if not same_token(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE) or ""):
        return _login_page(request, target, status_code=403,
                           error="This sign-in form has expired or was not sent from this site; try again.")
    token = token.strip()
    principal = await principal_for(request, token) if token else None
    if principal is None:
        return _login_page(request, target, status_code=401,
                           error="That token is unknown, revoked or expired. Create one with `karta token create`.")
    settings, codec = request.app.state.settings, await session_codec(request)
    lifetime = settings.session_hours * 3600
    expires_at = principal.expires_at
    session = codec.open(token, lifetime, expires_at.timestamp() if expires_at else None)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, codec.encode(session), max_age=max(1, int(session.expires_at - time.time())),
                        path="/ui/", httponly=True, samesite="lax", secure=_secure(request))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui/login")
    return response


@router.get("/ui/logout")
async def logout_form(request: Request):
    """A page with the sign-out button: signing out is a POST with the session's CSRF token, so no
    other site can sign someone out with a link or an image. Anyone may open it: without a session
    it says so (rather than sending them to sign in first)."""
    try:
        await current_user(request)  # the page needs the session's user and its CSRF token
    except SignInRequired:
        pass
    return render(request, "logout.html", {"signed_in": SESSION_COOKIE in request.cookies})


@router.post("/ui/logout")
async def logout(request: Request, user: FormUser):
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ui/")
    return response
