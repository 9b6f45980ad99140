"""The lead's page: queue health, reviewers' labels and time, overlap items, wellbeing flags,
a table of items with scores and labels for spot checks, the agreement dashboard, suspected
mislabels and the audit trail as CSV."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from workbench.errors import WorkbenchError
from workbench.services.auth import SessionUser
from workbench.services.quality import charts
from workbench.services.quality.agreement import AgreementField
from workbench.services.quality.audit_export import AuditFilter, export_audit_csv
from workbench.services.quality.mislabels import NOT_SENT, find_mislabels
from workbench.services.quality.overview import SpotCheckRow, lead_overview
from workbench.ui.safe_text import escape_markdown
from workbench.ui.state import (
    acting,
    database,
    flash_and_rerun,
    load_project,
    show_error,
    show_flash,
    tx,
)

ALL_PAIRS = "(all pairs)"
HIDDEN = "(hidden: you may still be asked to label it)"


def render(me: SessionUser, project_name: str) -> None:
    st.title("Lead")
    show_flash()
    try:
        with tx() as s:
            overview = lead_overview(s, load_project(s, project_name), me.actor)
    except WorkbenchError as exc:
        show_error(exc)
        return
    health = overview.queue
    st.subheader("Queue health")
    cols = st.columns(5)
    cols[0].metric("Pending", health["pending"])
    cols[1].metric("Leased", health["leased"])
    cols[2].metric("Done", health["done"])
    cols[3].metric("Submitted last hour", health["submitted_last_hour"])
    age = health["oldest_lease_age_seconds"]
    cols[4].metric("Oldest lease", "none" if age is None else f"{age / 60:.0f} min")

    st.subheader("Reviewers")
    _table(
        pd.DataFrame(
            [
                {"reviewer": r.reviewer, "labels": r.labels, "skips": r.skips,
                 "median seconds": r.median_seconds, **r.decisions}
                for r in overview.reviewers
            ]
        ).fillna({d: 0 for r in overview.reviewers for d in r.decisions})
    )  # fmt: skip
    flags = overview.affected
    st.subheader('"This affected me"')
    st.text(f"{flags.flags} flags on {flags.items} items from {flags.reviewers} reviewers")

    st.subheader("Overlap items")
    _table(
        pd.DataFrame(
            [
                {"item": o.external_id, "target": o.overlap_target, "completed": o.completed,
                 "labels": HIDDEN if o.labels_hidden
                 else "; ".join(f"{x.reviewer}: {x.decision}" for x in o.labels)}
                for o in overview.overlap
            ]
        )
    )  # fmt: skip

    st.subheader("Spot checks")
    spot_checks(overview.spot_checks)

    agreement_dashboard(me, project_name)
    suspected_mislabels(me, project_name)
    audit_download(me, project_name)


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """A read-out table as shown: floats to three places and "n/a" where a figure is undefined
    (Streamlit draws a missing value as "None" whatever the Styler says)."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.isna().any() or pd.api.types.is_float_dtype(values):
            out[column] = [
                "n/a" if v is None or (isinstance(v, float) and pd.isna(v))
                else f"{v:.3f}" if isinstance(v, float) else str(v)
                for v in values.astype(object)
            ]  # fmt: skip
    return out


def _table(frame: pd.DataFrame) -> None:
    if frame.empty:
        st.caption("Nothing to show yet.")
        return
    st.dataframe(readable(frame), hide_index=True)


def _n(value: float | None) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.3f}"


SPOT_COLUMNS = ["external_id", "text", "score", "strategy", "queue_status", "decision",
                "policies", "reviewer"]  # fmt: skip


def spot_checks(rows: list[SpotCheckRow]) -> None:
    """The queued items; picking a row opens the item below: its text and its label."""
    if not rows:
        st.caption("No queued items yet.")
        return
    frame = pd.DataFrame([asdict(r) for r in rows])
    shown = frame[SPOT_COLUMNS].astype(object).where(frame[SPOT_COLUMNS].notna(), "-")
    shown["decision"] = [
        HIDDEN if h else d for h, d in zip(frame["labels_hidden"], shown["decision"], strict=True)
    ]
    st.caption("Pick a row to open the item.")
    event = st.dataframe(
        shown, hide_index=True, on_select="rerun", selection_mode="single-row", key="spot_pick"
    )
    picked = event.selection.rows if event is not None else []
    if not picked:
        return
    row = rows[picked[0]]
    with st.container(border=True):
        st.markdown(f"**Item {escape_markdown(row.external_id)}**")
        st.text(row.text)  # user content: plain text
        if row.labels_hidden:
            st.text(HIDDEN)
        else:
            label = (
                "no label yet"
                if row.decision is None
                else (f"{row.decision} {row.policies} by {row.reviewer}".strip())
            )
            st.text(f"Label: {label}")
        st.text(f"Queue: {row.queue_status}, strategy {row.strategy or '-'}, score {_n(row.score)}")


def agreement_dashboard(me: SessionUser, project_name: str) -> None:
    """Alpha over time and by policy, the kappa heatmap and a confusion matrix, each with the
    number of items it rests on."""
    st.header("Agreement")
    field = st.selectbox(
        "Compare reviewers on", [f.value for f in AgreementField], key="agreement_field"
    )
    include_leads = st.checkbox(
        "Count leads' and admins' labels too", value=False, key="agreement_include_leads",
        help="By default only reviewers' labels count: leads and admins see others' labels.",
    )  # fmt: skip
    try:
        with tx() as s:
            dash = charts.agreement_dashboard(
                s, load_project(s, project_name), me.actor, field, include_leads=include_leads
            )
    except WorkbenchError as exc:
        show_error(exc)
        return
    overall = dash.overall
    cols = st.columns(4)
    cols[0].metric("Krippendorff's alpha", _n(overall["krippendorff_alpha"]))
    ci = overall["krippendorff_alpha_ci"]
    cols[1].metric("95% interval", "n/a" if ci is None else f"{ci[0]:.2f} to {ci[1]:.2f}")
    cols[2].metric("Overlap items", overall["n_items"])
    cols[3].metric("Labels on them", overall["n_labels"])
    if overall["n_items"] == 0:
        st.info("No item has two or more counted labels yet: nothing to compare.")
        return

    st.subheader("Alpha over time (ISO week)")
    points = charts.trend_points(dash.by_week)
    if points < charts.MIN_TREND_POINTS:
        st.info(
            f"Not enough data for a trend: {points} week(s) with an alpha so far; the chart "
            f"appears from {charts.MIN_TREND_POINTS} weeks on."
        )
    else:
        st.altair_chart(charts.alpha_over_time_chart(dash.by_week))
    _table(dash.by_week)

    st.subheader("Alpha by policy")
    if dash.by_policy["alpha"].notna().any():
        # Sized here too: Streamlit does not take a layered chart's own height.
        n_policies = int(dash.by_policy["alpha"].notna().sum())
        st.altair_chart(
            charts.alpha_by_policy_chart(dash.by_policy),
            height=charts.policy_chart_height(n_policies) + 60,  # + the axis and its title
        )
    else:
        st.info("Not enough data: no policy has two or more labels on the same item yet.")
    _table(dash.by_policy)

    st.subheader("Cohen's kappa, reviewer × reviewer")
    pairs = dash.kappa_pairs()
    if pairs.empty:
        st.text("No two reviewers share an item yet.")
    else:
        st.altair_chart(charts.kappa_heatmap_chart(pairs))
        _table(pairs)

    st.subheader("Confusion between reviewers")
    choices = [ALL_PAIRS, *dash.reviewers]
    left, right = st.columns(2)
    a = left.selectbox("Reviewer A (rows)", choices, key="confusion_a")
    b = right.selectbox("Reviewer B (columns)", choices, key="confusion_b")
    try:
        pooled = ALL_PAIRS in (a, b)
        confusion = dash.confusion(None if pooled else a, None if pooled else b)
    except WorkbenchError as exc:
        show_error(exc)
        return
    if pooled:
        # Pooled, each pair of labels is counted in both orders: say so, with the cells' sum.
        st.text(
            f"{confusion.n_items} shared items, {confusion.n_pairs} label pairs, each counted "
            f"in both orders: {int(confusion.matrix.to_numpy().sum())} in the cells"
        )
    else:
        st.text(f"{confusion.n_items} shared items, {confusion.n_pairs} label pairs")
    if confusion.n_pairs:
        side = max(200, 48 * len(confusion.matrix))  # as confusion_chart sizes its cells
        st.altair_chart(charts.confusion_chart(confusion), height=side + 90)
    st.dataframe(confusion.matrix)


def suspected_mislabels(me: SessionUser, project_name: str) -> None:
    st.header("Suspected mislabels")
    st.text(
        "Scores every labelled item with a head trained without it (cross-validation) and "
        "flags labels the scores contradict (cleanlab, confident learning)."
    )
    if st.button("Find suspected mislabels", key="mislabels_run"):
        report = _find(project_name, None)
        if report is not None:
            st.session_state["mislabels_report"] = report
    report_dict = st.session_state.get("mislabels_report")
    if not report_dict or report_dict["project"] != project_name:
        return
    st.text(
        f"checked {report_dict['n_checked']} items ({report_dict['folds']}-fold, "
        f"{report_dict['head']} head): {len(report_dict['suspects'])} suspects, "
        f"{report_dict['sent_back']} sent back to review"
    )
    for note in report_dict["notes"]:
        st.text(note)
    suspects = report_dict["suspects"]
    if not suspects:
        return
    st.dataframe(pd.DataFrame(suspects).drop(columns=["item_id"]).fillna("-"), hide_index=True)
    unsent = [x["external_id"] for x in suspects if x["queue"] == NOT_SENT]
    if not unsent:
        return
    # Nothing goes back to review unseen: the list above first, then a confirmation.
    confirm = st.checkbox(
        f"Send these {len(unsent)} suspects back to review", value=False, key="mislabels_send"
    )
    if st.button("Send back", disabled=not confirm, key="mislabels_confirm"):
        report = _find(project_name, set(unsent))
        if report is not None:
            st.session_state["mislabels_report"] = report
            flash_and_rerun(f"{report['sent_back']} suspect(s) sent back to review.")


def _find(project_name: str, send: set[str] | None) -> dict[str, Any] | None:
    """Run the search; with `send`, those suspects (external ids) go back to review."""
    try:
        # The session is checked first in a transaction of its own: the search opens its
        # own, and a write transaction held across them would lock SQLite against itself.
        with acting() as (_, me):
            actor = me.actor
        with st.spinner("Cross-validating the head on every labelled item..."):
            report = find_mislabels(
                database(), project_name, actor, enqueue=send is not None, only=send
            )
    except WorkbenchError as exc:
        show_error(exc)
        return None
    return report.as_dict()


def audit_download(me: SessionUser, project_name: str) -> None:
    st.header("Audit trail")
    left, mid, right = st.columns(3)
    since = left.date_input("From (UTC)", value=None, key="audit_since")
    until = mid.date_input("Up to and including (UTC)", value=None, key="audit_until")
    prefix = right.text_input("Action starts with", key="audit_action")
    only_project = st.checkbox("Only this project", value=True, key="audit_only_project")
    if st.button("Prepare audit CSV", key="audit_prepare"):
        flt = AuditFilter(
            project=project_name if only_project else None,
            since=datetime.combine(since, time(), tzinfo=UTC) if since else None,
            until=(
                datetime.combine(until + timedelta(days=1), time(), tzinfo=UTC) if until else None
            ),
            action_prefix=prefix or None,
        )
        try:
            with acting() as (_, me):  # checked first, as for the mislabels above
                actor = me.actor
            with tempfile.TemporaryDirectory() as folder:
                out = Path(folder) / "audit.csv"
                result = export_audit_csv(database(), out, actor, flt)
                st.session_state["audit_csv"] = (out.read_bytes(), result.rows)
        except WorkbenchError as exc:
            show_error(exc)
            return
    prepared = st.session_state.get("audit_csv")
    if prepared:
        data, rows = prepared
        st.text(f"{rows} events")
        st.download_button(
            "Download audit CSV", data, file_name="audit.csv", mime="text/csv", key="audit_dl"
        )
