"""Small builders shared by tests: projects, users and items made straight through the ORM.

Projects and users made here are members of each other, as every user of a database upgraded to
project membership is (revision 0010 adds every enabled user to every project): tests of other
rules need not repeat the membership. Tests of membership itself pass `members=False`.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import Item, Project, ProjectMember, Role, User
from workbench.services.audit import Actor
from workbench.services.projects import create_project


def _join(session: Session, pairs: list[tuple[int, int]]) -> None:
    for project_id, user_id in pairs:
        if session.get(ProjectMember, (project_id, user_id)) is None:
            session.add(ProjectMember(project_id=project_id, user_id=user_id, added_by="test"))
    session.flush()


def make_project(session: Session, name: str = "p", *, members: bool = True) -> Project:
    """A project; with `members`, every enabled user made so far may open it."""
    project = create_project(session, name, Actor.system())
    if members:
        users = session.scalars(select(User.id).where(User.disabled.is_(False))).all()
        _join(session, [(project.id, u) for u in users])
    return project


def make_user(
    session: Session, name: str, role: Role = Role.reviewer, *, members: bool = True
) -> User:
    """A user without a password; with `members`, a member of every project made so far."""
    user = User(name=name, role=role, password_hash=None)
    session.add(user)
    session.flush()
    if members:
        _join(session, [(p, user.id) for p in session.scalars(select(Project.id)).all()])
    return user


def join_every_project(session: Session, user: User) -> User:
    """Make a user made elsewhere (e.g. by `add_user`) a member of every project so far."""
    _join(session, [(p, user.id) for p in session.scalars(select(Project.id)).all()])
    return user


def make_items(
    session: Session, project: Project, texts: list[str], prefix: str = "i"
) -> list[Item]:
    items = []
    for n, text in enumerate(texts):
        item = Item(
            project_id=project.id,
            external_id=f"{prefix}{n}",
            text=text,
            modalities=["text"],
            content_hash=hashlib.sha256(f"{prefix}{n}:{text}".encode()).hexdigest(),
        )
        session.add(item)
        items.append(item)
    session.flush()
    return items
