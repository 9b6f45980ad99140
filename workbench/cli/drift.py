"""`workbench drift`: has the content, or the champion's view of it, moved since a reference
window? Score PSI and embedding drift, with the project's alert thresholds."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from workbench.cli._common import JsonFlag, ProjectOpt, database, emit, say
from workbench.services.evaluate.drift import drift_report, parse_window


def register(app: typer.Typer) -> None:
    app.command()(drift)


def drift(
    project: ProjectOpt,
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            help="START/END of the reference window (ISO dates or times, UTC, END exclusive), "
            "e.g. 2026-01-01/2026-02-01. Default: every item created before the current window.",
        ),
    ] = None,
    current: Annotated[
        str | None,
        typer.Option(
            "--current",
            help="START/END of the current window. Default: the 30 days up to and including "
            "the newest item's created_at.",
        ),
    ] = None,
    json_mode: JsonFlag = False,
) -> None:
    """Drift of the items created in the current window against the reference window.

    Windows are by item created_at. Reports the population stability index of each of the
    champion's class scores (10 quantile bins of the reference window's scores) and embedding
    drift as a domain classifier's cross-validated ROC-AUC (logistic regression telling
    current from reference vectors; 0.5 means indistinguishable). Alerts fire at the project
    settings drift_psi_alert (default 0.2) and drift_auc_alert (default 0.7).
    """
    with database(json_mode) as db, db.sessions() as s:
        ref = parse_window(reference, "--reference") if reference is not None else None
        cur = parse_window(current, "--current") if current is not None else None
        result = drift_report(s, db.settings, project, reference=ref, current=cur)
        for alert in result["alerts"]:
            say(f"alert: {alert}")
        emit(result, json_mode, lambda: _print(result))


def _print(r: dict[str, Any]) -> None:
    ref, cur = r["reference"], r["current"]
    print(f"reference {ref['start']} .. {ref['end']}: {ref['scored']} items")
    print(f"current   {cur['start']} .. {cur['end']}: {cur['scored']} items")
    psi = r["score_psi"]
    for cls, v in psi["classes"].items():
        print(f"  PSI {cls:<16} {v['psi']:.4f}")
    print(f"  (threshold {psi['threshold']}; {psi['method']})")
    emb = r["embedding_drift"]
    print(f"embedding drift ROC-AUC {emb['roc_auc']:.3f} (threshold {emb['threshold']})")
    print("alerts: " + ("; ".join(r["alerts"]) if r["alerts"] else "none"))
