"""The review queue: enqueue, lease with expiry, release, reclaim, and queue health.

Leasing is one guarded UPDATE on the entry's counters, so two reviewers can never both take the
last slot of an entry:
- SQLite (one writer at a time): the UPDATE re-checks `active_leases + completed <
  overlap_target` under the write lock.
- Postgres: the candidate row is picked with `FOR UPDATE SKIP LOCKED`, so concurrent reviewers
  take different rows instead of queueing behind one another.
The UNIQUE (entry, reviewer) constraint on leases makes "never twice to the same reviewer" hold
even if everything else went wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workbench.db.models import (
    EntryKind,
    EntryStatus,
    Item,
    Label,
    Lease,
    LeaseStatus,
    Project,
    QueueEntry,
    User,
)
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.projects import project_settings


@dataclass(frozen=True)
class NewEntry:
    item_id: int
    kind: EntryKind = EntryKind.selected
    strategy: str | None = None
    score: float | None = None
    reason: str | None = None
    priority: float = 0.0
    overlap_target: int = 1


def enqueue(
    session: Session,
    project: Project,
    entries: Sequence[NewEntry],
    actor: Actor,
    *,
    batch: int = 0,
    model_version_id: int | None = None,
) -> list[QueueEntry]:
    """Add entries; items that already have an open entry are left alone (and not duplicated)."""
    if not entries:
        return []
    ids = [e.item_id for e in entries]
    open_ids = set(
        session.scalars(
            select(QueueEntry.item_id).where(
                QueueEntry.item_id.in_(ids), QueueEntry.status == EntryStatus.pending
            )
        )
    )
    rows = []
    for e in entries:
        if e.item_id in open_ids:
            continue
        open_ids.add(e.item_id)
        rows.append(
            QueueEntry(
                project_id=project.id,
                item_id=e.item_id,
                batch=batch,
                kind=e.kind,
                model_version_id=model_version_id,
                strategy=e.strategy,
                score=e.score,
                reason=e.reason,
                priority=e.priority,
                overlap_target=max(1, e.overlap_target),
                status=EntryStatus.pending,
            )
        )
    session.add_all(rows)
    session.flush()
    record_event(
        session,
        actor,
        "queue.enqueued",
        project_id=project.id,
        entity_type="batch",
        entity_id=batch,
        details={"entries": len(rows), "skipped_already_open": len(entries) - len(rows)},
    )
    return rows


def reclaim_expired(
    session: Session, project: Project | None = None, now: datetime | None = None
) -> int:
    """Return the slots of expired leases to their entries; returns how many expired."""
    now = now or utcnow()
    q = select(Lease.id, Lease.entry_id).where(
        Lease.status == LeaseStatus.active, Lease.expires_at < now
    )
    if project is not None:
        q = q.join(QueueEntry, QueueEntry.id == Lease.entry_id).where(
            QueueEntry.project_id == project.id
        )
    n = 0
    for lease_id, entry_id in session.execute(q.limit(10_000)).all():
        # Guarded: only the transaction that flips the lease gives the slot back.
        flipped = session.execute(
            update(Lease)
            .where(Lease.id == lease_id, Lease.status == LeaseStatus.active)
            .values(status=LeaseStatus.expired, finished_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if flipped:
            session.execute(
                update(QueueEntry)
                .where(QueueEntry.id == entry_id, QueueEntry.active_leases > 0)
                .values(active_leases=QueueEntry.active_leases - 1)
                .execution_options(synchronize_session=False)
            )
            n += 1
    return n


def active_lease(
    session: Session, project: Project, reviewer: User, now: datetime | None = None
) -> Lease | None:
    now = now or utcnow()
    return session.scalar(
        select(Lease)
        .join(QueueEntry, QueueEntry.id == Lease.entry_id)
        .where(
            QueueEntry.project_id == project.id,
            Lease.reviewer_id == reviewer.id,
            Lease.status == LeaseStatus.active,
            Lease.expires_at >= now,
        )
        .order_by(Lease.leased_at)
        .limit(1)
    )


def _candidate(session: Session, project: Project, reviewer: User):  # type: ignore[no-untyped-def]
    already = exists().where(Lease.entry_id == QueueEntry.id, Lease.reviewer_id == reviewer.id)
    # project_id too, so the (project_id, item_id) index on labels answers it.
    labelled = exists().where(
        Label.project_id == QueueEntry.project_id,
        Label.item_id == QueueEntry.item_id,
        Label.reviewer_id == reviewer.id,
    )
    q = (
        select(QueueEntry.id)
        .where(
            QueueEntry.project_id == project.id,
            QueueEntry.status == EntryStatus.pending,
            # Gold items reach reviewers only through their own path (lease_gold_if_due).
            QueueEntry.kind != EntryKind.gold,
            QueueEntry.active_leases + QueueEntry.completed < QueueEntry.overlap_target,
            ~already,
            ~labelled,
        )
        .order_by(QueueEntry.priority.desc(), QueueEntry.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True, of=QueueEntry)
    return q


def lease_next(
    session: Session,
    project: Project,
    reviewer: User,
    *,
    lease_seconds: int | None = None,
    now: datetime | None = None,
) -> Lease | None:
    """The reviewer's current lease if one holds, else a new lease on the best open entry.

    Returns None when nothing is left for this reviewer.
    """
    now = now or utcnow()
    current = active_lease(session, project, reviewer, now)
    if current is not None:
        return current
    reclaim_expired(session, project, now)
    seconds = lease_seconds or project_settings(project).lease_seconds
    # Gold checks: at the project's gold rate this lease is a gold item instead, handed out by
    # its own path so it looks like any other item (imported here: gold.py builds on queue).
    from workbench.services.quality.gold import lease_gold_if_due

    gold = lease_gold_if_due(session, project, reviewer, now=now, lease_seconds=seconds)
    if gold is not None:
        return gold
    for _attempt in range(5):
        entry_id = session.scalar(_candidate(session, project, reviewer))
        if entry_id is None:
            return None
        lease = take_slot(session, entry_id, reviewer, now=now, lease_seconds=seconds)
        if lease is not None:
            return lease
        # another reviewer took the last slot first, or this reviewer's other tab: pick again
    return None


def take_slot(
    session: Session, entry_id: int, reviewer: User, *, now: datetime, lease_seconds: int
) -> Lease | None:
    """Lease one slot of an entry: a guarded UPDATE of its counter, then the lease row.

    None when the entry is full or no longer pending (another reviewer won the race), or when
    this reviewer already holds a lease on it (a second tab): the slot is given back then.
    """
    taken = session.execute(
        update(QueueEntry)
        .where(
            QueueEntry.id == entry_id,
            QueueEntry.status == EntryStatus.pending,
            QueueEntry.active_leases + QueueEntry.completed < QueueEntry.overlap_target,
        )
        .values(active_leases=QueueEntry.active_leases + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not taken:
        return None
    lease = Lease(
        entry_id=entry_id,
        reviewer_id=reviewer.id,
        status=LeaseStatus.active,
        leased_at=now,
        expires_at=now + timedelta(seconds=lease_seconds),
    )
    try:
        with session.begin_nested():
            session.add(lease)
            session.flush()
    except IntegrityError:
        # Same reviewer twice on one entry (a race with their own other tab): undo the slot.
        session.execute(
            update(QueueEntry)
            .where(QueueEntry.id == entry_id)
            .values(active_leases=QueueEntry.active_leases - 1)
            .execution_options(synchronize_session=False)
        )
        return None
    return lease


def get_lease(session: Session, lease_id: int, reviewer: User) -> Lease:
    lease = session.get(Lease, lease_id)
    if lease is None or lease.reviewer_id != reviewer.id:
        raise NotFoundError(f"no lease {lease_id} held by {reviewer.name!r}")
    return lease


def finish_lease(
    session: Session,
    lease: Lease,
    *,
    status: LeaseStatus,
    label_id: int | None = None,
    skip_reason: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Close a lease (submitted, released); returns False when it was already closed.

    Guarded like the lease itself, so a retried submission never counts twice.
    """
    now = now or utcnow()
    was_active = session.execute(
        update(Lease)
        .where(Lease.id == lease.id, Lease.status.in_([LeaseStatus.active, LeaseStatus.expired]))
        .values(status=status, finished_at=now, label_id=label_id, skip_reason=skip_reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not was_active:
        return False
    prior = lease.status  # as loaded: an expired lease already gave its slot back
    values: dict[str, Any] = {}
    if prior == LeaseStatus.active:
        values["active_leases"] = QueueEntry.active_leases - 1
    if status == LeaseStatus.submitted:
        values["completed"] = QueueEntry.completed + 1
    if values:
        session.execute(
            update(QueueEntry)
            .where(QueueEntry.id == lease.entry_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    session.execute(
        update(QueueEntry)
        .where(QueueEntry.id == lease.entry_id, QueueEntry.completed >= QueueEntry.overlap_target)
        .values(status=EntryStatus.done)
        .execution_options(synchronize_session=False)
    )
    session.expire(lease)
    return True


def release(session: Session, lease: Lease, actor: Actor, reason: str) -> None:
    """Skip: hand the entry back (to other reviewers; this one will not get it again)."""
    if not reason.strip():
        raise WorkbenchError("a skip needs a reason")
    entry = session.get_one(QueueEntry, lease.entry_id)
    if finish_lease(session, lease, status=LeaseStatus.released, skip_reason=reason):
        record_event(
            session,
            actor,
            "queue.skipped",
            project_id=entry.project_id,
            entity_type="item",
            entity_id=entry.item_id,
            details={"reason": reason},
        )


def queue_health(session: Session, project: Project, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    # Gold entries stay pending for good (each reviewer gets them once): they are not work
    # waiting in the queue, so they are counted apart.
    by_kind = dict(
        session.execute(
            select(QueueEntry.kind, func.count())
            .where(QueueEntry.project_id == project.id, QueueEntry.status == EntryStatus.pending)
            .group_by(QueueEntry.kind)
        ).all()
    )
    gold_active = int(by_kind.pop(EntryKind.gold, 0))
    pending = int(sum(by_kind.values()))
    done = (
        session.scalar(
            select(func.count()).where(
                QueueEntry.project_id == project.id, QueueEntry.status == EntryStatus.done
            )
        )
        or 0
    )
    leased_q = (
        select(func.count(), func.min(Lease.leased_at))
        .join(QueueEntry, QueueEntry.id == Lease.entry_id)
        .where(
            QueueEntry.project_id == project.id,
            Lease.status == LeaseStatus.active,
            Lease.expires_at >= now,
        )
    )
    leased, oldest = session.execute(leased_q).one()
    hour_ago = now - timedelta(hours=1)
    per_hour = (
        session.scalar(
            select(func.count())
            .select_from(Lease)
            .join(QueueEntry, QueueEntry.id == Lease.entry_id)
            .where(
                QueueEntry.project_id == project.id,
                Lease.status == LeaseStatus.submitted,
                Lease.finished_at >= hour_ago,
            )
        )
        or 0
    )
    return {
        "pending": pending,
        "gold_active": gold_active,
        "leased": leased or 0,
        "done": done,
        "submitted_last_hour": per_hour,
        "oldest_lease_at": oldest.isoformat() if oldest else None,
        "oldest_lease_age_seconds": (now - oldest).total_seconds() if oldest else None,
    }


def queued_item_ids(session: Session, project: Project) -> set[int]:
    """Items with an open entry: selection strategies must not pick them again."""
    return set(
        session.scalars(
            select(QueueEntry.item_id).where(
                QueueEntry.project_id == project.id, QueueEntry.status == EntryStatus.pending
            )
        )
    )


def labelled_item_ids(session: Session, project: Project) -> set[int]:
    return set(
        session.scalars(select(Label.item_id).where(Label.project_id == project.id).distinct())
    )


def items_for_entries(session: Session, entry_ids: Sequence[int]) -> dict[int, Item]:
    rows = session.execute(
        select(QueueEntry.id, Item)
        .join(Item, Item.id == QueueEntry.item_id)
        .where(QueueEntry.id.in_(list(entry_ids)))
    ).all()
    return {eid: item for eid, item in rows}
