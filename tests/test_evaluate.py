"""Offline metrics (`workbench evaluate`): the issue's object, figures anyone can recompute from
the predictions file, scikit-learn agreement of our fast bootstrap figures, thresholds chosen on
the validation split, slices, online metrics, and bad input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from eval_builders import CLASSES, build, held_out_rows, label_file, train
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    precision_score,
    recall_score,
)

from workbench.db.database import Database
from workbench.services.evaluate.offline import brier, expected_calibration_error
from workbench.services.evaluate.ranking import average_precision
from workbench.services.evaluate.thresholds import choose_threshold

ISSUE_KEYS = {"model_version", "evalset", "n_items", "macro_f1", "ece", "policies", "predictions"}
POLICY_KEYS = {
    "precision", "recall", "f1", "average_precision", "threshold", "support", "precision_ci",
    "recall_ci",
}  # fmt: skip


def _evaluated_project(db: Database, cli: Any, tmp_path: Path) -> dict[str, Any]:
    truth = build(db, spread=0.9)
    cli.json("evalset", "create", "golden", "-p", "p", "--labels",
             label_file(tmp_path / "golden.jsonl", held_out_rows(truth)))  # fmt: skip
    train(db)
    return cli.json("evaluate", "-p", "p", "--evalset", "golden", "--resamples", "200")


def test_evaluate_prints_the_issue_object_and_the_file_recomputes_it(
    db: Database, cli: Any, tmp_path: Path
) -> None:
    out = _evaluated_project(db, cli, tmp_path)
    assert set(out) >= ISSUE_KEYS and out["model_version"] == 1 and out["evalset"] == "golden@1"
    assert out["n_items"] == 60 and set(out["policies"]) == set(CLASSES)
    assert "15 equal-width bins" in out["ece_bins"] and 0 <= out["ece"] <= 1
    frame = pd.read_parquet(out["predictions"])
    assert list(frame.columns[:3]) == ["external_id", "reference", "predicted"]
    assert {f"score_{c}" for c in CLASSES} <= set(frame.columns) and len(frame) == 60
    for cls, m in out["policies"].items():
        assert set(m) >= POLICY_KEYS
        ref, pred = frame["reference"] == cls, frame["predicted"] == cls
        assert m["precision"] == pytest.approx(
            precision_score(ref, pred, zero_division=0), abs=1e-4
        )
        assert m["recall"] == pytest.approx(recall_score(ref, pred), abs=1e-4)
        assert m["support"] == int(ref.sum())
        lo, hi = m["recall_ci"]
        assert lo <= m["recall"] <= hi and lo < hi  # overlapping clusters: not a certain figure
    # Not a perfect model: the figures say something.
    assert 0.3 < out["macro_f1"] < 1.0


def test_fast_bootstrap_figures_match_scikit_learn_with_weights() -> None:
    rng = np.random.default_rng(4)
    positive = rng.random(300) < 0.3
    score = np.round(rng.random(300) * 0.6 + 0.4 * positive, 2)  # ties on purpose
    weights = rng.integers(0, 3, 300).astype(float)
    assert average_precision(positive, score, weights) == pytest.approx(
        average_precision_score(positive, score, sample_weight=weights)
    )
    proba = rng.dirichlet([1, 1, 1], 300)
    ref = rng.integers(0, 3, 300)
    onehot = np.eye(3)[ref]
    # scikit-learn's multiclass Brier score: the mean squared distance to the one-hot label.
    assert brier(proba, onehot, None) == pytest.approx(
        brier_score_loss(ref, proba, labels=[0, 1, 2])
    )


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy_per_bin() -> None:
    # Two bins: confidence 0.95 right half the time (gap 0.45), 0.55 always right (gap 0.45).
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([1.0, 0.0, 1.0, 1.0])
    assert expected_calibration_error(conf, correct, None) == pytest.approx(0.45)


def test_threshold_is_the_lowest_reaching_the_target_precision() -> None:
    positive = np.array([0, 0, 1, 0, 1, 1, 1, 1], dtype=bool)
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    t = choose_threshold(positive, score, 0.9)
    assert t["threshold"] == 0.5 and t["precision"] == 1.0 and t["recall"] == 0.8
    assert t["target_met"] is True
    unreachable = choose_threshold(positive, score, 1.01)
    assert unreachable["target_met"] is False and "best-F1" in unreachable["note"]


def test_thresholds_are_stored_with_the_model_from_the_validation_split(
    sqlite_db: Database, cli: Any, tmp_path: Path
) -> None:
    out = _evaluated_project(sqlite_db, cli, tmp_path)
    models = cli.json("models", "-p", "p")["models"]
    assert models and models[0]["version"] == 1
    from workbench.db.models import ModelVersion

    with sqlite_db.sessions() as s:
        mv = s.query(ModelVersion).one()
        assert set(mv.thresholds) == set(CLASSES)
        assert all(t["n_validation"] == 60 for t in mv.thresholds.values())  # training items
        assert "out-of-fold" in mv.lineage["thresholds_from"]
    for cls, m in out["policies"].items():
        assert m["threshold"] == pytest.approx(mv.thresholds[cls]["threshold"], abs=1e-4)


def test_slices_by_language_and_by_a_metadata_key(
    sqlite_db: Database, cli: Any, tmp_path: Path
) -> None:
    truth = build(sqlite_db, spread=0.9, languages=("en", "de"))
    cli.json("evalset", "create", "golden", "-p", "p", "--labels",
             label_file(tmp_path / "g.jsonl", held_out_rows(truth)))  # fmt: skip
    train(sqlite_db)
    by_lang = cli.json("evaluate", "-p", "p", "--evalset", "golden", "--slice", "language",
                       "--resamples", "100")["slices"]  # fmt: skip
    assert by_lang["key"] == "language" and set(by_lang["values"]) == {"en", "de"}
    assert sum(v["n_items"] for v in by_lang["values"].values()) == 60
    by_country = cli.json("evaluate", "-p", "p", "--evalset", "golden", "--slice", "country",
                          "--resamples", "100")["slices"]  # fmt: skip
    assert set(by_country["values"]) == {"de", "fr"}
    bad = cli.json("evaluate", "-p", "p", "--evalset", "golden", "--slice", "colour", expect=1)
    assert "metadata key 'colour'" in bad["error"]


def test_unknown_set_model_or_policy_exit_1_naming_it(
    sqlite_db: Database, cli: Any, tmp_path: Path
) -> None:
    _evaluated_project(sqlite_db, cli, tmp_path)
    out = cli.json("evaluate", "-p", "p", "--evalset", "nope", expect=1)
    assert "no evaluation set 'nope'" in out["error"]
    out = cli.json("evaluate", "-p", "p", "--evalset", "golden", "--model", "9", expect=1)
    assert "no model version 9" in out["error"]
    out = cli.json("evaluate", "-p", "p", "--evalset", "golden", "--policy", "fraud", expect=1)
    assert "policy 'fraud'" in out["error"]
    one = cli.json("evaluate", "-p", "p", "--evalset", "golden", "--policy", "hate",
                   "--resamples", "100")  # fmt: skip
    assert set(one["policies"]) == {"hate"}


def test_online_metrics_per_iso_week_from_the_review_stream(sqlite_db: Database, cli: Any) -> None:
    build(sqlite_db, spread=0.9)
    train(sqlite_db)
    from quality_builders import T0, Labels
    from sqlalchemy import select

    from workbench.db.models import (
        EntryKind,
        EntryStatus,
        Item,
        Lease,
        LeaseStatus,
        ModelVersion,
        Project,
        QueueEntry,
    )  # fmt: skip

    with sqlite_db.sessions.begin() as s:
        p = s.scalars(select(Project)).one()
        mv = s.scalars(select(ModelVersion)).one()
        lab = Labels(s, p)
        lab.items = {i.external_id: i for i in s.scalars(select(Item))}
        lab.n = 1000  # keys q1.. are taken by the training labels
        # Unlabelled items x20..x39 are hate, x60..x79 none: reviewers label them all "hate"
        # through the margin strategy, queued by model v1.
        for n in [*range(20, 40), *range(60, 80)]:
            label = lab.label(f"x{n}", "bob", "hate")
            entry = QueueEntry(project_id=p.id, item_id=label.item_id, kind=EntryKind.selected,
                               strategy="margin", status=EntryStatus.done,
                               model_version_id=mv.id)  # fmt: skip
            s.add(entry)
            s.flush()
            s.add(Lease(entry_id=entry.id, reviewer_id=label.reviewer_id,
                        status=LeaseStatus.submitted, leased_at=T0, expires_at=T0,
                        label_id=label.id))  # fmt: skip
    out = cli.json("evaluate", "online", "-p", "p")
    (week,) = out["weeks"]
    assert week["week"] == "2026-W45" and week["reviews"] == 40
    # The model is mostly right: it flags the hate items (confirmed) and not the none ones
    # (which reviewers then overturn to hate).
    assert week["flagged_precision"]["value"] > 0.8
    assert 0.3 < week["overturn_rate"]["value"] < 0.7
    (y,) = out["yield"]
    assert y["strategy"] == "margin" and y["per_100_reviews"] == 100.0
