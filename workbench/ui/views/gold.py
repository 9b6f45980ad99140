"""The lead's gold page: mark items with known answers, retire them, and see each reviewer's
accuracy on gold with its confidence interval, a weekly trend, and alerts highlighted.

Names, ids and notes are user content: they go through st.text or a dataframe, never Markdown.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from workbench.errors import WorkbenchError
from workbench.services.auth import SessionUser
from workbench.services.quality import gold
from workbench.ui.state import acting, flash_and_rerun, load_project, show_error, show_flash, tx

NO_SEVERITY = "(none)"
ALERT_STYLE = "background-color: #f8d7da"


def render(me: SessionUser, project_name: str) -> None:
    st.title("Gold checks")
    show_flash()
    try:
        with tx() as s:
            project = load_project(s, project_name)
            choices = gold.answer_choices(s, project)
            # Viewing the figures also records alert crossings in the audit trail (once each).
            accuracy = gold.gold_accuracy(s, project, me.actor)
            items = gold.list_gold(s, project, me.actor)
    except WorkbenchError as exc:
        show_error(exc)
        return
    _accuracy(accuracy)
    _mark_form(me, project_name, choices)
    st.subheader("Gold items")
    if items:
        st.dataframe(pd.DataFrame(items), hide_index=True)
        with st.form("retire_gold"):
            which = st.selectbox("Gold item", [g["external_id"] for g in items])
            if st.form_submit_button("Retire"):
                try:
                    with acting() as (s, me):
                        gold.retire_gold(s, load_project(s, project_name), me.actor, str(which))
                except WorkbenchError as exc:
                    show_error(exc)
                else:
                    flash_and_rerun(f"Retired {which}.")
    else:
        st.caption("No gold items yet.")


def _accuracy(result: dict[str, Any]) -> None:
    st.subheader("Accuracy on gold")
    window = f"last {result['window_days']} days" if result["window_days"] else "all time"
    st.caption(
        f"{result['gold_items']} gold items, {window}; alert below {result['threshold']:.0%} "
        f"with at least {result['min_answers']} answers. Intervals: Wilson 95%."
    )
    if result["alerts"]:
        st.error(f"{len(result['alerts'])} reviewer(s) below the threshold:", icon="⚠️")
        st.text(", ".join(result["alerts"]))
    rows = result["reviewers"]
    if not rows:
        st.caption("No reviewer has answered a gold item yet.")
        return
    table = pd.DataFrame(
        [
            {"reviewer": r["reviewer"], "n": r["n"], "accuracy": r["accuracy"],
             "ci low": r["ci_low"], "ci high": r["ci_high"],
             "policy accuracy": r["policy_accuracy"], "alert": r["alert"]}
            for r in rows
        ]
    )  # fmt: skip

    def highlight(row: pd.Series) -> list[str]:
        return [ALERT_STYLE if row["alert"] else "" for _ in row]

    st.dataframe(
        table.style.apply(highlight, axis=1).format(
            {"accuracy": "{:.3f}", "ci low": "{:.3f}", "ci high": "{:.3f}",
             "policy accuracy": "{:.3f}"}
        ),
        hide_index=True,
    )  # fmt: skip
    trend = pd.DataFrame(
        [{"week": w["week"], "reviewer": r["reviewer"], "accuracy": w["accuracy"]}
         for r in rows for w in r["trend"]]
    )  # fmt: skip
    if not trend.empty:
        st.caption("Accuracy per ISO week")
        st.line_chart(trend.pivot_table(index="week", columns="reviewer", values="accuracy"))


def _mark_form(me: SessionUser, project_name: str, choices: dict[str, Any]) -> None:
    st.subheader("Mark an item as gold")
    codes = [c["code"] for c in choices["codes"]]
    with st.form("mark_gold"):
        external_id = st.text_input("Item external id")
        decision = st.radio(
            "Answer", ["violating", "not_violating"], horizontal=True, index=None
        )  # no answer chosen for the lead
        policies = st.multiselect("Policy codes", codes)
        severity = st.selectbox("Severity", [NO_SEVERITY, "1", "2", "3", "4"])
        note = st.text_input("Note")
        if not st.form_submit_button("Mark as gold"):
            return
    if decision is None:
        st.error("Choose the gold answer.")
        return
    try:
        with acting() as (s, me):
            result = gold.mark_gold(
                s, load_project(s, project_name), me.actor, external_id.strip(), str(decision),
                list(policies), _severity(severity), note or None,
            )  # fmt: skip
    except WorkbenchError as exc:
        show_error(exc)
    else:
        done = "Marked" if result["created"] else "Updated" if result["updated"] else "Unchanged:"
        flash_and_rerun(f"{done} {external_id.strip()} as gold.")


def _severity(choice: object) -> int | None:
    return None if choice in (None, NO_SEVERITY) else int(str(choice))
