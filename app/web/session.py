"""The web UI's session: an encrypted, signed cookie, and the CSRF tokens that guard its forms.

A session is the API token the person signed in with, so the pages allow exactly what the API
allows that token, and revoking or expiring the token ends the session at the next page. The cookie
holds the token encrypted and authenticated (Fernet: AES-128-CBC + HMAC-SHA256, with its own
timestamp), a random CSRF seed and an expiry; it is HttpOnly (no script reads it), SameSite=Lax (a
link from a change ticket opens the page signed in, a cross-site POST carries no cookie) and Secure
when the page is served over https. Nothing is stored server-side: signing out removes the cookie
from the browser, and a copy taken before stays valid only until its expiry or until the token is
revoked (`karta token revoke`).

The key comes from KARTA_SESSION_SECRET when set; otherwise the first worker that needs it generates
one and keeps it in the `service_secret` table, so every worker and host on the database reads every
cookie, and a restart signs nobody out. This module never logs a token or a cookie."""

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

SESSION_KEY_NAME = "web_session"
SESSION_COOKIE = "karta_session"
LOGIN_CSRF_COOKIE = "karta_login_csrf"
# A cookie larger than this is not ours (browsers keep at most 4 KiB per cookie anyway).
MAX_COOKIE_BYTES = 4096


@dataclass(frozen=True)
class WebSession:
    token: str  # the API token's secret
    csrf_seed: str
    expires_at: float  # Unix time

    def csrf_token(self, key: bytes) -> str:
        """The value every form of this session carries: an HMAC of the seed, so the cookie alone
        (which a page script cannot read anyway) does not give it away."""
        return hmac.new(key, b"csrf:" + self.csrf_seed.encode(), hashlib.sha256).hexdigest()


def key_from_secret(secret: str) -> bytes:
    """A Fernet key derived from an operator's secret string (KARTA_SESSION_SECRET)."""
    return base64.urlsafe_b64encode(hashlib.sha256(b"karta-session:" + secret.encode()).digest())


class SessionCodec:
    """Turns a WebSession into a cookie value and back; a cookie that was altered, made with another
    key, or has expired reads as None."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self.key = key

    def open(self, token: str, lifetime_seconds: float, token_expires_at: float | None = None) -> WebSession:
        expires_at = time.time() + lifetime_seconds
        if token_expires_at is not None:
            expires_at = min(expires_at, token_expires_at)
        return WebSession(token=token, csrf_seed=secrets.token_urlsafe(24), expires_at=expires_at)

    def encode(self, session: WebSession) -> str:
        payload = json.dumps({"t": session.token, "c": session.csrf_seed, "e": session.expires_at})
        return self._fernet.encrypt(payload.encode()).decode()

    def decode(self, cookie: str | None) -> WebSession | None:
        if not cookie or len(cookie) > MAX_COOKIE_BYTES:
            return None
        try:
            payload = json.loads(self._fernet.decrypt(cookie.encode()))
            session = WebSession(token=str(payload["t"]), csrf_seed=str(payload["c"]), expires_at=float(payload["e"]))
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= time.time():
            return None
        return session


def same_token(sent: str | None, expected: str) -> bool:
    return bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())
