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
    singles, slices = group_slices(cases)
    rows = [
        {"case": f"case {c['id']}", "items": c["external_id"], "status": c["status"],
         "reason": c["reason"], "detail": c["reason_detail"] or "", "labels": c["n_labels"]}
        for c in singles
    ] + [
        {"case": f"slice {key}", "items": _item_list(members), "status": _statuses(members),
         "reason": "low_alpha", "detail": f"{len(members)} items",
         "labels": sum(int(m["n_labels"] or 0) for m in members)}
        for key, members in slices.items()
    ]  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    choices = [f"case {c['id']}" for c in singles] + [f"slice {key}" for key in slices]
    choice = st.selectbox("Case", choices, key="adj_case")
    if choice is None:
        return
    kind, _, ref = str(choice).partition(" ")
    if kind == "case":
        _case(me, project_name, int(ref))
    else:
        _slice(me, project_name, ref, slices[ref])


LOW_ALPHA = "low_alpha"


def group_slices(
    cases: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(the cases shown one by one, the low-alpha cases grouped by their slice): a slice is
    one entry listing its items, not one case per item flooding the list."""
    singles: list[dict[str, Any]] = []
    slices: dict[str, list[dict[str, Any]]] = {}
    for c in cases:
        if c["reason"] == LOW_ALPHA and c["reason_detail"]:
            key = str(c["reason_detail"]).removeprefix("low-alpha slice ").split(", alpha")[0]
            slices.setdefault(key, []).append(c)
        else:
            singles.append(c)
    for members in slices.values():
        members.sort(key=lambda m: str(m["external_id"]))
    return singles, slices


def _item_list(members: list[dict[str, Any]], shown: int = 5) -> str:
    names = [str(m["external_id"]) for m in members]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _statuses(members: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for m in members:
        counts[m["status"]] = counts.get(m["status"], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def _slice(me: SessionUser, project_name: str, key: str, members: list[dict[str, Any]]) -> None:
    st.subheader(f"Low-alpha slice {key}")
    st.caption(
        "Reviewers agree little on this slice. Open its items one by one below, or dismiss "
        "the slice when the disagreement is expected (its aggregated labels stand)."
    )
    st.dataframe(
        pd.DataFrame(
            [{"case": m["id"], "item": m["external_id"], "status": m["status"],
              "labels": m["n_labels"], "detail": m["reason_detail"]} for m in members]
        ),
        hide_index=True,
    )  # fmt: skip
    open_ids = [int(m["id"]) for m in members if m["status"] == "open"]
    if open_ids:
        with st.form(f"dismiss-slice-{key}"):
            note = st.text_area("Note (required)", key=f"slice_note_{key}")
            dismiss = st.form_submit_button(f"Dismiss the slice ({len(open_ids)} open cases)")
        if dismiss:
            try:
                with acting() as (s, me):
                    project = load_project(s, project_name)
                    for case_id in open_ids:
                        adjudication.dismiss_case(s, project, me.actor, case_id, note)
            except WorkbenchError as exc:
                show_error(exc)
            else:
                flash_and_rerun(f"Slice {key} dismissed ({len(open_ids)} cases).")
    by_item = {f"{m['external_id']} (case {m['id']})": int(m["id"]) for m in members}
    picked = st.selectbox(
        "Open one item of the slice", list(by_item), index=None, key=f"slice_item_{key}"
    )
    if picked is not None:
        _case(me, project_name, by_item[str(picked)])


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
