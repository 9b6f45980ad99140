"""`workbench ingest PATH --project NAME`: load a manifest or a folder of media into a project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, database, emit, say
from workbench.config import IngestLimits
from workbench.progress import stderr_progress
from workbench.services.audit import Actor
from workbench.services.ingest.media import SUPPORTED_HELP
from workbench.services.ingest.write import IngestReport, ingest_path


def _limits_help() -> str:
    lines = []
    for name, info in IngestLimits.model_fields.items():
        lines.append(
            f"WORKBENCH_INGEST_{name.upper()} (default {info.default}): {info.description}"
        )
    return "\n\n".join(lines)


_HELP = f"""Ingest content items from PATH into a project (created if it does not exist).

PATH is a JSONL, CSV or Parquet manifest with the fields external_id (required), text, image,
audio, video (paths relative to the manifest's folder), language and metadata (a JSON object;
a JSON string in CSV); or a folder, where every file is one item whose external_id is its path
inside the folder (hidden files are skipped and counted; UTF-8 .txt files become text items).

Media formats: {SUPPORTED_HELP}.

The type is read from the bytes, not the name. Media are copied into the content-addressed store
under WORKBENCH_HOME.

The same external_id with the same content is left alone; with different content it is an error
unless --update. By default one bad row means nothing is written (exit 1, every bad row listed);
--skip-invalid writes the good rows and lists the bad ones in --rejects FILE.

Limits:

{_limits_help()}
"""


def _human(report: IngestReport) -> str:
    lines = [
        f"project {report.project}: {report.items_added} added, {report.items_updated} updated, "
        f"{report.items_unchanged} unchanged, {report.exact_duplicates} exact duplicates, "
        f"{report.assets_stored} media files stored"
    ]
    if report.rejected:
        where = f" (listed in {report.rejects_file})" if report.rejects_file else ""
        lines.append(f"{report.rejected} bad rows left out{where}")
    if report.hidden_skipped:
        lines.append(f"{report.hidden_skipped} hidden files or folders skipped")
    if report.links_not_followed:
        lines.append(f"{report.links_not_followed} symlinked folders not followed")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the top-level app."""

    @app.command(help=_HELP)
    def ingest(
        path: Annotated[Path, typer.Argument(help="Manifest (.jsonl, .csv, .parquet) or folder.")],
        project: Annotated[
            str, typer.Option("--project", "-p", help="Project name (created if missing).")
        ],
        update: Annotated[
            bool,
            typer.Option(
                "--update", help="Replace items whose external_id exists with other content."
            ),
        ] = False,
        skip_invalid: Annotated[
            bool,
            typer.Option("--skip-invalid", help="Write the good rows; leave the bad ones out."),
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
        if rejects is not None and not skip_invalid:
            raise typer.BadParameter("--rejects needs --skip-invalid", param_hint="--rejects")
        with database(json_mode) as db:
            report = ingest_path(
                db.sessions,
                db.settings,
                path,
                project,
                Actor.system(),
                update=update,
                skip_invalid=skip_invalid,
                rejects=rejects,
                progress=stderr_progress,
            )
            if report.created_project:
                say(f"created project {report.project!r}")
            if report.recovered.published or report.recovered.deleted:
                say(
                    f"recovered from an interrupted ingest: {report.recovered.published} staged "
                    f"media files published, {report.recovered.deleted} removed"
                )
            for p in report.problems[:200]:
                say(f"rejected: {p}")
            if len(report.problems) > 200:
                say(f"rejected: ... and {len(report.problems) - 200} more")
            result = report.as_dict()
            result["ok"] = True
            emit(result, json_mode, _human(report))
