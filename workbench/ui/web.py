"""The browser app as an ASGI app (`st.App`): Streamlit's pages plus two routes that set and
clear the login cookie, which a Streamlit script cannot do itself.

`workbench serve` runs this file. The cookie holds only the opaque session token (the database
keeps its hash, with the idle and absolute expiry and revocation); it is HttpOnly, so no script
on the page can read it, SameSite=Strict, and Secure when the request came over TLS.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import streamlit as st
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from workbench.services.auth import SESSION_MAX_SECONDS, logout
from workbench.ui import session_cookie
from workbench.ui.session_cookie import COOKIE, HANDOFFS, LOGOUT_ROUTE, SESSION_ROUTE, safe_next


def _same_origin(request: Request) -> bool:
    """A POST here must come from a page of this app (a forged cross-site form is refused)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return False
    return urlsplit(origin).netloc == request.headers.get("host")


def _secure(request: Request) -> bool:
    forced = os.environ.get("WORKBENCH_COOKIE_SECURE", "").lower() in {"1", "true", "yes"}
    return forced or request.url.scheme == "https"


async def open_session(request: Request) -> Response:
    """Redeem a login's one-time code: set the cookie and go to the page asked for."""
    if not _same_origin(request):
        return PlainTextResponse("cross-site request refused", status_code=403)
    form = await request.form()
    token = HANDOFFS.redeem(str(form.get("code", "")))
    response = RedirectResponse(safe_next(str(form.get("next", "/"))), status_code=303)
    if token is not None:
        response.set_cookie(
            COOKIE, token, max_age=SESSION_MAX_SECONDS, path="/", httponly=True,
            samesite="strict", secure=_secure(request),
        )  # fmt: skip
    return response


def _revoke(token: str) -> None:
    from workbench.ui.state import database

    with database().sessions.begin() as s:
        logout(s, token)


async def close_session(request: Request) -> Response:
    """Log out: revoke the cookie's session (if the page has not already) and clear it."""
    if not _same_origin(request):
        return PlainTextResponse("cross-site request refused", status_code=403)
    token = request.cookies.get(COOKIE)
    if token:
        await run_in_threadpool(_revoke, token)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@asynccontextmanager
async def _mounted(_app: object) -> AsyncIterator[None]:
    # Only a running server has the routes: the login page hands sessions over to them then.
    session_cookie.routes_mounted = True
    yield


app = st.App(
    str(Path(__file__).with_name("app.py")),
    routes=[
        Route(SESSION_ROUTE, open_session, methods=["POST"]),
        Route(LOGOUT_ROUTE, close_session, methods=["POST"]),
    ],
    lifespan=_mounted,
)
