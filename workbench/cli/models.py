"""`workbench models`: list model versions (as before), and `compare`, `promote`, `rollback`
(audited) for the champion/challenger decision by hand."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from workbench.cli import train as train_cli
from workbench.cli._common import JsonFlag, ProjectOpt, database, emit
from workbench.services.audit import Actor
from workbench.services.projects import get_project

# The registry loads scikit-learn through training: imported inside the commands.

app = typer.Typer(
    help=(
        "Model versions: `workbench models -p P` lists them with their rounds; `compare A B "
        "--evalset NAME` judges B against A by the project's promotion_rule (paired bootstrap "
        "of macro average precision, McNemar per policy, flip rate); `promote V` and "
        "`rollback` change the champion, audited."
    ),
    invoke_without_command=True,
)


@app.callback()
def models(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project name.")] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Model versions with their metrics, newest first, and recent rounds."""
    if ctx.invoked_subcommand is not None:
        return
    if project is None:
        raise typer.BadParameter("give --project", param_hint="--project")
    train_cli.models(project, json_mode)


@app.command()
def compare(
    a: Annotated[int, typer.Argument(help="Version in the champion's role.")],
    b: Annotated[int, typer.Argument(help="Version in the challenger's role.")],
    project: ProjectOpt,
    evalset: Annotated[str, typer.Option("--evalset", help="A frozen evaluation set.")],
    json_mode: JsonFlag = False,
) -> None:
    """Compare two versions on a frozen set and say whether the rule would promote B."""
    from workbench.services.evaluate.registry import compare_versions

    with database(json_mode) as db, db.sessions() as s:
        result = compare_versions(s, db.settings, get_project(s, project), a, b, evalset)

        def human() -> None:
            print(
                f"v{b} against v{a} on {result['evalset']} ({result['n_items']} items): "
                f"{result['verdict']}"
            )
            print(f"  {result['reason']}")
            print(f"  prediction flip rate {result['flip_rate']:.1%}")
            for c, t in result["policies"].items():
                print(
                    f"  {c:<20} recall {t['recall_a']} -> {t['recall_b']}  McNemar p "
                    f"{t['pvalue']} ({t['test']})"
                )

        emit(result, json_mode, human)


@app.command()
def promote(
    version: Annotated[int, typer.Argument(help="The version to make champion.")],
    project: ProjectOpt,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (audited).")] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Make a version the champion by hand (the previous one is retired); audited."""
    from workbench.services.evaluate.registry import promote_version

    with database(json_mode) as db, db.sessions.begin() as s:
        result: dict[str, Any] = promote_version(
            s, get_project(s, project), version, Actor.system(), reason
        )
        emit({"ok": True, **result}, json_mode, f"champion: v{result['champion']}")


@app.command()
def rollback(
    project: ProjectOpt,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (audited).")] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Make the champion before the current one champion again; audited."""
    from workbench.services.evaluate.registry import rollback as run

    with database(json_mode) as db, db.sessions.begin() as s:
        result = run(s, get_project(s, project), Actor.system(), reason)
        emit(
            {"ok": True, **result},
            json_mode,
            f"champion: v{result['champion']} (was v{result['previous']})",
        )
