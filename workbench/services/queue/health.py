"""How the review queue stands: work pending, out on lease, done, and the pace of reviewing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.db.models import EntryKind, EntryStatus, Lease, LeaseStatus, Project, QueueEntry
from workbench.db.types import utcnow


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
