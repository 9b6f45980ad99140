"""Project membership (issue 11 item 8): admins open every project, everyone else only the
projects they are members of, checked in the services, the CLI and the UI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from builders import make_items, make_project, make_user
from migration_rows import fill
from sqlalchemy import select, text
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from workbench.db import migrate
from workbench.db.database import Database
from workbench.db.engine import make_engine
from workbench.db.models import AuditEvent, LabelSource, Project, Role, User
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.services.audit import Actor
from workbench.services.demo import DEMO_PROJECT, DEMO_USERS, ensure_demo_users
from workbench.services.labels.record import record_label
from workbench.services.labels.validate import parse_label_input
from workbench.services.membership import (
    add_member,
    is_member,
    members_of,
    projects_for,
    remove_member,
)
from workbench.services.projects import create_project, get_project, set_project_setting
from workbench.services.quality import adjudication, gold
from workbench.services.quality.audit_export import AuditFilter, export_audit_csv
from workbench.services.quality.charts import agreement_dashboard
from workbench.services.quality.overview import lead_overview
from workbench.services.queue.batch import Submission, submit_batch
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.queue.lease import lease_batch
from workbench.services.review import flow as review
from workbench.services.select.batch import select_batch
from workbench.services.train.rounds import list_rounds, request_round
from workbench.services.train.train import list_model_versions
from workbench.services.users import add_user

SYSTEM = Actor.system()
APP = str(Path(__file__).resolve().parents[1] / "workbench" / "ui" / "app.py")
PW = "a long password"


def _actor(user: User) -> Actor:
    return Actor.for_user(user.name, user.id, user.role)


def _queued_project(s: Any, name: str, n: int = 3) -> Project:
    p = make_project(s, name, members=False)
    items = make_items(s, p, [f"{name} text {k}" for k in range(n)], prefix=name)
    enqueue(s, p, [NewEntry(i.id, priority=-k) for k, i in enumerate(items)], SYSTEM)
    return p


def _team(s: Any, p: Project, *users: User) -> None:
    for u in users:
        add_member(s, p, u, SYSTEM)


# --- the migration ---------------------------------------------------------------------------


def test_upgrade_makes_every_enabled_user_a_member_of_every_project(database_url: str) -> None:
    """An upgraded database behaves as before: the backfill adds every enabled user to every
    existing project, and leaves disabled accounts out."""
    engine = make_engine(database_url)
    revisions = [str(h["revision"]) for h in reversed(migrate.history(engine))]
    before = revisions[: revisions.index("0010_project_membership")]
    for rev in before:
        migrate.upgrade(engine, rev)
        with engine.begin() as conn:
            fill(conn, rev)
    with engine.begin() as conn:  # a second project, made before the upgrade
        conn.execute(
            text(
                "INSERT INTO projects (id, name, settings, created_at) "
                "SELECT 2, 'q', settings, created_at FROM projects WHERE id = 1"
            )
        )
    migrate.upgrade(engine, "0010_project_membership")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT project_id, user_id, added_by FROM project_members")).all()
    assert sorted(tuple(r) for r in rows) == [
        (1, 1, "migration"), (1, 2, "migration"), (2, 1, "migration"), (2, 2, "migration"),
    ]  # fmt: skip
    engine.dispose()


# --- the rule --------------------------------------------------------------------------------


def test_admins_open_every_project_others_only_theirs(db: Database) -> None:
    with db.sessions.begin() as s:
        p, q = make_project(s, "p", members=False), make_project(s, "q", members=False)
        rita = make_user(s, "rita", members=False)
        ada = make_user(s, "ada", Role.admin, members=False)
        _team(s, p, rita)
        assert projects_for(s, rita) == ["p"] and projects_for(s, _actor(rita)) == ["p"]
        assert projects_for(s, ada) == ["p", "q"] and projects_for(s, SYSTEM) == ["p", "q"]
        assert is_member(s, rita, p) and not is_member(s, rita, q)
        lee = make_user(s, "lee", Role.lead, members=False)
        assert projects_for(s, lee) == [] and not is_member(s, _actor(lee), p)


def test_adding_and_removing_members_is_for_admins_and_audited(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s, "p", members=False)
        rita = make_user(s, "rita", members=False)
        lee = make_user(s, "lee", Role.lead, members=False)
        ada = make_user(s, "ada", Role.admin, members=False)
        _team(s, p, lee)
        with pytest.raises(PermissionDenied, match="admin"):
            add_member(s, p, rita, _actor(lee))
        assert add_member(s, p, rita, _actor(ada)) is True
        assert add_member(s, p, rita, _actor(ada)) is False  # already: nothing written
        assert [m.name for m in members_of(s, p, _actor(ada))] == ["lee", "rita"]
        remove_member(s, p, rita, _actor(ada))
        with pytest.raises(WorkbenchError, match="not a member"):
            remove_member(s, p, rita, _actor(ada))
        events = s.execute(
            select(AuditEvent.action, AuditEvent.actor, AuditEvent.entity_id).where(
                AuditEvent.action.like("project.member%")
            ).order_by(AuditEvent.id)
        ).all()  # fmt: skip
    assert [tuple(e) for e in events] == [
        ("project.member_added", "system", "lee"),
        ("project.member_added", "ada", "rita"),
        ("project.member_removed", "ada", "rita"),
    ]


def test_a_project_made_by_a_person_has_them_as_member_and_by_the_cli_no_one(db: Database) -> None:
    with db.sessions.begin() as s:
        ada = make_user(s, "ada", Role.admin, members=False)
        mine = create_project(s, "mine", _actor(ada))
        theirs = create_project(s, "theirs", SYSTEM)
        assert [m.name for m in members_of(s, mine, SYSTEM)] == ["ada"]
        assert members_of(s, theirs, SYSTEM) == []


def test_demo_users_are_members_of_the_demo_project(sqlite_db: Database) -> None:
    """`workbench demo` must still work for every role: its accounts join the demo project."""
    with sqlite_db.sessions.begin() as s:
        create_project(s, DEMO_PROJECT, SYSTEM)
    ensure_demo_users(sqlite_db, SYSTEM)
    with sqlite_db.sessions() as s:
        for name, _role in DEMO_USERS:
            user = s.scalars(select(User).where(User.name == name)).one()
            assert projects_for(s, user) == [DEMO_PROJECT], name
        assert {m.name for m in members_of(s, get_project(s, DEMO_PROJECT), SYSTEM)} == {
            name for name, role in DEMO_USERS
        }


# --- enforced in the services, per area --------------------------------------------------------


def test_review_flow_refuses_a_non_member_and_serves_a_member(db: Database) -> None:
    with db.sessions.begin() as s:
        p = _queued_project(s, "p")
        alice = make_user(s, "alice", members=False)
        with pytest.raises(PermissionDenied, match="not a member of project 'p'"):
            review.current_item(s, p, _actor(alice))
        _team(s, p, alice)
        item = review.current_item(s, p, _actor(alice))
        assert item is not None
        lease_id = item.lease_id
    with db.sessions.begin() as s:  # removed while holding a lease: the submit is refused
        p, alice = get_project(s, "p"), s.scalars(select(User).where(User.name == "alice")).one()
        remove_member(s, p, alice, SYSTEM)
        with pytest.raises(PermissionDenied, match="not a member"):
            review.submit_review(
                s, p, _actor(alice), lease_id, review.ReviewForm(decision="not_violating")
            )


def test_batched_leases_and_submits_refuse_a_non_member(db: Database) -> None:
    with db.sessions.begin() as s:
        p = _queued_project(s, "p")
        bob = make_user(s, "bob", members=False)
        with pytest.raises(PermissionDenied, match="not a member"):
            lease_batch(s, p.id, bob.id, 2)
        _team(s, p, bob)
        leased = lease_batch(s, p.id, bob.id, 2)
        assert len(leased) == 2
        remove_member(s, p, bob, SYSTEM)
        data = parse_label_input({"decision": "not_violating", "idempotency_key": "x"})
        result = submit_batch(s, bob, [Submission(le.lease_id, data) for le in leased])
        assert set(result.rejected) == {le.lease_id for le in leased}
        assert all("not a member" in why for why in result.rejected.values())


def test_recording_a_label_needs_membership(db: Database) -> None:
    with db.sessions.begin() as s:
        p = _queued_project(s, "p", n=1)
        (item,) = make_items(s, p, ["one more"], prefix="x")
        carol = make_user(s, "carol", members=False)
        data = parse_label_input({"decision": "not_violating", "idempotency_key": "k1"})
        with pytest.raises(PermissionDenied, match="not a member"):
            record_label(s, p, item, carol, data, source=LabelSource.human, actor=_actor(carol))
        _team(s, p, carol)
        label, created = record_label(
            s, p, item, carol, data, source=LabelSource.human, actor=_actor(carol)
        )
        assert created and label.reviewer_id == carol.id


def test_lead_read_outs_adjudication_and_gold_need_membership(db: Database) -> None:
    with db.sessions.begin() as s:
        p = _queued_project(s, "p")
        lee = _actor(make_user(s, "lee", Role.lead, members=False))
        calls = {
            "overview": lambda: lead_overview(s, p, lee),
            "agreement": lambda: agreement_dashboard(s, p, lee),
            "adjudication": lambda: adjudication.adjudication_cases(s, p, lee),
            "gold list": lambda: gold.list_gold(s, p, lee),
            "gold mark": lambda: gold.mark_gold(s, p, lee, "p0", "not_violating"),
        }
        for name, call in calls.items():
            with pytest.raises(PermissionDenied, match="not a member"):
                call()
            assert name
        _team(s, p, s.get_one(User, lee.user_id))
        for call in calls.values():
            call()  # a member gets through


def test_audit_export_names_a_project_its_lead_is_a_member_of(db: Database, tmp_path: Path) -> None:
    with db.sessions.begin() as s:
        p, q = make_project(s, "p", members=False), make_project(s, "q", members=False)
        lee = make_user(s, "lee", Role.lead, members=False)
        ada = make_user(s, "ada", Role.admin, members=False)
        _team(s, p, lee)
        lead, admin = _actor(lee), _actor(ada)
        assert p and q
    out = tmp_path / "a.csv"
    with pytest.raises(PermissionDenied, match="not a member of project 'q'"):
        export_audit_csv(db, out, lead, AuditFilter(project="q"))
    with pytest.raises(PermissionDenied, match="every project"):
        export_audit_csv(db, out, lead)
    assert not out.exists()
    assert export_audit_csv(db, out, lead, AuditFilter(project="p")).rows > 0
    assert export_audit_csv(db, out, admin).rows > 0


def test_engineer_actions_need_membership(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s, "p", members=False)
        erin = make_user(s, "erin", Role.engineer, members=False)
        eng = _actor(erin)
        with pytest.raises(PermissionDenied, match="not a member"):
            request_round(s, p, eng, refill_queue=False)
        with pytest.raises(PermissionDenied, match="not a member"):
            set_project_setting(s, p, "batch_size", 7, eng)
        for read in (list_rounds, list_model_versions):
            with pytest.raises(PermissionDenied, match="not a member"):
                read(s, p, eng)
    with pytest.raises(PermissionDenied, match="not a member"):
        select_batch(db, "p", "random", 1, eng)
    with db.sessions.begin() as s:
        p = get_project(s, "p")
        _team(s, p, s.get_one(User, erin.id))
        request_round(s, p, eng, refill_queue=False)
        assert set_project_setting(s, p, "batch_size", 7, eng).batch_size == 7
        assert len(list_rounds(s, p, eng)) == 1 and list_model_versions(s, p, eng) == []


def test_a_child_safety_queue_is_closed_to_all_but_its_team(db: Database, tmp_path: Path) -> None:
    """Two people work the child_safety queue; every other reviewer, lead and engineer is
    refused its items, its lead read-outs and its audit trail, while the rest stays open."""
    with db.sessions.begin() as s:
        cs = _queued_project(s, "child_safety")
        general = _queued_project(s, "general")
        team = [make_user(s, "cs_reviewer", members=False),
                make_user(s, "cs_lead", Role.lead, members=False)]  # fmt: skip
        others = [make_user(s, "rita", members=False),
                  make_user(s, "lee", Role.lead, members=False),
                  make_user(s, "erin", Role.engineer, members=False)]  # fmt: skip
        _team(s, cs, *team)
        _team(s, general, *team, *others)
        actors = {u.name: _actor(u) for u in team + others}
        assert review.current_item(s, cs, actors["cs_reviewer"]) is not None
        assert review.current_item(s, cs, actors["cs_lead"]) is not None  # a lead also reviews
        lead_overview(s, cs, actors["cs_lead"])
        for name in ("rita", "lee"):
            with pytest.raises(PermissionDenied, match="child_safety"):
                review.current_item(s, cs, actors[name])
            assert review.current_item(s, general, actors[name]) is not None
        with pytest.raises(PermissionDenied, match="child_safety"):
            lead_overview(s, cs, actors["lee"])
        with pytest.raises(PermissionDenied, match="child_safety"):
            request_round(s, cs, actors["erin"], refill_queue=False)
        for u in others:
            assert "child_safety" not in projects_for(s, u)
    out = tmp_path / "cs.csv"
    with pytest.raises(PermissionDenied, match="child_safety"):
        export_audit_csv(db, out, actors["lee"], AuditFilter(project="child_safety"))
    assert export_audit_csv(db, out, actors["cs_lead"], AuditFilter(project="child_safety")).rows


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_adds_removes_and_lists_members(cli: Any) -> None:
    assert cli("project", "create", "p").exit_code == 0
    assert cli("user", "add", "rita", input="a long password\n").exit_code == 0
    assert cli.json("user", "projects", "rita")["projects"] == []
    added = cli.json("user", "add-to-project", "rita", "-p", "p")
    assert added == {"name": "rita", "project": "p", "added": True}
    assert cli.json("user", "add-to-project", "rita", "-p", "p")["added"] is False
    assert cli.json("user", "projects", "rita")["projects"] == ["p"]
    members = cli.json("project", "members", "-p", "p")["members"]
    assert [(m["name"], m["role"], m["added_by"]) for m in members] == [
        ("rita", "reviewer", "system")
    ]
    assert cli.json("user", "remove-from-project", "rita", "-p", "p")["removed"] is True
    assert cli.json("project", "members", "-p", "p")["members"] == []


def test_cli_names_an_unknown_user_or_project(cli: Any) -> None:
    assert cli("project", "create", "p").exit_code == 0
    assert cli("user", "add", "rita", input="a long password\n").exit_code == 0
    for args, named in (
        (("user", "add-to-project", "nobody", "-p", "p"), "nobody"),
        (("user", "add-to-project", "rita", "-p", "nope"), "nope"),
        (("user", "remove-from-project", "rita", "-p", "p"), "not a member"),
        (("user", "projects", "nobody"), "nobody"),
        (("project", "members", "-p", "nope"), "nope"),
    ):
        result = cli(*args, "--json")
        assert result.exit_code == 1 and named in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


# --- the UI ----------------------------------------------------------------------------------


@pytest.fixture
def ui_db(sqlite_db: Database) -> Database:
    st.cache_resource.clear()
    with sqlite_db.sessions.begin() as s:
        p = _queued_project(s, "p")
        _queued_project(s, "q")
        rita = add_user(s, "rita", Role.reviewer, SYSTEM, password=PW)
        add_user(s, "newbie", Role.reviewer, SYSTEM, password=PW)
        add_user(s, "ada", Role.admin, SYSTEM, password=PW)
        _team(s, p, rita)
    return sqlite_db


def _login(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(PW)
    at.button[0].click().run()
    return at


def test_the_project_picker_lists_only_the_users_projects(ui_db: Database) -> None:
    at = _login("rita")
    assert not at.exception, at.exception
    assert at.selectbox(key="project").options == ["p"]
    assert [t.value for t in at.title] == ["Review"]


def test_a_user_with_no_project_is_told_so_without_a_traceback(ui_db: Database) -> None:
    at = _login("newbie")
    assert not at.exception, at.exception
    assert any("not a member of any project" in i.value for i in at.info)


def test_the_admin_page_adds_and_removes_members(ui_db: Database) -> None:
    at = _login("ada")
    at._page_hash = calc_hash("admin")
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="members_project").options == ["p", "q"]
    assert at.selectbox(key="member_add_user").options == ["newbie"]
    at.selectbox(key="member_add_user").select("newbie")
    at.button(key="FormSubmitter:add_member-Add to project").click().run()
    assert not at.exception, at.exception
    assert any("newbie may now open p" in x.value for x in at.success)
    with ui_db.sessions() as s:
        assert projects_for(s, s.scalars(select(User).where(User.name == "newbie")).one()) == ["p"]
    at.selectbox(key="member_remove_user").select("rita")
    at.button(key="FormSubmitter:remove_member-Remove from project").click().run()
    assert not at.exception, at.exception
    assert any("rita may no longer open p" in x.value for x in at.success)
    with ui_db.sessions() as s:
        assert projects_for(s, s.scalars(select(User).where(User.name == "rita")).one()) == []
