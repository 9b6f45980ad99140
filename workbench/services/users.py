"""Users, roles and password hashes (argon2id: slow and salted on purpose)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from workbench.db.models import Project, Role, User, UserSession
from workbench.db.rows import rows_changed
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, PermissionDenied, WorkbenchError
from workbench.services.audit import Actor, record_event, require_role
from workbench.services.membership import require_member

_hasher = PasswordHasher()
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise WorkbenchError(
            f"unknown role {value!r}: expected one of {', '.join(r.value for r in Role)}"
        ) from None


def validate_user_name(name: str) -> None:
    if not _NAME.match(name):
        raise WorkbenchError(
            f"user name {name!r} is not allowed: use 1-128 letters, digits, '_', '.', '@', '-'"
        )


def find_user(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def get_user(session: Session, name: str) -> User:
    user = find_user(session, name)
    if user is None:
        raise NotFoundError(f"no user named {name!r}")
    return user


def reviewing_user(session: Session, actor: Actor, project: Project) -> User:
    """The user behind `actor`, who must be an enabled reviewer and a member of `project`:
    leases, drafts and wellbeing flags belong to a person, never to the system actor."""
    require_role(actor, Role.reviewer, action="review items")
    if actor.user_id is None:
        raise PermissionDenied(f"{actor.name} is not a user and cannot hold review leases")
    user = session.get(User, actor.user_id)
    if user is None or user.disabled:
        raise PermissionDenied(f"{actor.name} may not review: the account is missing or disabled")
    require_member(session, user, project)
    return user


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    disabled: bool
    can_log_in: bool  # has a password and is not disabled
    created_at: datetime

    @property
    def status(self) -> str:
        """One word for the account, so a table never shows two states that contradict."""
        if self.disabled:
            return "disabled"
        return "active" if self.can_log_in else "no password yet"


def list_accounts(session: Session, actor: Actor) -> list[Account]:
    """Every user, for the admin page (no hashes leave the service)."""
    require_role(actor, Role.admin, action="list user accounts")
    return [
        Account(
            u.name,
            u.role,
            u.disabled,
            u.password_hash is not None and not u.disabled,
            u.created_at,
        )
        for u in session.scalars(select(User).order_by(User.name))
    ]


def add_user(
    session: Session, name: str, role: Role, actor: Actor, *, password: str | None
) -> User:
    """Create a user. A password of None makes an account that cannot log in yet."""
    require_role(actor, Role.admin, action="add users")
    validate_user_name(name)
    existing = find_user(session, name)
    if existing is not None:
        raise WorkbenchError(f"a user named {name!r} already exists (role {existing.role.value})")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise WorkbenchError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    user = User(name=name, role=role, password_hash=hash_password(password) if password else None)
    session.add(user)
    session.flush()
    record_event(
        session,
        actor,
        "user.added",
        entity_type="user",
        entity_id=name,
        details={"role": role.value, "can_log_in": password is not None},
    )
    return user


def get_or_create_reviewer(session: Session, name: str, actor: Actor) -> User:
    """Reviewers named in imported labels become users without a password."""
    user = find_user(session, name)
    if user is not None:
        return user
    validate_user_name(name)
    user = User(name=name, role=Role.reviewer, password_hash=None)
    session.add(user)
    session.flush()
    record_event(
        session,
        actor,
        "user.added",
        entity_type="user",
        entity_id=name,
        details={
            "role": Role.reviewer.value,
            "can_log_in": False,
            "reason": "named in imported labels",
        },
    )
    return user


def revoke_user_sessions(
    session: Session,
    user: User,
    *,
    now: datetime | None = None,
    keep_session_id: int | None = None,
) -> int:
    """End every session of a user but `keep_session_id`; how many were ended."""
    now = now or utcnow()
    stmt = update(UserSession).where(
        UserSession.user_id == user.id, UserSession.revoked_at.is_(None)
    )
    if keep_session_id is not None:
        stmt = stmt.where(UserSession.id != keep_session_id)
    return rows_changed(
        session, stmt.values(revoked_at=now).execution_options(synchronize_session=False)
    )


def set_password(
    session: Session,
    user: User,
    password: str,
    actor: Actor,
    *,
    keep_session_id: int | None = None,
) -> int:
    """Set a new password and end the user's sessions (a reset is how a leaked password or a
    stolen session is dealt with), except `keep_session_id`: the session a user changes their
    own password from. Returns how many sessions were ended."""
    if actor.user_id != user.id:
        require_role(actor, Role.admin, action="reset another user's password")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WorkbenchError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    user.password_hash = hash_password(password)
    ended = revoke_user_sessions(session, user, keep_session_id=keep_session_id)
    record_event(
        session, actor, "user.password_set", entity_type="user", entity_id=user.name,
        details={"sessions_ended": ended},
    )  # fmt: skip
    return ended


def _keep_an_admin(session: Session, user: User, action: str) -> None:
    """Refuse to take away the last enabled admin: nobody could manage accounts in the browser
    again. The admins' rows are locked (Postgres), so two admins demoting each other at once
    cannot both pass this check."""
    if user.role is not Role.admin or user.disabled:
        return
    admins = session.scalars(
        select(User.id).where(User.role == Role.admin, User.disabled.is_(False)).with_for_update()
    ).all()
    if set(admins) <= {user.id}:
        raise WorkbenchError(
            f"{user.name} is the last enabled admin and cannot be {action}: "
            "make another user admin first"
        )


def set_disabled(session: Session, user: User, disabled: bool, actor: Actor) -> int:
    """Disable (ending every session at once) or enable an account; how many sessions ended.
    The last enabled admin stays enabled."""
    require_role(actor, Role.admin, action="disable users")
    if disabled:
        _keep_an_admin(session, user, "disabled")
    user.disabled = disabled
    ended = revoke_user_sessions(session, user) if disabled else 0
    record_event(
        session,
        actor,
        "user.disabled" if disabled else "user.enabled",
        entity_type="user",
        entity_id=user.name,
        details={"sessions_ended": ended} if disabled else None,
    )
    return ended


def set_role(session: Session, user: User, role: Role, actor: Actor) -> None:
    """Change a user's role; the last enabled admin stays admin."""
    require_role(actor, Role.admin, action="change roles")
    if role is not Role.admin:
        _keep_an_admin(session, user, f"made {role.value}")
    old = user.role
    user.role = role
    record_event(
        session,
        actor,
        "user.role_changed",
        entity_type="user",
        entity_id=user.name,
        details={"old": old.value, "new": role.value},
    )
