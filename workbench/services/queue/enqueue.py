"""Adding work to the review queue: entries for selected, gold or flagged items, one open entry
per item; and which items are queued or labelled already (what selection must not pick again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import EntryKind, EntryStatus, Item, Label, Project, QueueEntry
from workbench.services.audit import Actor, record_event


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
