"""Retrain rounds end to end: training labels from the database, a head on the fused vectors,
a stored model version with metrics, artifact and pool scores, the guard, and warm starts."""

from __future__ import annotations

from typing import Any

import numpy as np
from builders import make_project
from quality_builders import Labels, add_fused_vectors, separable_vectors
from sqlalchemy import select

from workbench.db.database import Database
from workbench.db.models import ModelStatus, ModelVersion, RoundStatus, TrainingRound
from workbench.services.audit import Actor
from workbench.services.train.rounds import claim_next_round, request_round, run_claimed_round
from workbench.services.train.train import champion, train_round

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
    with db.sessions.begin() as s:
        from workbench.db.models import Project

        p = s.scalars(select(Project)).one()
        rnd, _ = request_round(s, p, SYSTEM, refill_queue=False)
        claim_next_round(s, "test", rnd.id)
        round_id = rnd.id
    status = run_claimed_round(db, round_id, train_round)
    with db.sessions() as s:
        return status, s.get_one(TrainingRound, round_id).error


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
