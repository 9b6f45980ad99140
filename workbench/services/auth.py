"""Login, server-side sessions and the failed-login throttle, behind one small interface.

An `Authenticator` turns credentials into a user; everything after that (session tokens, expiry,
logout, the exposure counter) is shared, so an OIDC login (Streamlit's `st.login`) can be added
as a second authenticator without touching the pages.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from workbench.db.models import LoginAttempt, Role, User, UserSession
from workbench.db.types import utcnow
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.users import find_user, hash_password, verify_password

# Why these numbers: a person who mistypes twice is never slowed down; a guesser is slowed
# exponentially and then locked out for a while, per user name (known or not).
FREE_FAILURES = 3
MAX_DELAY_SECONDS = 300
LOCKOUT_FAILURES = 10
LOCKOUT_SECONDS = 15 * 60
FAILURE_WINDOW = timedelta(minutes=15)

SESSION_IDLE_SECONDS = 60 * 60  # an unused session ends after an hour
SESSION_MAX_SECONDS = 12 * 60 * 60  # and any session after a working day


@cache
def _dummy_hash() -> str:
    # Verified against when the user name is unknown, so a wrong name costs the same time as a
    # wrong password and the response time does not reveal which names exist.
    return hash_password(secrets.token_urlsafe(16))


class AuthenticationError(WorkbenchError):
    """Wrong credentials, a disabled account, or a session that has ended."""


class LoginThrottled(AuthenticationError):
    """Too many recent failures for this user name; `retry_after` seconds to wait."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class SessionUser:
    """Who a valid session token belongs to, as the pages see it."""

    user_id: int
    name: str
    role: Role
    session_id: int
    expires_at: datetime
    items_reviewed: int

    @property
    def actor(self) -> Actor:
        return Actor.for_user(self.name, self.user_id, self.role)


class Authenticator(Protocol):
    """Turns credentials into a user, or raises AuthenticationError."""

    method: str

    def authenticate(
        self, session: Session, credentials: Mapping[str, str], now: datetime
    ) -> User: ...


class LocalPasswordAuthenticator:
    """User name and password against the users table (argon2id), with the throttle."""

    method = "password"

    def authenticate(self, session: Session, credentials: Mapping[str, str], now: datetime) -> User:
        name = credentials.get("user_name", "").strip()
        password = credentials.get("password", "")
        if not name or not password:
            raise AuthenticationError("enter a user name and a password")
        check_throttle(session, name, now)
        user = find_user(session, name)
        ok = verify_password(user.password_hash if user else _dummy_hash(), password)
        ok = ok and user is not None and not user.disabled
        session.add(LoginAttempt(user_name=name[:128], at=now, success=ok))
        if not ok or user is None:
            record_event(
                session,
                Actor(name=name[:128]),
                "auth.login_failed",
                entity_type="user",
                entity_id=name[:128],
            )
            raise AuthenticationError("wrong user name or password, or the account is disabled")
        return user


def _recent_failures(session: Session, name: str, now: datetime) -> list[datetime]:
    """Failures since the last success within the window, newest first."""
    rows = session.execute(
        select(LoginAttempt.at, LoginAttempt.success)
        .where(LoginAttempt.user_name == name, LoginAttempt.at >= now - FAILURE_WINDOW)
        .order_by(LoginAttempt.at.desc(), LoginAttempt.id.desc())
        .limit(LOCKOUT_FAILURES + 1)
    ).all()
    failures = []
    for at, success in rows:
        if success:
            break
        failures.append(at)
    return failures


def required_wait(failures: int) -> float:
    """Seconds a user name must wait after `failures` consecutive failures."""
    if failures >= LOCKOUT_FAILURES:
        return float(LOCKOUT_SECONDS)
    if failures < FREE_FAILURES:
        return 0.0
    return float(min(2 ** (failures - FREE_FAILURES), MAX_DELAY_SECONDS))


def check_throttle(session: Session, name: str, now: datetime) -> None:
    """Refuse (without checking the password) while this name must still wait."""
    failures = _recent_failures(session, name, now)
    wait = required_wait(len(failures))
    if not failures or wait <= 0:
        return
    remaining = (failures[0] + timedelta(seconds=wait) - now).total_seconds()
    if remaining > 0:
        raise LoginThrottled(
            f"too many failed logins for {name!r}: try again in {int(remaining) + 1} s",
            retry_after=remaining,
        )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def login(
    session: Session,
    authenticator: Authenticator,
    credentials: Mapping[str, str],
    *,
    now: datetime | None = None,
) -> tuple[str, SessionUser]:
    """Authenticate and open a session; returns the token (kept only by the browser) and user."""
    now = now or utcnow()
    user = authenticator.authenticate(session, credentials, now)
    token = secrets.token_urlsafe(32)
    row = UserSession(
        token_hash=_token_hash(token),
        user_id=user.id,
        method=authenticator.method,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=SESSION_IDLE_SECONDS),
        items_reviewed=0,
    )
    session.add(row)
    session.flush()
    actor = Actor.for_user(user.name, user.id, user.role)
    record_event(
        session, actor, "auth.login", entity_type="user", entity_id=user.name,
        details={"method": authenticator.method},
    )  # fmt: skip
    return token, _session_user(row, user)


def log_in(
    sessions: sessionmaker[Session],
    authenticator: Authenticator,
    credentials: Mapping[str, str],
    *,
    now: datetime | None = None,
) -> tuple[str, SessionUser]:
    """`login` in a transaction of its own that keeps a failed attempt when it raises.

    Why: the throttle counts failures, so a failure must be committed, not rolled back with
    the rest of the request.
    """
    failure: AuthenticationError | None = None
    with sessions.begin() as s:
        try:
            return login(s, authenticator, credentials, now=now)
        except LoginThrottled:
            raise
        except AuthenticationError as exc:
            failure = exc
    raise failure


def _session_user(row: UserSession, user: User) -> SessionUser:
    return SessionUser(
        user_id=user.id,
        name=user.name,
        role=user.role,
        session_id=row.id,
        expires_at=row.expires_at,
        items_reviewed=row.items_reviewed,
    )


def resolve_session(
    session: Session, token: str | None, *, now: datetime | None = None
) -> SessionUser | None:
    """The user of a live session, sliding its idle expiry; None when it ended for any reason.

    Checked on every page run, so a logout, an expiry or a disabled account takes effect at once.
    """
    if not token:
        return None
    now = now or utcnow()
    row = session.scalar(select(UserSession).where(UserSession.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    hard_end = row.created_at + timedelta(seconds=SESSION_MAX_SECONDS)
    row.expires_at = min(now + timedelta(seconds=SESSION_IDLE_SECONDS), hard_end)
    row.last_seen_at = now
    if row.expires_at <= now:
        return None
    return _session_user(row, user)


def logout(session: Session, token: str, *, now: datetime | None = None) -> bool:
    """Revoke the session; returns False when it had already ended."""
    now = now or utcnow()
    row = session.scalar(select(UserSession).where(UserSession.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now
    user = session.get(User, row.user_id)
    if user is not None:
        record_event(
            session,
            Actor.for_user(user.name, user.id, user.role),
            "auth.logout",
            entity_type="user",
            entity_id=user.name,
        )
    return True


def count_reviewed_in_session(session: Session, session_id: int) -> int:
    """Add one to the session's exposure counter; returns the new count."""
    session.execute(
        update(UserSession)
        .where(UserSession.id == session_id)
        .values(items_reviewed=UserSession.items_reviewed + 1)
        .execution_options(synchronize_session=False)
    )
    return (
        session.scalar(select(UserSession.items_reviewed).where(UserSession.id == session_id)) or 0
    )


def reset_exposure(session: Session, session_id: int) -> None:
    """After a break the counter starts again."""
    session.execute(
        update(UserSession)
        .where(UserSession.id == session_id)
        .values(items_reviewed=0)
        .execution_options(synchronize_session=False)
    )
