"""`workbench media ...`: the content-addressed media store."""

from __future__ import annotations

from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, database, emit
from workbench.services.audit import Actor
from workbench.services.ingest.media_store import collect_garbage

app = typer.Typer(help="The media store: remove what nothing references.", no_args_is_help=True)


@app.command()
def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be removed; remove nothing.")
    ] = False,
    json_mode: JsonFlag = False,
) -> None:
    """Remove stored media files that no item references any more (after `ingest --update`
    replaced them) and their blurred copies. Refuses while an ingest is running."""
    with database(json_mode) as db, db.sessions.begin() as s:
        report = collect_garbage(s, db.settings, Actor.system(), dry_run=dry_run)
        mib = report.bytes_unreferenced / 2**20
        verb = "would remove" if report.dry_run else "removed"
        emit(
            report.as_dict(), json_mode,
            f"{report.blobs} files in the store, {report.unreferenced} referenced by no item "
            f"({mib:.1f} MiB): {verb} them"
            + ("" if report.dry_run else f", and {report.cached_copies_removed} blurred copies"),
        )  # fmt: skip
