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
    # The role's page is never the default page (that one only switches to it), so AppTest's
    # re-request of the finished page by its hash finds it again.
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
    # The error box, then each problem once, on a line of its own, in the reviewer's words.
    assert [e.value for e in at.error] == ["Could not do that."]
    texts = [t.value for t in at.text]
    assert texts.count("A reviewer's violating label needs a rationale.") == 1
    assert "A violating label needs at least one policy code other than 'none'." in texts
    assert not [t for t in texts if "field '" in t]
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
    assert [s.value for s in at.success] == [escape_markdown("Set batch_size.")]
    assert '"batch_size": 7' in at.code[-1].value  # the settings shown are the new ones
    with app_db.sessions() as s:
        assert get_project(s, "p").settings["batch_size"] == 7


def test_engineer_saves_the_batch_size_and_a_lead_may_not(app_db: Database) -> None:
    at = _open(_login("erin"), "engineer")
    assert not at.exception, at.exception
    at.number_input[0].set_value(9)
    next(b for b in at.button if b.label == "Save batch size").click()
    at.run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == [escape_markdown("Saved the batch size.")]
    with app_db.sessions.begin() as s:
        project = get_project(s, "p")
        assert project.settings["batch_size"] == 9
        lee = get_user(s, "lee")
        with pytest.raises(PermissionDenied):
            set_project_setting(
                s, project, "batch_size", 3, Actor.for_user("lee", lee.id, lee.role)
            )


def test_submitting_without_a_decision_says_so_once_in_plain_words(app_db: Database) -> None:
    at = _login("alice")
    next(b for b in at.button if b.label.startswith("Submit")).click()
    _run(at)
    assert [e.value for e in at.error] == ["Could not do that."]
    texts = [t.value for t in at.text]
    assert texts.count("Choose a decision.") == 1
    assert not [t for t in texts if "Field required" in t or "field '" in t]


@pytest.fixture
def case_db(app_db: Database) -> Database:
    from workbench.services.quality.adjudication import open_case

    with app_db.sessions.begin() as s:
        lee = get_user(s, "lee")
        open_case(s, get_project(s, "p"), Actor.for_user("lee", lee.id, lee.role), "i0", "odd")
    return app_db


def test_a_resolved_case_leaves_the_open_list_at_once(case_db: Database) -> None:
    at = _open(_login("lee"), "adjudication")
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == 1
    decision = next(r for r in at.radio if r.label == "Final decision")
    assert decision.value is None  # no answer chosen for the lead
    next(b for b in at.button if b.label == "Record final decision").click()
    at.run()
    assert "Choose a final decision, or dismiss the case." in [e.value for e in at.error]
    next(r for r in at.radio if r.label == "Final decision").set_value("not_violating")
    next(t for t in at.text_area if t.label.startswith("Note")).input("read it twice")
    next(b for b in at.button if b.label == "Record final decision").click()
    at.run()
    assert not at.exception, at.exception
    assert [m.value for m in at.success] == [escape_markdown("Case 1 resolved.")]
    assert "No open cases." in [c.value for c in at.caption]


def test_a_marked_gold_item_shows_in_the_gold_list_at_once(app_db: Database) -> None:
    at = _open(_login("lee"), "gold")
    assert not at.exception, at.exception
    assert "No gold items yet." in [c.value for c in at.caption]
    assert next(r for r in at.radio if r.label == "Answer").value is None
    next(t for t in at.text_input if t.label == "Item external id").input("i1")
    next(r for r in at.radio if r.label == "Answer").set_value("not_violating")
    next(b for b in at.button if b.label == "Mark as gold").click()
    at.run()
    assert not at.exception, at.exception
    assert [m.value for m in at.success] == [escape_markdown("Marked i1 as gold.")]
    assert "No gold items yet." not in [c.value for c in at.caption]
    assert list(at.dataframe[-1].value["external_id"]) == ["i1"]


def test_a_disabled_user_shows_disabled_at_once_and_nothing_contradicts_it(
    app_db: Database,
) -> None:
    at = _open(_login("ada"), "admin")
    assert not at.exception, at.exception
    users = at.dataframe[0].value.set_index("name")
    assert users.loc["alice", "status"] == "active"
    assert users.loc["alice", "last login"] == "never"
    next(s for s in at.selectbox if s.label == "User").set_value("alice")
    next(r for r in at.radio if r.label == "Account").set_value("disable")
    next(b for b in at.button if b.label == "Apply").click()
    at.run()
    assert not at.exception, at.exception
    assert [m.value for m in at.success] == [escape_markdown("Updated alice.")]
    users = at.dataframe[0].value.set_index("name")
    assert users.loc["alice", "status"] == "disabled"
    assert "can log in" not in users.columns
    assert users.loc["ada", "last login"] != "never"
    assert users.loc["ada", "locked out"] == "no"


def test_a_low_alpha_slice_is_one_entry_listing_its_items(app_db: Database) -> None:
    from workbench.db.models import Adjudication, AdjudicationReason, AdjudicationStatus, Item

    with app_db.sessions.begin() as s:
        project = get_project(s, "p")
        for item in s.scalars(select(Item).where(Item.project_id == project.id)):
            s.add(
                Adjudication(
                    project_id=project.id, item_id=item.id, status=AdjudicationStatus.open,
                    reason=AdjudicationReason.low_alpha,
                    reason_detail="low-alpha slice modality=text, alpha 0.100",
                    created_by="lee", policies=[],
                )
            )  # fmt: skip
    at = _open(_login("lee"), "adjudication")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["case"]) == ["slice modality=text"]
    assert table["items"][0] == "i0, i1, i2" and table["detail"][0] == "3 items"
    assert list(at.dataframe[1].value["item"]) == ["i0", "i1", "i2"]
    next(t for t in at.text_area if t.label.startswith("Note")).input("expected on this slice")
    next(b for b in at.button if b.label.startswith("Dismiss the slice")).click()
    at.run()
    assert not at.exception, at.exception
    assert [m.value for m in at.success] == [
        escape_markdown("Slice modality=text dismissed (3 cases).")
    ]
    assert "No open cases." in [c.value for c in at.caption]


def test_the_selection_mix_is_sliders_saved_as_shares_that_sum_to_one(app_db: Database) -> None:
    at = _open(_login("erin"), "engineer")
    assert not at.exception, at.exception
    assert next(b for b in at.button if b.label == "Save selection mix").disabled  # unchanged
    at.slider(key="mix_seals").set_value(0.5)
    at.slider(key="mix_random").set_value(0.3)
    at.run()
    # Weights 0.7, 0.5, 0.3 become shares of 1.5.
    assert any("cluster_margin 47%, seals 33%, random 20%" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Save selection mix").click()
    at.run()
    assert not at.exception, at.exception
    with app_db.sessions() as s:
        mix = get_project(s, "p").settings["selection_mix"]
    assert mix == {"cluster_margin": 0.467, "seals": 0.333, "random": 0.2}
    assert sum(mix.values()) == pytest.approx(1.0, abs=1e-9)


def test_normalised_mix_sums_to_one_and_refuses_all_zero() -> None:
    from workbench.ui.views.engineer import normalise_mix

    assert normalise_mix({"a": 1.0, "b": 1.0, "c": 1.0}) == {"a": 0.334, "b": 0.333, "c": 0.333}
    assert normalise_mix({"a": 0.0, "b": 0.4}) == {"b": 1.0}
    with pytest.raises(Exception, match="at least one strategy"):
        normalise_mix({"a": 0.0})


def test_admin_edits_settings_in_a_form_built_from_the_schema(app_db: Database) -> None:
    at = _open(_login("ada"), "admin")
    assert not at.exception, at.exception
    overlap = at.number_input(key="setting_overlap_k")
    assert overlap.help == "reviewers per overlap item"  # the schema's description
    overlap.set_value(3)
    at.checkbox(key="setting_propagate_to_duplicates").check()
    next(b for b in at.button if b.label == "Save settings").click()
    at.run()
    assert not at.exception, at.exception
    assert [m.value for m in at.success] == [
        escape_markdown("Saved overlap_k, propagate_to_duplicates.")
    ]
    with app_db.sessions() as s:
        settings = get_project(s, "p").settings
    assert settings["overlap_k"] == 3 and settings["propagate_to_duplicates"] is True
    assert at.number_input(key="setting_overlap_k").value == 3
