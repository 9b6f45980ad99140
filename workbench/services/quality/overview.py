"""The lead's overview of a project's review work: queue health, each reviewer's labels, time
and skips, overlap items with every reviewer's current label, and a spot-check table.

Leads only: every read-out checks the role here, whatever a page shows. Leads and admins review
too, so the read-outs keep reviews blind: they hide the labels of an item the reader holds or may
still be asked to label (`items_still_blind`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from workbench.db.models import (
    EntryKind,
    EntryStatus,
    Item,
    Label,
    LabelSource,
    Lease,
    LeaseStatus,
    Project,
    QueueEntry,
    Role,
    User,
)
from workbench.services.audit import Actor
from workbench.services.labels.current import is_current
from workbench.services.membership import require_project_role
from workbench.services.queue.health import queue_health
from workbench.services.review.wellbeing import AffectedCounts, affected_counts


@dataclass
class ReviewerStats:
    reviewer: str
    labels: int
    median_seconds: float | None
    skips: int = 0
    decisions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class OverlapLabel:
    reviewer: str
    decision: str
    policies: list[str]
    severity: int | None


@dataclass(frozen=True)
class OverlapItem:
    """An item queued for k > 1 reviewers, with the current label of each who answered."""

    item_id: int
    external_id: str
    overlap_target: int
    completed: int
    labels: list[OverlapLabel]
    labels_hidden: bool = False  # the reader may still label it: `labels` is left empty


@dataclass(frozen=True)
class SpotCheckRow:
    """One queued item with its selection score and one current label (or none yet)."""

    item_id: int
    external_id: str
    text: str  # the first 200 characters
    score: float | None
    strategy: str | None
    queue_status: str
    decision: str | None
    policies: str
    reviewer: str | None
    labels_hidden: bool = False  # the reader may still label it: one row, no label shown


@dataclass(frozen=True)
class LeadOverview:
    """Everything the lead's page shows above its charts, read in one transaction."""

    queue: dict[str, Any]  # `queue_health`'s figures
    reviewers: list[ReviewerStats]
    affected: AffectedCounts
    overlap: list[OverlapItem]
    spot_checks: list[SpotCheckRow]


def lead_overview(session: Session, project: Project, actor: Actor) -> LeadOverview:
    require_project_role(session, actor, project, Role.lead, action="see the lead overview")
    return LeadOverview(
        queue=queue_health(session, project),
        reviewers=reviewer_stats(session, project, actor),
        affected=affected_counts(session, project, actor),
        overlap=overlap_items(session, project, actor),
        spot_checks=spot_check_table(session, project, actor),
    )


def items_still_blind(
    session: Session, project: Project, actor: Actor, item_ids: Collection[int]
) -> set[int]:
    """Of `item_ids`, those whose labels `actor` must not see, because they review too.

    An item is blind to a person who holds an active lease on it, or who may still be asked to
    label it: it has a pending entry whose overlap target is not met, which they never leased,
    and they have no label on it (the queue's own rule: an entry never goes twice to a person,
    nor an item they labelled).
    """
    if actor.user_id is None or Role.reviewer not in actor.roles or not item_ids:
        return set()
    me, ids = actor.user_id, list(item_ids)
    held = (
        select(QueueEntry.item_id)
        .join(Lease, Lease.entry_id == QueueEntry.id)
        .where(
            QueueEntry.project_id == project.id,
            QueueEntry.item_id.in_(ids),
            Lease.reviewer_id == me,
            Lease.status == LeaseStatus.active,
        )
    )
    leased_by_me = exists().where(Lease.entry_id == QueueEntry.id, Lease.reviewer_id == me)
    labelled_by_me = exists().where(
        Label.project_id == QueueEntry.project_id,
        Label.item_id == QueueEntry.item_id,
        Label.reviewer_id == me,
    )
    may_be_asked = select(QueueEntry.item_id).where(
        QueueEntry.project_id == project.id,
        QueueEntry.item_id.in_(ids),
        QueueEntry.status == EntryStatus.pending,
        QueueEntry.completed < QueueEntry.overlap_target,
        ~leased_by_me,
        ~labelled_by_me,
    )
    return set(session.scalars(held.union(may_be_asked)))


def reviewer_stats(session: Session, project: Project, actor: Actor) -> list[ReviewerStats]:
    """Current labels (made here or imported; not propagated copies) and time per reviewer, and
    how many items each skipped."""
    require_project_role(session, actor, project, Role.lead, action="see reviewer statistics")
    rows = session.execute(
        select(User.name, Label.decision, Label.time_spent_ms)
        .join(User, User.id == Label.reviewer_id)
        .where(
            Label.project_id == project.id,
            Label.source != LabelSource.propagated,
            is_current(),
        )
    ).all()
    stats: dict[str, ReviewerStats] = {}
    times: dict[str, list[int]] = {}
    for name, decision, ms in rows:
        st = stats.setdefault(name, ReviewerStats(name, 0, None))
        st.labels += 1
        st.decisions[decision.value] = st.decisions.get(decision.value, 0) + 1
        if ms is not None:
            times.setdefault(name, []).append(ms)
    skips = session.execute(
        select(User.name, func.count())
        .join(Lease, Lease.reviewer_id == User.id)
        .join(QueueEntry, QueueEntry.id == Lease.entry_id)
        .where(QueueEntry.project_id == project.id, Lease.status == LeaseStatus.released)
        .group_by(User.name)
    ).all()
    for name, n in skips:
        stats.setdefault(name, ReviewerStats(name, 0, None)).skips = n
    for name, ms_list in times.items():
        stats[name].median_seconds = median(ms_list) / 1000
    return sorted(stats.values(), key=lambda s: s.reviewer)


def overlap_items(
    session: Session, project: Project, actor: Actor, limit: int = 200
) -> list[OverlapItem]:
    """The latest `limit` items queued for k > 1 reviewers, newest first."""
    require_project_role(session, actor, project, Role.lead, action="see overlap labels")
    entries = session.execute(
        select(
            QueueEntry.item_id, Item.external_id, QueueEntry.overlap_target, QueueEntry.completed
        )
        .join(Item, Item.id == QueueEntry.item_id)
        .where(
            QueueEntry.project_id == project.id,
            QueueEntry.overlap_target > 1,
            QueueEntry.kind != EntryKind.gold,  # every reviewer gets a gold item once: not overlap
        )
        .order_by(QueueEntry.id.desc())
        .limit(limit)
    ).all()
    blind = items_still_blind(session, project, actor, {e.item_id for e in entries})
    labels = session.execute(
        select(Label.item_id, User.name, Label.decision, Label.policies, Label.severity)
        .join(User, User.id == Label.reviewer_id)
        .where(
            Label.project_id == project.id,
            Label.item_id.in_([e.item_id for e in entries if e.item_id not in blind]),
            is_current(),
        )
        .order_by(Label.created_at, Label.id)
    ).all()
    by_item: dict[int, list[OverlapLabel]] = {}
    for item_id, name, decision, policies, severity in labels:
        by_item.setdefault(item_id, []).append(
            OverlapLabel(name, decision.value, list(policies or []), severity)
        )
    return [
        OverlapItem(i, ext, k, done, by_item.get(i, []), labels_hidden=i in blind)
        for i, ext, k, done in entries
    ]


def spot_check_table(
    session: Session, project: Project, actor: Actor, limit: int = 500
) -> list[SpotCheckRow]:
    """The latest `limit` (item, current label) rows of queued items, newest entry first; an
    item with no label yet, or whose labels are blind to the reader, has one row without one."""
    require_project_role(session, actor, project, Role.lead, action="spot-check items")
    rows = session.execute(
        select(
            Item.id, Item.external_id, Item.text, QueueEntry.score, QueueEntry.strategy,
            QueueEntry.status, Label.decision, Label.policies, User.name,
        )
        .join(Item, Item.id == QueueEntry.item_id)
        .outerjoin(
            Label, and_(Label.item_id == Item.id, Label.project_id == project.id, is_current())
        )
        .outerjoin(User, User.id == Label.reviewer_id)
        .where(QueueEntry.project_id == project.id)
        .order_by(QueueEntry.id.desc())
        .limit(limit)
    ).all()  # fmt: skip
    blind = items_still_blind(session, project, actor, {r[0] for r in rows})
    out: list[SpotCheckRow] = []
    shown_blind: set[int] = set()
    for r in rows:
        hidden = r[0] in blind
        if hidden and r[0] in shown_blind:
            continue  # one row per blind item: even the number of labels stays hidden
        shown_blind.update([r[0]] if hidden else [])
        out.append(
            SpotCheckRow(
                item_id=r[0], external_id=r[1], text=(r[2] or "")[:200], score=r[3],
                strategy=r[4], queue_status=r[5].value,
                decision=None if hidden or not r[6] else r[6].value,
                policies="" if hidden else ", ".join(r[7] or []),
                reviewer=None if hidden else r[8], labels_hidden=hidden,
            )
        )  # fmt: skip
    return out
