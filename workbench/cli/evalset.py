"""`workbench evalset`: frozen, versioned evaluation sets (from a label file, or sampled from the
pool and reviewed with overlap); their items are never trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, say
from workbench.services.audit import Actor
from workbench.services.projects import get_project

# The evaluation services load scikit-learn through training: imported inside the commands, so
# every other command starts without it.

app = typer.Typer(
    help=(
        "Evaluation sets: `create` from a label file (frozen at once), or `sample` a stratified "
        "random sample of the unlabelled pool, reviewed by --overlap people each (it freezes "
        "once every item has its final label). A frozen set never changes: a new version of a "
        "name is a new set. NAME@V names a version; NAME alone the latest."
    ),
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The set's name (NAME@V for a given version).")]


def _human(summary: dict[str, Any]) -> None:
    print(
        f"{summary['name']}@{summary['version']}  {summary['status']:<9} {summary['kind']:<12} "
        f"{summary['n_items']} items  classes {summary['classes'] or '-'}"
    )


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="The set's name.")],
    project: ProjectOpt,
    labels: Annotated[
        Path,
        typer.Option(
            "--labels",
            help="A label file (JSONL, CSV or Parquet, the `labels export` columns). Several "
            "reviewers per item are aggregated as training labels are. All or nothing.",
        ),
    ],
    json_mode: JsonFlag = False,
) -> None:
    """Make a frozen evaluation set from a label file whose items are in the project."""
    from workbench.services.evaluate import sets

    with database(json_mode) as db, db.sessions.begin() as s:
        summary = sets.create_from_labels(s, get_project(s, project), name, labels, Actor.system())
        emit({"ok": True, **summary}, json_mode, lambda: _human(summary))


@app.command()
def sample(
    name: Annotated[str, typer.Argument(help="The set's name.")],
    project: ProjectOpt,
    n: Annotated[int, typer.Option("--n", min=1, help="Items to sample.")],
    overlap: Annotated[
        int, typer.Option("--overlap", min=1, max=20, help="Reviewers per item.")
    ] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the sample.")] = 0,
    json_mode: JsonFlag = False,
) -> None:
    """Sample the unlabelled pool (stratified by language and modality) and queue it for review."""
    from workbench.services.evaluate import sets

    with database(json_mode) as db, db.sessions.begin() as s:
        summary = sets.sample_evalset(
            s, get_project(s, project), name, n, Actor.system(), overlap=overlap, seed=seed
        )
        say(f"queued {summary['n_items']} items for review by {overlap} reviewers each")
        emit({"ok": True, **summary}, json_mode, lambda: _human(summary))


@app.command("list")
def list_(project: ProjectOpt, json_mode: JsonFlag = False) -> None:
    """Every evaluation set of the project, each version."""
    from workbench.services.evaluate import sets

    with database(json_mode) as db, db.sessions() as s:
        rows = sets.list_evalsets(s, get_project(s, project))

        def human() -> None:
            if not rows:
                print("no evaluation sets")
            for r in rows:
                _human(r)

        emit({"evalsets": rows}, json_mode, human)


@app.command()
def show(name: NameArg, project: ProjectOpt, json_mode: JsonFlag = False) -> None:
    """One set; a sampled set whose items all have final labels is frozen now."""
    from workbench.services.evaluate import sets

    ref, version = sets.parse_set_ref(name)
    with database(json_mode) as db, db.sessions.begin() as s:
        summary = sets.show_evalset(s, get_project(s, project), ref, Actor.system(), version)
        emit(summary, json_mode, lambda: _human(summary))


@app.command()
def freeze(name: NameArg, project: ProjectOpt, json_mode: JsonFlag = False) -> None:
    """Freeze a sampled set once every item has its final label (else say how many lack one)."""
    from workbench.services.evaluate import sets

    ref, version = sets.parse_set_ref(name)
    with database(json_mode) as db, db.sessions.begin() as s:
        summary = sets.freeze_evalset(s, get_project(s, project), ref, Actor.system(), version)
        emit({"ok": True, **summary}, json_mode, lambda: _human(summary))


@app.command()
def retire(name: NameArg, project: ProjectOpt, json_mode: JsonFlag = False) -> None:
    """Retire a set: kept for old reports, no longer used to judge challengers."""
    from workbench.services.evaluate import sets

    ref, version = sets.parse_set_ref(name)
    with database(json_mode) as db, db.sessions.begin() as s:
        summary = sets.retire_evalset(s, get_project(s, project), ref, Actor.system(), version)
        emit({"ok": True, **summary}, json_mode, lambda: _human(summary))
