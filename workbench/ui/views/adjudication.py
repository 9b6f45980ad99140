"""The lead's adjudication page: the queue of cases, one item's labels and rationales side by
side, and a form to record the final decision (or dismiss the case) with a note.

Everything users wrote (item text, rationales, notes) is shown with st.text or in a dataframe,
never as Markdown.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from workbench.errors import WorkbenchError
from workbench.services.auth import SessionUser
from workbench.services.quality import adjudication
from workbench.ui.state import acting, flash_and_rerun, load_project, show_error, show_flash, tx

STATUSES = ["open", "resolved", "dismissed", "all"]
NO_SEVERITY = "(none)"


def render(me: SessionUser, project_name: str) -> None:
    st.title("Adjudication")
    show_flash()
    if st.button("Refresh the queue", help="Open cases for disagreeing and low-alpha items"):
        try:
            with acting() as (s, me):
                result = adjudication.refresh_adjudication_queue(
                    s, load_project(s, project_name), me.actor
                )
        except WorkbenchError as exc:
            show_error(exc)
        else:
            flash_and_rerun(f"Opened {result['opened']} case(s).")
    status = st.radio("Cases", STATUSES, horizontal=True, key="adj_status")
    try:
        with tx() as s:
            cases = adjudication.adjudication_cases(
                s, load_project(s, project_name), me.actor,
                status=None if status == "all" else status,
            )  # fmt: skip
    except WorkbenchError as exc:
        show_error(exc)
        return
    if not cases:
        st.caption(f"No {status} cases.")
        return
    st.dataframe(
        pd.DataFrame(cases)[
            ["id", "external_id", "status", "reason", "reason_detail", "n_labels", "created_at"]
        ],
        hide_index=True,
    )
    ids = [c["id"] for c in cases]
    case_id = st.selectbox("Case", ids, format_func=lambda i: f"case {i}", key="adj_case")
    if case_id is not None:
        _case(me, project_name, int(case_id))


def _case(me: SessionUser, project_name: str, case_id: int) -> None:
    try:
        with tx() as s:
            d = adjudication.case_detail(s, load_project(s, project_name), me.actor, case_id)
    except WorkbenchError as exc:
        show_error(exc)
        return
    st.subheader(f"Case {d['id']} ({d['status']})")
    st.text(f"Item {d['external_id']} - {d['reason']}: {d['reason_detail'] or ''}")
    if d["item"]["text"]:
        st.text(d["item"]["text"])
    st.dataframe(
        pd.DataFrame(
            [
                {"reviewer": x["reviewer"], "decision": x["decision"],
                 "policies": ", ".join(x["policies"]), "severity": x["severity"],
                 "rationale": x["rationale"] or "",
                 "spans": "; ".join(str(sp) for sp in x["spans"]),
                 "seconds": None if x["time_spent_ms"] is None else x["time_spent_ms"] / 1000,
                 "at": x["created_at"]}
                for x in d["labels"]
            ]
        ),
        hide_index=True,
    )  # fmt: skip
    if d["gold_answer"]:
        st.text(f"Gold answer: {d['gold_answer']}")
    if d["status"] != "open":
        st.text(
            f"Final: {d['decision'] or '-'} {', '.join(d['policies'])} severity "
            f"{d['severity'] or '-'} by {d['closed_by']}: {d['note'] or ''}"
        )
        return
    _decision_form(me, project_name, d)


def _decision_form(me: SessionUser, project_name: str, d: dict[str, Any]) -> None:
    codes = [c["code"] for c in d["taxonomy"]["codes"]]
    with st.form(f"adjudicate-{d['id']}"):
        # No answer chosen for the lead: a preselected one is too easily recorded unread.
        decision = st.radio(
            "Final decision", d["taxonomy"]["decisions"], horizontal=True, index=None
        )
        policies = st.multiselect("Policy codes", codes)
        severity = st.selectbox("Severity", [NO_SEVERITY, "1", "2", "3", "4"])
        note = st.text_area("Note (required)")
        resolve = st.form_submit_button("Record final decision")
        dismiss = st.form_submit_button("Dismiss (the aggregated label stands)")
    if not (resolve or dismiss):
        return
    if resolve and decision is None:
        st.error("Choose a final decision, or dismiss the case.")
        return
    try:
        with acting() as (s, me):
            project = load_project(s, project_name)
            if resolve:
                adjudication.resolve_case(
                    s, project, me.actor, d["id"], str(decision), list(policies),
                    _severity(severity), note,
                )  # fmt: skip
            else:
                adjudication.dismiss_case(s, project, me.actor, d["id"], note)
    except WorkbenchError as exc:
        show_error(exc)
    else:
        flash_and_rerun(f"Case {d['id']} {'resolved' if resolve else 'dismissed'}.")


def _severity(choice: object) -> int | None:
    return None if choice in (None, NO_SEVERITY) else int(str(choice))
