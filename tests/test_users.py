"""`workbench user add`: argon2 hashes, generated passwords, refusals; reviewers from imports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from builders import make_items
from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.database import Database
from workbench.db.models import AuditEvent, Role, User
from workbench.errors import PermissionDenied
from workbench.services.audit import Actor
from workbench.services.labels.import_ import import_labels
from workbench.services.projects import create_project, get_project
from workbench.services.users import add_user, list_accounts, verify_password


def user(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def test_password_from_stdin_is_stored_as_an_argon2_hash(cli: Any, db: Database) -> None:
    result = cli("user", "add", "alice", "--role", "lead", input="correct horse battery\n")
    assert result.exit_code == 0, result.stderr
    assert "correct horse battery" not in result.stdout + result.stderr
    with db.sessions() as s:
        alice = user(s, "alice")
        assert alice is not None and alice.role == Role.lead
        assert alice.password_hash is not None
        assert alice.password_hash.startswith("$argon2id$")
        assert "correct horse battery" not in alice.password_hash
        # The stored hash is a standard argon2 hash: the reference library verifies it too.
        assert PasswordHasher().verify(alice.password_hash, "correct horse battery")
        assert verify_password(alice.password_hash, "correct horse battery")
        assert not verify_password(alice.password_hash, "wrong horse battery")


def test_generated_password_is_printed_once_and_verifies(cli: Any, db: Database) -> None:
    result = cli("user", "add", "bob")  # empty stdin: the password is generated
    assert result.exit_code == 0, result.stderr
    password = result.stdout.strip()
    assert len(password) >= 12
    assert (result.stdout + result.stderr).count(password) == 1
    with db.sessions() as s:
        bob = user(s, "bob")
        assert bob is not None and bob.role == Role.reviewer
        assert bob.password_hash != password
        assert verify_password(bob.password_hash, password)


def test_generated_password_in_json_mode_is_one_json_field(cli: Any, db: Database) -> None:
    out = cli.json("user", "add", "carol", "--role", "engineer")
    assert out["name"] == "carol" and out["role"] == "engineer"
    with db.sessions() as s:
        carol = user(s, "carol")
        assert carol is not None and verify_password(carol.password_hash, out["password"])


def test_duplicate_user_name_exits_1_with_a_message(cli: Any, db: Database) -> None:
    assert cli("user", "add", "dave", input="password-one\n").exit_code == 0
    again = cli("user", "add", "dave", "--role", "admin", input="password-two\n")
    assert again.exit_code == 1
    assert "already exists" in again.stderr and "Traceback" not in again.stderr
    with db.sessions() as s:
        dave = user(s, "dave")
        assert dave is not None and dave.role == Role.reviewer
        assert verify_password(dave.password_hash, "password-one")


def test_unknown_role_exits_1_and_adds_nobody(cli: Any, db: Database) -> None:
    result = cli("user", "add", "erin", "--role", "wizard", input="long enough password\n")
    assert result.exit_code == 1
    assert "unknown role 'wizard'" in result.stderr and "reviewer, lead" in result.stderr
    out = cli.json("user", "add", "erin", "--role", "wizard", expect=1)
    assert out["ok"] is False and "wizard" in out["error"]
    with db.sessions() as s:
        assert user(s, "erin") is None


def test_too_short_password_is_refused(cli: Any, db: Database) -> None:
    result = cli("user", "add", "fay", input="short\n")
    assert result.exit_code == 1 and "at least 8" in result.stderr
    with db.sessions() as s:
        assert user(s, "fay") is None


def test_imported_unknown_reviewers_become_users_who_cannot_log_in(
    db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        p = create_project(s, "p", Actor.system())
        make_items(s, p, ["a", "b"])
        s.add(User(name="known", role=Role.lead, password_hash=None))
    path = tmp_path / "labels.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"external_id": eid, "reviewer": who, "decision": "unsure"})
            for eid, who in [("i0", "newcomer"), ("i1", "newcomer"), ("i0", "known")]
        ),
        encoding="utf-8",
    )
    with db.sessions.begin() as s:
        result = import_labels(s, get_project(s, "p"), path, Actor.system())
        assert result.users_created == ["newcomer"]
    with db.sessions() as s:
        newcomer = user(s, "newcomer")
        assert newcomer is not None
        assert newcomer.role == Role.reviewer and newcomer.password_hash is None
        assert not verify_password(newcomer.password_hash, "")
        assert not verify_password(newcomer.password_hash, "anything at all")
        known = user(s, "known")
        assert known is not None and known.role == Role.lead  # existing users are left alone
        added = s.scalars(select(AuditEvent).where(AuditEvent.action == "user.added")).all()
        assert [(e.entity_id, e.details["can_log_in"]) for e in added] == [("newcomer", False)]


def test_password_reset_and_disable_from_the_cli_end_the_users_sessions(
    cli: Any, db: Database
) -> None:
    from workbench.services.auth import LocalPasswordAuthenticator, login, resolve_session

    assert cli("user", "add", "gil", input="first long password\n").exit_code == 0
    auth = LocalPasswordAuthenticator()
    with db.sessions.begin() as s:
        token, _ = login(s, auth, {"user_name": "gil", "password": "first long password"})
    reset = cli.json("user", "passwd", "gil", input="second long password\n")
    assert reset == {"name": "gil", "sessions_ended": 1}
    with db.sessions.begin() as s:
        assert resolve_session(s, token) is None
        token, _ = login(s, auth, {"user_name": "gil", "password": "second long password"})
    assert cli.json("user", "disable", "gil")["sessions_ended"] == 1
    with db.sessions.begin() as s:
        assert resolve_session(s, token) is None


def test_the_account_list_is_for_admins_and_carries_no_password_hash(db: Database) -> None:
    with db.sessions.begin() as s:
        admin = add_user(s, "ada", Role.admin, Actor.system(), password="long enough pw")
        lead = add_user(s, "lee", Role.lead, Actor.system(), password=None)
        accounts = list_accounts(s, Actor.for_user(admin.name, admin.id, admin.role))
        assert [(a.name, a.role, a.can_log_in) for a in accounts] == [
            ("ada", Role.admin, True), ("lee", Role.lead, False),
        ]  # fmt: skip
        assert "argon2" not in repr(accounts)
        with pytest.raises(PermissionDenied):
            list_accounts(s, Actor.for_user(lead.name, lead.id, lead.role))
