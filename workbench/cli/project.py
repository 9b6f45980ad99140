"""`workbench project ...`: create projects, read and change their settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, say
from workbench.schemas import SETTING_KEYS_HELP, parse_setting_value
from workbench.services import membership, projects, taxonomy
from workbench.services.audit import Actor

app = typer.Typer(help="Projects and their settings.", no_args_is_help=True)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Project name (letters, digits, _ . -).")],
    taxonomy_file: Annotated[
        Path | None,
        typer.Option("--taxonomy", help="Policy taxonomy JSON (default: the shipped one)."),
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Create a project with default settings and a policy taxonomy (version 1)."""
    with database(json_mode) as db, db.sessions.begin() as s:
        spec = taxonomy.load_taxonomy_file(taxonomy_file) if taxonomy_file else None
        p = projects.create_project(s, name, Actor.system(), taxonomy=spec)
        say(f"created project {p.name!r}")
        emit({"project": p.name, "id": p.id}, json_mode, None)


@app.command("list")
def list_(json_mode: JsonFlag = False) -> None:
    """List projects."""
    from sqlalchemy import select

    from workbench.db.models import Project

    with database(json_mode) as db, db.sessions() as s:
        names = list(s.scalars(select(Project.name).order_by(Project.name)))
        emit({"projects": names}, json_mode, "\n".join(names) if names else "(no projects)")


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Project name.")], json_mode: JsonFlag = False
) -> None:
    """Show a project's settings and current taxonomy version."""
    with database(json_mode) as db, db.sessions() as s:
        p = projects.get_project(s, name)
        pv = taxonomy.current_policy_version(s, p)
        settings = projects.project_settings(p).model_dump(mode="json")
        result = {
            "project": p.name,
            "id": p.id,
            "created_at": p.created_at.isoformat(),
            "settings": settings,
            "policy_version": pv.version,
            "policy_codes": [x.code for x in pv.policies],
        }
        emit(result, json_mode, json.dumps(result, indent=2, ensure_ascii=False))


# ignore_unknown_options: a negative VALUE such as -1 is a value here, not an option.
@app.command("set", context_settings={"ignore_unknown_options": True})
def set_(
    name: Annotated[str, typer.Argument(help="Project name.")],
    key: Annotated[str, typer.Argument(help=f"Setting: {SETTING_KEYS_HELP}.")],
    value: Annotated[
        str, typer.Argument(help="New value; JSON where it parses (5, 0.1, true, {...}).")
    ],
    json_mode: JsonFlag = False,
) -> None:
    """Change one setting; the whole settings object is validated before it is stored."""
    with database(json_mode) as db, db.sessions.begin() as s:
        p = projects.get_project(s, name)
        new = projects.set_project_setting(s, p, key, parse_setting_value(value), Actor.system())
        say(f"{name}: {key} = {value}")
        emit({"project": name, "settings": new.model_dump(mode="json")}, json_mode, None)


@app.command()
def members(project: ProjectOpt, json_mode: JsonFlag = False) -> None:
    """List the users who may open a project (admins may open every project besides)."""
    with database(json_mode) as db, db.sessions() as s:
        rows = [
            {"name": m.name, "role": m.role.value, "disabled": m.disabled,
             "added_at": m.added_at.isoformat(), "added_by": m.added_by}
            for m in membership.members_of(s, projects.get_project(s, project), Actor.system())
        ]  # fmt: skip

        def human() -> None:
            for r in rows:
                flags = " (disabled)" if r["disabled"] else ""
                print(f"{r['name']:<24} {r['role']:<9}{flags}")
            if not rows:
                print(f"({project} has no members; admins may still open it)")

        emit({"project": project, "members": rows}, json_mode, human)
