"""`workbench dsa`: EU DSA statements of reasons and the transparency report, from the
enforcement decisions and complaints the workbench records; and a lead's override of one
decision, and complaints against decisions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit
from workbench.services.audit import Actor
from workbench.services.projects import get_project
from workbench.services.report import appeals, decisions, statements, transparency

app = typer.Typer(
    help=(
        "EU Digital Services Act: statements of reasons for the Transparency Database (checked "
        "against its rules first), the harmonised transparency report as CSV, decisions and "
        "complaints."
    ),
    no_args_is_help=True,
)

DateOpt = Annotated[str | None, typer.Option(help="YYYY-MM-DD (inclusive).")]


@app.command("statements")
def statements_(
    project: ProjectOpt,
    out: Annotated[Path, typer.Option("--out", help="JSON lines file to write.")],
    since: DateOpt = None,
    until: DateOpt = None,
    batch_dir: Annotated[
        Path | None,
        typer.Option("--batch-dir", help="Also write files of at most 100 statements each."),
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """One statement of reasons per decision applied in the period; every statement is
    checked first, and if any is invalid nothing is written (exit 1, each listed)."""
    with database(json_mode) as db, db.sessions() as s:
        for name, value in (("--since", since), ("--until", until)):
            if value is not None:
                transparency.parse_day(value, name)
        result = statements.write_statements(
            s, get_project(s, project), out, since=since, until=until, batch_dir=batch_dir
        )
        emit(
            {"ok": True, **result},
            json_mode,
            f"wrote {result['statements']} statement(s) to {out}"
            + (f" and {len(result['batches'])} batch file(s)" if batch_dir else ""),
        )


@app.command("report")
def report(
    project: ProjectOpt,
    period: Annotated[str, typer.Option("--period", help="YYYY-MM-DD/YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the CSV files and draft.")],
    service: Annotated[
        str | None, typer.Option("--service", help="Service name (default: the project's).")
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """The transparency report's CSV files (the template's columns) and a draft qualitative
    description of accuracy, for the period; the same period gives the same files."""
    with database(json_mode) as db, db.sessions() as s:
        result = transparency.write_report(s, get_project(s, project), period, out, service)
        emit({"ok": True, **result}, json_mode, f"wrote {len(result['files'])} file(s) to {out}")


@app.command("decisions")
def list_decisions(
    project: ProjectOpt, since: DateOpt = None, until: DateOpt = None, json_mode: JsonFlag = False
) -> None:
    """Enforcement decisions applied in the period, oldest first."""
    with database(json_mode) as db, db.sessions() as s:
        rows = [
            decisions.decision_dict(d)
            for d in decisions.decisions_between(s, get_project(s, project), since, until)
        ]

        def human() -> None:
            for d in rows:
                state = "reversed" if d["revoked"] else "in force"
                print(
                    f"{d['puid']:<32} {d['application_date']} {d['policy'] or '-':<14} "
                    f"{d['restriction']:<16} {d['ground']:<12} {state}"
                )
            if not rows:
                print("no decisions")

        emit({"project": project, "decisions": rows}, json_mode, human)


@app.command("override")
def override(
    project: ProjectOpt,
    puid: Annotated[str, typer.Argument(help="The decision's platform-unique id.")],
    note: Annotated[str, typer.Option("--note", help="Why (required; audited).")],
    restriction: Annotated[str | None, typer.Option(help="New restriction.")] = None,
    restriction_other: Annotated[str | None, typer.Option(help="For *_other.")] = None,
    ground: Annotated[str | None, typer.Option(help="illegal or incompatible.")] = None,
    legal_ground: Annotated[str | None, typer.Option(help="Law relied on.")] = None,
    terms_clause: Annotated[str | None, typer.Option(help="Terms clause relied on.")] = None,
    explanation: Annotated[str | None, typer.Option(help="Why it breaks that ground.")] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Change one decision's restriction or ground (a lead's override, audited)."""
    changes = {
        k: v
        for k, v in {
            "restriction": restriction,
            "restriction_other": restriction_other,
            "ground": ground,
            "legal_ground": legal_ground,
            "terms_clause": terms_clause,
            "ground_explanation": explanation,
        }.items()
        if v is not None
    }
    with database(json_mode) as db, db.sessions.begin() as s:
        result = decisions.override_decision(
            s, get_project(s, project), Actor.system(), puid, changes, note
        )
        emit({"ok": True, **result}, json_mode, f"decision {puid} changed")


@app.command("appeal")
def appeal(
    project: ProjectOpt,
    puid: Annotated[str, typer.Argument(help="The decision complained about.")],
    complaint: Annotated[str, typer.Option("--complaint", help="What the person contests.")],
    json_mode: JsonFlag = False,
) -> None:
    """Record a complaint against a decision and queue the item for re-review by someone
    other than whoever decided."""
    with database(json_mode) as db, db.sessions.begin() as s:
        row = appeals.file_appeal(s, get_project(s, project), Actor.system(), puid, complaint)
        result = appeals.appeal_dict(row)
        emit({"ok": True, **result}, json_mode, f"appeal {row.id} filed; item queued for re-review")


@app.command("appeal-decide")
def appeal_decide(
    project: ProjectOpt,
    appeal_id: Annotated[int, typer.Argument(help="The appeal's id.")],
    outcome: Annotated[str, typer.Option("--outcome", help="upheld or reversed.")],
    note: Annotated[str, typer.Option("--note", help="Why (required).")],
    json_mode: JsonFlag = False,
) -> None:
    """Close an appeal by hand: upheld keeps the decision, reversed revokes it."""
    with database(json_mode) as db, db.sessions.begin() as s:
        result = appeals.decide_appeal(
            s, get_project(s, project), Actor.system(), appeal_id, outcome, note
        )
        emit({"ok": True, **result}, json_mode, f"appeal {appeal_id} {result['status']}")
