"""Charts of the DSA transparency report for the report page (Altair / Vega-Lite)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from workbench.services.report.transparency import SECTION_OWN_INITIATIVE, Report


def breakdown_frame(report: Report, indicator: str) -> pd.DataFrame:
    """(value label, count) rows of one own-initiative breakdown, e.g. "by category"."""
    rows = [
        {"group": _readable(r.scope.split("=", 1)[-1]), "measures": int(r.value)}
        for r in report.rows
        if r.section == SECTION_OWN_INITIATIVE and r.indicator.endswith(indicator) and r.value
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["group", "measures"])


PREFIXES = ("STATEMENT_CATEGORY_", "CONTENT_TYPE_", "AUTOMATED_DECISION_", "DECISION_VISIBILITY_")


def _readable(value: str) -> str:
    """`STATEMENT_CATEGORY_SCAMS_AND_FRAUD` -> `Scams and fraud`."""
    for prefix in PREFIXES:
        value = value.removeprefix(prefix)
    return value.replace("_", " ").capitalize()


# Heights are given per band (alt.Step): the Streamlit in use squeezes a nominal axis into a
# few pixels when a chart gives a fixed height in pixels (seen in a 1366x768 screenshot).


def breakdown_chart(frame: pd.DataFrame, title: str) -> Any:
    """Horizontal bars, one per group, the count at the end of each."""
    import altair as alt

    base = alt.Chart(frame).encode(
        y=alt.Y("group:N", title=None, sort="-x", axis=alt.Axis(labelLimit=320)),
        x=alt.X("measures:Q", title="measures", axis=alt.Axis(tickMinStep=1)),
        tooltip=["group:N", "measures:Q"],
    )
    bars = base.mark_bar()
    text = base.mark_text(align="left", dx=3).encode(text="measures:Q")
    return (bars + text).properties(title=title, height=alt.Step(26))


def accuracy_frame(report: Report) -> pd.DataFrame:
    """One row per automated means and indicator with its interval (estimable ones only)."""
    rows = []
    for ev in report.means:
        for name, est in (("accuracy", ev.accuracy), ("precision", ev.precision),
                          ("recall", ev.recall)):  # fmt: skip
            if est.value is not None:
                rows.append({"means": ev.name, "indicator": name, "value": est.value,
                             "low": est.low, "high": est.high, "n": est.n})  # fmt: skip
    return pd.DataFrame(rows, columns=["means", "indicator", "value", "low", "high", "n"])


def accuracy_chart(frame: pd.DataFrame) -> Any:
    """Accuracy, precision and recall (0..1) with their 95% Wilson intervals."""
    import altair as alt

    base = alt.Chart(frame).encode(
        y=alt.Y("indicator:N", title=None, sort=["accuracy", "precision", "recall"]),
        color=alt.Color("means:N", legend=alt.Legend(orient="bottom")),
    )
    points = base.mark_point(filled=True, size=80).encode(
        x=alt.X("value:Q", title="estimate (95% Wilson interval)",
                scale=alt.Scale(domain=[0, 1])),
        tooltip=["means:N", "indicator:N", alt.Tooltip("value:Q", format=".4f"),
                 alt.Tooltip("low:Q", format=".4f"), alt.Tooltip("high:Q", format=".4f"), "n:Q"],
    )  # fmt: skip
    bars = base.mark_errorbar(thickness=2).encode(
        x=alt.X("low:Q", title="estimate (95% Wilson interval)"), x2="high:Q"
    )
    return (bars + points).properties(height=alt.Step(34))
