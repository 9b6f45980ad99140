"""Page-level tests with Streamlit's AppTest: login, the review form, inert content, roles."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from builders import join_every_project, make_items, make_project
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from workbench.db.database import Database
from workbench.db.models import Label, Role
from workbench.errors import PermissionDenied
from workbench.services.audit import Actor
from workbench.services.projects import get_project, set_project_setting
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.users import add_user, get_user
from workbench.ui.safe_text import escape_markdown

APP = str(Path(__file__).resolve().parents[1] / "workbench" / "ui" / "app.py")
PW = "a long password"
XSS = '<script>alert(1)</script> <img src=x onerror="alert(2)"> ![x](http://e/x.png) **bold**'


@pytest.fixture
def app_db(sqlite_db: Database) -> Database:
    st.cache_resource.clear()  # the app caches its database; each test has its own
    with sqlite_db.sessions.begin() as s:
        p = make_project(s, "p")
        items = make_items(s, p, [XSS, "second item", "third item"])
        enqueue(s, p, [NewEntry(i.id, priority=-n) for n, i in enumerate(items)], Actor.system())
        for name, role in (("alice", Role.reviewer), ("erin", Role.engineer), ("lee", Role.lead)):
            join_every_project(s, add_user(s, name, role, Actor.system(), password=PW))
        add_user(s, "ada", Role.admin, Actor.system(), password=PW)  # admins open every project
    return sqlite_db


def _run(at: AppTest) -> AppTest:
    # AppTest (Streamlit 1.5x) re-requests the finished page by its hash, which a default
    # st.navigation page (url "") does not match on the next run; "" asks for the default page.
    at._finished_page_script_hash = ""
    return at.run()


def _open(at: AppTest, url_path: str) -> AppTest:
    # A page of st.navigation is named by the hash of its url_path, as a browser's address would.
    at._page_hash = calc_hash(url_path)
    return at.run()


def _login(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(PW)
    at.button[0].click().run()
    return at


def test_wrong_password_shows_an_error_and_no_page(app_db: Database) -> None:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input(key="login_name").input("alice")
    at.text_input(key="login_password").input("not the password")
    at.button[0].click().run()
    assert any("wrong user name or password" in e.value for e in at.error)
    assert not [t for t in at.title if t.value == "Review"]


def test_reviewer_sees_the_item_as_inert_text(app_db: Database) -> None:
    at = _login("alice")
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Review"]
    # The payload is passed to st.text verbatim: no Markdown element carries it.
    assert XSS in [t.value for t in at.text]
    assert not any("<script>" in m.value for m in at.markdown)


def test_label_submitted_from_the_form_is_stored_once_and_the_next_item_shows(
    app_db: Database,
) -> None:
    at = _login("alice")
    next(r for r in at.radio if r.label == "Decision").set_value("not_violating")
    _run(at)
    next(b for b in at.button if b.label.startswith("Submit")).click()
    _run(at)
    assert not at.exception, at.exception
    assert "second item" in [t.value for t in at.text]
    with app_db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Label)) == 1


def test_violating_without_rationale_shows_the_problem_and_keeps_the_item(app_db: Database) -> None:
    at = _login("alice")
    next(r for r in at.radio if r.label == "Decision").set_value("violating")
    _run(at)
    next(b for b in at.button if b.label.startswith("Submit")).click()
    _run(at)
    # The error box, then each problem on a line of its own, naming its field.
    assert [e.value for e in at.error] == ["Could not do that:"]
    texts = [t.value for t in at.text]
    assert "- field 'rationale': a reviewer's violating label needs a rationale" in texts
    assert (
        "- field 'policies': a violating label needs at least one policy code other than 'none'"
        in texts
    )
    assert XSS in texts
    assert next(r for r in at.radio if r.label == "Decision").value == "violating"
    with app_db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Label)) == 0


def test_engineer_gets_the_engineer_page_and_no_review_page(app_db: Database) -> None:
    at = _login("erin")
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Engineer"]


def test_draft_survives_a_new_browser_session(app_db: Database) -> None:
    at = _login("alice")
    next(r for r in at.radio if r.label == "Decision").set_value("violating")
    at.text_area[0].input("the slur in the second sentence")
    _run(at)
    again = _login("alice")  # a reload: new browser session, new login
    assert next(r for r in again.radio if r.label == "Decision").value == "violating"
    assert again.text_area[0].value == "the slur in the second sentence"
    assert XSS in [t.value for t in again.text]


def test_the_login_and_review_pages_leave_the_statistics_libraries_unloaded() -> None:
    """The lead's views (statsmodels, scikit-learn, cleanlab, FAISS) load with their pages, so
    a fresh server shows its login page sooner and a reviewers-only server stays small."""
    import subprocess
    import sys

    heavy = ["statsmodels", "sklearn", "cleanlab", "faiss", "torch", "transformers", "scipy"]
    code = (
        "import sys, workbench.ui.app, workbench.ui.views.review; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
    # The lead's page does load them: the check above can see them.
    code = code.replace("workbench.ui.views.review", "workbench.ui.views.lead")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "statsmodels" in out.stdout


def test_lead_page_shows_the_overview_read_in_one_call(app_db: Database) -> None:
    at = _open(_login("lee"), "lead")
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Lead"]
    assert {"Queue health", "Reviewers", "Overlap items", "Spot checks"} <= {
        h.value for h in at.subheader
    }
    assert "0 flags on 0 items from 0 reviewers" in [t.value for t in at.text]
    assert next(m for m in at.metric if m.label == "Pending").value == "3"


def test_admin_sets_a_project_setting_from_the_admin_page(app_db: Database) -> None:
    at = _open(_login("ada"), "admin")
    assert not at.exception, at.exception
    next(t for t in at.text_input if t.label.startswith("Setting")).input("batch_size")
    next(t for t in at.text_input if t.label.startswith("Value")).input("7")
    next(b for b in at.button if b.label == "Set").click()
    at.run()
    assert not at.exception, at.exception
    # The key is what the admin typed: escaped, it renders as itself, "Set batch_size.".
    assert [s.value for s in at.success] == [f"Set {escape_markdown('batch_size')}."]
    with app_db.sessions() as s:
        assert get_project(s, "p").settings["batch_size"] == 7


def test_engineer_saves_the_batch_size_and_a_lead_may_not(app_db: Database) -> None:
    at = _open(_login("erin"), "engineer")
    assert not at.exception, at.exception
    at.number_input[0].set_value(9)
    next(b for b in at.button if b.label == "Save selection settings").click()
    at.run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Saved."]
    with app_db.sessions.begin() as s:
        project = get_project(s, "p")
        assert project.settings["batch_size"] == 9
        lee = get_user(s, "lee")
        with pytest.raises(PermissionDenied):
            set_project_setting(
                s, project, "batch_size", 3, Actor.for_user("lee", lee.id, lee.role)
            )
