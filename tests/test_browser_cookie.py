"""The login cookie's routes without a browser: attributes under TLS, one-time codes, refusal of
cross-site posts, and where a login may send the browser afterwards."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from workbench.ui.session_cookie import (
    COOKIE,
    HANDOFFS,
    LOGOUT_ROUTE,
    SESSION_ROUTE,
    Handoffs,
    safe_next,
)
from workbench.ui.web import close_session, open_session

ROUTES = [
    Route(SESSION_ROUTE, open_session, methods=["POST"]),
    Route(LOGOUT_ROUTE, close_session, methods=["POST"]),
]


def _client(base: str) -> TestClient:
    return TestClient(Starlette(routes=ROUTES), base_url=base, follow_redirects=False)


@pytest.mark.parametrize(("base", "secure"), [("https://wb.example", True), ("http://wb", False)])
def test_a_code_becomes_an_httponly_strict_cookie_secure_under_tls(base: str, secure: bool) -> None:
    code = HANDOFFS.issue("the-token")
    r = _client(base).post(
        SESSION_ROUTE, data={"code": code, "next": "/adjudication"}, headers={"origin": base}
    )
    assert r.status_code == 303 and r.headers["location"] == "/adjudication"
    header = r.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=the-token;")
    assert "HttpOnly" in header and "SameSite=strict" in header
    assert ("Secure" in header) is secure
    # The code is spent: a second use sets nothing.
    again = _client(base).post(SESSION_ROUTE, data={"code": code}, headers={"origin": base})
    assert again.status_code == 303 and "set-cookie" not in again.headers


def test_a_cross_site_post_is_refused() -> None:
    code = HANDOFFS.issue("the-token")
    client = _client("http://wb")
    for headers in ({"origin": "http://evil.example"}, {}):
        r = client.post(SESSION_ROUTE, data={"code": code}, headers=headers)
        assert r.status_code == 403 and "set-cookie" not in r.headers
        assert client.post(LOGOUT_ROUTE, headers=headers).status_code == 403


def test_logout_clears_the_cookie() -> None:
    r = _client("http://wb").post(LOGOUT_ROUTE, headers={"origin": "http://wb"})
    assert r.status_code == 303
    assert r.headers["set-cookie"].startswith(f'{COOKIE}="";')


def test_codes_expire() -> None:
    handoffs = Handoffs(ttl_s=-1)
    assert handoffs.redeem(handoffs.issue("t")) is None
    assert Handoffs().redeem("never issued") is None


@pytest.mark.parametrize(
    ("asked", "goes"),
    [
        ("/adjudication", "/adjudication"),
        ("/", "/"),
        ("//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/a/../b", "/"),
        (None, "/"),
    ],
)
def test_after_login_only_this_apps_own_pages(asked: str | None, goes: str) -> None:
    assert safe_next(asked) == goes
