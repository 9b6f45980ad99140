"""Retrain rounds end to end: training labels from the database, a head on the fused vectors,
a stored model version with metrics, artifact and pool scores, the guard, and warm starts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import joblib
import numpy as np
import pytest
from builders import make_project
from quality_builders import T0, Labels, add_fused_vectors, separable_vectors
from sklearn.dummy import DummyClassifier
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from workbench.db.database import Database
from workbench.db.models import (
    AuditEvent,
    EntryKind,
    EntryStatus,
    Lease,
    LeaseStatus,
    ModelStatus,
    ModelVersion,
    Project,
    QueueEntry,
    RoundStatus,
    TrainingRound,
)
from workbench.services.audit import Actor
from workbench.services.train import train
from workbench.services.train.rounds import request_round, run_round_now
from workbench.services.train.train import champion
from workbench.services.train.worker import work_once

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


def _randomly_sampled_project(db: Database) -> None:
    """150 labelled items: 40 per class reached the queue through the `random` strategy (the
    unbiased sample that calibrates and evaluates), 10 per class through another one."""
    vectors, truth = separable_vectors(CLASSES, 50)
    with db.sessions.begin() as s:
        p = make_project(s)
        lab = Labels(s, p)
        items = [lab.item(f"x{n}") for n in range(len(truth))]
        add_fused_vectors(s, db.settings, p, items, vectors)
        for n, cls in enumerate(truth):
            label = lab.label(f"x{n}", "alice", cls)
            entry = QueueEntry(
                project_id=p.id, item_id=items[n].id, batch=1, kind=EntryKind.selected,
                strategy="random" if n % 50 < 40 else "margin", status=EntryStatus.done,
                completed=1,
            )  # fmt: skip
            s.add(entry)
            s.flush()
            s.add(
                Lease(
                    entry_id=entry.id, reviewer_id=label.reviewer_id,
                    status=LeaseStatus.submitted, leased_at=T0,
                    expires_at=T0 + timedelta(hours=1), finished_at=T0, label_id=label.id,
                )
            )  # fmt: skip


def test_randomly_sampled_labels_calibrate_and_evaluate_the_head_on_a_holdout(
    db: Database,
) -> None:
    _randomly_sampled_project(db)
    status, error = _round(db)
    assert status == RoundStatus.succeeded, error
    with db.sessions() as s:
        mv = s.scalars(select(ModelVersion)).one()
    # The 120 random labels are split by item hash: one half calibrates, the other evaluates;
    # the head trains on the 30 strategy-chosen labels only.
    assert mv.metrics["evaluation"] == "random_holdout"
    assert mv.trained_on == 30 and 20 <= mv.metrics["n_eval"] <= 100
    assert mv.calibrated is True and "calibrated on" in (mv.calibration_note or "")
    assert mv.metrics["macro_f1"] > 0.9
    assert mv.metrics["guard"] == "no champion yet" and mv.status == ModelStatus.champion


def test_guard_keeps_the_champion_when_the_new_head_is_worse_on_the_holdout(
    db: Database, monkeypatch: Any
) -> None:
    _randomly_sampled_project(db)
    assert _round(db)[0] == RoundStatus.succeeded
    # The next head answers the most frequent class whatever the item: far worse on the holdout.
    monkeypatch.setattr(train, "new_head", lambda params: DummyClassifier(strategy="prior"))
    status, error = _round(db)
    assert status == RoundStatus.succeeded, error  # a kept champion is not a failed round
    with db.sessions() as s:
        first, second = s.scalars(select(ModelVersion).order_by(ModelVersion.version)).all()
        assert (first.status, second.status) == (ModelStatus.champion, ModelStatus.candidate)
        assert second.metrics["evaluation"] == "random_holdout"
        # Without a frozen evaluation set the old rule decides, and the guard says so.
        assert second.metrics["guard"].startswith("no frozen evaluation set; by the old rule")
        assert "kept champion v1: macro-F1 " in second.metrics["guard"]
        assert second.metrics["macro_f1"] < 0.5 < first.metrics["macro_f1"]
        event = s.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "model.trained")
            .order_by(AuditEvent.id.desc())
        ).first()
        assert event is not None and event.details["promoted"] is False


def test_the_round_job_trains_then_refills_the_queue_from_the_new_champion(db: Database) -> None:
    """The real job a worker runs (no stand-in): a model version, then a batch chosen with it."""
    _project(db, labelled_per_class=8)
    with db.sessions.begin() as s:
        request_round(s, s.scalars(select(Project)).one(), SYSTEM, refill_queue=True)
    assert work_once(db, "w") == RoundStatus.succeeded
    with db.sessions() as s:
        rnd = s.scalars(select(TrainingRound)).one()
        assert rnd.status == RoundStatus.succeeded and rnd.model_version_id is not None
        entries = s.scalars(select(QueueEntry)).all()
        labelled = {lab.item_id for lab in train.counted_labels(s, s.get_one(Project, 1))}
    assert entries, rnd.log
    assert {e.model_version_id for e in entries} == {rnd.model_version_id}
    assert {e.status for e in entries} == {EntryStatus.pending}
    assert not {e.item_id for e in entries} & labelled
    assert f"queue refilled: {len(entries)} entries" in rnd.log


def test_the_database_refuses_a_second_champion_in_a_project(db: Database) -> None:
    def version(project: Project, n: int, status: ModelStatus) -> ModelVersion:
        return ModelVersion(
            project_id=project.id, version=n, head="logistic", artifact_path=f"m/{n}",
            scores_path=None, status=status,
        )  # fmt: skip

    with db.sessions.begin() as s:
        p, other = make_project(s, "p"), make_project(s, "q")
        s.add_all([version(p, 1, ModelStatus.champion), version(other, 1, ModelStatus.champion)])
        s.add_all([version(p, 2, ModelStatus.retired), version(p, 3, ModelStatus.retired)])
        s.add(version(p, 4, ModelStatus.candidate))
    with pytest.raises(IntegrityError), db.sessions.begin() as s:
        s.add(
            version(
                s.scalars(select(Project).where(Project.name == "p")).one(), 5, ModelStatus.champion
            )
        )
    with pytest.raises(IntegrityError), db.sessions.begin() as s:
        candidate = s.scalars(select(ModelVersion).where(ModelVersion.version == 4)).one()
        candidate.status = ModelStatus.champion
