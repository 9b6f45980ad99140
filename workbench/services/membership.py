"""Who may open which project: the one rule (admins every project, everyone else the projects
they are members of), and the audited writes that add and remove members."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import Project, ProjectMember, Role, User
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.services.audit import Actor, record_event, require_role


@dataclass(frozen=True)
class Member:
    name: str
    role: Role
    disabled: bool
    added_at: datetime
    added_by: str


def _user_of(session: Session, who: Actor | User) -> User | None:
    if isinstance(who, User):
        return who
    return None if who.user_id is None else session.get(User, who.user_id)


def is_member(session: Session, who: Actor | User, project: Project) -> bool:
    """Whether `who` may open `project`. The system actor (CLI, workers) and admins may open
    every project: the admin role is global, since admins are the ones who assign the others.

    A disabled account keeps its memberships (enabling it gives them back): keeping it out is
    the sessions' job, which every action checks first, so it is told its session ended.
    """
    if isinstance(who, Actor) and who.is_system:
        return True
    user = _user_of(session, who)
    if user is None:
        return False
    if user.role is Role.admin:
        return True
    return session.get(ProjectMember, (project.id, user.id)) is not None


def require_member(session: Session, who: Actor | User, project: Project) -> None:
    """Refuse, in the service layer, anything a non-member would do in a project."""
    if not is_member(session, who, project):
        name = who.name
        raise PermissionDenied(
            f"{name} is not a member of project {project.name!r}: "
            f"an admin can add them with `workbench user add-to-project {name} -p {project.name}`"
        )


def projects_for(session: Session, who: Actor | User) -> list[str]:
    """The names of the projects `who` may open, for a page's project picker."""
    every = select(Project.name).order_by(Project.name)
    if isinstance(who, Actor) and who.is_system:
        return list(session.scalars(every))
    user = _user_of(session, who)
    if user is None:
        return []
    if user.role is Role.admin:
        return list(session.scalars(every))
    mine = every.join(ProjectMember, ProjectMember.project_id == Project.id).where(
        ProjectMember.user_id == user.id
    )
    return list(session.scalars(mine))


def members_of(session: Session, project: Project, actor: Actor) -> list[Member]:
    """Every member of a project with their role, by name (admins see every project anyway and
    are listed only if added)."""
    require_role(actor, Role.admin, action="list project members")
    rows = session.execute(
        select(User, ProjectMember)
        .join(ProjectMember, ProjectMember.user_id == User.id)
        .where(ProjectMember.project_id == project.id)
        .order_by(User.name)
    ).all()
    return [Member(u.name, u.role, u.disabled, m.added_at, m.added_by) for u, m in rows]


def add_member(session: Session, project: Project, user: User, actor: Actor) -> bool:
    """Let `user` open `project`; False if they already could (nothing written)."""
    require_role(actor, Role.admin, action="add project members")
    return _add(session, project, user, actor)


def add_creator(session: Session, project: Project, actor: Actor) -> None:
    """The person who creates a project becomes its first member; the system actor (CLI)
    adds no one."""
    creator = None if actor.user_id is None else session.get(User, actor.user_id)
    if creator is not None:
        _add(session, project, creator, actor)


def _add(session: Session, project: Project, user: User, actor: Actor) -> bool:
    if session.get(ProjectMember, (project.id, user.id)) is not None:
        return False
    session.add(ProjectMember(project_id=project.id, user_id=user.id, added_by=actor.name))
    session.flush()
    record_event(
        session, actor, "project.member_added", project_id=project.id, entity_type="user",
        entity_id=user.name, details={"project": project.name, "role": user.role.value},
    )  # fmt: skip
    return True


def remove_member(session: Session, project: Project, user: User, actor: Actor) -> None:
    """Stop `user` from opening `project` (their labels stay). Leases they hold there run out
    and go back to the queue as any other lease does."""
    require_role(actor, Role.admin, action="remove project members")
    row = session.get(ProjectMember, (project.id, user.id))
    if row is None:
        raise WorkbenchError(f"{user.name} is not a member of project {project.name!r}")
    session.delete(row)
    session.flush()
    record_event(
        session, actor, "project.member_removed", project_id=project.id, entity_type="user",
        entity_id=user.name, details={"project": project.name, "role": user.role.value},
    )  # fmt: skip


def require_project_role(
    session: Session, actor: Actor, project: Project, *allowed: Role, action: str
) -> None:
    """The check of every action in a project: the role may do it, and the actor may open
    the project."""
    require_role(actor, *allowed, action=action)
    require_member(session, actor, project)
