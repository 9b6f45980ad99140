"""The evaluation page: model versions with their figures in columns, the learning curve, a
version's metrics on a frozen evaluation set (PR curves with precision bands, reliability
diagrams, a threshold chooser), champion against challenger with the rule's verdict, the online
metrics, prevalence estimates and drift alerts."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from workbench.errors import WorkbenchError
from workbench.services.auth import SessionUser
from workbench.services.evaluate.drift import (
    CURRENT_DAYS,
    MIN_WINDOW_ITEMS,
    TooFewItems,
    drift_report,
)
from workbench.services.evaluate.members import frozen_sets
from workbench.services.evaluate.offline import ECE_BINS, evaluate
from workbench.services.evaluate.online import online_metrics
from workbench.services.evaluate.prevalence import prevalence_overview
from workbench.services.evaluate.registry import latest_comparison, model_rows
from workbench.ui.state import database, load_project, show_error, tx

DASH = "–"
ALERT_STYLE = "background-color: rgba(255, 43, 43, 0.12); color: rgb(125, 53, 59)"
CHART_HEIGHT = 260
PAGE_RESAMPLES = 300  # fewer than the CLI's 1000: the page recomputes on every choice


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _with_ci(value: Any, ci: list[Any] | None) -> str:
    if value is None:
        return DASH
    if not ci or ci[0] is None:
        return _num(value)
    return f"{value:.3f} ({ci[0]:.2f}–{ci[1]:.2f})"


def _versions_section(project_name: str) -> list[dict[str, Any]]:
    st.subheader("Model versions")
    with tx() as s:
        rows = model_rows(s, load_project(s, project_name))
    if not rows:
        st.caption("No model versions yet: launch a retrain round on the Engineer page.")
        return rows
    table = pd.DataFrame(
        [
            {
                "version": f"v{r['version']}",
                "status": r["status"],
                "trained": r["created_at"].strftime("%Y-%m-%d %H:%M"),
                "trained on": r["trained_on"],
                "macro-F1 (validation)": _num(r["macro_f1"]),
                "macro AP (golden sets)": _num(r["golden_macro_ap"]),
                "calibrated": _num(r["calibrated"]),
                "verdict on golden sets": r["verdict"] or DASH,
                "Δ macro AP": _num(r["macro_ap_delta"]),
                "flip rate": DASH if r["flip_rate"] is None else f"{r['flip_rate']:.1%}",
            }
            for r in rows
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")
    curve = pd.DataFrame(
        [{"version": r["version"], "macro-F1": r["macro_f1"]} for r in rows if r["macro_f1"]]
    )
    if len(curve) > 1:
        st.caption("Learning curve: macro-F1 on each round's own validation split")
        st.altair_chart(
            alt.Chart(curve)
            .mark_line(point=True)
            .encode(
                x=alt.X("version:O", title="model version"),
                y=alt.Y("macro-F1:Q", scale=alt.Scale(domain=[0, 1])),
            )
            .properties(height=180),
            width="stretch",
        )
    return rows


def _policy_table(result: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "policy": c,
                "support": m["support"],
                "precision": _with_ci(m["precision"], m["precision_ci"]),
                "recall": _with_ci(m["recall"], m["recall_ci"]),
                "F1": _with_ci(m["f1"], m.get("f1_ci")),
                "average precision": _with_ci(
                    m["average_precision"], m.get("average_precision_ci")
                ),
                "threshold": _num(m["threshold"]),
                "precision @ threshold": _num(m["precision_at_threshold"]),
                "recall @ threshold": _num(m["recall_at_threshold"]),
            }
            for c, m in result["policies"].items()
            if m["support"] or m["flagged_at_threshold"]
        ]
    )


def _charts(result: dict[str, Any]) -> None:
    pr = pd.DataFrame(
        [
            {"policy": c, **p}
            for c, m in result["policies"].items()
            if c != "none"
            for p in m.get("pr_curve", [])
        ]
    )
    rel = pd.DataFrame(
        [
            {"policy": c, **r, "lo": r["observed_ci"][0], "hi": r["observed_ci"][1]}
            for c, m in result["policies"].items()
            if c != "none" and m["support"]
            for r in m.get("reliability", [])
        ]
    )
    if not rel.empty:
        rel = rel.drop(columns=["observed_ci"])  # lists do not go into a chart's data
    left, right = st.columns(2)
    with left:
        st.caption(
            "Precision–recall curve per policy (● operating threshold); bars: 95% Wilson "
            "interval of the precision at each operating point"
        )
        if pr.empty:
            st.caption("No policy has positives in this set.")
        else:
            points = pd.DataFrame(
                [
                    {
                        "policy": c,
                        "recall": m["recall_at_threshold"],
                        "precision": m["precision_at_threshold"],
                    }
                    for c, m in result["policies"].items()
                    if c != "none" and m["precision_at_threshold"] is not None
                ]
            )
            lines = (
                alt.Chart(pr)
                .mark_line(interpolate="step-after")
                .encode(
                    x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1])),
                    y=alt.Y("precision:Q", scale=alt.Scale(domain=[0, 1])),
                    color="policy:N",
                )
            )
            layers = lines
            if "precision_lo" in pr.columns:
                # One thin vertical interval per operating point: drawn close together they
                # read as a band, and each stays true to its own point (a filled area would
                # join points of different thresholds).
                band = (
                    alt.Chart(pr)
                    .mark_rule(opacity=0.25, strokeWidth=2)
                    .encode(
                        x="recall:Q",
                        y=alt.Y("precision_lo:Q", title="precision"),
                        y2="precision_hi:Q",
                        color="policy:N",
                    )
                )
                layers = band + lines
            if not points.empty:
                layers = layers + alt.Chart(points).mark_point(size=80, filled=True).encode(
                    x="recall:Q", y="precision:Q", color="policy:N"
                )
            st.altair_chart(layers.properties(height=CHART_HEIGHT), width="stretch")
    with right:
        st.caption(
            f"Reliability diagram per policy (one-vs-rest, {ECE_BINS} equal-width score bins, "
            "95% Wilson bars); diagonal = calibrated"
        )
        if rel.empty:
            st.caption("No scores to bin.")
        else:
            diagonal = (
                alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]}))
                .mark_line(strokeDash=[4, 4], color="gray")
                .encode(x="x:Q", y="y:Q")
            )
            dots = (
                alt.Chart(rel)
                .mark_line(point=True)
                .encode(
                    x=alt.X("mean_score:Q", title="mean score", scale=alt.Scale(domain=[0, 1])),
                    y=alt.Y("observed:Q", title="observed share", scale=alt.Scale(domain=[0, 1])),
                    color="policy:N",
                    tooltip=["policy", "n", "mean_score", "observed"],
                )
            )
            bars = (
                alt.Chart(rel)
                .mark_rule(opacity=0.5)
                .encode(x="mean_score:Q", y="lo:Q", y2="hi:Q", color="policy:N")
            )
            st.altair_chart(
                (diagonal + bars + dots).properties(height=CHART_HEIGHT), width="stretch"
            )


def _threshold_chooser(result: dict[str, Any]) -> None:
    st.caption("Threshold chooser: the precision/recall trade-off of one policy on this set")
    policies = [c for c, m in result["policies"].items() if m.get("pr_curve")]
    if not policies:
        st.caption("No policy with positives in this set.")
        return
    left, right = st.columns([1, 2])
    with left:
        policy = st.selectbox("Policy", policies, key="eval_threshold_policy")
    curve = result["policies"][policy]["pr_curve"]
    stored = result["policies"][policy]["threshold"] or 0.5
    with right:
        threshold = st.slider(
            "Threshold", 0.0, 1.0, float(round(stored, 2)), 0.01, key=f"eval_thr_{policy}"
        )
    at = [p for p in curve if p["threshold"] >= threshold]
    point = at[0] if at else curve[-1]
    a, b, c = st.columns(3)
    a.metric("Precision", f"{point['precision']:.3f}")
    b.metric("Recall", f"{point['recall']:.3f}")
    c.metric("Stored threshold", f"{stored:.3f}")


@st.cache_data(max_entries=32, show_spinner=False)
def _evaluation(database_url: str, project_name: str, set_ref: str, version: int) -> dict[str, Any]:
    """A version's figures on a frozen set: both never change, so one computation serves every
    session (the database's address is in the key so that two databases never share one)."""
    del database_url  # only a cache key: `tx` opens the configured database
    with tx() as s:
        return evaluate(
            s,
            database().settings,
            load_project(s, project_name),
            set_ref,
            version=version,
            curves=True,
            n_resamples=PAGE_RESAMPLES,
        )


def _offline_section(project_name: str, versions: list[dict[str, Any]]) -> None:
    st.subheader("Offline metrics on a frozen evaluation set")
    with tx() as s:
        sets = [f"{es.name}@{es.version}" for es in frozen_sets(s, load_project(s, project_name))]
    if not sets or not versions:
        st.caption(
            "Needs a frozen evaluation set (`workbench evalset create` or `sample`) and a "
            "model version."
        )
        return
    left, right = st.columns(2)
    chosen_set = left.selectbox("Evaluation set", sets, key="eval_set")
    labels = {f"v{r['version']} ({r['status']})": r["version"] for r in versions}
    chosen = right.selectbox("Model version", list(labels), key="eval_version")
    try:
        with st.spinner("Scoring the set and bootstrapping the intervals..."):
            result = _evaluation(database().settings.url, project_name, chosen_set, labels[chosen])
    except WorkbenchError as exc:
        show_error(exc)
        return
    cols = st.columns(4)
    cols[0].metric("Items", result["n_items"])
    cols[1].metric("Macro-F1", _num(result["macro_f1"]))
    cols[2].metric("ECE", _num(result["ece"]))
    cols[3].metric("Brier", _num(result["brier"]))
    st.caption(
        f"Intervals: {result['intervals']}. Precision, recall and F1 are one-vs-rest on the "
        'top class; "@ threshold" uses the policy\'s stored operating threshold.'
    )
    st.dataframe(_policy_table(result), hide_index=True, width="stretch")
    absent = [
        c
        for c, m in result["policies"].items()
        if not m["support"] and not m["flagged_at_threshold"]
    ]
    if absent:
        st.caption(f"Classes with no item in this set and none flagged: {', '.join(absent)}")
    _charts(result)
    _threshold_chooser(result)


def _comparison_section(project_name: str) -> None:
    st.subheader("Champion and challenger")
    with tx() as s:
        comparison = latest_comparison(s, load_project(s, project_name))
    if comparison is None:
        st.caption(
            "No round has compared a challenger on a frozen evaluation set yet (without one, "
            "rounds promote by the old macro-F1 rule)."
        )
        return
    verdict = comparison["verdict"]
    text = (
        f"v{comparison['challenger']} against champion v{comparison['champion']} on "
        f"{', '.join(comparison.get('evaluation_sets', []))} ({comparison['n_items']} items): "
        f"{verdict}."
    )
    (st.success if comparison["promote"] else st.warning)(text)
    st.text(comparison["reason"])
    ap = comparison["macro_average_precision"]
    lo, hi = comparison["macro_average_precision_delta_ci"]
    rows = [
        {
            "figure": "macro average precision",
            f"champion v{comparison['champion']}": _num(ap["champion"]),
            f"challenger v{comparison['challenger']}": _num(ap["challenger"]),
            "test": f"paired bootstrap Δ {comparison['macro_average_precision_delta']:+.3f} "
            f"({lo:+.3f} to {hi:+.3f})",
        },
        {
            "figure": "prediction flip rate",
            f"champion v{comparison['champion']}": DASH,
            f"challenger v{comparison['challenger']}": f"{comparison['flip_rate']:.1%}",
            "test": DASH,
        },
    ]
    for policy, t in comparison["policies"].items():
        rows.append(
            {
                "figure": f"recall @ threshold: {policy}",
                f"champion v{comparison['champion']}": _num(t["recall_a"]),
                f"challenger v{comparison['challenger']}": _num(t["recall_b"]),
                "test": f"McNemar p = {t['pvalue']:.3g} ({t['test']})",
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _online_section(project_name: str) -> None:
    st.subheader("Online metrics (review stream, per ISO week)")
    with tx() as s:
        result = online_metrics(s, load_project(s, project_name))
    if not result["weeks"]:
        st.caption("No reviews yet.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "week": w["week"],
                    "reviews": w["reviews"],
                    "flagged by model": w["flagged"],
                    "flagged precision": _with_ci(
                        w["flagged_precision"]["value"], w["flagged_precision"]["ci"]
                    ),
                    "overturn rate": _with_ci(
                        w["overturn_rate"]["value"], w["overturn_rate"]["ci"]
                    ),
                }
                for w in result["weeks"]
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    yields = pd.DataFrame(result["yield"])
    if not yields.empty:
        st.caption("Queue yield: violations per 100 reviews, per selection strategy")
        st.altair_chart(
            alt.Chart(yields)
            .mark_bar()
            .encode(
                x=alt.X("strategy:N", title=None),
                y=alt.Y("per_100_reviews:Q", title="violations per 100 reviews"),
                color="strategy:N",
                column=alt.Column("week:N", title=None),
                tooltip=["week", "strategy", "reviews", "violations", "per_100_reviews"],
            )
            .properties(height=180, width=160),
        )


def _interval_text(value: float | None, ci: list[float] | None, pct: bool = True) -> str:
    if value is None:
        return DASH
    if not pct:
        return _with_ci(value, ci)
    if not ci:
        return f"{value:.1%}"
    return f"{value:.1%} ({ci[0]:.1%}–{ci[1]:.1%})"


def _prevalence_row(r: dict[str, Any]) -> dict[str, str]:
    if "error" in r:
        return {"policy": r["policy"], "prevalence": r["error"], "reviewed": DASH,
                "estimated items": DASH, "recall @ threshold": DASH, "model": DASH}  # fmt: skip
    reviewed = f"{r['n_reviewed']} of {r['n_sampled']}"
    if r["estimate"] is None:
        prevalence = f"{reviewed} sampled items reviewed; no estimate yet"
    else:
        prevalence = _interval_text(r["estimate"], r["ci"])
    rec = r.get("recall")
    if rec is None:
        recall = DASH
    elif rec["estimate"] is None:
        recall = rec.get("note", "undefined")
    else:
        recall = f"{_interval_text(rec['estimate'], rec['ci'])} at {rec['threshold']:.3f}"
    return {
        "policy": r["policy"],
        "prevalence": prevalence,
        "reviewed": reviewed,
        "estimated items": DASH
        if r.get("estimated_count") is None
        else f"{r['estimated_count']:.0f} of {r['population']}",
        "recall @ threshold": recall,
        "model": f"v{r['model_version']}",
    }


def _prevalence_section(project_name: str) -> None:
    st.subheader("Prevalence and recall (stratified measurement samples)")
    try:
        with tx() as s:
            rows = prevalence_overview(s, project_name)
    except WorkbenchError as exc:
        show_error(exc)
        return
    if not rows:
        st.caption(
            "No prevalence plan yet: draw one with `workbench prevalence plan -p "
            f"{project_name} --policy CODE --n N --out FILE` and review its queue."
        )
        return
    st.caption(
        "Each policy's latest plan: the design-weighted share of the pool that violates it and "
        "the plan model's recall at its threshold, with 95% intervals, from the sampled items "
        "reviewed so far."
    )
    st.dataframe(pd.DataFrame([_prevalence_row(r) for r in rows]), hide_index=True, width="stretch")
    notes = [f"{r['policy']}: {r['note']}" for r in rows if r.get("note")]
    for note in notes:
        st.caption(note)
    estimates = pd.DataFrame(
        [
            {"policy": r["policy"], "prevalence": r["estimate"], "lo": r["ci"][0], "hi": r["ci"][1]}
            for r in rows
            if r.get("estimate") is not None
        ]
    )
    if len(estimates) > 1:
        base = alt.Chart(estimates).encode(y=alt.Y("policy:N", title=None))
        st.altair_chart(
            (
                base.mark_rule().encode(
                    x=alt.X("lo:Q", title="prevalence (95% interval)", axis=alt.Axis(format="%")),
                    x2="hi:Q",
                )
                + base.mark_point(filled=True, size=80).encode(x="prevalence:Q")
            ).properties(height=40 + 30 * len(estimates)),
            width="stretch",
        )
    methods = [r for r in rows if "method" in r]
    if methods:
        with st.expander("Method"):
            st.text(methods[0]["method"])
            if methods[0].get("recall"):
                st.text(methods[0]["recall"]["method"])


@st.cache_data(ttl=600, max_entries=8, show_spinner=False)
def _drift(database_url: str, project_name: str, champion_version: int) -> dict[str, Any]:
    """The drift report (a domain classifier is fitted: seconds), reused for ten minutes."""
    del database_url, champion_version  # cache keys only
    with tx() as s:
        return drift_report(s, database().settings, project_name)


def _drift_section(project_name: str, versions: list[dict[str, Any]]) -> None:
    st.subheader(f"Drift (newest {CURRENT_DAYS} days against everything before)")
    champion = next((r["version"] for r in versions if r["status"] == "champion"), None)
    if champion is None:
        st.caption("Needs a champion model: drift is measured on its scores.")
        return
    try:
        with st.spinner("Comparing the windows..."):
            report = _drift(database().settings.url, project_name, champion)
    except TooFewItems as exc:
        st.info(
            f"No drift measured yet: the current window (the newest {CURRENT_DAYS} days of "
            f"items) and the reference window (everything before) each need at least "
            f"{MIN_WINDOW_ITEMS} embedded items. Other windows: `workbench drift -p "
            f"{project_name} --reference START/END --current START/END`."
        )
        st.caption(exc.message)
        return
    except WorkbenchError as exc:
        show_error(exc)
        return
    psi, emb = report["score_psi"], report["embedding_drift"]
    if report["alerts"]:
        n = len(report["alerts"])
        st.error(f"{n} drift alert{'s' if n > 1 else ''} on model v{report['model_version']}")
        st.text("\n".join(report["alerts"]))  # plain text: class codes are project input
    else:
        st.success(
            f"No drift alert: largest score PSI {psi['max']:.3f} < {psi['threshold']}, "
            f"domain classifier ROC-AUC {emb['roc_auc']:.3f} < {emb['threshold']}."
        )
    ref, cur = report["reference"], report["current"]
    st.caption(
        f"Model v{report['model_version']}. Reference: {ref['start'][:10]} to {ref['end'][:10]} "
        f"({ref['scored']} scored items); current: {cur['start'][:10]} to {cur['end'][:10]} "
        f"({cur['scored']} scored items)."
    )
    left, right = st.columns([2, 1])
    with left:
        table = pd.DataFrame(
            [
                {
                    "class score": cls,
                    "PSI": f"{v['psi']:.3f}",
                    "alert": "ALERT" if v["psi"] >= psi["threshold"] else "ok",
                }
                for cls, v in psi["classes"].items()
            ]
        )
        st.dataframe(
            table.style.apply(
                lambda row: [ALERT_STYLE if row["alert"] == "ALERT" else ""] * len(row), axis=1
            ),
            hide_index=True,
            width="stretch",
        )
        st.caption(f"PSI: {psi['method']}; alert at PSI >= {psi['threshold']}.")
    with right:
        # An alert shows as a red delta; no delta otherwise (an arrow on "ok" reads as a trend).
        st.metric(
            "Embedding drift (ROC-AUC)",
            f"{emb['roc_auc']:.3f}",
            delta="ALERT" if emb["alert"] else None,
            delta_color="inverse",
        )
        st.caption(f"{emb['method']}; alert at AUC >= {emb['threshold']}.")


def render(me: SessionUser, project_name: str) -> None:
    del me  # read-only page; the services check nothing here beyond the page's role
    st.title("Evaluation")
    versions = _versions_section(project_name)
    _comparison_section(project_name)
    _offline_section(project_name, versions)
    _prevalence_section(project_name)
    _drift_section(project_name, versions)
    _online_section(project_name)
