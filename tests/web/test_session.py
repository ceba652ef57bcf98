"""Signing in and out of the web UI, sessions and CSRF, with the real app (no browser): what the
cookie is, what ends a session, and that every form is guarded."""

import re
import time

import pytest

from app.web.session import LOGIN_CSRF_COOKIE, SESSION_COOKIE


def login_csrf(client) -> str:
    page = client.get("/ui/login")
    assert page.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def sign_in(client, token: str, next_path: str = "/ui/"):
    return client.post("/ui/login", data={"token": token, "csrf_token": login_csrf(client), "next": next_path},
                       follow_redirects=False)


def page_csrf(html: str) -> str:
    return re.search(r'data-csrf="([^"]+)"', html).group(1)


@pytest.fixture
def tokens(api):
    return api.secrets


@pytest.fixture
def client(api):
    return api.client


def test_root_leads_to_the_ui_and_the_ui_to_login(client):
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/"
    answer = client.get("/ui/?class=server&x=1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=/ui/%3Fclass%3Dserver%26x%3D1"


def test_sign_in_sets_a_guarded_cookie_and_returns_to_the_page(client, tokens):
    answer = sign_in(client, tokens["read"], "/ui/?x=1")
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/?x=1"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/ui/" in cookie and "Max-Age=" in cookie
    assert "Secure" not in cookie  # served over http here
    assert tokens["read"] not in cookie  # encrypted, not just signed
    home = client.get("/ui/")
    assert home.status_code == 200 and "read-bot" in home.text and "read only" in home.text


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example", "/api/v1/cis"])
def test_sign_in_never_sends_someone_elsewhere(client, tokens, target):
    assert sign_in(client, tokens["read"], target).headers["location"] == "/ui/"


def test_a_wrong_token_or_a_forged_login_form_is_refused(client, tokens):
    answer = sign_in(client, "karta_not-a-token")
    assert answer.status_code == 401 and "unknown, revoked or expired" in answer.text
    assert SESSION_COOKIE not in answer.cookies
    client.cookies.delete(LOGIN_CSRF_COOKIE, path="/ui/login")
    forged = client.post("/ui/login", data={"token": tokens["admin"], "csrf_token": "guess", "next": "/ui/"},
                         follow_redirects=False)
    assert forged.status_code == 403 and SESSION_COOKIE not in forged.cookies


def test_an_altered_cookie_is_no_session(client, tokens):
    sign_in(client, tokens["read"])
    value = client.cookies.get(SESSION_COOKIE)
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"), path="/ui/")
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_revoking_the_token_ends_the_session(client, tokens, api):
    sign_in(client, tokens["write"])
    assert client.get("/ui/").status_code == 200
    token_id = next(t["id"] for t in api.get("/api/v1/tokens").json() if t["name"] == "write-bot")
    assert api.delete(f"/api/v1/tokens/{token_id}").status_code == 204
    time.sleep(0.4)  # the app's token cache (0.3 s in tests)
    answer = client.get("/ui/", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")
    assert any(c.startswith(SESSION_COOKIE + '=""') for c in answer.headers.get_list("set-cookie"))


def test_sign_out_needs_the_session_csrf_token(client, tokens):
    sign_in(client, tokens["read"])
    home = client.get("/ui/")
    assert client.post("/ui/logout", data={"csrf_token": "wrong"}, follow_redirects=False).status_code == 403
    assert client.get("/ui/").status_code == 200  # still signed in
    out = client.post("/ui/logout", data={"csrf_token": page_csrf(home.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_the_sign_out_page_offers_the_button_to_whoever_is_signed_in(client, tokens):
    assert "You are not signed in" in client.get("/ui/logout").text
    sign_in(client, tokens["read"])
    page = client.get("/ui/logout")
    assert page.status_code == 200 and "You are not signed in" not in page.text
    csrf = re.search(r'<form method="post" action="/ui/logout">\s*<input type="hidden" name="csrf_token" value="([^"]+)"',
                     page.text.split('<main id="main">', 1)[1]).group(1)
    out = client.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and client.get("/ui/", follow_redirects=False).status_code == 303


def test_every_answer_carries_the_security_headers(client, tokens):
    sign_in(client, tokens["read"])
    for url in ("/ui/", "/ui/login", "/docs", "/api/v1/cis", "/ui/static/karta.css"):
        headers = client.get(url).headers
        policy = headers["content-security-policy"]
        assert "script-src 'self' 'wasm-unsafe-eval';" in policy and "unsafe-inline" not in policy, url
        assert "frame-ancestors 'none'" in policy and headers["x-frame-options"] == "DENY", url
        assert headers["referrer-policy"] == "same-origin", url
    assert client.get("/ui/").headers["cache-control"] == "no-store"


def test_docs_are_served_from_vendored_assets(client):
    page = client.get("/docs").text
    assert "cdn" not in page.lower() and "/ui/static/vendor/swagger-ui/swagger-ui-bundle.js" in page
    assert "<script>" not in page  # no inline script
    assert client.get("/ui/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200


def test_a_page_error_is_a_page(client, tokens):
    sign_in(client, tokens["read"])
    answer = client.get("/ui/no-such-page")
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert "404" in answer.text


def test_the_session_key_is_made_once_and_shared_by_every_worker(database_url):
    from app.core.db import make_engine
    from app.services.service_keys import stored_key
    from app.web.session import SESSION_KEY_NAME

    first, second = make_engine(database_url), make_engine(database_url)
    try:
        key = stored_key(first, SESSION_KEY_NAME)
        assert stored_key(second, SESSION_KEY_NAME) == key and stored_key(first, SESSION_KEY_NAME) == key
    finally:
        first.dispose()
        second.dispose()
