"""`workbench taxonomy ...`: view and version a project's policy taxonomy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, say
from workbench.services import projects, taxonomy
from workbench.services.audit import Actor

app = typer.Typer(help="Policy taxonomy versions.", no_args_is_help=True)


@app.command()
def show(
    project: ProjectOpt,
    version: Annotated[int | None, typer.Option(help="Version (default: current).")] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Show the codes, guidelines, severity scales and DSA categories of a version."""
    with database(json_mode) as db, db.sessions() as s:
        p = projects.get_project(s, project)
        pv = (
            taxonomy.get_policy_version(s, p, version)
            if version
            else taxonomy.current_policy_version(s, p)
        )
        d = taxonomy.policy_version_as_dict(pv)

        def human() -> None:
            print(f"{d['name']} (version {d['version']})")
            for pol in d["policies"]:
                print(f"  {pol['code']:<15} {pol['title']:<32} {pol['dsa_category'] or '-'}")

        emit(d, json_mode, human)


@app.command()
def load(
    file: Annotated[Path, typer.Argument(help="Taxonomy JSON (see the shipped default).")],
    project: ProjectOpt,
    json_mode: JsonFlag = False,
) -> None:
    """Make FILE the project's taxonomy: a new version; existing labels keep theirs."""
    with database(json_mode) as db, db.sessions.begin() as s:
        p = projects.get_project(s, project)
        spec = taxonomy.load_taxonomy_file(file)
        pv, created = taxonomy.add_policy_version(s, p, spec, Actor.system())
        say(f"policy version {pv.version} " + ("created" if created else "unchanged (same file)"))
        emit({"project": project, "version": pv.version, "created": created}, json_mode, None)
