"""Label propagation to duplicate groups: recorded as propagated, never as a human label; the
latest judgement in a group wins; members with their own label keep it; training uses copies
only for items without a label of their own."""

from __future__ import annotations

from typing import Any

import pytest
from builders import make_items, make_project, make_user
from sqlalchemy import func, select

from workbench.db.database import Database
from workbench.db.models import AuditEvent, Label, LabelSource, Role
from workbench.errors import PermissionDenied
from workbench.services.audit import Actor
from workbench.services.labels.propagation import propagate_label, propagate_project
from workbench.services.labels.record import record_label
from workbench.services.labels.validate import LabelInput
from workbench.services.projects import set_project_setting
from workbench.services.quality.agreement import load_counted_labels
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.queue.lease import lease_next
from workbench.services.train.train import training_set

SYSTEM = Actor.system()


def _group(s: Any) -> tuple[Any, list[Any], Any]:
    """Items i0..i4: i0-i2 one near-duplicate group (root i0), i3 an exact copy of i0, i4 alone."""
    p = make_project(s)
    items = make_items(s, p, [f"meme {n}" for n in range(5)])
    for it in items[1:3]:
        it.near_duplicate_of_id = items[0].id
    items[3].duplicate_of_id = items[0].id
    s.flush()
    return p, items, make_user(s, "alice")


def _label(s: Any, p: Any, item: Any, user: Any, key: str, **kw: Any) -> Label:
    data = {"decision": "violating", "policies": ["hate"], "severity": 2, "rationale": "slur"}
    data.update(kw)
    label, _ = record_label(
        s, p, item, user, LabelInput(idempotency_key=key, **data),
        source=LabelSource.human, actor=SYSTEM,
    )  # fmt: skip
    return label


def _current(s: Any, item: Any) -> list[Label]:
    superseded = select(Label.supersedes_id).where(Label.supersedes_id.is_not(None))
    return list(
        s.scalars(select(Label).where(Label.item_id == item.id, Label.id.not_in(superseded)))
    )


def test_a_label_reaches_every_group_member_as_propagated(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items, alice = _group(s)
        source = _label(s, p, items[1], alice, "a1")
        report = propagate_label(s, p, source, SYSTEM)
        assert report.propagated == 3 and sorted(report.items) == ["i0", "i2", "i3"]
        for it in (items[0], items[2], items[3]):
            (copy,) = _current(s, it)
            assert copy.source == LabelSource.propagated
            assert (copy.decision.value, copy.policies, copy.reviewer_id) == (
                "violating", ["hate"], alice.id,
            )  # fmt: skip
            assert "propagated from i1" in (copy.rationale or "")
        assert _current(s, items[4]) == []
        # Idempotent: nothing new the second time; one audit event for the first.
        assert propagate_label(s, p, source, SYSTEM).propagated == 0
        assert s.scalar(select(func.count()).where(AuditEvent.action == "labels.propagated")) == 1
        # Never counted as people's labels by the agreement audit.
        counted = load_counted_labels(s, p)
        assert set(counted["external_id"]) == {"i1"}


def test_own_labels_are_kept_and_the_latest_judgement_wins(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items, alice = _group(s)
        bob = make_user(s, "bob")
        first = _label(s, p, items[0], alice, "a0")
        propagate_label(s, p, first, SYSTEM)
        later = _label(
            s, p, items[2], bob, "b2", decision="not_violating", policies=[], severity=None,
            rationale=None,
        )  # fmt: skip
        report = propagate_label(s, p, later, SYSTEM)
        # i0 has alice's own label and keeps it; i1 and i3 had alice's copy, now bob's.
        assert report.kept_own_label == 1 and report.replaced == 2
        assert [lab.source for lab in _current(s, items[0])] == [LabelSource.human]
        for it in (items[1], items[3]):
            (copy,) = _current(s, it)
            assert copy.decision.value == "not_violating" and copy.reviewer_id == bob.id
            assert copy.supersedes is not None and copy.supersedes.reviewer_id == alice.id


def test_unsure_and_copies_are_never_propagated(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items, alice = _group(s)
        unsure = _label(
            s, p, items[0], alice, "u0", decision="unsure", policies=[], severity=None,
            rationale=None,
        )  # fmt: skip
        assert propagate_label(s, p, unsure, SYSTEM).propagated == 0
        source = _label(s, p, items[1], alice, "a1")
        propagate_label(s, p, source, SYSTEM)
        (copy,) = _current(s, items[2])
        assert propagate_label(s, p, copy, SYSTEM).propagated == 0


def test_training_uses_copies_only_where_an_item_has_no_label_of_its_own(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items, alice = _group(s)
        _label(s, p, items[1], alice, "a1")
        _label(s, p, items[4], alice, "a4", decision="not_violating", policies=[],
               severity=None, rationale=None)  # fmt: skip
        before = training_set(s, p)
        assert sorted(before.item_ids.tolist()) == [items[1].id, items[4].id]
        lead = make_user(s, "lena", Role.lead)
        report = propagate_project(s, p, Actor.for_user(lead.name, lead.id, lead.role))
        assert report.propagated == 3
        after = training_set(s, p)
        by_item = dict(zip(after.item_ids.tolist(), after.sources, strict=True))
        assert by_item[items[1].id] != "propagated" and by_item[items[4].id] != "propagated"
        assert all(by_item[it.id] == "propagated" for it in (items[0], items[2], items[3]))
        hate = after.classes.index("hate")
        y = dict(zip(after.item_ids.tolist(), after.y.tolist(), strict=True))
        assert y[items[0].id] == hate


def test_project_propagation_is_for_leads(db: Database) -> None:
    with db.sessions.begin() as s:
        p, _, alice = _group(s)
        with pytest.raises(PermissionDenied):
            propagate_project(s, p, Actor.for_user(alice.name, alice.id, alice.role))


def test_review_submission_propagates_when_the_project_says_so(db: Database) -> None:
    from workbench.services.review import flow as review

    with db.sessions.begin() as s:
        p, items, alice = _group(s)
        set_project_setting(s, p, "propagate_to_duplicates", True, SYSTEM)
        enqueue(s, p, [NewEntry(items[1].id)], SYSTEM)
        actor = Actor.for_user(alice.name, alice.id, alice.role)
        lease = lease_next(s, p, alice)
        assert lease is not None
        form = review.ReviewForm(
            decision="violating", policies=("hate",), severity=2, rationale="slur"
        )
        review.submit_review(s, p, actor, lease.id, form)
        copies = s.scalars(select(Label).where(Label.source == LabelSource.propagated)).all()
        assert sorted(c.item.external_id for c in copies) == ["i0", "i2", "i3"]


def test_cli_propagate_reports_counts(db: Database, cli: Any) -> None:
    with db.sessions.begin() as s:
        p, items, alice = _group(s)
        _label(s, p, items[0], alice, "a0")
    out = cli.json("labels", "propagate", "-p", "p")
    assert out["propagated"] == 3 and out["source_labels"] == 1
    assert cli.json("labels", "propagate", "-p", "p")["propagated"] == 0
