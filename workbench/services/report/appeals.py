"""Complaints against enforcement decisions (DSA art. 20): each goes back to the review queue
for someone other than whoever decided, and its outcome (upheld or reversed) and times are kept.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import (
    AppealStatus,
    Decision,
    DecisionAppeal,
    EnforcementDecision,
    EntryKind,
    EntryStatus,
    Label,
    LabelSource,
    Project,
    QueueEntry,
    Role,
)
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.membership import require_project_role
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.report.decisions import get_decision, revoke

# Above anything a selection strategy writes: a complaint is answered before new work.
APPEAL_PRIORITY = 1_000.0


def file_appeal(
    session: Session, project: Project, actor: Actor, puid: str, complaint: str
) -> DecisionAppeal:
    """Record a complaint on decision `puid` and queue the item for re-review.

    The lease rule gives an entry only to reviewers who have not labelled the item, so the
    reviewer who decided never gets it back; `decide_appeal` refuses the decider too.
    """
    if not complaint.strip():
        raise WorkbenchError("a complaint needs its text: what the person contests")
    decision = get_decision(session, project, puid)
    if decision.revoked_at is not None:
        raise WorkbenchError(f"decision {puid} was already reversed; there is nothing to appeal")
    already = session.scalar(
        select(DecisionAppeal.id).where(
            DecisionAppeal.decision_id == decision.id, DecisionAppeal.status == AppealStatus.open
        )
    )
    if already is not None:
        raise WorkbenchError(f"decision {puid} already has an open appeal ({already})")
    appeal = DecisionAppeal(
        project_id=project.id,
        decision_id=decision.id,
        complaint=complaint.strip(),
        filed_by=actor.name,
        filed_at=utcnow(),
        status=AppealStatus.open,
    )
    session.add(appeal)
    session.flush()
    entries = enqueue(
        session,
        project,
        [
            NewEntry(
                item_id=decision.item_id,
                kind=EntryKind.rereview,
                strategy="appeal",
                reason=f"appeal {appeal.id} against decision {puid}",
                priority=APPEAL_PRIORITY,
            )
        ],
        actor,
    )
    if entries:
        appeal.queue_entry_id = entries[0].id
    else:
        # The item is queued already: that open entry carries the re-review.
        appeal.queue_entry_id = session.scalar(
            select(QueueEntry.id).where(
                QueueEntry.item_id == decision.item_id, QueueEntry.status == EntryStatus.pending
            )
        )
    session.flush()
    record_event(
        session, actor, "appeal.filed", project_id=project.id, entity_type="decision_appeal",
        entity_id=appeal.id, details={"puid": puid, "queue_entry": appeal.queue_entry_id},
    )  # fmt: skip
    return appeal


def _get_appeal(session: Session, project: Project, appeal_id: int) -> DecisionAppeal:
    appeal = session.get(DecisionAppeal, appeal_id)
    if appeal is None or appeal.project_id != project.id:
        raise NotFoundError(f"no appeal {appeal_id} in project {project.name!r}")
    return appeal


def _close(
    session: Session,
    appeal: DecisionAppeal,
    actor: Actor,
    outcome: AppealStatus,
    note: str,
    label_id: int | None = None,
) -> DecisionAppeal:
    decision = get_decision_by_id(session, appeal.decision_id)
    if appeal.status != AppealStatus.open:
        raise WorkbenchError(f"appeal {appeal.id} is already {appeal.status.value}")
    if (
        actor.user_id is not None
        and decision.decided_by_user_id is not None
        and actor.user_id == decision.decided_by_user_id
    ):
        raise WorkbenchError(
            f"appeal {appeal.id}: {actor.name} took decision {decision.puid}; "
            "someone else must decide the appeal"
        )
    appeal.status = outcome
    appeal.decided_at = utcnow()
    appeal.decided_by = actor.name
    appeal.decided_by_user_id = actor.user_id
    appeal.label_id = label_id
    appeal.note = note.strip() or None
    if outcome == AppealStatus.reversed:
        revoke(session, decision, actor, f"appeal {appeal.id} reversed it")
    entry = session.get(QueueEntry, appeal.queue_entry_id) if appeal.queue_entry_id else None
    if (
        entry is not None
        and entry.strategy == "appeal"
        and entry.status == EntryStatus.pending
        and entry.active_leases == 0
    ):
        # Decided by hand: the re-review it queued is not needed any more.
        entry.status = EntryStatus.cancelled
    session.flush()
    record_event(
        session, actor, f"appeal.{outcome.value}", project_id=appeal.project_id,
        entity_type="decision_appeal", entity_id=appeal.id,
        details={"puid": decision.puid, "note": appeal.note, "label_id": label_id},
    )  # fmt: skip
    return appeal


def get_decision_by_id(session: Session, decision_id: int) -> EnforcementDecision:
    return session.get_one(EnforcementDecision, decision_id)


def decide_appeal(
    session: Session, project: Project, actor: Actor, appeal_id: int, outcome: str, note: str
) -> dict[str, Any]:
    """A lead (or the system) closes an appeal: upheld keeps the decision, reversed revokes it."""
    require_project_role(session, actor, project, Role.lead, action="decide an appeal")
    try:
        status = AppealStatus(outcome)
    except ValueError:
        raise WorkbenchError(f"outcome is 'upheld' or 'reversed', not {outcome!r}") from None
    if status == AppealStatus.open:
        raise WorkbenchError("outcome is 'upheld' or 'reversed', not 'open'")
    if not note.strip():
        raise WorkbenchError("a note is required: say why")
    return appeal_dict(
        _close(session, _get_appeal(session, project, appeal_id), actor, status, note)
    )


def resolve_from_label(session: Session, label: Label, actor: Actor) -> DecisionAppeal | None:
    """A human label on an item with an open appeal is its re-review: violating upholds the
    decision, not violating reverses it, unsure leaves the appeal open (for a lead)."""
    if label.source != LabelSource.human or label.decision == Decision.unsure:
        return None
    appeal = session.scalar(
        select(DecisionAppeal)
        .join(EnforcementDecision, EnforcementDecision.id == DecisionAppeal.decision_id)
        .where(
            EnforcementDecision.item_id == label.item_id,
            DecisionAppeal.status == AppealStatus.open,
        )
        .order_by(DecisionAppeal.id)
        .limit(1)
    )
    if appeal is None:
        return None
    decision = get_decision_by_id(session, appeal.decision_id)
    if label.reviewer_id == decision.decided_by_user_id:
        return None  # the decider's own label never answers a complaint against them
    outcome = AppealStatus.upheld if label.decision == Decision.violating else AppealStatus.reversed
    reviewer = Actor.for_user(label.reviewer.name, label.reviewer_id, label.reviewer.role)
    del actor  # the re-reviewer, not whoever submitted for them, decided the appeal
    return _close(session, appeal, reviewer, outcome, label.rationale or "", label_id=label.id)


def appeals_between(
    session: Session, project: Project, since: str | None = None, until: str | None = None
) -> list[DecisionAppeal]:
    """Appeals filed in [since, until] (YYYY-MM-DD, inclusive), oldest first."""
    rows = session.scalars(
        select(DecisionAppeal)
        .where(DecisionAppeal.project_id == project.id)
        .order_by(DecisionAppeal.filed_at, DecisionAppeal.id)
    )
    return [
        a
        for a in rows
        if (since is None or a.filed_at.date().isoformat() >= since)
        and (until is None or a.filed_at.date().isoformat() <= until)
    ]


def appeal_dict(a: DecisionAppeal) -> dict[str, Any]:
    return {
        "id": a.id,
        "decision_id": a.decision_id,
        "status": a.status.value,
        "filed_at": a.filed_at.isoformat(),
        "decided_at": a.decided_at.isoformat() if a.decided_at else None,
        "decided_by": a.decided_by,
        "queue_entry_id": a.queue_entry_id,
    }
