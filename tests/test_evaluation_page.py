"""The evaluation page (AppTest): an engineer sees versions, the verdict, metrics and charts (PR
curves with precision bands), the prevalence and drift panels with and without data, with no raw
JSON and no empty (None) cells; leads and admins open the one page, a reviewer is told it is not
theirs."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from builders import join_every_project
from eval_builders import build, held_out_rows, label_file, train
from quality_builders import Labels
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from workbench.db.database import Database
from workbench.db.models import Item, Label, Role, User
from workbench.services.audit import Actor
from workbench.services.evaluate.intervals import wilson_interval
from workbench.services.evaluate.offline import pr_curve
from workbench.services.evaluate.prevalence import (
    PlanRequest,
    estimate_prevalence,
    plan_prevalence,
)
from workbench.services.evaluate.sets import create_from_labels
from workbench.services.projects import get_project
from workbench.services.users import add_user

APP = str(Path(__file__).resolve().parents[1] / "workbench" / "ui" / "app.py")
PW = "a long password"


def _elements_of_type(node: Any, kind: str) -> list[Any]:
    found = [node] if getattr(node, "type", None) == kind else []
    for child in getattr(node, "children", {}).values():
        found += _elements_of_type(child, kind)
    return found


def _types(node: Any) -> set[str]:
    out = {str(getattr(node, "type", ""))}
    for child in getattr(node, "children", {}).values():
        out |= _types(child)
    return out


def _login(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(PW)
    at.button[0].click().run()
    return at


def test_engineer_sees_versions_verdict_metrics_and_charts_without_empty_cells(
    sqlite_db: Database, tmp_path: Path
) -> None:
    st.cache_resource.clear()
    truth = build(sqlite_db, spread=1.2)
    with sqlite_db.sessions.begin() as s:
        create_from_labels(s, get_project(s, "p"), "golden",
                           label_file(tmp_path / "g.jsonl", held_out_rows(truth)),
                           Actor.system())  # fmt: skip
        join_every_project(s, add_user(s, "erin", Role.engineer, Actor.system(), password=PW))
    train(sqlite_db)
    train(sqlite_db)
    at = _login("erin")
    at._page_hash = calc_hash("evaluation")
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Evaluation"]
    assert any("v2 against champion v1 on golden@1" in s.value for s in at.success)
    frames = [d.value for d in at.dataframe]
    assert len(frames) >= 3  # versions, comparison, per-policy metrics
    for frame in frames:
        assert isinstance(frame, pd.DataFrame)
        assert not frame.isna().any().any()
        cells = frame.astype(str).to_numpy().ravel()
        assert not any(c in ("None", "nan") or c.startswith("{") for c in cells)
    versions = frames[0]
    assert list(versions["version"]) == ["v2", "v1"]
    assert {"macro AP (golden sets)", "verdict on golden sets"} <= set(versions.columns)
    charts = _elements_of_type(at.main, "vega_lite_chart")
    # The learning curve, the PR curves and the reliability diagram.
    assert len(charts) >= 3, sorted(_types(at.main))
    # The PR curves carry the Wilson band of their precision, and say so.
    assert '"y2": {"field": "precision_hi"}' in _chart_specs(at)
    assert any("95% Wilson interval of the precision" in c.value for c in at.caption)


def test_each_pr_curve_point_has_the_wilson_interval_of_its_precision() -> None:
    positive = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    points = pr_curve(positive, score)
    assert points
    for p in points:
        flagged = score >= p["threshold"]
        tp = int(positive[flagged].sum())
        assert p["precision"] == pytest.approx(tp / flagged.sum())
        assert (p["precision_lo"], p["precision_hi"]) == wilson_interval(tp, int(flagged.sum()))
        assert p["precision_lo"] <= p["precision"] <= p["precision_hi"]


def test_a_reviewer_is_told_the_evaluation_page_is_for_engineers_and_leads(
    sqlite_db: Database,
) -> None:
    st.cache_resource.clear()
    with sqlite_db.sessions.begin() as s:
        from builders import make_project

        make_project(s, "p")
        join_every_project(s, add_user(s, "alice", Role.reviewer, Actor.system(), password=PW))
    at = _login("alice")
    at._page_hash = calc_hash("evaluation")
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [
        "The Evaluation page is for the engineer and lead roles; you are logged in as alice "
        "(reviewer). Pick one of your pages in the sidebar."
    ]
    assert not at.dataframe and not at.subheader


def test_a_lead_and_an_admin_open_the_one_evaluation_page(sqlite_db: Database) -> None:
    st.cache_resource.clear()
    with sqlite_db.sessions.begin() as s:
        from builders import make_project

        make_project(s, "p")
        join_every_project(s, add_user(s, "lena", Role.lead, Actor.system(), password=PW))
        join_every_project(s, add_user(s, "ada", Role.admin, Actor.system(), password=PW))
    for name, home in (("lena", "Lead"), ("ada", "Admin")):
        at = _login(name)
        assert [t.value for t in at.title] == [home]  # each role still lands on its own page
        at._page_hash = calc_hash("evaluation")
        at.run()
        assert not at.exception, at.exception
        assert [t.value for t in at.title] == ["Evaluation"]
        assert not at.error
        assert "Model versions" in [h.value for h in at.subheader]


def _frame_with(at: AppTest, column: str) -> pd.DataFrame:
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(frames) == 1, [list(d.value.columns) for d in at.dataframe]
    return frames[0]


def _chart_specs(at: AppTest) -> str:
    """The charts' Vega-Lite specs (without their data, which names every column anyway)."""
    return " ".join(c.proto.spec for c in _elements_of_type(at.main, "vega_lite_chart"))


def _open_as_engineer(db: Database) -> AppTest:
    with db.sessions.begin() as s:
        join_every_project(s, add_user(s, "erin", Role.engineer, Actor.system(), password=PW))
    at = _login("erin")
    at._page_hash = calc_hash("evaluation")
    at.run()
    assert not at.exception, at.exception
    return at


def _labels(s: Any) -> Labels:
    """The label builder over the project's existing items (it makes new ones otherwise)."""
    lab = Labels(s, get_project(s, "p"))
    lab.items.update({i.external_id: i for i in s.scalars(select(Item))})
    lab.users.update({u.name: u for u in s.scalars(select(User))})
    lab.n = s.scalar(select(func.count()).select_from(Label)) or 0  # fresh idempotency keys
    return lab


def _plan(
    db: Database, tmp_path: Path, policy: str, truth: list[str] | None = None
) -> dict[str, Any]:
    """A plan of 40 items in 4 strata; with `truth`, bob reviews every sampled item."""
    req = PlanRequest("p", policy, n=40, out=tmp_path / f"{policy}.csv", strata=4)
    plan_prevalence(db, req, Actor.system())
    if truth is not None:
        with db.sessions.begin() as s:
            lab = _labels(s)
            for row in csv.DictReader(req.out.open()):
                lab.label(row["external_id"], "bob", truth[int(row["external_id"][1:])])
    with db.sessions() as s:
        return estimate_prevalence(s, "p", policy)


def test_prevalence_panel_shows_each_estimate_and_recall_with_intervals(
    sqlite_db: Database, tmp_path: Path
) -> None:
    st.cache_resource.clear()
    st.cache_data.clear()
    truth = build(sqlite_db, spread=1.2)
    train(sqlite_db)
    expected = {p: _plan(sqlite_db, tmp_path, p, truth) for p in ("hate", "spam")}
    at = _open_as_engineer(sqlite_db)
    frame = _frame_with(at, "prevalence").set_index("policy")
    assert sorted(frame.index) == ["hate", "spam"]
    for policy, est in expected.items():
        assert est["estimate"] is not None and est["recall"]["estimate"] is not None
        row = frame.loc[policy]
        lo, hi = est["ci"]
        assert row["prevalence"] == f"{est['estimate']:.1%} ({lo:.1%}–{hi:.1%})"
        assert row["reviewed"] == f"{est['n_reviewed']} of {est['n_sampled']}"
        rec = est["recall"]
        assert row["recall @ threshold"].startswith(f"{rec['estimate']:.1%} (")
        assert row["recall @ threshold"].endswith(f" at {rec['threshold']:.3f}")
    cells = frame.astype(str).to_numpy().ravel()
    assert not any(c in ("None", "nan", "") for c in cells)
    # Two policies with an estimate: the chart of the estimates with their intervals.
    assert "prevalence (95% interval)" in _chart_specs(at)


def test_prevalence_panel_without_a_plan_or_a_review_says_so(
    sqlite_db: Database, tmp_path: Path
) -> None:
    st.cache_resource.clear()
    st.cache_data.clear()
    truth = build(sqlite_db, spread=1.2)
    train(sqlite_db)
    at = _open_as_engineer(sqlite_db)
    assert any("No prevalence plan yet" in c.value for c in at.caption)
    # Every label turns `unsure` (newer than the training labels): no sampled item has a verdict.
    with sqlite_db.sessions.begin() as s:
        lab = _labels(s)
        for n in range(len(truth)):
            lab.label(f"x{n}", "alice", "unsure", days=1)
    est = _plan(sqlite_db, tmp_path, "spam")
    assert est["n_reviewed"] == 0 and est["estimate"] is None
    at.run()
    assert not at.exception, at.exception
    row = _frame_with(at, "prevalence").iloc[0]
    assert row["prevalence"] == "0 of 40 sampled items reviewed; no estimate yet"
    assert row["recall @ threshold"] == "–"
    assert "prevalence (95% interval)" not in _chart_specs(at)


def test_drift_panel_flags_the_alerts_and_states_the_bins(sqlite_db: Database) -> None:
    st.cache_resource.clear()
    st.cache_data.clear()
    build(sqlite_db, spread=1.2)
    train(sqlite_db)
    # Items x80.. (all spam) arrive now, the rest 90 days ago: the current window is all spam.
    with sqlite_db.sessions.begin() as s:
        for item in s.scalars(select(Item)):
            if int(item.external_id[1:]) < 80:
                item.created_at = datetime.now(UTC) - timedelta(days=90)
    at = _open_as_engineer(sqlite_db)
    (headline,) = (e.value for e in at.error)  # one box, however many alerts
    assert headline.endswith("drift alerts on model v1")
    alerts = "\n".join(t.value for t in at.text).splitlines()
    assert any(a.startswith("score drift: spam PSI") for a in alerts), alerts
    assert any(a.startswith("embedding drift: domain classifier ROC-AUC") for a in alerts), alerts
    psi = _frame_with(at, "PSI").set_index("class score")
    assert psi.loc["spam", "alert"] == "ALERT"
    assert any("10 quantile bins" in c.value for c in at.caption)


def test_drift_panel_with_too_few_items_in_a_window_says_so(sqlite_db: Database) -> None:
    st.cache_resource.clear()
    st.cache_data.clear()
    build(sqlite_db, spread=1.2)
    train(sqlite_db)
    at = _open_as_engineer(sqlite_db)  # every item is new: the reference window is empty
    infos = [i.value for i in at.info]
    assert any(i.startswith("No drift measured yet") and "at least 10" in i for i in infos), infos
    assert any(c.value.startswith("the reference window") for c in at.caption)
    assert not at.error
