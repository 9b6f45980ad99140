"""Training labels: majority vote, Dawid–Skene, MACE and GLAD through crowd-kit, overrides, and
aggregation of a project's counted labels."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from workbench.db.database import Database
from workbench.db.models import Decision, Item, Label, LabelSource, Role, User
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.projects import create_project
from workbench.services.quality.aggregation import aggregate_labels, training_labels
from workbench.services.taxonomy import current_policy_version


def _crowd_with_spammers(seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Two accurate reviewers and three who answer at random, on 150 items of 2 classes."""
    rng = np.random.default_rng(seed)
    truth = pd.Series(rng.integers(0, 2, 150), index=[f"t{n}" for n in range(150)])
    rows = []
    for item, label in truth.items():
        for reviewer, accuracy in (("good1", 0.95), ("good2", 0.95)):
            rows.append((item, reviewer, label if rng.random() < accuracy else 1 - label))
        for reviewer in ("spam1", "spam2", "spam3"):
            rows.append((item, reviewer, int(rng.integers(0, 2))))
    return pd.DataFrame(rows, columns=["item", "reviewer", "label"]), truth


def test_majority_vote_confidence_is_the_vote_share() -> None:
    labels = pd.DataFrame(
        {
            "item": ["a", "a", "a", "b", "b"],
            "reviewer": ["r1", "r2", "r3", "r1", "r2"],
            "label": ["violating", "violating", "not_violating", "unsure", "unsure"],
        }
    )
    result = aggregate_labels(labels, "majority")
    assert result.loc["a", "label"] == "violating"
    assert result.loc["a", "confidence"] == pytest.approx(2 / 3)
    assert result.loc["b", "confidence"] == pytest.approx(1.0)
    assert list(result["n_labels"]) == [3, 2]
    assert set(result["source"]) == {"crowd"}


def test_dawid_skene_beats_majority_when_most_reviewers_are_spammers() -> None:
    labels, truth = _crowd_with_spammers()
    majority = aggregate_labels(labels, "majority")["label"].reindex(truth.index)
    dawid_skene = aggregate_labels(labels, "dawid_skene")["label"].reindex(truth.index)
    assert (dawid_skene == truth).mean() > (majority == truth).mean() + 0.05


@pytest.mark.parametrize("method", ["majority", "dawid_skene", "mace", "glad"])
def test_every_method_gives_each_item_a_label_and_a_confidence(method: str) -> None:
    labels, truth = _crowd_with_spammers(seed=1)
    # 40 items and few iterations: MACE and GLAD are slow in crowd-kit (pandas per iteration).
    truth = truth.iloc[:40]
    labels = labels[labels["item"].isin(truth.index)]
    result = aggregate_labels(labels, method, n_iter=10)
    assert set(result.index) == set(truth.index)
    assert result["confidence"].between(0, 1).all()
    assert set(result["label"]) <= {0, 1}
    assert (result["label"].reindex(truth.index) == truth).mean() > 0.6
    assert set(result["method"]) == {method}


def test_overrides_replace_the_crowd_and_add_unlabelled_items() -> None:
    labels = pd.DataFrame(
        {"item": ["a", "a", "b", "b"], "reviewer": ["r1", "r2", "r1", "r2"], "label": [1, 1, 0, 0]}
    )
    result = aggregate_labels(labels, "dawid_skene", overrides={"a": 0, "c": 1})
    assert result.loc["a", "label"] == 0 and result.loc["a", "source"] == "override"
    assert result.loc["a", "confidence"] == 1.0 and result.loc["a", "n_labels"] == 2
    assert result.loc["c", "label"] == 1 and result.loc["c", "n_labels"] == 0
    assert result.loc["b", "source"] == "crowd"


def test_unknown_method_and_missing_columns_are_clear_errors() -> None:
    labels = pd.DataFrame({"item": ["a"], "reviewer": ["r"], "label": [1]})
    with pytest.raises(WorkbenchError, match="expected one of majority, dawid_skene"):
        aggregate_labels(labels, "best_guess")
    with pytest.raises(WorkbenchError, match="lack the column"):
        aggregate_labels(labels.drop(columns="reviewer"), "majority")


def test_training_labels_use_only_counted_labels(db: Database) -> None:
    with db.sessions.begin() as s:
        project = create_project(s, "p", Actor.system())
        pv = current_policy_version(s, project)
        users = []
        for name in ("ann", "bob", "cat"):
            users.append(User(name=name, role=Role.reviewer, password_hash=None))
            s.add(users[-1])
        items = [
            Item(
                project_id=project.id,
                external_id=f"i{n}",
                text=f"t{n}",
                modalities=["text"],
                content_hash=hashlib.sha256(f"i{n}".encode()).hexdigest(),
            )
            for n in range(2)
        ]
        s.add_all(items)
        s.flush()
        t0 = datetime(2026, 11, 1, tzinfo=UTC)
        n = 0

        def label(item: Item, user: User, decision: str, **kw: object) -> Label:
            nonlocal n
            n += 1
            row = Label(
                project_id=project.id,
                item_id=item.id,
                reviewer_id=user.id,
                policy_version_id=pv.id,
                decision=Decision(decision),
                policies=[],
                source=kw.get("source", LabelSource.human),
                idempotency_key=f"k{n}",
                supersedes_id=kw.get("supersedes"),
                created_at=t0 + timedelta(minutes=n),
            )
            s.add(row)
            s.flush()
            return row

        ann, bob, cat = users
        wrong = label(items[0], ann, "not_violating")
        label(items[0], ann, "violating", supersedes=wrong.id)
        label(items[0], bob, "violating")
        # Three propagated copies would outvote the people if they counted.
        for _ in range(3):
            label(items[0], cat, "not_violating", source=LabelSource.propagated)
        label(items[1], ann, "not_violating")
        result = training_labels(s, project, method="majority", overrides={items[1].id: "unsure"})
    assert list(result["external_id"]) == ["i0", "i1"]
    assert list(result["label"]) == ["violating", "unsure"]
    assert list(result["n_labels"]) == [2, 1]
    assert list(result["source"]) == ["crowd", "override"]
