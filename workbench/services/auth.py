"""Login, server-side sessions and the failed-login throttle, behind one small interface.

An `Authenticator` turns credentials into a user; everything after that (session tokens, expiry,
logout, the exposure counter) is shared, so an OIDC login (Streamlit's `st.login`) can be added
as a second authenticator without touching the pages.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Protocol

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from workbench.db.models import LoginAttempt, Role, User, UserSession
from workbench.db.types import utcnow
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor, record_event, require_role
from workbench.services.users import find_user, hash_password, verify_password

# The throttle (README, SECURITY, "Login throttling"). Failures slow down; nothing locks an
# account, since a lockout lets anyone who knows a user name keep its owner out.
# Per name (known or not, so a refusal says nothing about which names exist): a person who
# mistypes a few times is never slowed; then each try must wait twice as long as the last, up
# to a minute: the real user is kept out by a flood at most that long after its last guess.
NAME_FREE_FAILURES = 3
NAME_MAX_DELAY_SECONDS = 60
# Per client (network address, IPv6 by /64): one machine guessing, or spraying one password
# over many names, is slowed much harder, up to a try per quarter hour.
CLIENT_FREE_FAILURES = 10
CLIENT_MAX_DELAY_SECONDS = 15 * 60
FAILURE_WINDOW = timedelta(minutes=15)
# The whole server: past this many failures in a minute password checks pause (a breaker that
# bounds both a distributed attack and the CPU and memory argon2 spends on it).
GLOBAL_FAILURES_PER_MINUTE = 100
GLOBAL_WINDOW = timedelta(minutes=1)

# One message for a wrong password, an unknown name and a disabled account.
FAILED_LOGIN = "wrong user name or password"

SESSION_IDLE_SECONDS = 60 * 60  # an unused session ends after an hour
SESSION_MAX_SECONDS = 12 * 60 * 60  # and any session after a working day

# Keys the throttle's record of names that are no account: they are often a password typed in
# the wrong field, so only a keyed hash of them is stored. The key lives in this process only;
# a restart starts their counts again, which costs nothing (there is no account to guess).
_UNKNOWN_NAME_KEY = secrets.token_bytes(32)

Transaction = Callable[[], AbstractContextManager[Session]]


@cache
def _dummy_hash() -> str:
    # Verified against when the user name is unknown, so a wrong name costs the same time as a
    # wrong password and the response time does not reveal which names exist.
    return hash_password(secrets.token_urlsafe(16))


class AuthenticationError(WorkbenchError):
    """Wrong credentials, a disabled account, or a session that has ended."""


class LoginThrottled(AuthenticationError):
    """Too many recent failures (for this name, this client or the server); `retry_after`
    seconds to wait. The password was not checked."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins: try again in {int(retry_after) + 1} s")
        self.retry_after = retry_after


class SessionEnded(AuthenticationError):
    """The session acted for was logged out, expired, or its account disabled."""

    def __init__(self) -> None:
        super().__init__("your session has ended: log in again")


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
    """Turns credentials into a user id, or raises AuthenticationError.

    It opens its own transactions with `transaction`, so a failure it counts stays counted
    when the login fails, and no lock is held while a slow password hash is checked.
    """

    method: str

    def authenticate(
        self,
        transaction: Transaction,
        credentials: Mapping[str, str],
        now: datetime,
        client: str | None,
    ) -> int: ...


def backoff(failures: int, free: int, cap: float) -> float:
    """Seconds to wait after `failures` failures: none for the first `free`, then 1, 2, 4 ...
    up to `cap`."""
    if failures < free:
        return 0.0
    return float(min(2 ** min(failures - free, 32), cap))


def client_key(address: str | None, browser_session: str) -> str:
    """What the per-client limit counts by: the network address (an IPv6 host holds a whole
    /64, so that is one client), else the browser session (a local connection has no address)."""
    if not address:
        return f"session:{browser_session}"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"addr:{address}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"net:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"addr:{ip}"


@dataclass(frozen=True)
class Reservation:
    """A login attempt let through the throttle; it counts as a failure until it succeeds."""

    attempt_id: int
    client: str | None
    at: datetime


class ClientFailures:
    """Recent failures per client, in this process (the attempts table has no client column).

    Why in memory: the Streamlit server that takes logins is one process; a deployment with
    several should limit per address at its proxy too.
    """

    MAX_CLIENTS = 100_000  # past this, clients with no failure in the window are forgotten

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, deque[datetime]] = {}

    def reserve(self, client: str, now: datetime, free: int, cap: float) -> None:
        """Count an attempt as a failure now, or raise LoginThrottled while it must wait."""
        with self._lock:
            times = self._failures.setdefault(client, deque())
            while times and times[0] <= now - FAILURE_WINDOW:
                times.popleft()
            wait = backoff(len(times), free, cap)
            if times and wait > 0:
                remaining = (max(times) + timedelta(seconds=wait) - now).total_seconds()
                if remaining > 0:
                    raise LoginThrottled(remaining)
            times.append(now)
            if len(self._failures) > self.MAX_CLIENTS:
                self._forget_idle(now)

    def release(self, client: str, at: datetime) -> None:
        """The attempt reserved at `at` succeeded (or never ran): it is no failure."""
        with self._lock:
            times = self._failures.get(client)
            if times and at in times:
                times.remove(at)

    def _forget_idle(self, now: datetime) -> None:
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - FAILURE_WINDOW]:
            del self._failures[key]


class LoginThrottle:
    """Lets a password be checked only within the limits per name, per client and global.

    Attempts for one name are serialised: the count and the new attempt's row are written under
    one lock, so twelve guesses sent at once see each other and at most the free ones are
    checked. The row counts as a failure until its login succeeds, so no lock is held while
    argon2 runs.
    """

    def __init__(self, *, global_failures_per_minute: int = GLOBAL_FAILURES_PER_MINUTE) -> None:
        self.global_failures_per_minute = global_failures_per_minute
        self.clients = ClientFailures()

    def reserve(self, session: Session, key: str, client: str | None, now: datetime) -> Reservation:
        """Record an attempt for the name `key`, or raise LoginThrottled (recording nothing:
        a refused try does not count, or a flood would keep the wait from ever ending)."""
        # First without a lock: most tries of a flood are refused here, by a read, writing
        # nothing and waiting for nobody.
        self._check(session, key, None, now)
        if client is not None:
            self.clients.reserve(client, now, CLIENT_FREE_FAILURES, CLIENT_MAX_DELAY_SECONDS)
        try:
            _lock_name(session, key)
            row = LoginAttempt(user_name=key, at=now, success=False)
            session.add(row)
            session.flush()  # on SQLite this first write takes the database's one write lock
            # Again under the lock: attempts that passed the first check together see each other.
            try:
                self._check(session, key, row.id, now)
            except LoginThrottled:
                session.execute(delete(LoginAttempt).where(LoginAttempt.id == row.id))
                raise
        except LoginThrottled:
            if client is not None:
                self.clients.release(client, now)
            raise
        return Reservation(row.id, client, now)

    def _check(self, session: Session, key: str, own_id: int | None, now: datetime) -> None:
        self._check_name(session, key, own_id, now)
        self._check_global(session, own_id, now)

    def settle(self, session: Session, reservation: Reservation, ok: bool) -> None:
        if not ok:
            return
        session.execute(
            update(LoginAttempt)
            .where(LoginAttempt.id == reservation.attempt_id)
            .values(success=True)
        )
        if reservation.client is not None:
            self.clients.release(reservation.client, reservation.at)

    @staticmethod
    def _check_name(session: Session, key: str, own_id: int | None, now: datetime) -> None:
        remaining = name_lockout_seconds(session, key, now, own_id=own_id)
        if remaining > 0:
            raise LoginThrottled(remaining)

    def _check_global(self, session: Session, own_id: int | None, now: datetime) -> None:
        # The newest attempts by id (the primary key's index, so a flood does not make this a
        # scan): when as many of them as the limit are failures within the minute, pause.
        limit = self.global_failures_per_minute
        recent = (
            select(LoginAttempt.at, LoginAttempt.success)
            .where(LoginAttempt.id != (own_id or 0))
            .order_by(LoginAttempt.id.desc())
            .limit(limit)
            .subquery()
        )
        count, oldest = session.execute(
            select(func.count(), func.min(recent.c.at)).where(
                recent.c.success.is_(False), recent.c.at > now - GLOBAL_WINDOW
            )
        ).one()
        if count >= limit and oldest is not None:
            raise LoginThrottled(max((oldest + GLOBAL_WINDOW - now).total_seconds(), 1.0))


def name_lockout_seconds(
    session: Session, key: str, now: datetime, *, own_id: int | None = None
) -> float:
    """How long logins under this name must still wait after its recent failures (0: none)."""
    # Failures since the last success within the window, newest first.
    rows = session.execute(
        select(LoginAttempt.at, LoginAttempt.success)
        .where(
            LoginAttempt.user_name == key,
            LoginAttempt.at >= now - FAILURE_WINDOW,
            LoginAttempt.id != (own_id or 0),
        )
        .order_by(LoginAttempt.at.desc(), LoginAttempt.id.desc())
        .limit(64)  # more than enough failures to reach the cap
    ).all()
    failures: list[datetime] = []
    for at, success in rows:
        if success:
            break
        failures.append(at)
    wait = backoff(len(failures), NAME_FREE_FAILURES, NAME_MAX_DELAY_SECONDS)
    if not failures or wait <= 0:
        return 0.0
    return max((failures[0] + timedelta(seconds=wait) - now).total_seconds(), 0.0)


@dataclass(frozen=True)
class LoginState:
    """What the admin's users table shows of an account's logins."""

    last_login: datetime | None
    locked_for_s: float  # how long a login must still wait after failed tries (0: not locked)


def login_states(
    session: Session, actor: Actor, *, now: datetime | None = None
) -> dict[str, LoginState]:
    """Each account's last login and lockout, by name (admins only)."""
    require_role(actor, Role.admin, action="see user logins")
    now = now or utcnow()
    last = dict(
        session.execute(
            select(User.name, func.max(UserSession.created_at))
            .join(UserSession, UserSession.user_id == User.id, isouter=True)
            .group_by(User.name)
        ).all()
    )
    return {
        name: LoginState(at, name_lockout_seconds(session, name, now)) for name, at in last.items()
    }


def _lock_name(session: Session, key: str) -> None:
    """Serialise the attempts for one name until the transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        # An advisory lock on a number made from the name: it works for names that are no
        # account as well, and locks no row anyone else reads.
        number = int.from_bytes(hashlib.sha256(b"login:" + key.encode()).digest()[:8], "big")
        session.execute(text("SELECT pg_advisory_xact_lock(:n)"), {"n": number - (1 << 63)})
    # SQLite: the attempt's INSERT that follows takes the single write lock, held to commit.


def throttle_key(name: str, user: User | None) -> str:
    """The name an attempt is counted under: the account's name, or a keyed hash of a name
    that is no account (never the typed text, which may be a password)."""
    if user is not None:
        return user.name
    digest = hmac.new(_UNKNOWN_NAME_KEY, name.encode(), hashlib.sha256).hexdigest()
    return f"?{digest[:40]}"


DEFAULT_THROTTLE = LoginThrottle()


class LocalPasswordAuthenticator:
    """User name and password against the users table (argon2id), with the throttle."""

    method = "password"

    def __init__(self, throttle: LoginThrottle | None = None) -> None:
        self.throttle = throttle or DEFAULT_THROTTLE

    def authenticate(
        self,
        transaction: Transaction,
        credentials: Mapping[str, str],
        now: datetime,
        client: str | None,
    ) -> int:
        name = credentials.get("user_name", "").strip()
        password = credentials.get("password", "")
        if not name or not password:
            raise AuthenticationError("enter a user name and a password")
        with transaction() as s:
            user = find_user(s, name)
            reservation = self.throttle.reserve(s, throttle_key(name, user), client, now)
        # Outside any transaction: argon2 is slow on purpose, and holds no lock meanwhile.
        # (`user` stays readable: the sessionmaker does not expire objects on commit.)
        ok = verify_password(user.password_hash if user else _dummy_hash(), password)
        ok = ok and user is not None and not user.disabled
        with transaction() as s:
            self.throttle.settle(s, reservation, ok)
            if not ok:
                _record_failure(s, user, client)
        if not ok or user is None:
            raise AuthenticationError(FAILED_LOGIN)
        return user.id


def _record_failure(session: Session, user: User | None, client: str | None) -> None:
    if user is None:
        # Whatever was typed as the name stays out of the audit trail: it may be a password.
        actor, entity = Actor(name="unknown"), None
    else:
        actor, entity = Actor(name=user.name, user_id=user.id), user.name
    record_event(
        session, actor, "auth.login_failed", entity_type="user", entity_id=entity,
        details={"client": client} if client else None,
    )  # fmt: skip


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def login(
    session: Session,
    authenticator: Authenticator,
    credentials: Mapping[str, str],
    *,
    client: str | None = None,
    now: datetime | None = None,
) -> tuple[str, SessionUser]:
    """Authenticate and open a session, all in the caller's transaction; returns the token
    (kept only by the browser) and the user.

    For scripts and tests: a failure is kept only if the caller commits, and the name's lock is
    held through the password check. The login page uses `log_in`.
    """
    now = now or utcnow()
    user_id = authenticator.authenticate(lambda: nullcontext(session), credentials, now, client)
    return _open_session(session, user_id, authenticator.method, now)


def log_in(
    sessions: sessionmaker[Session],
    authenticator: Authenticator,
    credentials: Mapping[str, str],
    *,
    client: str | None = None,
    now: datetime | None = None,
) -> tuple[str, SessionUser]:
    """`login` in transactions of its own: the attempt is recorded (and a failure stays
    committed, since the throttle counts it) before the password is checked, and the session
    is opened after."""
    now = now or utcnow()
    user_id = authenticator.authenticate(sessions.begin, credentials, now, client)
    with sessions.begin() as s:
        return _open_session(s, user_id, authenticator.method, now)


def _open_session(
    session: Session, user_id: int, method: str, now: datetime
) -> tuple[str, SessionUser]:
    user = session.get(User, user_id)
    if user is None or user.disabled:  # disabled while its password was being checked
        raise AuthenticationError(FAILED_LOGIN)
    token = secrets.token_urlsafe(32)
    row = UserSession(
        token_hash=_token_hash(token),
        user_id=user.id,
        method=method,
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
        details={"method": method},
    )  # fmt: skip
    return token, _session_user(row, user)


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

    Checked on every page run, so a logout, an expiry or a disabled account takes effect at once;
    an action checks again with `require_session`.
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


def require_session(
    session: Session, token: str | None, *, now: datetime | None = None
) -> SessionUser:
    """The user of a live session, checked in the transaction of the action done for it.

    Why every action: Streamlit runs a click's callback before the page checks the session
    again, with what the previous run knew; so the callback resolves the token itself and a
    session revoked, expired or disabled meanwhile cannot act even once.
    """
    me = resolve_session(session, token, now=now)
    if me is None:
        raise SessionEnded()
    return me


def count_reviewed_in_session(
    session: Session, session_id: int, *, now: datetime | None = None
) -> int:
    """Add one to the session's exposure counter; returns the new count. A session that has
    ended counts nothing: SessionEnded, and the submission it belongs to rolls back."""
    now = now or utcnow()
    count = session.scalar(
        update(UserSession)
        .where(
            UserSession.id == session_id,
            UserSession.revoked_at.is_(None),
            UserSession.expires_at > now,
        )
        .values(items_reviewed=UserSession.items_reviewed + 1)
        .returning(UserSession.items_reviewed)
        .execution_options(synchronize_session=False)
    )
    if count is None:
        raise SessionEnded()
    return int(count)


def reset_exposure(session: Session, session_id: int) -> None:
    """After a break the counter starts again."""
    session.execute(
        update(UserSession)
        .where(UserSession.id == session_id)
        .values(items_reviewed=0)
        .execution_options(synchronize_session=False)
    )
