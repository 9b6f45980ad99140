"""`workbench labels import|export|propagate`: label files in and out (CSV, JSONL, Parquet),
lossless; propagation of labels to duplicate groups."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, handled, say
from workbench.services.audit import Actor
from workbench.services.ingest.tabular import Format, detect_format
from workbench.services.labels.export import export_labels, export_labels_to_file
from workbench.services.labels.import_ import import_labels
from workbench.services.labels.propagation import propagate_project
from workbench.services.projects import get_project

app = typer.Typer(help="Labels in and out: import and export label files.", no_args_is_help=True)

FormatOpt = Annotated[
    Literal["jsonl", "csv", "parquet"] | None,
    typer.Option("--format", "-f", help="jsonl, csv or parquet (default: from the file name)."),
]


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="Label file: .csv, .jsonl or .parquet.")],
    project: ProjectOpt,
    fmt: FormatOpt = None,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid", help="Import the good rows and report the bad ones (default: none)."
        ),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            metavar="FILE",
            help="With --skip-invalid: write each bad row here as one JSON line "
            "{line, external_id, field, reason}.",
        ),
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Import labels (all or nothing unless --skip-invalid; re-importing adds nothing).

    Columns: external_id, reviewer, decision (required); policies, severity, rationale, spans,
    confidence, time_spent_ms, policy_version, source, created_at, idempotency_key, supersedes,
    superseded. Unknown reviewers become users without a password. Keys are unique per project;
    keys in the workbench's own formats (lease:, correct:, propagated:) are stored as
    import:<key> unless they are this project's own labels coming back.
    """
    if rejects is not None and not skip_invalid:
        raise typer.BadParameter("--rejects needs --skip-invalid", param_hint="--rejects")
    with database(json_mode) as db, db.sessions.begin() as s:
        p = get_project(s, project)
        result = import_labels(
            s, p, file, Actor.system(), fmt=fmt, skip_invalid=skip_invalid, rejects=rejects
        )
        for problem in result.problems[:200]:
            say(f"  rejected: {problem}")
        if len(result.problems) > 200:
            say(f"  ... and {len(result.problems) - 200} more")
        if result.users_created:
            say(f"new reviewers without a password: {', '.join(result.users_created)}")
        summary = (
            f"{result.imported} imported, {result.unchanged} unchanged, "
            f"{result.rejected} rejected of {result.rows} rows"
            + (f" (rejects in {result.rejects_file})" if result.rejects_file else "")
        )
        emit({**result.as_dict(), "ok": True}, json_mode, summary)


@app.command("export")
def export(
    project: ProjectOpt,
    fmt: FormatOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output file (default: stdout).")
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Export every label with every field, oldest first. The file imports again unchanged.

    CSV cells starting with = + - @ (or tab, CR) get a leading ' so a spreadsheet shows them as
    text; the import takes it off again."""
    if out is None and json_mode:
        raise typer.BadParameter(
            "--json needs --out: without it the labels themselves go to stdout",
            param_hint="--json",
        )
    chosen: Format
    if fmt is not None:
        chosen = fmt
    elif out is not None:
        with handled(json_mode):
            chosen = detect_format(out)
    else:
        raise typer.BadParameter(
            "say which format (jsonl, csv or parquet) to write to stdout", param_hint="--format"
        )
    with database(json_mode) as db, db.sessions() as s:
        p = get_project(s, project)
        if out is None:
            sys.stdout.flush()
            n = export_labels(s, p, chosen, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            say(f"exported {n} labels of {project!r}")
            return
        n = export_labels_to_file(s, p, chosen, out)
        say(f"exported {n} labels of {project!r} to {out}")
        emit({"project": project, "format": chosen, "out": str(out), "labels": n}, json_mode, None)


@app.command("propagate")
def propagate(project: ProjectOpt, json_mode: JsonFlag = False) -> None:
    """Copy every current human label to the other members of its item's duplicate group
    (exact and near-duplicates, see `workbench embed`). Copies are recorded with source
    'propagated', never counted as human labels, used for training only where an item has no
    label of its own; the latest judgement in a group wins. Safe to run again."""
    with database(json_mode) as db, db.sessions.begin() as s:
        report = propagate_project(s, get_project(s, project), Actor.system())
    with handled(json_mode):
        out = {"project": project} | report.as_dict()
        say(
            f"{report.propagated} labels propagated from {report.source_labels} labels "
            f"({report.replaced} replaced, {report.kept_own_label} members kept their own)"
        )
        emit(out, json_mode, None)


def register(root: typer.Typer) -> None:
    """Add the `labels` group to the top-level app."""
    root.add_typer(app, name="labels")
