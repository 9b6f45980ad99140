"""Login with local accounts: slow hashes, server-side sessions, expiry, logout, throttling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from workbench.db.models import AuditEvent, Role
from workbench.db.types import utcnow
from workbench.services.audit import Actor
from workbench.services.auth import (
    CLIENT_FREE_FAILURES,
    CLIENT_MAX_DELAY_SECONDS,
    NAME_FREE_FAILURES,
    NAME_MAX_DELAY_SECONDS,
    SESSION_IDLE_SECONDS,
    AuthenticationError,
    LocalPasswordAuthenticator,
    LoginThrottle,
    LoginThrottled,
    backoff,
    log_in,
    login,
    logout,
    resolve_session,
)
from workbench.services.users import add_user, revoke_user_sessions, set_disabled, set_password

PW = "correct horse battery"


def _user(s, name="alice", role=Role.reviewer):  # type: ignore[no-untyped-def]
    return add_user(s, name, role, Actor.system(), password=PW)


def test_login_gives_a_token_that_resolves_to_the_user_and_role(db) -> None:
    auth = LocalPasswordAuthenticator()
    with db.sessions.begin() as s:
        _user(s, role=Role.lead)
        token, _who = login(s, auth, {"user_name": "alice", "password": PW})
    with db.sessions.begin() as s:
        me = resolve_session(s, token)
        assert me is not None and me.name == "alice" and me.role == Role.lead
        assert Role.reviewer in me.actor.roles  # a lead may also review
        assert resolve_session(s, token + "x") is None


def test_wrong_password_and_unknown_user_fail_the_same_way(db) -> None:
    auth = LocalPasswordAuthenticator()
    with db.sessions.begin() as s:
        _user(s)
    for creds in (
        {"user_name": "alice", "password": "nope-nope"},
        {"user_name": "bob", "password": PW},
    ):
        with db.sessions.begin() as s, pytest.raises(AuthenticationError) as err:
            login(s, auth, creds)
        assert "wrong user name or password" in err.value.message


def test_session_expires_after_idle_time_and_logout_revokes_it(db) -> None:
    auth = LocalPasswordAuthenticator()
    now = utcnow()
    with db.sessions.begin() as s:
        _user(s)
        token, _ = login(s, auth, {"user_name": "alice", "password": PW}, now=now)
        token2, _ = login(s, auth, {"user_name": "alice", "password": PW}, now=now)
    with db.sessions.begin() as s:
        later = now + timedelta(seconds=SESSION_IDLE_SECONDS + 1)
        assert resolve_session(s, token, now=later) is None
        assert resolve_session(s, token2, now=now + timedelta(seconds=10)) is not None
        assert logout(s, token2)
        assert resolve_session(s, token2, now=now + timedelta(seconds=11)) is None
        assert not logout(s, token2)


def test_disabling_a_user_ends_their_sessions_at_once(db) -> None:
    auth = LocalPasswordAuthenticator()
    with db.sessions.begin() as s:
        user = _user(s)
        token, _ = login(s, auth, {"user_name": "alice", "password": PW})
        set_disabled(s, user, True, Actor.system())
        assert resolve_session(s, token) is None
        with pytest.raises(AuthenticationError):
            login(s, auth, {"user_name": "alice", "password": PW})
        set_disabled(s, user, False, Actor.system())
        assert revoke_user_sessions(s, user) == 0  # disabling ended it already
        assert resolve_session(s, token) is None


def test_a_password_reset_ends_the_users_other_sessions(db) -> None:
    auth = LocalPasswordAuthenticator()
    with db.sessions.begin() as s:
        user = _user(s)
        old_token, _ = login(s, auth, {"user_name": "alice", "password": PW})
        own_token, _ = login(s, auth, {"user_name": "alice", "password": PW})
        own = resolve_session(s, own_token)
        assert own is not None
        # A user changing their own password keeps the session they do it from.
        ended = set_password(
            s, user, "another long password", own.actor, keep_session_id=own.session_id
        )
        assert ended == 1
        assert resolve_session(s, old_token) is None
        assert resolve_session(s, own_token) is not None
        # An admin's reset ends them all, and says so in the audit log.
        assert set_password(s, user, "a third long password", Actor.system()) == 1
        assert resolve_session(s, own_token) is None
        event = s.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "user.password_set")
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event is not None and event.details == {"sessions_ended": 1}


def test_repeated_failures_are_throttled_even_with_the_right_password(db) -> None:
    auth = LocalPasswordAuthenticator(LoginThrottle())
    now = utcnow()
    with db.sessions.begin() as s:
        _user(s)
    # Three free mistakes, each at once after the other.
    for n in range(NAME_FREE_FAILURES):
        with db.sessions.begin() as s, pytest.raises(AuthenticationError) as err:
            login(s, auth, {"user_name": "alice", "password": "bad-pass"}, now=now)
        assert not isinstance(err.value, LoginThrottled), n
    # The fourth try at the same instant is refused without checking the password.
    with db.sessions.begin() as s, pytest.raises(LoginThrottled) as err:
        login(s, auth, {"user_name": "alice", "password": PW}, now=now)
    assert err.value.retry_after > 0
    # After waiting, the right password works and resets the count.
    with db.sessions.begin() as s:
        login(s, auth, {"user_name": "alice", "password": PW}, now=now + timedelta(seconds=2))


def test_delay_grows_and_is_capped_rather_than_a_lockout() -> None:
    waits = [backoff(n, NAME_FREE_FAILURES, NAME_MAX_DELAY_SECONDS) for n in range(40)]
    assert waits[:NAME_FREE_FAILURES] == [0] * NAME_FREE_FAILURES
    assert waits[3] < waits[4] < waits[5]
    assert max(waits) == NAME_MAX_DELAY_SECONDS
    client = [backoff(n, CLIENT_FREE_FAILURES, CLIENT_MAX_DELAY_SECONDS) for n in range(40)]
    assert client[CLIENT_FREE_FAILURES - 1] == 0 and max(client) == 15 * 60


def test_failed_logins_are_kept_even_though_the_request_fails(db) -> None:
    auth = LocalPasswordAuthenticator(LoginThrottle())
    now = utcnow()
    with db.sessions.begin() as s:
        _user(s)
    for _ in range(NAME_FREE_FAILURES):
        with pytest.raises(AuthenticationError):
            log_in(db.sessions, auth, {"user_name": "alice", "password": "bad-pass"}, now=now)
    with pytest.raises(LoginThrottled):
        log_in(db.sessions, auth, {"user_name": "alice", "password": PW}, now=now)
    token, me = log_in(
        db.sessions, auth, {"user_name": "alice", "password": PW}, now=now + timedelta(seconds=2)
    )
    assert token and me.name == "alice"
