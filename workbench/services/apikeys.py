"""API keys: created with scopes, shown once, stored as a hash, revoked, and checked per request.

A key's use is audited at most once a minute per key (one `apikey.used` event with the minute's
first request): every scan row already names the key that asked for it, so an event per request
would double the writes of the hot path and add nothing a report could not read from `scans`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from workbench.db.models import ApiKey
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, WorkbenchError
from workbench.services.audit import Actor, record_event

SCOPES = ("scan", "banks")
TOKEN_PREFIX = "wbk_"
USE_AUDIT_INTERVAL = timedelta(minutes=1)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class InvalidApiKey(WorkbenchError):
    """No key, an unknown key, or a revoked one (HTTP 401)."""


class ScopeDenied(WorkbenchError):
    """A valid key without the scope the call needs (HTTP 403)."""


@dataclass(frozen=True)
class ApiKeyInfo:
    """What a request knows about the key that authenticated it."""

    id: int
    name: str
    scopes: tuple[str, ...]

    @property
    def actor(self) -> Actor:
        return Actor(name=f"apikey:{self.name}")


def hash_token(token: str) -> str:
    # A plain sha256 is enough: tokens carry 256 random bits, so there is nothing to brute-force
    # (a slow password hash would cost every request milliseconds for no gain).
    return hashlib.sha256(token.encode()).hexdigest()


def _check_scopes(scopes: list[str]) -> list[str]:
    if not scopes:
        raise WorkbenchError(f"a key needs at least one scope ({', '.join(SCOPES)})")
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise WorkbenchError(f"unknown scope {bad[0]!r}; scopes are {', '.join(SCOPES)}")
    return sorted(set(scopes), key=SCOPES.index)


def create_api_key(
    session: Session, name: str, scopes: list[str], actor: Actor
) -> tuple[ApiKey, str]:
    """A new key and its token; the token is returned here once and never stored."""
    if not _NAME.match(name):
        raise WorkbenchError(
            f"key name {name!r} is not allowed: use 1-128 letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    clean = _check_scopes(scopes)
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise WorkbenchError(
            f"an API key named {name!r} already exists (revoke it, or pick a name)"
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, key_hash=hash_token(token), scopes=clean, created_by=actor.name)
    session.add(key)
    session.flush()
    record_event(
        session,
        actor,
        "apikey.created",
        entity_type="api_key",
        entity_id=name,
        details={"scopes": clean},
    )
    return key, token


def list_api_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.name)))


def revoke_api_key(session: Session, name: str, actor: Actor) -> ApiKey:
    key = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is None:
        raise NotFoundError(f"no API key named {name!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        record_event(session, actor, "apikey.revoked", entity_type="api_key", entity_id=name)
    return key


def authenticate(session: Session, token: str | None, scope: str) -> ApiKeyInfo:
    """The key behind `token` if it is live and has `scope`; raises InvalidApiKey or ScopeDenied.

    Commits nothing itself; the caller's transaction carries the once-a-minute use stamp.
    """
    if not token:
        raise InvalidApiKey("missing API key: send `Authorization: Bearer <key>`")
    row = session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.scopes, ApiKey.revoked_at, ApiKey.last_used_at).where(
            ApiKey.key_hash == hash_token(token)
        )
    ).one_or_none()
    if row is None or row.revoked_at is not None:
        raise InvalidApiKey("invalid or revoked API key")
    info = ApiKeyInfo(row.id, row.name, tuple(row.scopes or ()))
    if scope not in info.scopes:
        raise ScopeDenied(f"API key {info.name!r} lacks the {scope!r} scope")
    _stamp_use(session, info, row.last_used_at, scope)
    return info


def _stamp_use(session: Session, info: ApiKeyInfo, last: datetime | None, scope: str) -> None:
    now = utcnow()
    cutoff = now - USE_AUDIT_INTERVAL
    if last is not None and last > cutoff:
        return
    # Guarded UPDATE: of several requests racing at the minute's turn, one wins the row and
    # writes the event; the others see rowcount 0.
    result = session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == info.id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= cutoff),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        record_event(
            session,
            info.actor,
            "apikey.used",
            entity_type="api_key",
            entity_id=info.name,
            details={"scope": scope},
        )
