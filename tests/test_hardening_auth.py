"""Issue #11 hardening of login and sessions: attempts serialised per name, limits per client and
for the whole server, one message for every failure, no typed name in the audit trail, and a
session checked again by every action, so a revoked one cannot act even once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import streamlit as st
from builders import join_every_project, make_items, make_project
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from workbench.db.database import Database
from workbench.db.models import AuditEvent, Label, LoginAttempt, Role, UserSession
from workbench.db.types import utcnow
from workbench.services.audit import Actor
from workbench.services.auth import (
    CLIENT_FREE_FAILURES,
    FAILED_LOGIN,
    NAME_FREE_FAILURES,
    NAME_MAX_DELAY_SECONDS,
    AuthenticationError,
    LocalPasswordAuthenticator,
    LoginThrottle,
    LoginThrottled,
    SessionEnded,
    client_key,
    count_reviewed_in_session,
    log_in,
    logout,
    require_session,
)
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.users import add_user, set_disabled

PW = "correct horse battery"
APP = str(Path(__file__).resolve().parents[1] / "workbench" / "ui" / "app.py")


def _auth(**limits: int) -> LocalPasswordAuthenticator:
    # A throttle of its own per test: the per-client counts live in the process.
    return LocalPasswordAuthenticator(LoginThrottle(**limits))


def _creds(name: str, password: str) -> dict[str, str]:
    return {"user_name": name, "password": password}


def _try(db: Database, auth, name, password, *, client, now):  # type: ignore[no-untyped-def]
    """'ok', 'wrong' (the password was checked) or 'throttled' (refused unchecked)."""
    try:
        log_in(db.sessions, auth, _creds(name, password), client=client, now=now)
    except LoginThrottled:
        return "throttled"
    except AuthenticationError:
        return "wrong"
    return "ok"


def test_twelve_parallel_wrong_passwords_for_one_name_check_at_most_the_free_ones(db) -> None:
    with db.sessions.begin() as s:
        add_user(s, "alice", Role.reviewer, Actor.system(), password=PW)
    auth, now = _auth(), utcnow()
    start = threading.Barrier(12)

    def attempt(n: int) -> str:
        start.wait()  # all twelve at once, each from a client of its own
        return _try(db, auth, "alice", f"guess-{n}-wrong", client=f"10.0.0.{n}", now=now)

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(attempt, range(12)))
    assert outcomes.count("wrong") == NAME_FREE_FAILURES, outcomes
    assert outcomes.count("throttled") == 12 - NAME_FREE_FAILURES
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(LoginAttempt)) == NAME_FREE_FAILURES


def test_a_flood_of_wrong_passwords_keeps_the_real_user_out_a_minute_at_most(db) -> None:
    with db.sessions.begin() as s:
        add_user(s, "alice", Role.reviewer, Actor.system(), password=PW)
    auth, t = _auth(), utcnow()
    checked = 0
    for n in range(1000):  # a distributed attacker: a new client each second
        outcome = _try(db, auth, "alice", "wrong-guess", client=f"10.1.{n // 250}.{n % 250}", now=t)
        checked += outcome == "wrong"
        t += timedelta(seconds=1)
        if checked == 12:
            break
    assert checked == 12  # past the old lockout: the name was never locked, only slowed
    # However long the flood ran, the real user waits at most the cap after its last guess.
    later = t + timedelta(seconds=NAME_MAX_DELAY_SECONDS)
    assert _try(db, auth, "alice", PW, client="192.0.2.7", now=later) == "ok"


def test_one_client_is_slowed_down_across_many_names(db) -> None:
    auth, now = _auth(), utcnow()
    outcomes = [
        _try(db, auth, f"name{n}", "wrong-guess", client="198.51.100.9", now=now)
        for n in range(CLIENT_FREE_FAILURES + 3)
    ]
    assert outcomes == ["wrong"] * CLIENT_FREE_FAILURES + ["throttled"] * 3
    # Another client is not slowed by that one.
    assert _try(db, auth, "name0", "wrong-guess", client="203.0.113.1", now=now) == "wrong"


def test_ipv6_clients_are_counted_per_slash_64() -> None:
    assert client_key("2001:db8:1:2::1", "s") == client_key("2001:db8:1:2:ffff::9", "s")
    assert client_key("2001:db8:1:3::1", "s") != client_key("2001:db8:1:2::1", "s")
    assert client_key("192.0.2.1", "s") != client_key("192.0.2.2", "s")
    assert client_key(None, "session-a") != client_key(None, "session-b")


def test_a_flood_across_the_server_trips_the_global_limit(db) -> None:
    auth, now = _auth(global_failures_per_minute=20), utcnow()
    with db.sessions.begin() as s:
        s.add_all(
            LoginAttempt(user_name=f"n{k}", at=now - timedelta(seconds=30), success=False)
            for k in range(20)
        )
    assert _try(db, auth, "fresh", "wrong-guess", client="192.0.2.50", now=now) == "throttled"
    # A minute after the flood the server checks passwords again.
    later = now + timedelta(seconds=31)
    assert _try(db, auth, "fresh", "wrong-guess", client="192.0.2.50", now=later) == "wrong"


def test_every_failure_and_every_refusal_reads_the_same_for_known_and_unknown_names(db) -> None:
    with db.sessions.begin() as s:
        add_user(s, "alice", Role.reviewer, Actor.system(), password=PW)
        gone = add_user(s, "gone", Role.reviewer, Actor.system(), password=PW)
        set_disabled(s, gone, True, Actor.system())
    auth, now = _auth(), utcnow()
    failures, refusals = set(), set()
    for name, password in (("alice", "wrong-guess"), ("nobody", PW), ("gone", PW)):
        for n in range(NAME_FREE_FAILURES + 1):
            try:
                log_in(db.sessions, auth, _creds(name, password), client=f"{name}{n}", now=now)
            except LoginThrottled as exc:
                refusals.add(exc.message)
            except AuthenticationError as exc:
                failures.add(exc.message)
    assert failures == {FAILED_LOGIN}
    assert len(refusals) == 1
    assert not any(n in m for m in refusals for n in ("alice", "nobody", "gone"))


def test_a_failed_login_for_an_unknown_name_stores_no_typed_name(db) -> None:
    typed = "Tr0ub4dor&3-typed-in-the-name-field"
    with db.sessions.begin() as s:
        add_user(s, "alice", Role.reviewer, Actor.system(), password=PW)
    auth = _auth()
    for name in (typed, "alice"):
        with pytest.raises(AuthenticationError):
            log_in(db.sessions, auth, _creds(name, "wrong-guess"), client="192.0.2.1")
    with db.sessions() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "auth.login_failed")).all()
        stored = [repr((e.actor, e.entity_id, e.details)) for e in events]
        stored += [a.user_name for a in s.scalars(select(LoginAttempt))]
    assert len(events) == 2
    assert not any(typed in row for row in stored), stored
    assert any("alice" in row for row in stored)  # a real account's failures keep its name


def test_a_revoked_or_expired_session_is_refused_by_the_service(db) -> None:
    auth, now = _auth(), utcnow()
    with db.sessions.begin() as s:
        add_user(s, "alice", Role.reviewer, Actor.system(), password=PW)
    token, me = log_in(db.sessions, auth, _creds("alice", PW), client="c", now=now)
    with db.sessions.begin() as s:
        assert require_session(s, token, now=now).user_id == me.user_id
        with pytest.raises(SessionEnded):
            require_session(s, token, now=now + timedelta(days=1))
        logout(s, token, now=now)
    with db.sessions.begin() as s, pytest.raises(SessionEnded):
        require_session(s, token, now=now)
    with db.sessions.begin() as s, pytest.raises(SessionEnded):
        # The exposure counter of a submission: a stale session id cannot count, so the
        # submission it belongs to rolls back.
        count_reviewed_in_session(s, me.session_id)
    with db.sessions() as s:
        assert s.get_one(UserSession, me.session_id).items_reviewed == 0


@pytest.fixture
def app_db(sqlite_db: Database) -> Database:
    st.cache_resource.clear()  # the app caches its database; each test has its own
    with sqlite_db.sessions.begin() as s:
        p = make_project(s, "p")
        items = make_items(s, p, ["first item", "second item"])
        enqueue(s, p, [NewEntry(i.id, priority=-n) for n, i in enumerate(items)], Actor.system())
        join_every_project(s, add_user(s, "alice", Role.reviewer, Actor.system(), password=PW))
    return sqlite_db


def test_a_click_after_the_session_was_revoked_records_nothing(app_db: Database) -> None:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input(key="login_name").input("alice")
    at.text_input(key="login_password").input(PW)
    at.button[0].click().run()
    next(r for r in at.radio if r.label == "Decision").set_value("not_violating")
    at._finished_page_script_hash = ""  # see test_ui_apptest._run
    at.run()
    assert "first item" in [t.value for t in at.text]
    # Logged out elsewhere (or disabled by an admin) while this page stays open.
    with app_db.sessions.begin() as s:
        assert logout(s, at.session_state["auth_token"])
    next(b for b in at.button if b.label.startswith("Submit")).click()
    at._finished_page_script_hash = ""
    at.run()
    assert not at.exception, at.exception
    with app_db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Label)) == 0
    assert [t.value for t in at.title] == ["Workbench login"]
