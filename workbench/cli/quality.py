"""`workbench mislabels` and `workbench audit export`: label quality and the audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, handled, say
from workbench.services.audit import Actor

audit_app = typer.Typer(help="The audit trail: who did what, when.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("mislabels")(mislabels)
    app.add_typer(audit_app, name="audit")


def mislabels(
    project: ProjectOpt,
    folds: Annotated[
        int,
        typer.Option(
            "--folds",
            min=2,
            help="Cross-validation folds for the out-of-fold predictions (fewer are used when "
            "the smallest class has fewer items).",
        ),
    ] = 5,
    enqueue: Annotated[
        bool,
        typer.Option(
            "--enqueue/--no-enqueue",
            help="Send the suspects back to review (default), or only report them.",
        ),
    ] = True,
    json_mode: JsonFlag = False,
) -> None:
    """Find training labels that are probably wrong, and send them back to review.

    Each labelled, embedded item is scored by the project's head trained on the other folds;
    cleanlab's confident learning flags labels those out-of-fold probabilities contradict.
    Each suspect becomes a rereview queue entry with its reason (once per item; items already
    in the queue are left).
    """
    from workbench.services.quality.mislabels import find_mislabels

    with database(json_mode) as db:
        report = find_mislabels(db, project, Actor.system(), folds=folds, enqueue=enqueue)
        for note in report.notes:
            say(note)
        say(
            f"checked {report.n_checked} items ({report.folds}-fold, {report.head} head): "
            f"{len(report.suspects)} suspected mislabels, {report.sent_back} sent back to review"
        )

        def human() -> None:
            for sus in report.suspects:
                print(f"{sus.external_id:<24} {sus.reason}  [{sus.queue}]")

        emit(report.as_dict(), json_mode, human)


@audit_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="The CSV file to write.")],
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Only this project's events (default: all events)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="From this UTC date or time on (ISO 8601: 2026-11-02, 2026-11-02T14:30Z)."
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="Before this time; a date includes that whole day (UTC)."),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action", help="Only actions starting with this (label., queue., auth.login)."
        ),
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Export audit events as CSV: id, at (UTC), actor, action, project, entity_type,
    entity_id, details (JSON).

    Streams any number of rows; the file is written under a temporary name and renamed at
    the end, so it is complete or absent, never half written.
    """
    from workbench.services.quality.audit_export import AuditFilter, export_audit_csv, parse_time

    with handled(json_mode):
        flt = AuditFilter(
            project=project,
            since=parse_time(since, "--since") if since else None,
            until=parse_time(until, "--until", end_of_day=True) if until else None,
            action_prefix=action,
        )
    with database(json_mode) as db:
        result = export_audit_csv(db, out, Actor.system(), flt)
        say(f"wrote {result.rows} audit events to {result.path}")
        emit(result.as_dict(), json_mode, None)
