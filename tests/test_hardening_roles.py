"""Issue #11, roles: blind review for leads and admins, agreement over reviewers only, who may
change which project setting, the demo on a database that is not a demo, data shown as text and
never as Markdown, and the last enabled admin kept."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from builders import join_every_project, make_items, make_project, make_user
from markdown_it import MarkdownIt
from sqlalchemy import select
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from workbench.db.database import Database
from workbench.db.models import AuditEvent, Label, Role, User
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.schemas import ProjectSettings, TaxonomySpec
from workbench.services.audit import Actor
from workbench.services.auth import LocalPasswordAuthenticator, login, resolve_session
from workbench.services.demo import DEMO_PROJECT, ensure_demo_users, refuse_unless_demo_database
from workbench.services.projects import SETTING_ROLES, create_project, set_project_setting
from workbench.services.quality.aggregation import AggregationMethod, training_labels
from workbench.services.quality.agreement import agreement_report, load_counted_labels
from workbench.services.quality.overview import overlap_items, spot_check_table
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.review import flow as review
from workbench.services.review.flow import ReviewForm
from workbench.services.users import add_user, set_disabled, set_role, verify_password
from workbench.taxonomy import default_taxonomy_json
from workbench.ui.safe_text import escape_markdown

SYSTEM = Actor.system()
PW = "a long password"


def _actor(user: User) -> Actor:
    return Actor.for_user(user.name, user.id, user.role)


def _ok(decision: str = "not_violating") -> ReviewForm:
    return ReviewForm(decision=decision)


def _label(s: Session, p: Any, who: Actor, decision: str = "not_violating") -> None:
    item = review.current_item(s, p, who)
    assert item is not None and item.lease_id is not None
    review.submit_review(s, p, who, item.lease_id, _ok(decision))


# --- 6. blind review -------------------------------------------------------------------------


def _overlap_setup(s: Session, k: int) -> tuple[Any, Any, dict[str, Actor]]:
    p = make_project(s)
    (item,) = make_items(s, p, ["an overlap item"])
    enqueue(s, p, [NewEntry(item.id, overlap_target=k)], SYSTEM)
    people = {
        "alice": _actor(make_user(s, "alice")),
        "bob": _actor(make_user(s, "bob")),
        "lee": _actor(make_user(s, "lee", Role.lead)),
        "ada": _actor(make_user(s, "ada", Role.admin)),
    }
    return p, item, people


def _seen(s: Session, p: Any, who: Actor) -> tuple[list[str], list[str | None], bool]:
    (overlap,) = overlap_items(s, p, who)
    spots = spot_check_table(s, p, who)
    return (
        sorted(x.reviewer for x in overlap.labels),
        sorted(r.reviewer or "" for r in spots),
        overlap.labels_hidden,
    )


def test_a_lead_holding_a_lease_sees_no_labels_of_that_item_until_they_submit(db) -> None:
    with db.sessions.begin() as s:
        p, item, who = _overlap_setup(s, k=2)
        _label(s, p, who["alice"])
        held = review.current_item(s, p, who["lee"])
        assert held is not None and held.item_id == item.id
        # One row without a decision: neither alice's label nor how many there are shows.
        assert _seen(s, p, who["lee"]) == ([], [""], True)
        (row,) = spot_check_table(s, p, who["lee"])
        assert (row.decision, row.policies, row.reviewer) == (None, "", None)
        assert row.labels_hidden
        review.submit_review(s, p, who["lee"], held.lease_id, _ok())
        assert _seen(s, p, who["lee"]) == (["alice", "lee"], ["alice", "lee"], False)


def test_an_admin_who_may_still_be_asked_to_label_an_item_sees_none_of_its_labels(db) -> None:
    with db.sessions.begin() as s:
        p, _, who = _overlap_setup(s, k=3)
        _label(s, p, who["alice"])
        _label(s, p, who["bob"])
        # Target 3, two labels: the admin (a reviewer too) may still be given the item.
        assert _seen(s, p, who["ada"]) == ([], [""], True)
        _label(s, p, who["lee"])
        # The target is met: nobody will be asked again, so the labels are shown.
        assert _seen(s, p, who["ada"]) == (["alice", "bob", "lee"], ["alice", "bob", "lee"], False)


def test_an_item_a_lead_skipped_shows_its_labels_to_them(db) -> None:
    with db.sessions.begin() as s:
        p, _, who = _overlap_setup(s, k=3)
        _label(s, p, who["alice"])
        held = review.current_item(s, p, who["lee"])
        assert held is not None and held.lease_id is not None
        review.skip(s, p, who["lee"], held.lease_id, "not my language")
        # The queue never gives an entry twice to one person, so nothing is left to protect.
        assert _seen(s, p, who["lee"]) == (["alice"], ["alice"], False)


def _agreement_setup(s: Session) -> Any:
    """alice and bob agree on four items; the lead disagrees with both on each."""
    p = make_project(s)
    items = make_items(s, p, [f"item {n}" for n in range(4)])
    enqueue(s, p, [NewEntry(i.id, overlap_target=3) for i in items], SYSTEM)
    alice, bob = _actor(make_user(s, "alice")), _actor(make_user(s, "bob"))
    lee = _actor(make_user(s, "lee", Role.lead))
    code = "hate"
    for n in range(4):
        decision = "not_violating" if n % 2 else "violating"
        other = "violating" if n % 2 else "not_violating"
        for who, d in ((alice, decision), (bob, decision), (lee, other)):
            item = review.current_item(s, p, who)
            assert item is not None and item.lease_id is not None
            form = ReviewForm(
                decision=d,
                policies=(code,) if d == "violating" else (),
                rationale="seen" if d == "violating" else "",
            )
            review.submit_review(s, p, who, item.lease_id, form)
    return p


def test_agreement_counts_reviewers_labels_only_unless_leads_are_asked_for(db) -> None:
    with db.sessions.begin() as s:
        p = _agreement_setup(s)
        assert sorted(set(load_counted_labels(s, p)["reviewer"])) == ["alice", "bob"]
        counted = load_counted_labels(s, p, include_leads=True)
        assert sorted(set(counted["reviewer"])) == ["alice", "bob", "lee"]
        only = agreement_report(s, p, "decision", n_boot=10)
        assert (only["n_reviewers"], only["krippendorff_alpha"]) == (2, 1.0)
        everyone = agreement_report(s, p, "decision", n_boot=10, include_leads=True)
        assert everyone["n_reviewers"] == 3 and everyone["krippendorff_alpha"] < 0.5
        assert only["counted_labels"] != everyone["counted_labels"]


def test_a_leads_labels_still_train_the_model_though_agreement_leaves_them_out(db) -> None:
    with db.sessions.begin() as s:
        p = _agreement_setup(s)
        counted = training_labels(s, p, method=AggregationMethod.majority)
        # Three labels per item: alice and bob against the lead, 2/3 majority each.
        assert len(counted) == 4
        assert set(counted["n_labels"]) == {3}


def test_agreement_command_includes_leads_only_when_asked(cli: Any, db: Database) -> None:
    with db.sessions.begin() as s:
        _agreement_setup(s)
    plain = cli.json("agreement", "-p", "p", "--resamples", "0")
    assert plain["n_reviewers"] == 2
    wide = cli.json("agreement", "-p", "p", "--resamples", "0", "--include-leads")
    assert wide["n_reviewers"] == 3


# --- 7. who may change which setting --------------------------------------------------------

ENGINEER_KEYS = {
    "encoders", "retrain_every_n_labels", "selection_mix", "batch_size",
    "near_duplicate_threshold", "propagate_to_duplicates", "engine",
    "drift_psi_alert", "drift_auc_alert", "target_precision", "promotion_rule",
}  # fmt: skip
LEAD_KEYS = {
    "overlap_share", "overlap_k", "gold_rate", "gold_alert_threshold", "gold_alert_min_answers",
    "gold_window_days", "adjudicate_low_alpha_slices", "adjudication_alpha_threshold",
    "adjudication_min_slice_items", "lease_seconds", "show_model_suggestion_after_submit",
    "label_aggregation", "scan_thresholds", "scan_default_thresholds", "scan_deadline_decision",
}  # fmt: skip
# A valid value other than the default for every setting (a dotted key where it is a group).
NEW_VALUES: dict[str, tuple[str, Any]] = {
    "encoders": ("encoders.text", "hashing"),
    "retrain_every_n_labels": ("retrain_every_n_labels", 50),
    "selection_mix": ("selection_mix", {"random": 1.0}),
    "batch_size": ("batch_size", 7),
    "near_duplicate_threshold": ("near_duplicate_threshold", 0.9),
    "propagate_to_duplicates": ("propagate_to_duplicates", True),
    "engine": ("engine", "ray"),
    "overlap_share": ("overlap_share", 0.2),
    "overlap_k": ("overlap_k", 3),
    "gold_rate": ("gold_rate", 0.05),
    "gold_alert_threshold": ("gold_alert_threshold", 0.8),
    "gold_alert_min_answers": ("gold_alert_min_answers", 10),
    "gold_window_days": ("gold_window_days", 30),
    "adjudicate_low_alpha_slices": ("adjudicate_low_alpha_slices", False),
    "adjudication_alpha_threshold": ("adjudication_alpha_threshold", 0.5),
    "adjudication_min_slice_items": ("adjudication_min_slice_items", 5),
    "lease_seconds": ("lease_seconds", 600),
    "show_model_suggestion_after_submit": ("show_model_suggestion_after_submit", True),
    "label_aggregation": ("label_aggregation", "majority"),
    "drift_psi_alert": ("drift_psi_alert", 0.25),
    "drift_auc_alert": ("drift_auc_alert", 0.8),
    "target_precision": ("target_precision", 0.95),
    "promotion_rule": ("promotion_rule.max_macro_ap_drop", 0.02),
    "scan_thresholds": ("scan_thresholds", {"hate": {"review": 0.4, "block": 0.9}}),
    "scan_default_thresholds": ("scan_default_thresholds.review", 0.6),
    "scan_deadline_decision": ("scan_deadline_decision", "block"),
}
EXPECTED: dict[Role, set[str]] = {
    Role.reviewer: set(),
    Role.engineer: ENGINEER_KEYS,
    Role.lead: LEAD_KEYS,
    Role.admin: ENGINEER_KEYS | LEAD_KEYS,
}


def test_every_setting_has_a_row_in_the_role_table_and_a_value_here() -> None:
    fields = set(ProjectSettings.model_fields)
    assert set(SETTING_ROLES) == fields == set(NEW_VALUES) == ENGINEER_KEYS | LEAD_KEYS


@pytest.mark.parametrize("role", list(Role))
def test_each_role_changes_exactly_its_own_settings(sqlite_db: Database, role: Role) -> None:
    """The whole role × setting matrix, one row per role; a refusal changes and audits nothing."""
    changed: set[str] = set()
    for key, (dotted, value) in NEW_VALUES.items():
        with sqlite_db.sessions.begin() as s:
            p = make_project(s, f"p-{key.replace('_', '-')}")
            who = _actor(make_user(s, f"u-{key.replace('_', '-')}", role))
            before = dict(p.settings)
            try:
                set_project_setting(s, p, dotted, value, who)
            except PermissionDenied as exc:
                assert repr(key) in str(exc) or repr(dotted) in str(exc)
                assert p.settings == before
                events = s.scalars(
                    select(AuditEvent).where(AuditEvent.action == "project.setting_changed")
                ).all()
                assert not [e for e in events if e.project_id == p.id]
            else:
                changed.add(key)
    assert changed == EXPECTED[role]


def test_the_cli_acts_as_system_and_may_change_every_setting(cli: Any, db: Database) -> None:
    with db.sessions.begin() as s:
        make_project(s)
    for dotted, value in NEW_VALUES.values():
        out = cli.json("project", "set", "p", dotted, json.dumps(value))
        node = out["settings"]
        for part in dotted.split("."):
            node = node[part]
        assert node == value


# --- 9. the demo ------------------------------------------------------------------------------


def test_demo_refuses_a_database_with_other_users_or_projects(
    cli: Any, db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        create_project(s, "prod", SYSTEM)
        add_user(s, "ops", Role.admin, SYSTEM, password=PW)
        add_user(s, "alice", Role.lead, SYSTEM, password=PW)
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "sample"
    result = cli("demo", "--fixtures", str(fixtures), "--no-serve")
    assert result.exit_code == 1
    assert "not a demo database" in result.stderr
    assert "ops" in result.stderr and "prod" in result.stderr
    assert "Traceback" not in result.stderr
    with db.sessions() as s:
        alice = s.scalar(select(User).where(User.name == "alice"))
        assert alice is not None and alice.role == Role.lead
        assert verify_password(alice.password_hash, PW)
        assert s.scalar(select(User).where(User.name == "admin")) is None


def test_demo_checks_pass_on_an_empty_database_and_on_its_own(db: Database) -> None:
    with db.sessions.begin() as s:
        refuse_unless_demo_database(s, {"alice"})
        create_project(s, DEMO_PROJECT, SYSTEM)
        add_user(s, "alice", Role.reviewer, SYSTEM, password=None)
        refuse_unless_demo_database(s, {"alice"})
        add_user(s, "zed", Role.reviewer, SYSTEM, password=None)
        with pytest.raises(WorkbenchError, match="zed"):
            refuse_unless_demo_database(s, {"alice"})


def test_demo_sets_passwords_and_roles_through_the_audited_path_and_ends_sessions(
    db: Database,
) -> None:
    with db.sessions.begin() as s:
        add_user(s, "bob", Role.reviewer, SYSTEM, password=PW)
        add_user(s, "alice", Role.lead, SYSTEM, password=None)  # e.g. named in imported labels
        token, _ = login(s, LocalPasswordAuthenticator(), {"user_name": "bob", "password": PW})
    users = {u["name"]: u for u in ensure_demo_users(db, SYSTEM)}
    with db.sessions() as s:
        assert resolve_session(s, token) is None
        events = s.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        reset = {e.entity_id: e.details for e in events if e.action == "user.password_set"}
        assert reset["bob"] == {"sessions_ended": 1} and "alice" in reset
        roles = [(e.entity_id, e.details) for e in events if e.action == "user.role_changed"]
        assert roles == [("alice", {"old": "lead", "new": "reviewer"})]
        bob = s.scalar(select(User).where(User.name == "bob"))
        assert bob is not None
        assert verify_password(bob.password_hash, users["bob"]["password"])


# --- 12. data shown as text ------------------------------------------------------------------

PAYLOADS = [
    "![x](http://host/p.png)",
    "[click](javascript:alert(1)) <img src=x onerror=alert(2)> <b>bold</b>",
    "**bold** _it_ `code` ~~gone~~ # heading\n- item\n1. one\n> quote",
    "&amp; &#60; \\*escaped\\* $x^2$ :red[colour] https://host/a.png www.host.com",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    '<https://host/auto> [ref]: http://host/x "t"\n![ref][ref]',
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_escaped_markdown_renders_as_exactly_its_own_text(payload: str) -> None:
    md = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    rendered = md.render(escape_markdown(payload))
    assert "<img" not in rendered and "<a " not in rendered and "<b>" not in rendered
    for tag in ("<strong>", "<em>", "<code>", "<h1>", "<li>", "<blockquote>", "<table>", "<s>"):
        assert tag not in rendered
    # Every line comes back as itself, HTML-escaped as markdown-it escapes text (& < > ").
    text = rendered.replace("<p>", "").replace("</p>", "").replace("<br />", "").strip()
    assert [line.strip() for line in text.splitlines()] == [
        html.escape(line, quote=False).replace('"', "&quot;").strip()
        for line in payload.splitlines()
    ]


APP = str(Path(__file__).resolve().parents[1] / "workbench" / "ui" / "app.py")
EVIL_ID = "![x](http://host/p.png)"
EVIL_TITLE = "**Spam** ![t](http://host/t.png)"
EVIL_GUIDE = "See ![g](http://host/g.png) and [here](http://host/)"


@pytest.fixture
def evil_app(sqlite_db: Database) -> Database:
    st.cache_resource.clear()
    spec = default_taxonomy_json()
    spec["name"] = "**v1** ![n](http://host/n.png)"
    spec["policies"][0]["title"] = EVIL_TITLE
    spec["policies"][0]["guideline"] = EVIL_GUIDE
    with sqlite_db.sessions.begin() as s:
        p = create_project(s, "p", SYSTEM, taxonomy=TaxonomySpec.model_validate(spec))
        (item,) = make_items(s, p, ["an item"])
        item.external_id = EVIL_ID
        enqueue(s, p, [NewEntry(item.id)], SYSTEM)
        join_every_project(s, add_user(s, "alice", Role.reviewer, SYSTEM, password=PW))
        add_user(s, "ada", Role.admin, SYSTEM, password=PW)
    return sqlite_db


def _login(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(PW)
    at.button[0].click().run()
    return at


def _markdown_values(at: AppTest) -> list[str]:
    """Everything the page hands to a Markdown renderer: Markdown elements, captions, labels,
    help texts, alerts and expander labels."""
    out: list[str] = []
    for kind in ("markdown", "caption", "title", "header", "subheader", "info", "success",
                 "warning", "error"):  # fmt: skip
        out += [str(e.value) for e in getattr(at, kind)]
    for kind in ("checkbox", "radio", "button", "text_input", "text_area", "selectbox", "metric"):
        for w in getattr(at, kind):
            out += [str(getattr(w, "label", "") or ""), str(getattr(w, "help", "") or "")]
    out += [str(e.label) for e in at.expander]
    return out


def test_the_review_page_shows_ids_titles_and_guidelines_as_text(evil_app: Database) -> None:
    at = _login("alice")
    assert not at.exception, at.exception
    assert f"Item {EVIL_ID}" in [t.value for t in at.text]
    shown = _markdown_values(at)
    assert not [v for v in shown if "](http" in v or "**Spam" in v or "**v1" in v], shown
    hate = next(c for c in at.checkbox if c.label.startswith("hate"))
    # The compact form: the code and its key on the box, title and guideline in its help.
    assert hate.label == "hate (1)"
    assert hate.help == escape_markdown(f"{EVIL_TITLE}: {EVIL_GUIDE}")


def test_the_admin_page_shows_taxonomy_names_as_text(evil_app: Database) -> None:
    at = _login("ada")
    at._page_hash = calc_hash("admin")  # the admin page, as its address would name it
    at.run()
    assert not at.exception, at.exception
    shown = _markdown_values(at)
    assert not [v for v in shown if "](http" in v or "**Spam" in v or "**v1" in v], shown


# --- 14. the last admin ----------------------------------------------------------------------


def test_the_last_enabled_admin_can_be_neither_disabled_nor_demoted(db: Database) -> None:
    with db.sessions.begin() as s:
        ada = add_user(s, "ada", Role.admin, SYSTEM, password=PW)
        old = add_user(s, "old", Role.admin, SYSTEM, password=PW)
        set_disabled(s, old, True, SYSTEM)  # a disabled admin cannot step in
        for action in (
            lambda: set_disabled(s, ada, True, _actor(ada)),
            lambda: set_role(s, ada, Role.lead, SYSTEM),
        ):
            with pytest.raises(WorkbenchError, match="last enabled admin"):
                action()
        assert (ada.role, ada.disabled) == (Role.admin, False)
        set_disabled(s, old, False, SYSTEM)
        set_role(s, ada, Role.lead, _actor(old))  # two enabled admins: one may go
        with pytest.raises(WorkbenchError, match="last enabled admin"):
            set_disabled(s, old, True, SYSTEM)
        set_role(s, old, Role.admin, SYSTEM)  # no change of role is no demotion
        set_role(s, ada, Role.admin, SYSTEM)
        set_disabled(s, old, True, SYSTEM)


def test_the_cli_refuses_to_disable_the_last_admin_with_a_message(cli: Any, db: Database) -> None:
    with db.sessions.begin() as s:
        add_user(s, "ada", Role.admin, SYSTEM, password=PW)
    result = cli("user", "disable", "ada")
    assert result.exit_code == 1
    assert "last enabled admin" in result.stderr and "Traceback" not in result.stderr
    result = cli("user", "role", "ada", "reviewer")
    assert result.exit_code == 1 and "last enabled admin" in result.stderr
    with db.sessions() as s:
        ada = s.scalar(select(User).where(User.name == "ada"))
        assert ada is not None and (ada.role, ada.disabled) == (Role.admin, False)
        assert s.scalar(select(Label.id)) is None
