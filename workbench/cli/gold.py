"""`workbench gold`: items with known answers, mixed into reviewers' queues at the project's
gold rate, and each reviewer's accuracy on them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, say
from workbench.services.audit import Actor
from workbench.services.projects import get_project
from workbench.services.quality import gold as service

app = typer.Typer(
    help=(
        "Gold checks: leads mark items with known answers; reviewers get them at the project's "
        "gold_rate (one in every round(1/gold_rate) items, each gold item at most once per "
        "reviewer) and cannot tell them from other items; accuracy per reviewer with a Wilson "
        "interval, a weekly trend and an alert below gold_alert_threshold."
    ),
    no_args_is_help=True,
)

ItemOpt = Annotated[str | None, typer.Option("--item", help="The item's external id.")]


@app.command()
def mark(
    project: ProjectOpt,
    item: ItemOpt = None,
    decision: Annotated[
        str | None, typer.Option("--decision", help="violating or not_violating.")
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="Policy code of the current taxonomy (repeatable)."),
    ] = None,
    severity: Annotated[
        int | None, typer.Option("--severity", help="Severity on the code's scale (1-4).")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why this is the answer.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Many answers from a .jsonl or .csv file with columns external_id, decision, "
            "policies (CSV: hate;harassment), severity, note. All or nothing: every bad row is "
            "reported with its file, line and field, and then nothing is recorded.",
        ),
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Mark items as gold with their answer (one with --item/--decision, or many with --file).

    Marking an item again with the same answer changes nothing; with another answer it
    updates it (audited with the old one). Any other open queue entry of the item is cancelled:
    gold reaches reviewers only by its own path.
    """
    if (file is None) == (item is None):
        raise typer.BadParameter(
            "give either --item (with --decision) or --file", param_hint="--item"
        )
    if item is not None and decision is None:
        raise typer.BadParameter("--item needs --decision", param_hint="--decision")
    if file is not None and (decision or policy or severity is not None or note):
        raise typer.BadParameter(
            "with --file the answers come from the file; drop --decision/--policy/--severity/"
            "--note",
            param_hint="--file",
        )
    with database(json_mode) as db, db.sessions.begin() as s:
        p = get_project(s, project)
        if file is not None:
            answers = service.read_gold_file(file)
        else:
            assert item is not None and decision is not None
            answers = [service.GoldInput(item, decision, tuple(policy or []), severity, note)]
        result = service.mark_gold_many(s, p, Actor.system(), answers)
        summary = (
            f"{result['created']} marked, {result['updated']} updated, "
            f"{result['unchanged']} unchanged"
        )
        emit({"ok": True, "project": project, **result}, json_mode, summary)


@app.command()
def retire(
    project: ProjectOpt,
    item: Annotated[str, typer.Option("--item", help="The item's external id.")],
    note: Annotated[str | None, typer.Option("--note", help="Why it is retired.")] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Stop using an item as gold.

    No new reviewer gets it, and its answers no longer count towards accuracy or override
    training labels. The item can be marked again later.
    """
    with database(json_mode) as db, db.sessions.begin() as s:
        result = service.retire_gold(s, get_project(s, project), Actor.system(), item, note)
        emit({"ok": True, "project": project, **result}, json_mode, f"retired {item}")


@app.command("list")
def list_(
    project: ProjectOpt,
    include_retired: Annotated[
        bool, typer.Option("--all", help="Also list retired gold items.")
    ] = False,
    json_mode: JsonFlag = False,
) -> None:
    """Gold items with their answers and how many reviewers have answered them through gold."""
    with database(json_mode) as db, db.sessions() as s:
        rows = service.list_gold(
            s, get_project(s, project), Actor.system(), include_retired=include_retired
        )

        def human() -> None:
            if not rows:
                print("no gold items")
            for r in rows:
                retired = "  (retired)" if r["retired_at"] else ""
                codes = ",".join(r["policies"]) or "-"
                print(
                    f"{r['external_id']:<24} {r['decision']:<14} {codes:<16} severity "
                    f"{r['severity'] or '-'}  answered {r['answered_through_gold']}{retired}"
                )

        emit({"project": project, "gold_items": rows}, json_mode, human)


@app.command()
def accuracy(
    project: ProjectOpt,
    window_days: Annotated[
        int | None,
        typer.Option(
            "--window-days",
            min=0,
            help="Count gold answers of the last N days (0 = all time; default: the project's "
            "gold_window_days). Alerts are recorded in the audit trail only with the default.",
        ),
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Each reviewer's accuracy on gold items, with Wilson intervals, a trend and alerts.

    Decision accuracy and policy accuracy (the training class: first violation code, or none)
    with Wilson 95% intervals, the number of answers, accuracy per ISO week, and an alert when
    the decision accuracy is below the project's gold_alert_threshold with at least
    gold_alert_min_answers answers. A change of alert state is written to the audit trail once.
    """
    with database(json_mode) as db, db.sessions.begin() as s:
        result = service.gold_accuracy(
            s, get_project(s, project), Actor.system(), window_days=window_days
        )
        for rec in result["alerts_recorded"]:
            say(f"{rec['action']}: {rec['reviewer']}")
        emit(result, json_mode, lambda: _print_accuracy(result))


def _print_accuracy(result: dict[str, Any]) -> None:
    window = f"last {result['window_days']} days" if result["window_days"] else "all time"
    print(
        f"project {result['project']}: {result['gold_items']} gold items, {window}, "
        f"alert below {result['threshold']:.2f} with n >= {result['min_answers']}"
    )
    if not result["reviewers"]:
        print("no reviewer has answered a gold item yet")
    for r in result["reviewers"]:
        flag = "  ALERT" if r["alert"] else ""
        print(
            f"{r['reviewer']:<20} n {r['n']:>4}  decision {r['accuracy']:.3f} "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]  policy {r['policy_accuracy']:.3f} "
            f"[{r['policy_ci_low']:.3f}, {r['policy_ci_high']:.3f}]{flag}"
        )


def register(root: typer.Typer) -> None:
    """Add the `gold` group to the top-level app."""
    root.add_typer(app, name="gold")
