"""Small builders shared by tests: projects, users and items made straight through the ORM."""

from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from workbench.db.models import Item, Project, Role, User
from workbench.services.audit import Actor
from workbench.services.projects import create_project


def make_project(session: Session, name: str = "p") -> Project:
    return create_project(session, name, Actor.system())


def make_user(session: Session, name: str, role: Role = Role.reviewer) -> User:
    user = User(name=name, role=role, password_hash=None)
    session.add(user)
    session.flush()
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
