"""Drift: the PSI against a by-hand computation, the domain classifier's AUC on drifted and
undrifted vectors, windows by created_at and the alert thresholds, and bad windows."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import joblib
import numpy as np
import pytest
from builders import make_project
from quality_builders import T0, Labels, add_fused_vectors
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

from workbench.db.database import Database
from workbench.db.models import Item, ModelStatus, ModelVersion, Project
from workbench.services.audit import Actor
from workbench.services.evaluate.drift import (
    domain_classifier_auc,
    parse_window,
    population_stability_index,
)
from workbench.services.projects import set_project_setting


def test_psi_matches_a_by_hand_computation() -> None:
    rng = np.random.default_rng(0)
    ref = rng.random(2000)
    cur = rng.random(1000) ** 2  # shifted towards 0
    got = population_stability_index(ref, cur)
    edges = np.quantile(ref, np.linspace(0, 1, 11))
    edges[0], edges[-1] = -np.inf, np.inf
    r = np.histogram(ref, edges)[0] / len(ref)
    c = np.histogram(cur, edges)[0] / len(cur)
    assert got["psi"] == pytest.approx(float(np.sum((c - r) * np.log(c / r))), abs=1e-5)
    assert got["psi"] > 0.2 and len(got["reference_share"]) == 10
    same = population_stability_index(ref, rng.random(2000))
    assert same["psi"] < 0.02


def test_psi_of_an_empty_bin_is_finite() -> None:
    ref = np.linspace(0, 1, 100)
    got = population_stability_index(ref, np.full(50, 0.99))
    assert np.isfinite(got["psi"]) and got["psi"] > 1


def test_domain_classifier_auc_is_half_without_drift_and_high_with_it() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (300, 8))
    assert abs(domain_classifier_auc(ref, rng.normal(0, 1, (300, 8)))["roc_auc"] - 0.5) < 0.1
    shifted = rng.normal(0, 1, (300, 8)) + np.array([1.5] + [0] * 7)
    assert domain_classifier_auc(ref, shifted)["roc_auc"] > 0.8


def test_bad_windows_are_refused_naming_the_option() -> None:
    from workbench.errors import WorkbenchError

    for text, needle in (("2026-01-01", "START/END"), ("2026-13-01/2026-02-01", "not a date"),
                         ("2026-02-01/2026-01-01", "ends before")):  # fmt: skip
        with pytest.raises(WorkbenchError, match=needle) as exc:
            parse_window(text, "--reference")
        assert "--reference" in exc.value.message


def _project(db: Database, drifted: bool) -> None:
    """60 items 60 days ago and 60 new ones (shifted in vector space when `drifted`), and a
    champion whose score follows the first vector coordinate."""
    rng = np.random.default_rng(1)
    old = rng.normal(0, 1, (60, 4))
    new = rng.normal(0, 1, (60, 4)) + (np.array([2.5, 0, 0, 0]) if drifted else 0)
    with db.sessions.begin() as s:
        p = make_project(s)
        lab = Labels(s, p)
        items = [lab.item(f"old{n}") for n in range(60)] + [lab.item(f"new{n}") for n in range(60)]
        for n, item in enumerate(items):
            item.created_at = T0 - timedelta(days=60) if n < 60 else T0
        vectors = np.vstack([old, new]).astype(np.float32)
        add_fused_vectors(s, db.settings, p, items, vectors)
        head = LogisticRegression().fit(old, np.where(old[:, 0] > 0, "hate", "none"))
        folder = db.settings.resolved_home / "models" / str(p.id) / "v0001"
        folder.mkdir(parents=True)
        joblib.dump(head, folder / "head.joblib")
        s.add(ModelVersion(
            project_id=p.id, version=1, head="logistic", classes=["hate", "none"],
            artifact_path=str(folder / "head.joblib"), status=ModelStatus.champion,
        ))  # fmt: skip


def test_drift_alerts_on_shifted_new_items(db: Database, cli) -> None:  # type: ignore[no-untyped-def]
    _project(db, drifted=True)
    r = cli.json("drift", "-p", "p")
    # Default windows: the last 30 days against everything before.
    assert r["reference"]["scored"] == 60 and r["current"]["scored"] == 60
    assert r["score_psi"]["bins"] == 10 and "quantile bins" in r["score_psi"]["method"]
    assert r["score_psi"]["classes"]["hate"]["psi"] > 0.2 and r["score_psi"]["alert"]
    assert r["embedding_drift"]["roc_auc"] > 0.8 and r["embedding_drift"]["alert"]
    assert any("embedding drift" in a for a in r["alerts"])
    human = cli("drift", "-p", "p")
    assert human.exit_code == 0 and "PSI hate" in human.stdout and "alert:" in human.stderr
    # The thresholds are project settings.
    with db.sessions.begin() as s:
        project = s.scalars(select(Project)).one()
        set_project_setting(s, project, "drift_auc_alert", "0.99", Actor.system())
        set_project_setting(s, project, "drift_psi_alert", "100", Actor.system())
    r = cli.json("drift", "-p", "p")
    assert r["alerts"] == [] and r["embedding_drift"]["threshold"] == 0.99


def test_no_drift_no_alert_and_explicit_windows(db: Database, cli) -> None:  # type: ignore[no-untyped-def]
    _project(db, drifted=False)
    start = (T0 - timedelta(days=61)).date().isoformat()
    mid = (T0 - timedelta(days=1)).date().isoformat()
    end = (T0 + timedelta(days=1)).date().isoformat()
    r = cli.json("drift", "-p", "p", "--reference", f"{start}/{mid}", "--current", f"{mid}/{end}")
    assert r["reference"]["items"] == 60 and r["current"]["items"] == 60
    assert r["embedding_drift"]["roc_auc"] < 0.7 and r["alerts"] == []
    # A window with too few items: exit 1 naming it.
    r = cli.json("drift", "-p", "p", "--reference", "2020-01-01/2020-02-01", expect=1)
    assert "reference window" in r["error"] and "has 0 items" in r["error"]
    r = cli.json("drift", "-p", "p", "--current", "yesterday/today", expect=1)
    assert "--current" in r["error"]


def test_drift_without_a_champion_says_so(db: Database, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with db.sessions.begin() as s:
        p = make_project(s)
        lab = Labels(s, p)
        for n in range(30):
            lab.item(f"i{n}").created_at = T0 - timedelta(days=60 * (n % 2))
        assert s.scalars(select(Item)).first() is not None
    r = cli.json("drift", "-p", "p", expect=1)
    assert "no champion model" in r["error"]
