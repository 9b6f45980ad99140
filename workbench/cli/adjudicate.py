"""`workbench adjudicate`: the queue of items whose reviewers disagree, and the lead's final
decision on each (which then is the item's training label)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit
from workbench.db.models import Decision
from workbench.services.audit import Actor
from workbench.services.projects import get_project
from workbench.services.quality import adjudication as service

app = typer.Typer(
    help=(
        "Adjudication: items whose reviewers disagree (or that sit in a slice with low "
        "Krippendorff's alpha) become cases; a lead records the final decision with a note, "
        "and that decision is the item's training label. Every step is audited."
    ),
    no_args_is_help=True,
)

CaseArg = Annotated[int, typer.Argument(help="Case id (from `workbench adjudicate list`).")]
NoteOpt = Annotated[str, typer.Option("--note", help="Why (required; kept in the audit trail).")]


@app.command()
def refresh(
    project: ProjectOpt,
    slices: Annotated[
        bool | None,
        typer.Option(
            "--slices/--no-slices",
            help="Also open cases in policy/language/modality slices whose decision alpha is "
            "below the project's adjudication_alpha_threshold (default: the project setting "
            "adjudicate_low_alpha_slices).",
        ),
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Open a case for every item that needs one; running it again opens nothing new.

    An item needs a case when two or more reviewers' counted labels (current, by people, the
    latest per reviewer) differ on the decision or the primary policy code. Active gold items
    and items closed since their newest label are left alone.
    """
    with database(json_mode) as db, db.sessions.begin() as s:
        result = service.refresh_adjudication_queue(
            s, get_project(s, project), Actor.system(), slices=slices
        )
        reasons = ", ".join(f"{k} {v}" for k, v in result["by_reason"].items() if v) or "none"
        emit({"ok": True, **result}, json_mode, f"opened {result['opened']} case(s) ({reasons})")


@app.command("list")
def list_(
    project: ProjectOpt,
    status: Annotated[
        str,
        typer.Option("--status", help="open, resolved, dismissed, or all."),
    ] = "open",
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many cases.")] = 500,
    json_mode: JsonFlag = False,
) -> None:
    """Cases, oldest first, with their reason and how many counted labels the item has."""
    with database(json_mode) as db, db.sessions() as s:
        wanted = None if status == "all" else service.parse_status(status)
        cases = service.adjudication_cases(
            s, get_project(s, project), Actor.system(), status=wanted, limit=limit
        )

        def human() -> None:
            if not cases:
                print(f"no {status} cases")
            for c in cases:
                print(
                    f"{c['id']:>6}  {c['status']:<9} {c['external_id']:<24} "
                    f"{c['n_labels']} labels  {c['reason']}: {c['reason_detail'] or ''}"
                )

        emit({"project": project, "status": status, "cases": cases}, json_mode, human)


@app.command()
def show(case_id: CaseArg, project: ProjectOpt, json_mode: JsonFlag = False) -> None:
    """One case: the item and every counted label with its rationale, side by side."""
    with database(json_mode) as db, db.sessions() as s:
        detail = service.case_detail(s, get_project(s, project), Actor.system(), case_id)
        emit(detail, json_mode, lambda: _print_detail(detail))


def _print_detail(d: dict[str, Any]) -> None:
    print(f"case {d['id']} ({d['status']}): item {d['external_id']}")
    print(f"  reason: {d['reason']}: {d['reason_detail'] or ''}")
    if d["item"]["text"]:
        print(f"  text: {d['item']['text']}")
    for lab in d["labels"]:
        codes = ",".join(lab["policies"]) or "-"
        print(
            f"  - {lab['reviewer']}: {lab['decision']} [{codes}] severity "
            f"{lab['severity'] or '-'}: {lab['rationale'] or ''}"
        )
    if d["status"] != "open":
        print(
            f"  final: {d['decision'] or '-'} [{','.join(d['policies'])}] by {d['closed_by']}: "
            f"{d['note']}"
        )


@app.command("open")
def open_(
    project: ProjectOpt,
    item: Annotated[str, typer.Option("--item", help="The item's external id.")],
    note: NoteOpt,
    json_mode: JsonFlag = False,
) -> None:
    """Open a case by hand for one item."""
    with database(json_mode) as db, db.sessions.begin() as s:
        case = service.open_case(s, get_project(s, project), Actor.system(), item, note)
        emit({"ok": True, **case}, json_mode, f"opened case {case['id']} for {item}")


@app.command()
def resolve(
    case_id: CaseArg,
    project: ProjectOpt,
    decision: Annotated[
        Decision, typer.Option("--decision", help="The final decision.", case_sensitive=False)
    ],
    note: NoteOpt,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="Policy code of the current taxonomy (repeatable)."),
    ] = None,
    severity: Annotated[
        int | None, typer.Option("--severity", min=1, max=4, help="Severity on the code's scale.")
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Record the final decision of an open case (leads; the note is required).

    The decision becomes the item's training label (confidence 1, ahead of gold answers and
    aggregated labels); `unsure` keeps the item out of training. Policy codes and severity are
    checked against the current taxonomy.
    """
    with database(json_mode) as db, db.sessions.begin() as s:
        case = service.resolve_case(
            s, get_project(s, project), Actor.system(), case_id, decision, policy or [],
            severity, note,
        )  # fmt: skip
        emit({"ok": True, **case}, json_mode, f"case {case_id} resolved: {case['decision']}")


@app.command()
def dismiss(
    case_id: CaseArg, project: ProjectOpt, note: NoteOpt, json_mode: JsonFlag = False
) -> None:
    """Close an open case without a decision: the aggregated label stands."""
    with database(json_mode) as db, db.sessions.begin() as s:
        case = service.dismiss_case(s, get_project(s, project), Actor.system(), case_id, note)
        emit({"ok": True, **case}, json_mode, f"case {case_id} dismissed")


def register(root: typer.Typer) -> None:
    """Add the `adjudicate` group to the top-level app."""
    root.add_typer(app, name="adjudicate")
