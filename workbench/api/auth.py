"""Bearer-key authentication as a FastAPI dependency: 401 without a live key, 403 without the
scope the route needs."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, Request

from workbench.db.database import Database
from workbench.services.apikeys import ApiKeyInfo, InvalidApiKey, ScopeDenied, authenticate


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_scope(scope: str) -> Callable[[Request], ApiKeyInfo]:
    """A dependency that authenticates the request's key for `scope` (sync: FastAPI runs it in
    its thread pool, so the database call never blocks the event loop)."""

    def dependency(request: Request) -> ApiKeyInfo:
        db: Database = request.app.state.db
        token = bearer_token(request)
        try:
            with db.sessions.begin() as s:
                return authenticate(s, token, scope)
        except InvalidApiKey as exc:
            raise HTTPException(
                401, detail=exc.message, headers={"WWW-Authenticate": "Bearer"}
            ) from None
        except ScopeDenied as exc:
            raise HTTPException(403, detail=exc.message) from None

    return dependency
