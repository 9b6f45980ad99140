"""The `workbench` command line: thin commands over the services, acting as `system`."""

from __future__ import annotations

import typer

from workbench.cli import (
    adjudicate,
    agreement,
    api,
    apikey,
    bank,
    bench,
    db,
    demo,
    drift,
    dsa,
    embed,
    evalset,
    evaluate,
    gold,
    ingest,
    labels,
    media,
    models,
    prevalence,
    project,
    quality,
    scan,
    select,
    serve,
    taxonomy,
    train,
    user,
)
from workbench.cli._common import JsonFlag, ProjectOpt, database, emit
from workbench.services.projects import get_project
from workbench.services.status import project_status

app = typer.Typer(
    help=(
        "Trust & safety active-learning workbench: ingest content, embed it, pick what reviewers "
        "label, audit their agreement, retrain. Configure with WORKBENCH_HOME and "
        "WORKBENCH_DATABASE_URL (default: SQLite under ./.workbench)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(project.app, name="project")
app.add_typer(taxonomy.app, name="taxonomy")
app.add_typer(user.app, name="user")
app.add_typer(media.app, name="media")
app.add_typer(bench.app, name="bench")
app.add_typer(dsa.app, name="dsa")
app.add_typer(bank.app, name="bank")
app.add_typer(apikey.app, name="apikey")
app.add_typer(evalset.app, name="evalset")
app.add_typer(evaluate.app, name="evaluate")
app.add_typer(models.app, name="models")
app.add_typer(prevalence.app, name="prevalence")
ingest.register(app)
labels.register(app)
embed.register(app)
serve.register(app)
train.register(app)
select.register(app)
demo.register(app)
agreement.register(app)
adjudicate.register(app)
gold.register(app)
quality.register(app)
api.register(app)
scan.register(app)
drift.register(app)


@app.command()
def status(project: ProjectOpt, json_mode: JsonFlag = False) -> None:
    """Counts for a project: items (by modality), labels, labelled items, reviewers."""
    with database(json_mode) as dbh, dbh.sessions() as s:
        result = project_status(s, get_project(s, project))

        def human() -> None:
            print(f"project {result['project']}")
            for k, v in result.items():
                if k == "project":
                    continue
                if isinstance(v, dict):
                    v = ", ".join(f"{a} {b}" for a, b in v.items())
                print(f"  {k:<18} {v}")

        emit(result, json_mode, human)


def main() -> None:
    app()
