"""The evaluation page (AppTest): an engineer sees versions, the verdict, metrics and charts, with
no raw JSON and no empty (None) cells; a reviewer has no such page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from eval_builders import build, held_out_rows, label_file, train
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from workbench.db.database import Database
from workbench.db.models import Role
from workbench.services.audit import Actor
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
        add_user(s, "erin", Role.engineer, Actor.system(), password=PW)
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


def test_a_reviewer_has_no_evaluation_page(sqlite_db: Database) -> None:
    st.cache_resource.clear()
    with sqlite_db.sessions.begin() as s:
        from builders import make_project

        make_project(s, "p")
        add_user(s, "alice", Role.reviewer, Actor.system(), password=PW)
    at = _login("alice")
    at._page_hash = calc_hash("evaluation")
    at.run()
    assert "Evaluation" not in [t.value for t in at.title]
