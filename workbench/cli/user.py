"""`workbench user ...`: accounts, roles and the projects each user may open."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from sqlalchemy import select

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, say
from workbench.db.models import Role, User
from workbench.services import membership, projects, users
from workbench.services.audit import Actor

app = typer.Typer(help="Users and roles.", no_args_is_help=True)


def _password_from_stdin() -> str | None:
    """A password piped on stdin (first line); None when stdin is a terminal or empty."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    line = sys.stdin.readline().rstrip("\r\n")
    return line or None


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="reviewer, lead, engineer or admin.")] = "reviewer",
    json_mode: JsonFlag = False,
) -> None:
    """Add a user. The password is read from stdin, or generated and printed once."""
    with database(json_mode) as db, db.sessions.begin() as s:
        password = _password_from_stdin()
        generated = password is None
        if generated:
            password = users.generate_password()
        u = users.add_user(s, name, users.parse_role(role), Actor.system(), password=password)
        result: dict[str, object] = {"name": u.name, "role": u.role.value}
        if generated:
            result["password"] = password
            say("generated password (shown once; store it now):")
        emit(result, json_mode, password if generated else None)
        say(f"added {u.role.value} {u.name!r}")


@app.command("list")
def list_(json_mode: JsonFlag = False) -> None:
    """List users with their roles."""
    with database(json_mode) as db, db.sessions() as s:
        rows = [
            {
                "name": u.name,
                "role": u.role.value,
                "disabled": u.disabled,
                "can_log_in": u.password_hash is not None,
            }
            for u in s.scalars(select(User).order_by(User.name))
        ]

        def human() -> None:
            for r in rows:
                flags = " (disabled)" if r["disabled"] else ""
                flags += "" if r["can_log_in"] else " (no password)"
                print(f"{r['name']:<24} {r['role']:<9}{flags}")

        emit({"users": rows}, json_mode, human)


@app.command()
def disable(name: str, json_mode: JsonFlag = False) -> None:
    """Stop a user from logging in and end their sessions at once (their labels stay)."""
    with database(json_mode) as db, db.sessions.begin() as s:
        ended = users.set_disabled(s, users.get_user(s, name), True, Actor.system())
        emit(
            {"name": name, "disabled": True, "sessions_ended": ended}, json_mode,
            f"disabled {name}; {ended} session(s) ended",
        )  # fmt: skip


@app.command()
def enable(name: str, json_mode: JsonFlag = False) -> None:
    """Let a disabled user log in again."""
    with database(json_mode) as db, db.sessions.begin() as s:
        users.set_disabled(s, users.get_user(s, name), False, Actor.system())
        emit({"name": name, "disabled": False}, json_mode, f"enabled {name}")


@app.command()
def passwd(name: str, json_mode: JsonFlag = False) -> None:
    """Set a password from stdin, or generate one and print it once. Ends the user's sessions."""
    with database(json_mode) as db, db.sessions.begin() as s:
        password = _password_from_stdin()
        generated = password is None
        if generated:
            password = users.generate_password()
        assert password is not None
        ended = users.set_password(s, users.get_user(s, name), password, Actor.system())
        result: dict[str, object] = {"name": name, "sessions_ended": ended}
        if generated:
            result["password"] = password
        emit(
            result, json_mode,
            password if generated else f"password set for {name}; {ended} session(s) ended",
        )  # fmt: skip


@app.command()
def role(
    name: str,
    new_role: Annotated[str, typer.Argument(metavar="ROLE", help="reviewer|lead|engineer|admin")],
    json_mode: JsonFlag = False,
) -> None:
    """Change a user's role."""
    with database(json_mode) as db, db.sessions.begin() as s:
        r: Role = users.parse_role(new_role)
        users.set_role(s, users.get_user(s, name), r, Actor.system())
        emit({"name": name, "role": r.value}, json_mode, f"{name} is now {r.value}")


@app.command("add-to-project")
def add_to_project(
    name: Annotated[str, typer.Argument(help="User name.")],
    project: ProjectOpt,
    json_mode: JsonFlag = False,
) -> None:
    """Let a user open a project (admins may open every project without this)."""
    with database(json_mode) as db, db.sessions.begin() as s:
        p, u = projects.get_project(s, project), users.get_user(s, name)
        added = membership.add_member(s, p, u, Actor.system())
        human = f"{name} may now open {project}" if added else f"{name} was already a member"
        emit({"name": name, "project": project, "added": added}, json_mode, human)


@app.command("remove-from-project")
def remove_from_project(
    name: Annotated[str, typer.Argument(help="User name.")],
    project: ProjectOpt,
    json_mode: JsonFlag = False,
) -> None:
    """Stop a user from opening a project; their labels stay, their leases there run out."""
    with database(json_mode) as db, db.sessions.begin() as s:
        p, u = projects.get_project(s, project), users.get_user(s, name)
        membership.remove_member(s, p, u, Actor.system())
        emit({"name": name, "project": project, "removed": True}, json_mode,
             f"{name} may no longer open {project}")  # fmt: skip


@app.command("projects")
def projects_(
    name: Annotated[str, typer.Argument(help="User name.")], json_mode: JsonFlag = False
) -> None:
    """The projects a user may open (an admin: every project)."""
    with database(json_mode) as db, db.sessions() as s:
        u = users.get_user(s, name)
        names = membership.projects_for(s, u)
        result = {"name": name, "role": u.role.value, "projects": names}
        emit(result, json_mode, "\n".join(names) if names else f"({name} may open no project)")
