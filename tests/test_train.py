"""Retrain rounds end to end: training labels from the database, a head on the fused vectors,
a stored model version with metrics, artifact and pool scores, the guard, and warm starts."""

from __future__ import annotations

from typing import Any

import joblib
import numpy as np
from builders import make_project
from quality_builders import Labels, add_fused_vectors, separable_vectors
from sqlalchemy import select

from workbench.db.database import Database
from workbench.db.models import ModelStatus, ModelVersion, RoundStatus, TrainingRound
from workbench.services.audit import Actor
from workbench.services.train.rounds import run_round_now
from workbench.services.train.train import champion

SYSTEM = Actor.system()
CLASSES = ["hate", "spam", "none"]


def _project(db: Database, labelled_per_class: int) -> tuple[int, list[str]]:
    vectors, truth = separable_vectors(CLASSES, 30)
    with db.sessions.begin() as s:
        p = make_project(s)
        lab = Labels(s, p)
        items = [lab.item(f"x{n}") for n in range(len(truth))]
        add_fused_vectors(s, db.settings, p, items, vectors)
        seen: dict[str, int] = {}
        for n, cls in enumerate(truth):
            if seen.get(cls, 0) < labelled_per_class:
                seen[cls] = seen.get(cls, 0) + 1
                lab.label(f"x{n}", "alice", cls)
        return p.id, truth


def _round(db: Database) -> tuple[RoundStatus, str | None]:
    run = run_round_now(db, "p", SYSTEM, refill_queue=False, worker="test")
    with db.sessions() as s:
        return run.status, s.get_one(TrainingRound, run.round_id).error


def test_a_round_stores_a_champion_with_metrics_artifact_and_pool_scores(db: Database) -> None:
    _project(db, labelled_per_class=8)
    status, error = _round(db)
    assert status == RoundStatus.succeeded, error
    with db.sessions() as s:
        from workbench.db.models import Project

        p = s.scalars(select(Project)).one()
        mv = champion(s, p)
        assert mv is not None and mv.version == 1 and mv.status == ModelStatus.champion
        assert sorted(mv.classes) == sorted(CLASSES) and mv.trained_on == 24
        # Too few randomly sampled labels: uncalibrated, and it says so; evaluated by CV.
        assert mv.calibrated is False and mv.calibration_note
        assert "cross-validation" in mv.metrics["evaluation"]
        assert mv.metrics["macro_f1"] > 0.9  # separable clusters
        assert mv.metrics["warm_start"] is False
        scores = np.load(mv.scores_path)
        assert scores.shape == (90, 3)  # the whole pool, one column per class
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)


def test_the_second_round_warm_starts_from_the_champion(db: Database) -> None:
    _project(db, labelled_per_class=8)
    assert _round(db)[0] == RoundStatus.succeeded
    assert _round(db)[0] == RoundStatus.succeeded
    with db.sessions() as s:
        versions = s.scalars(select(ModelVersion).order_by(ModelVersion.version)).all()
        assert [v.version for v in versions] == [1, 2]
        assert versions[1].metrics["warm_start"] is True
        first, second = (joblib.load(v.artifact_path).head.model_ for v in versions)
    # Both rounds learn from the same labels, and the objective is convex: started from the
    # champion's weights, lbfgs is at the optimum already; from zeros it needs many steps.
    # Were warm start only a flag, both would take the same number of iterations.
    assert int(second.n_iter_.max()) <= 2 < 10 < int(first.n_iter_.max())
    np.testing.assert_allclose(second.coef_, first.coef_, atol=1e-3)


def test_a_failed_round_keeps_the_previous_model(db: Database, monkeypatch: Any) -> None:
    _project(db, labelled_per_class=8)
    assert _round(db)[0] == RoundStatus.succeeded
    import workbench.services.train.train as train

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(train, "score_vectors", broken)
    status, error = _round(db)
    assert status == RoundStatus.failed and "disk full" in (error or "")
    with db.sessions() as s:
        from workbench.db.models import Project

        p = s.scalars(select(Project)).one()
        mv = champion(s, p)
        assert mv is not None and mv.version == 1


def test_too_few_labels_fail_the_round_with_the_numbers(db: Database) -> None:
    _project(db, labelled_per_class=1)
    status, error = _round(db)
    assert status == RoundStatus.failed
    assert "need at least" in (error or "") and "have 3" in (error or "")


def test_retrain_command_prints_the_round_and_its_model_as_one_json_object(
    db: Database, cli: Any
) -> None:
    _project(db, labelled_per_class=8)
    queued = cli.json("retrain", "--project", "p", "--queue")
    assert queued == {"round": 1, "status": "queued"}
    # The queued round is taken over and run here, not a second one started.
    out = cli.json("retrain", "--project", "p")
    assert {k: out[k] for k in ("round", "status", "trigger", "error")} == {
        "round": 1,
        "status": "succeeded",
        "trigger": "cli",
        "error": None,
    }
    assert out["model"]["version"] == 1 and out["model"]["status"] == "champion"
    assert set(out) == {
        "round", "status", "trigger", "error", "progress", "model_version_id", "model",
    }  # fmt: skip


def test_retrain_command_fails_with_the_reason_when_the_round_fails(db: Database, cli: Any) -> None:
    _project(db, labelled_per_class=1)
    out = cli.json("retrain", "--project", "p", expect=1)
    assert out["ok"] is False and "need at least" in out["error"]
