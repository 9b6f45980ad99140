"""The DSA report page (leads and admins): the transparency report's figures for a period,
charts of own-initiative measures and of the automated means' accuracy, and the CSV files and
the qualitative draft to download, exactly as `workbench dsa report` writes them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from workbench.errors import WorkbenchError
from workbench.services.auth import SessionUser
from workbench.services.report import charts
from workbench.services.report.transparency import (
    COMPLAINTS,
    SOLELY_AUTOMATED,
    default_period,
    report_for_page,
)
from workbench.ui.state import load_project, show_error, tx


def _or_dash(value: str) -> str:
    return value if value else "—"


def render(me: SessionUser, project_name: str) -> None:
    st.title("DSA transparency report")
    with tx() as s:
        suggested = default_period(s, load_project(s, project_name))
    left, right = st.columns([1, 1])
    period = left.text_input("Reporting period (YYYY-MM-DD/YYYY-MM-DD)", value=suggested)
    service = right.text_input("Service", value=project_name)
    try:
        with tx() as s:
            report, files = report_for_page(
                s, load_project(s, project_name), me.actor, period, service or None
            )
    except WorkbenchError as exc:
        show_error(exc)
        return

    cols = st.columns(5)
    cols[0].metric(
        "Own-initiative measures",
        _or_dash(report.value("Number of own-initiative content moderation")),
    )
    cols[1].metric("Solely automated", _or_dash(report.value(SOLELY_AUTOMATED)))
    cols[2].metric("Complaints", _or_dash(report.value(COMPLAINTS)))
    cols[3].metric("Share reversed", _or_dash(report.value("Share of complaints")))
    cols[4].metric("Median days to decide", _or_dash(report.value(COMPLAINTS, "Median time")))

    st.subheader("Own-initiative measures")
    a, b = st.columns(2)
    for col, indicator, title in (
        (a, "by category", "By category"),
        (b, "by content type", "By content type"),
        (a, "by automated detection", "Detected by automated means"),
        (b, "by automated decision", "Decision automated"),
    ):
        frame = charts.breakdown_frame(report, indicator)
        if frame.empty:
            col.caption(f"{title}: no measures in the period.")
        else:
            col.altair_chart(charts.breakdown_chart(frame, title))

    st.subheader("Automated means: accuracy on the unbiased sample")
    accuracy = charts.accuracy_frame(report)
    if accuracy.empty:
        st.caption(
            "Nothing to estimate for this period: no champion model by its end, or no sample "
            "with human labels (a sampled evaluation set, a prevalence plan, or items of the "
            "random share labelled in it)."
        )
    else:
        st.altair_chart(charts.accuracy_chart(accuracy))
        for ev in report.means:
            st.caption(f"{ev.name}: {ev.method}")

    st.subheader("All figures")
    table = pd.DataFrame(
        [{"Section": r.section, "Indicator": r.indicator, "Scope": r.scope,
          "Value": r.value or "—", "Contextual Information": r.context} for r in report.rows]
    )  # fmt: skip
    st.dataframe(table, hide_index=True)

    st.subheader("Files")
    for col, (name, data) in zip(st.columns(len(files)), sorted(files.items()), strict=True):
        mime = "text/markdown" if name.endswith(".md") else "text/csv"
        col.download_button(name, data, file_name=name, mime=mime)
    with st.expander("Draft: qualitative description of accuracy (edit before publishing)"):
        st.markdown(files["qualitative_accuracy_draft.md"].decode())
