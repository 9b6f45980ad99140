"""Champion and challenger: a round judges its challenger on the frozen sets by the project's
rule and says why in its log; compare, promote and rollback by hand (audited); lineage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from eval_builders import build, held_out_rows, label_file, train
from sklearn.dummy import DummyClassifier
from sqlalchemy import select

import workbench
from workbench.db.database import Database
from workbench.db.models import AuditEvent, ModelStatus, ModelVersion, TrainingRound
from workbench.schemas import PromotionRule
from workbench.services.evaluate.compare import Scored, compare_models
from workbench.services.train import train as train_module


def _golden_project(db: Database, cli: Any, tmp_path: Path) -> None:
    truth = build(db, spread=1.2)
    cli.json("evalset", "create", "golden", "-p", "p", "--labels",
             label_file(tmp_path / "golden.jsonl", held_out_rows(truth)))  # fmt: skip
    train(db)


def _versions(db: Database) -> list[ModelVersion]:
    with db.sessions() as s:
        return list(s.scalars(select(ModelVersion).order_by(ModelVersion.version)))


def test_a_worse_challenger_is_kept_out_by_the_rule_on_the_frozen_set_and_the_log_says_why(
    db: Database, cli: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    _golden_project(db, cli, tmp_path)
    monkeypatch.setattr(train_module, "new_head", lambda params: DummyClassifier(strategy="prior"))
    train(db)
    first, second = _versions(db)
    assert (first.status, second.status) == (ModelStatus.champion, ModelStatus.candidate)
    comparison = second.comparison
    assert comparison is not None and comparison["verdict"] == "keep champion"
    assert comparison["evaluation_sets"] == ["golden@1"] and comparison["n_items"] == 60
    assert comparison["macro_average_precision_delta_ci"][1] < 0
    assert 0 < comparison["flip_rate"] <= 1
    with db.sessions() as s:
        log = s.scalars(select(TrainingRound).order_by(TrainingRound.id.desc())).first().log
    assert "kept champion v1 by the promotion rule on frozen evaluation sets golden@1" in log
    assert "prediction flip rate" in log and "below -0.01" in log


def test_an_equal_challenger_is_promoted_by_the_rule(
    sqlite_db: Database, cli: Any, tmp_path: Path
) -> None:
    _golden_project(sqlite_db, cli, tmp_path)
    train(sqlite_db)
    _, second = _versions(sqlite_db)
    assert second.status == ModelStatus.champion and second.comparison["verdict"] == "promote"
    assert second.metrics["guard"].startswith("promoted by the promotion rule")


def test_compare_promote_and_rollback_by_hand_are_audited(
    sqlite_db: Database, cli: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    _golden_project(sqlite_db, cli, tmp_path)
    monkeypatch.setattr(train_module, "new_head", lambda params: DummyClassifier(strategy="prior"))
    train(sqlite_db)
    out = cli.json("models", "compare", "1", "2", "-p", "p", "--evalset", "golden")
    assert out["verdict"] == "keep champion" and out["evalset"] == "golden@1"
    assert set(out["policies"]) == {"hate", "spam"}  # `none` is no policy
    assert all(0 <= t["pvalue"] <= 1 for t in out["policies"].values())
    assert cli.json("models", "promote", "2", "-p", "p", "--reason", "test")["champion"] == 2
    back = cli.json("models", "rollback", "-p", "p")
    assert back == {"ok": True, "champion": 1, "previous": 2, "changed": True}
    refused = cli.json("models", "rollback", "-p", "p", expect=1)
    assert "no earlier champion" in refused["error"]
    assert "no model version 9" in cli.json("models", "promote", "9", "-p", "p", expect=1)["error"]
    unknown = cli.json("models", "compare", "1", "2", "-p", "p", "--evalset", "nope", expect=1)
    assert "no evaluation set 'nope'" in unknown["error"]
    with sqlite_db.sessions() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions.count("model.promoted") == 1 and actions.count("model.rolled_back") == 1
    assert [m["version"] for m in cli.json("models", "-p", "p")["models"]] == [2, 1]


def test_each_version_records_its_lineage(sqlite_db: Database, cli: Any, tmp_path: Path) -> None:
    _golden_project(sqlite_db, cli, tmp_path)
    train(sqlite_db)
    first, second = _versions(sqlite_db)
    lineage = first.lineage
    assert lineage is not None and len(lineage["labels_snapshot_sha256"]) == 64
    # Same training labels, same hash; the hash does not depend on reading order.
    assert lineage["labels_snapshot_sha256"] == second.lineage["labels_snapshot_sha256"]
    assert lineage["encoders"] == [
        {"space": "fused", "encoder": "test-fused", "version": "t1", "dim": 8}
    ]
    assert lineage["head"] == "logistic" and lineage["params"]["class_weight"] == "balanced"
    assert lineage["code"]["package"] == workbench.__version__


def test_mcnemar_flags_a_policy_whose_recall_drops_at_its_threshold() -> None:
    reference = np.array(["hate"] * 40 + ["none"] * 40, dtype=object)
    good = np.zeros((80, 2))
    good[:40, 0], good[40:, 1] = 0.9, 0.9
    good[:40, 1], good[40:, 0] = 0.1, 0.1
    worse = good.copy()
    worse[:30, 0], worse[:30, 1] = 0.4, 0.6  # 30 of 40 hate items now below the threshold
    result = compare_models(
        reference,
        Scored(1, good, {"hate": {"threshold": 0.5}}),
        Scored(2, worse, {"hate": {"threshold": 0.5}}),
        ["hate", "none"],
        PromotionRule(max_macro_ap_drop=1.0),  # AP alone would promote
    )
    test = result["policies"]["hate"]
    assert (test["recall_a"], test["recall_b"]) == (1.0, 0.25) and test["pvalue"] < 0.001
    assert result["promote"] is False and "worse by McNemar's test" in result["reason"]
    assert result["flip_rate"] == 30 / 80


def test_the_group_callbacks_keep_their_usage_and_bad_input_contracts(
    sqlite_db: Database, cli: Any
) -> None:
    """`models` and `evaluate` are groups whose callbacks run the old commands: the catalogue
    in test_cli_commands sees only their subcommands, so their contracts are checked here."""
    assert cli("models").exit_code == 2  # no --project
    assert cli("evaluate", "-p", "p").exit_code == 2  # no --evalset
    out = cli.json("models", "-p", "nope", expect=1)
    assert "no project named 'nope'" in out["error"]
    out = cli.json("evaluate", "-p", "nope", "--evalset", "golden", expect=1)
    assert "no project named 'nope'" in out["error"]
