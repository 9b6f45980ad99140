"""`workbench evaluate`: a model version's offline metrics on a frozen evaluation set, and
`workbench evaluate online`: metrics from the review stream per ISO week."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit
from workbench.services.projects import get_project

# The evaluation services load scikit-learn: imported inside the commands, so every other
# command starts without it.

app = typer.Typer(
    help=(
        "Offline metrics: `workbench evaluate -p P --evalset NAME [--model V]` (the champion "
        "by default) prints per-policy precision, recall, F1, average precision with bootstrap "
        "intervals, macro-F1, ECE (15 equal-width bins), Brier score and the confusion matrix, "
        "and writes the predictions to a Parquet file. `workbench evaluate online -p P`: "
        "precision of model-flagged items, overturn rate and queue yield per ISO week."
    ),
    invoke_without_command=True,
)


def _human(result: dict[str, Any]) -> None:
    print(
        f"model v{result['model_version']} on {result['evalset']} ({result['n_items']} items): "
        f"macro-F1 {result['macro_f1']} {result['macro_f1_ci']}, ECE {result['ece']}, "
        f"Brier {result['brier']}"
    )
    print(f"{'policy':<20} {'prec':>6} {'recall':>6} {'f1':>6} {'AP':>6} {'thr':>6} {'n':>5}")
    for c, m in result["policies"].items():
        cells = [m["precision"], m["recall"], m["f1"], m["average_precision"], m["threshold"]]
        shown = " ".join(f"{'-' if v is None else f'{v:.3f}':>6}" for v in cells)
        print(f"{c:<20} {shown} {m['support']:>5}")
    for value, sl in (result.get("slices") or {}).get("values", {}).items():
        print(
            f"  slice {result['slices']['key']}={value}: {sl['n_items']} items, "
            f"macro-F1 {sl['macro_f1']}"
        )
    print(f"predictions: {result['predictions']}")


@app.callback()
def evaluate(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project name.")] = None,
    evalset: Annotated[
        str | None, typer.Option("--evalset", help="A frozen evaluation set (NAME or NAME@V).")
    ] = None,
    model: Annotated[
        int | None, typer.Option("--model", help="Model version (default: the champion).")
    ] = None,
    slice_key: Annotated[
        str | None,
        typer.Option(
            "--slice", help="Also per value of language, modality, source or a metadata key."
        ),
    ] = None,
    policy: Annotated[
        str | None, typer.Option("--policy", help="Only this class (a policy code or none).")
    ] = None,
    resamples: Annotated[
        int, typer.Option("--resamples", min=100, max=100_000, help="Bootstrap resamples.")
    ] = 1000,
    json_mode: JsonFlag = False,
) -> None:
    """Offline metrics of a model version on a frozen evaluation set."""
    if ctx.invoked_subcommand is not None:
        return
    if project is None or evalset is None:
        raise typer.BadParameter("give --project and --evalset", param_hint="--evalset")
    from workbench.services.evaluate.offline import evaluate as run

    with database(json_mode) as db, db.sessions() as s:
        result = run(
            s,
            db.settings,
            get_project(s, project),
            evalset,
            version=model,
            slice_key=slice_key,
            policy=policy,
            n_resamples=resamples,
        )
        emit(result, json_mode, lambda: _human(result))


@app.command()
def online(project: ProjectOpt, json_mode: JsonFlag = False) -> None:
    """Precision of model-flagged items, overturn rate and yield per strategy, per ISO week."""
    from workbench.services.evaluate.online import online_metrics

    with database(json_mode) as db, db.sessions() as s:
        result = online_metrics(s, get_project(s, project))

        def human() -> None:
            for w in result["weeks"]:
                print(
                    f"{w['week']}: {w['reviews']} reviews, flagged precision "
                    f"{w['flagged_precision']['value']} of {w['flagged']}, overturn rate "
                    f"{w['overturn_rate']['value']}"
                )
            for y in result["yield"]:
                print(f"  {y['week']} {y['strategy']:<16} {y['per_100_reviews']} per 100")

        emit(result, json_mode, human)
