"""Issue #11: every action of the admin, gold, adjudication, engineer and settings pages resolves
the session again in its own transaction, so a session that ends after the page checked it
(logged out elsewhere, expired, or its account disabled) cannot act even once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import streamlit as st
from builders import join_every_project, make_items, make_project
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from workbench.db.database import Database
from workbench.db.models import AuditEvent, GoldItem, Role, TrainingRound, UserSession
from workbench.db.types import utcnow
from workbench.services.audit import Actor
from workbench.services.auth import logout
from workbench.services.projects import get_project
from workbench.services.review import wellbeing
from workbench.services.users import add_user, get_user, set_disabled
from workbench.ui import state

APP = str(Path(__file__).resolve().parents[1] / "workbench" / "ui" / "app.py")
PW = "a long password"
ENDED = "your session has ended: log in again"

# How a session ends while its page is open: each takes the transaction and the browser's token.
Ending = Callable[[Session, str], None]


def _revoke(s: Session, token: str) -> None:
    assert logout(s, token)  # logged out in another tab


def _expire(s: Session, token: str) -> None:
    # Idle for longer than the session may be: its expiry is in the past.
    s.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))


def _disable(s: Session, token: str) -> None:
    for name in ("ada", "lee", "erin"):  # whoever is logged in: another admin disables them
        set_disabled(s, get_user(s, name), True, Actor.system())


@pytest.fixture
def app_db(sqlite_db: Database) -> Database:
    st.cache_resource.clear()  # the app caches its database; each test has its own
    with sqlite_db.sessions.begin() as s:
        make_items(s, make_project(s, "p"), ["first item", "second item"])
        for name, role in (("victim", Role.reviewer), ("erin", Role.engineer), ("lee", Role.lead)):
            join_every_project(s, add_user(s, name, role, Actor.system(), password=PW))
        add_user(s, "ada", Role.admin, Actor.system(), password=PW)
        add_user(s, "root", Role.admin, Actor.system(), password=PW)  # so ada may be disabled
    return sqlite_db


def _open(name: str, url_path: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(PW)
    at.button[0].click().run()
    at._page_hash = calc_hash(url_path)  # a page of st.navigation, as a browser's address
    at.run()
    assert not at.exception, at.exception
    return at


class SessionEndsAfterThePageCheck:
    """Ends the session once, on the next run, just after the page script checked it: the click
    is handled later in that same run, so only a check at the action itself can refuse it."""

    def __init__(self, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.db, self.monkeypatch = db, monkeypatch
        self.audit_after_end: int | None = None

    def arm(self, at: AppTest, end: Ending) -> None:
        token = at.session_state[state.TOKEN]
        checked = state.current_user

        def check_then_end():  # type: ignore[no-untyped-def]
            me = checked()
            if self.audit_after_end is None:
                with self.db.sessions.begin() as s:
                    end(s, token)
                    self.audit_after_end = s.scalar(select(func.max(AuditEvent.id))) or 0
            return me

        # app.py imports current_user from ui.state on every run, so it picks this one up.
        self.monkeypatch.setattr(state, "current_user", check_then_end)

    def assert_refused(self, at: AppTest) -> None:
        assert not at.exception, at.exception
        assert self.audit_after_end is not None  # the session did end during the click's run
        with self.db.sessions() as s:
            written = s.scalars(
                select(AuditEvent.action).where(AuditEvent.id > self.audit_after_end)
            ).all()
        assert written == [], written
        assert ENDED in [t.value for t in at.text]
        self.monkeypatch.undo()
        at.run()  # the next run checks the session at the page too: the login page
        assert [t.value for t in at.title] == ["Workbench login"]


@pytest.fixture
def ends(app_db: Database, monkeypatch: pytest.MonkeyPatch) -> SessionEndsAfterThePageCheck:
    return SessionEndsAfterThePageCheck(app_db, monkeypatch)


@pytest.mark.parametrize("end", [_revoke, _expire, _disable], ids=["revoked", "expired", "off"])
def test_admin_cannot_disable_a_user_once_the_session_has_ended(
    app_db: Database, ends: SessionEndsAfterThePageCheck, end: Ending
) -> None:
    at = _open("ada", "admin")
    next(s for s in at.selectbox if s.label == "User").set_value("victim")
    next(r for r in at.radio if r.label == "Account").set_value("disable")
    ends.arm(at, end)
    next(b for b in at.button if b.label == "Apply").click()
    at.run()
    ends.assert_refused(at)
    with app_db.sessions() as s:
        assert not get_user(s, "victim").disabled


def test_admin_cannot_set_a_project_setting_once_the_session_has_ended(
    app_db: Database, ends: SessionEndsAfterThePageCheck
) -> None:
    at = _open("ada", "admin")
    next(t for t in at.text_input if t.label.startswith("Setting")).input("batch_size")
    next(t for t in at.text_input if t.label.startswith("Value")).input("7")
    ends.arm(at, _expire)
    next(b for b in at.button if b.label == "Set").click()
    at.run()
    ends.assert_refused(at)
    with app_db.sessions() as s:
        assert get_project(s, "p").settings.get("batch_size") != 7


def test_lead_cannot_mark_gold_once_the_session_has_ended(
    app_db: Database, ends: SessionEndsAfterThePageCheck
) -> None:
    at = _open("lee", "gold")
    next(t for t in at.text_input if t.label == "Item external id").input("i0")
    next(r for r in at.radio if r.label == "Answer").set_value("not_violating")
    ends.arm(at, _disable)
    next(b for b in at.button if b.label == "Mark as gold").click()
    at.run()
    ends.assert_refused(at)
    with app_db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(GoldItem)) == 0


def test_lead_cannot_refresh_the_adjudication_queue_once_the_session_has_ended(
    app_db: Database, ends: SessionEndsAfterThePageCheck
) -> None:
    at = _open("lee", "adjudication")
    ends.arm(at, _revoke)
    next(b for b in at.button if b.label == "Refresh the queue").click()
    at.run()
    ends.assert_refused(at)  # no "adjudication.refreshed" event: nothing was written


def test_engineer_cannot_launch_a_round_once_the_session_has_ended(
    app_db: Database, ends: SessionEndsAfterThePageCheck
) -> None:
    at = _open("erin", "engineer")
    ends.arm(at, _revoke)
    next(b for b in at.button if b.label == "Launch a retrain round").click()
    at.run()
    ends.assert_refused(at)
    with app_db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TrainingRound)) == 0


def test_engineer_cannot_save_selection_settings_once_the_session_has_ended(
    app_db: Database, ends: SessionEndsAfterThePageCheck
) -> None:
    at = _open("erin", "engineer")
    at.number_input[0].set_value(9)
    ends.arm(at, _expire)
    next(b for b in at.button if b.label == "Save batch size").click()
    at.run()
    ends.assert_refused(at)
    with app_db.sessions() as s:
        assert get_project(s, "p").settings.get("batch_size") != 9


def test_my_settings_are_not_saved_once_the_session_has_ended(
    app_db: Database, ends: SessionEndsAfterThePageCheck
) -> None:
    at = _open("erin", "settings")
    blur = next(c for c in at.checkbox if c.label.startswith("Blur"))
    before = blur.value
    blur.set_value(not before)
    ends.arm(at, _revoke)
    next(b for b in at.button if b.label == "Save").click()
    at.run()
    ends.assert_refused(at)
    with app_db.sessions() as s:
        erin = get_user(s, "erin")
        mine = wellbeing.wellbeing_settings(s, Actor.for_user("erin", erin.id, erin.role))
        assert mine.blur_images == before


def test_lead_cannot_export_the_audit_trail_once_the_session_has_ended(
    app_db: Database, ends: SessionEndsAfterThePageCheck
) -> None:
    at = _open("lee", "lead")
    ends.arm(at, _disable)
    next(b for b in at.button if b.label == "Prepare audit CSV").click()
    at.run()
    ends.assert_refused(at)
    assert "audit_csv" not in at.session_state
