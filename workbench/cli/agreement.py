"""`workbench agreement`: how far reviewers agree, overall and by slice."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, say
from workbench.services.projects import get_project
from workbench.services.quality.agreement import AgreementField, SliceDimension, agreement_report


def register(app: typer.Typer) -> None:
    app.command()(agreement)


def agreement(
    project: ProjectOpt,
    field: Annotated[
        AgreementField,
        typer.Option("--field", help="Compare decisions, primary policy or severity."),
    ] = AgreementField.decision,
    by: Annotated[
        list[SliceDimension] | None,
        typer.Option("--by", help="Also break down by this (repeatable)."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write a reviewer × reviewer Cohen's kappa heatmap (PNG)."),
    ] = None,
    resamples: Annotated[
        int | None,
        typer.Option("--resamples", min=0, help="Bootstrap resamples (default: by data size)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    include_leads: Annotated[
        bool,
        typer.Option(
            "--include-leads",
            help="Count leads' and admins' labels too (by default reviewers' only: leads see "
            "the read-outs of others' labels).",
        ),
    ] = False,
    json_mode: JsonFlag = False,
) -> None:
    """Inter-annotator agreement of a project's reviewers.

    Krippendorff's alpha, Fleiss' kappa, percent agreement (with bootstrap intervals) and
    pairwise Cohen's kappa over the counted labels: current, by people whose role is reviewer
    (leads and admins too with --include-leads), latest per reviewer.
    """
    with database(json_mode) as db, db.sessions() as s:
        result = agreement_report(
            s, get_project(s, project), field, by or [], n_boot=resamples, seed=seed,
            include_leads=include_leads,
        )  # fmt: skip
        if result["n_items"] == 0:
            say("no item has two or more counted labels: nothing to compare yet")
        if plot is not None:
            write_kappa_heatmap(result["cohen_kappa"], plot, title=f"{project}: {field.value}")
            say(f"wrote {plot}")
        emit(result, json_mode, lambda: _print_human(result))


def _fmt(value: float | None, ci: list[float] | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.3f}"
    return f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else text


def _print_line(name: str, fig: dict[str, Any]) -> None:
    print(
        f"{name:<24} alpha {_fmt(fig['krippendorff_alpha'], fig['krippendorff_alpha_ci'])}  "
        f"fleiss {_fmt(fig['fleiss_kappa'], fig['fleiss_kappa_ci'])} "
        f"(n={fig['fleiss_n_items']})  agree {_fmt(fig['percent_agreement'])}  "
        f"items {fig['n_items']}  labels {fig['n_labels']}"
    )


def _print_human(result: dict[str, Any]) -> None:
    print(f"project {result['project']}  field {result['field']} ({result['level']})")
    _print_line("overall", result)
    for dim, slices in result.get("by", {}).items():
        print(f"by {dim}:")
        for value, fig in slices.items():
            _print_line(f"  {value}", fig)


def write_kappa_heatmap(cohen: dict[str, Any], path: Path, *, title: str) -> None:
    """A reviewer × reviewer heatmap of Cohen's kappa; blank where a pair shares no item."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt
    import numpy as np

    names = cohen["reviewers"]
    matrix = np.array(
        [[np.nan if v is None else v for v in row] for row in cohen["matrix"]], dtype=float
    ).reshape(len(names), len(names))
    size = max(4.0, 0.45 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdYlGn", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), names)
    if len(names) <= 20:
        for i in range(len(names)):
            for j in range(len(names)):
                if np.isfinite(matrix[i, j]):
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title(f"Cohen's kappa: {title}")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
