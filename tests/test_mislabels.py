"""Suspected mislabels: flipped labels on separable vectors are found by confident learning,
sent back to review once with a reason, and the wrapper gives what cleanlab gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from builders import join_every_project
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from conftest import CLI
from quality_builders import Labels, add_fused_vectors, separable_vectors
from sqlalchemy import select, update

from workbench.db.database import Database
from workbench.db.models import AuditEvent, EntryKind, EntryStatus, Item, QueueEntry, Role
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.services.audit import Actor
from workbench.services.projects import create_project
from workbench.services.quality import mislabels as ml

CLASSES = ["hate", "none", "spam"]
# item -> the wrong class it is labelled with
FLIPPED = {"hate-3": "spam", "none-5": "hate", "spam-7": "none"}


def _seed(db: Database, per_class: int = 15, flipped: dict[str, str] = FLIPPED) -> None:
    vectors, truth = separable_vectors(CLASSES, per_class)
    with db.sessions.begin() as s:
        project = create_project(s, "p", Actor.system())
        lab = Labels(s, project)
        items = []
        seen: dict[str, int] = {}
        for cls in truth:
            ext = f"{cls}-{seen.setdefault(cls, 0)}"
            seen[cls] += 1
            items.append(lab.item(ext))
            lab.label(ext, "ann", flipped.get(ext, cls))
        add_fused_vectors(s, db.settings, project, items, vectors)


def _rereview_entries(db: Database) -> list[QueueEntry]:
    with db.sessions() as s:
        return list(
            s.scalars(
                select(QueueEntry)
                .where(QueueEntry.kind == EntryKind.rereview)
                .order_by(QueueEntry.id)
            )
        )


def test_flipped_labels_are_found_and_sent_back_with_their_reasons(db: Database) -> None:
    _seed(db)
    report = ml.find_mislabels(db, "p", Actor.system())
    assert {s.external_id for s in report.suspects} == set(FLIPPED)
    assert (report.n_checked, report.folds, report.sent_back) == (45, 5, 3)
    for sus in report.suspects:
        truth = sus.external_id.split("-")[0]
        assert sus.given_label == FLIPPED[sus.external_id]
        assert sus.suggested_label == truth
        assert sus.queue == ml.SENT_BACK
        assert sus.reason.startswith(
            f"suspected mislabel: labelled {sus.given_label}, model out-of-fold gives {truth} "
        )
        assert sus.reason.endswith(f"label quality {sus.label_quality:.2f}")
    # Ranked worst first by self-confidence.
    qualities = [s.label_quality for s in report.suspects]
    assert qualities == sorted(qualities)
    entries = _rereview_entries(db)
    reasons = {s.item_id: s.reason for s in report.suspects}
    assert {e.item_id: e.reason for e in entries} == reasons
    assert all(e.strategy == ml.STRATEGY and e.status == EntryStatus.pending for e in entries)
    with db.sessions() as s:
        events = list(
            s.scalars(select(AuditEvent).where(AuditEvent.action == "quality.mislabel_sent_back"))
        )
    assert sorted(e.details["external_id"] for e in events) == sorted(FLIPPED)


def test_a_second_run_adds_no_duplicate_entries(db: Database) -> None:
    _seed(db)
    ml.find_mislabels(db, "p", Actor.system())
    again = ml.find_mislabels(db, "p", Actor.system())
    assert again.sent_back == 0
    assert {s.queue for s in again.suspects} == {ml.ALREADY_QUEUED}
    assert len(_rereview_entries(db)) == 3
    # Once the second look is done, the same suspicion does not send the item back again.
    with db.sessions.begin() as s:
        s.execute(update(QueueEntry).values(status=EntryStatus.done))
    third = ml.find_mislabels(db, "p", Actor.system())
    assert third.sent_back == 0 and {s.queue for s in third.suspects} == {ml.SENT_BEFORE}
    assert len(_rereview_entries(db)) == 3


def test_report_only_run_queues_nothing(db: Database) -> None:
    _seed(db)
    report = ml.find_mislabels(db, "p", Actor.system(), enqueue=False)
    assert len(report.suspects) == 3 and {s.queue for s in report.suspects} == {ml.NOT_SENT}
    assert _rereview_entries(db) == []


def test_final_labels_are_reported_but_not_sent_back(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(db)
    real = ml.training_set

    def adjudicated_hate_3(session: Any, project: Any) -> Any:
        ts = real(session, project)
        ext = dict(session.execute(select(Item.id, Item.external_id)).all())
        ts.sources = ["adjudication" if ext[i] == "hate-3" else "dawid_skene" for i in ts.item_ids]
        return ts

    monkeypatch.setattr(ml, "training_set", adjudicated_hate_3)
    report = ml.find_mislabels(db, "p", Actor.system())
    status = {s.external_id: s.queue for s in report.suspects}
    assert status == {"hate-3": ml.FINAL, "none-5": ml.SENT_BACK, "spam-7": ml.SENT_BACK}
    assert len(_rereview_entries(db)) == report.sent_back == 2


def test_reviewers_may_not_look_for_mislabels_but_leads_may(db: Database) -> None:
    _seed(db)
    with db.sessions.begin() as s:
        lab = Labels(s, create_project(s, "other", Actor.system()))
        rita, lena = lab.user("rita", Role.reviewer), lab.user("lena", Role.lead)
        join_every_project(s, lena)  # a lead of "p" as well
        rita_actor = Actor.for_user(rita.name, rita.id, Role.reviewer)
        lena_actor = Actor.for_user(lena.name, lena.id, Role.lead)
    with pytest.raises(PermissionDenied, match="lead"):
        ml.find_mislabels(db, "p", rita_actor)
    assert len(ml.find_mislabels(db, "p", lena_actor, enqueue=False).suspects) == 3


def test_too_few_labels_say_how_many_are_needed(db: Database) -> None:
    vectors, truth = separable_vectors(["hate", "none"], 3)
    with db.sessions.begin() as s:
        project = create_project(s, "p", Actor.system())
        lab = Labels(s, project)
        items = [lab.item(f"i{n}") for n in range(len(truth))]
        for item, cls in zip(items, truth, strict=True):
            lab.label(item.external_id, "ann", cls)
        add_fused_vectors(s, db.settings, project, items, vectors)
    with pytest.raises(WorkbenchError, match="need at least 10 labelled, embedded items") as exc:
        ml.find_mislabels(db, "p", Actor.system())
    assert "has 6 usable items" in exc.value.message


def test_one_class_only_is_refused(db: Database) -> None:
    vectors, truth = separable_vectors(["none"], 12)
    with db.sessions.begin() as s:
        project = create_project(s, "p", Actor.system())
        lab = Labels(s, project)
        items = [lab.item(f"i{n}") for n in range(len(truth))]
        for item in items:
            lab.label(item.external_id, "ann", "none")
        add_fused_vectors(s, db.settings, project, items, vectors)
    with pytest.raises(WorkbenchError, match="at least two classes") as exc:
        ml.find_mislabels(db, "p", Actor.system())
    assert "none 12" in exc.value.message


def test_small_classes_cut_the_folds_and_singletons_are_left_out(db: Database) -> None:
    vectors, truth = separable_vectors(["hate", "none", "spam", "violence"], 12)
    keep = [n for n, cls in enumerate(truth) if cls in ("hate", "none")]
    keep += [n for n, cls in enumerate(truth) if cls == "spam"][:3]
    keep += [n for n, cls in enumerate(truth) if cls == "violence"][:1]
    with db.sessions.begin() as s:
        project = create_project(s, "p", Actor.system())
        lab = Labels(s, project)
        items = [lab.item(f"i{n}") for n in keep]
        for item, n in zip(items, keep, strict=True):
            lab.label(item.external_id, "ann", truth[n])
        add_fused_vectors(s, db.settings, project, items, vectors[keep])
    report = ml.find_mislabels(db, "p", Actor.system(), enqueue=False)
    assert report.folds == 3 and report.classes_left_out == {"violence": 1}
    assert report.n_checked == 27
    assert any("3 folds instead of 5" in n for n in report.notes)


def test_wrapper_gives_what_cleanlab_gives_on_the_same_probabilities(db: Database) -> None:
    _seed(db)
    vectors, truth = separable_vectors(CLASSES, 15)
    given = []
    seen: dict[str, int] = {}
    for cls in truth:
        ext = f"{cls}-{seen.setdefault(cls, 0)}"
        seen[cls] += 1
        given.append(CLASSES.index(FLIPPED.get(ext, cls)))
    y = np.array(given)
    probs = ml.out_of_fold_probabilities(vectors, y, ml.DEFAULT_HEAD, 5)
    issues, quality = ml.label_issues(y, probs)
    expected = find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
    np.testing.assert_array_equal(issues, expected)
    np.testing.assert_allclose(quality, get_label_quality_scores(y, probs))
    # The service, given the same items (ordered by item id = insertion order), agrees.
    report = ml.find_mislabels(db, "p", Actor.system(), enqueue=False)
    order = [f"{cls}-{n}" for cls in CLASSES for n in range(15)]
    assert [s.external_id for s in report.suspects] == [order[i] for i in expected]
    np.testing.assert_allclose(
        [s.label_quality for s in report.suspects], np.round(quality[expected], 4)
    )


def test_mislabels_cli_reports_one_json_object_and_queues_on_request(
    db: Database, cli: CLI
) -> None:
    _seed(db)
    data = cli.json("mislabels", "--project", "p", "--no-enqueue")
    assert {s["external_id"] for s in data["suspects"]} == set(FLIPPED)
    assert data["sent_back"] == 0 and _rereview_entries(db) == []
    data = cli.json("mislabels", "--project", "p", "--folds", "3")
    assert data["folds"] == 3 and data["sent_back"] == 3
    assert {e.item_id for e in _rereview_entries(db)} == {s["item_id"] for s in data["suspects"]}


def test_mislabels_cli_fails_cleanly_without_vectors(db: Database, cli: CLI) -> None:
    with db.sessions.begin() as s:
        lab = Labels(s, create_project(s, "p", Actor.system()))
        lab.label("a", "ann", "none")
    data = cli.json("mislabels", "--project", "p", expect=1)
    assert data["ok"] is False and "workbench embed" in data["error"]
    result = cli("mislabels", "--project", "p")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert [ln for ln in result.stderr.splitlines() if ln.startswith("error:")] == [
        f"error: {data['error']}"
    ]


def test_mislabels_cli_refuses_fewer_than_two_folds_as_usage(db: Database, cli: CLI) -> None:
    result = cli("mislabels", "--project", "p", "--folds", "1")
    assert result.exit_code == 2 and "--folds" in result.stderr
