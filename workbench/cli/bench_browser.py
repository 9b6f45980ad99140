"""`workbench bench review-latency`: submit -> next item visible in Chromium, timed in the
browser against a real `workbench serve`, while simulated reviewers work the same queue."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from workbench.bench.results import write_result
from workbench.cli._common import JsonFlag, database, emit, say


def _table(result: dict[str, Any]) -> None:
    rows = [
        ("submit -> next item visible", result["submit_to_next_item"]),
        ("submit -> rerun started", result["submit_to_rerun_start"]),
        ("submit -> page ready", result["submit_to_page_ready"]),
        ("decision (n) rerun", result["decision_rerun"]),
        ("background current_item", result["background"]["current_item"]),
        ("background submit_review", result["background"]["submit_review"]),
    ]
    print(f"{'ms':<30}{'n':>6}{'p50':>9}{'p95':>9}{'max':>9}")
    for name, s in rows:
        figures = [s[k] for k in ("p50_ms", "p95_ms", "max_ms")]
        cells = "".join(f"{'-' if v is None else format(v, '.1f'):>9}" for v in figures)
        print(f"{name:<30}{s['n']:>6}{cells}")
    for what, work in (("submit", result["work_per_submit_ms"]),
                       ("decision", result["work_per_decision_ms"])):  # fmt: skip
        print(
            f"per {what} rerun (mean ms): server CPU {work['server_cpu_ms']}, browser main "
            f"thread busy {work['browser_busy_ms']} (script {work['browser_script_ms']}, "
            f"layout and style {work['browser_layout_ms']})"
        )
    bg = result["background"]
    load = result["load_average"]
    verdict = "meets" if result["meets_target"] else "misses"
    print(
        f"{result['backend']}: p95 {result['submit_to_next_item']['p95_ms']} ms {verdict} the "
        f"{result['target_p95_ms']:.0f} ms target; {result['background_reviewers']} background "
        f"reviewers made {bg['labels_per_second']} labels/s meanwhile; load average "
        f"{load['measurement_start']} -> {load['measurement_end']} on {result['cpu_count']} CPUs"
    )


def review_latency(
    items: Annotated[int, typer.Option(min=1, help="Synthetic items queued for this run.")] = 5000,
    labels: Annotated[int, typer.Option(min=1, help="Timed submissions in the browser.")] = 50,
    warmup: Annotated[int, typer.Option(min=0, help="Submissions before timing starts.")] = 3,
    background_reviewers: Annotated[
        int, typer.Option(min=0, max=256, help="Simulated reviewers at the service layer.")
    ] = 9,
    think_ms: Annotated[
        int, typer.Option(min=0, help="Pause of each simulated reviewer after a label.")
    ] = 0,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Server port (0: a free one).")] = 0,
    allow_sqlite: Annotated[
        bool, typer.Option("--allow-sqlite", help="Run on SQLite too (the target is Postgres).")
    ] = False,
    chromium: Annotated[
        str | None, typer.Option(help="Chromium executable (default: `chromium` on PATH).")
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Submit -> next item in Chromium: p50/p95/max while other reviewers work (issue #5).

    Uses the configured database (Postgres; --allow-sqlite for SQLite), a fresh project, a
    `workbench serve` of its own and the system chromium. The project, users and labels stay in
    the database.
    """
    from workbench.bench.browser import run_review_latency

    with database(json_mode) as db:
        result = run_review_latency(
            db,
            items=items,
            labels=labels,
            warmup=warmup,
            background=background_reviewers,
            think_ms=think_ms,
            port=port or None,
            allow_sqlite=allow_sqlite,
            chromium=chromium,
            progress=say,
        )
        path = write_result(f"review-latency-{result['backend']}", result)
        say(f"wrote {path}")
        emit(result, json_mode, lambda: _table(result))
        if not result["ok"]:
            say("error: the database does not hold the labels the run made (see the result)")
            raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add this module's commands to `workbench bench`."""
    app.command("review-latency")(review_latency)
