"""`workbench scan`: sweep a project's catalogue with the hash-match banks and the champion."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, fail, say
from workbench.progress import stderr_progress
from workbench.services.audit import Actor
from workbench.services.scan.score import ChampionScorer
from workbench.services.scan.sweep import sweep_project


def register(app: typer.Typer) -> None:
    app.command()(scan)


def scan(
    project: ProjectOpt,
    since: Annotated[
        str | None,
        typer.Option(help="Only items added or changed since this ISO date (UTC if no zone)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and count, write nothing.")
    ] = False,
    json_mode: JsonFlag = False,
) -> None:
    """Decide allow / review / block for every item; record each decision; queue reviews first.

    Resumable: a sweep cut short continues after the last batch it committed when run again
    with the same --since.
    """
    since_at = None
    if since is not None:
        try:
            since_at = datetime.fromisoformat(since)
        except ValueError:
            fail(f"--since {since!r} is not a date: use ISO 8601, e.g. 2026-11-01", json_mode)
        if since_at.tzinfo is None:
            since_at = since_at.replace(tzinfo=UTC)
    with database(json_mode) as db:
        report = sweep_project(
            db,
            ChampionScorer(db.settings),
            project,
            Actor.system(),
            since=since_at,
            dry_run=dry_run,
            progress=stderr_progress,
        )
        result = report.as_dict()
        for f in report.failed[:50]:
            say(f"failed: {f['external_id']}: {f['reason']}")
        if report.resumed_after_item:
            say(f"resumed after item {report.resumed_after_item}")

        def human() -> None:
            d = result["decisions"]
            what = "would decide" if dry_run else "decided"
            print(
                f"{result['items']} items {what}: {d['allow']} allow, {d['review']} review, "
                f"{d['block']} block; {result['queued']} queued; {result['failed']} failed "
                f"(model: {result['model_status']})"
            )

        emit(result, json_mode, human)
