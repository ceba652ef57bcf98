"""Who is looking at a page, and what they may do there: the same token, scopes and revocation as
the API (app/api/deps.py), read from the session cookie instead of the Authorization header.

Every page depends on `current_user`; a form that changes something depends on `form_writer`,
which also checks the form's CSRF token (a hidden `csrf_token` field, or the `X-CSRF-Token` header
htmx sends). A request without a valid session is sent to /ui/login and comes back afterwards."""

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from app.api.deps import Forbidden
from app.core.scopes import Scope
from app.services.tokens import NOT_CACHED, Principal
from app.services.service_keys import stored_key
from app.web.session import SESSION_COOKIE, SESSION_KEY_NAME, SessionCodec, WebSession, key_from_secret, same_token

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class SignInRequired(Exception):
    """No session, or one that ended (expired, altered, its token revoked or expired)."""

    def __init__(self, next_path: str, ended: bool) -> None:
        super().__init__("sign in")
        self.next_path, self.ended = next_path, ended


@dataclass(frozen=True)
class WebUser:
    principal: Principal
    session: WebSession
    csrf_token: str

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def can_write(self) -> bool:
        return self.principal.has(Scope.write)


async def session_codec(request: Request) -> SessionCodec:
    state = request.app.state
    codec = getattr(state, "session_codec", None)
    if codec is None:
        secret = state.settings.session_secret
        key = key_from_secret(secret) if secret else await run_in_threadpool(stored_key, state.engine, SESSION_KEY_NAME)
        codec = state.session_codec = SessionCodec(key)
    return codec


def local_path(target: str | None, default: str = "/ui/") -> str:
    """`target` if it is a path of the UI on this site, else `default`: a login link must not be able to
    send someone to another site afterwards (`//evil.example`, `/\\evil.example`, `https://...`)."""
    if not target or not target.startswith("/ui/") or "\\" in target or any(ord(c) < 0x20 for c in target):
        return default
    return target


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


async def principal_for(request: Request, token: str) -> Principal | None:
    verifier = request.app.state.token_verifier
    principal = verifier.cached(token)
    if principal is NOT_CACHED:
        principal = await run_in_threadpool(verifier.verify, token)
    return principal


async def current_user(request: Request) -> WebUser:
    codec = await session_codec(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    session = codec.decode(cookie)
    if session is None:
        raise SignInRequired(_here(request), ended=cookie is not None)
    principal = await principal_for(request, session.token)
    if principal is None:  # revoked or expired since the session began
        raise SignInRequired(_here(request), ended=True)
    if not principal.has(Scope.read):  # as the API: every page reads
        raise Forbidden(f"Token '{principal.name}' has no scope that reads.")
    user = WebUser(principal, session, session.csrf_token(codec.key))
    request.state.web_user = user
    return user


async def check_csrf(request: Request, user: WebUser) -> None:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.method == "POST":
        sent = (await request.form()).get(CSRF_FIELD)
    if not same_token(sent if isinstance(sent, str) else None, user.csrf_token):
        raise Forbidden("The form's CSRF token is missing or wrong: reload the page and send it again.")


async def form_user(request: Request, user: Annotated[WebUser, Depends(current_user)]) -> WebUser:
    """Any signed-in user sending a form of this session (signing out, say)."""
    await check_csrf(request, user)
    return user


async def form_writer(request: Request, user: Annotated[WebUser, Depends(current_user)]) -> WebUser:
    """A signed-in user whose token has scope write, sending a form of this session."""
    if not user.can_write:
        raise Forbidden(f"This needs a token with scope 'write'; token '{user.name}' has "
                        f"{', '.join(sorted(user.principal.scopes)) or 'none'}.")
    await check_csrf(request, user)
    return user


def login_url(next_path: str) -> str:
    return "/ui/login?next=" + quote(local_path(next_path), safe="/")


CurrentUser = Annotated[WebUser, Depends(current_user)]
FormUser = Annotated[WebUser, Depends(form_user)]
FormWriter = Annotated[WebUser, Depends(form_writer)]
