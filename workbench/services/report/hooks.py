"""What the label and adjudication paths call so that decisions and appeals follow the
judgements as they are recorded: one function per path, in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import (
    Adjudication,
    AppealStatus,
    Decision,
    DecisionAppeal,
    EnforcementDecision,
    Label,
)
from workbench.services.audit import Actor
from workbench.services.report.appeals import resolve_from_label
from workbench.services.report.decisions import decide_from_adjudication, decide_from_label, revoke


def labels_recorded(session: Session, label_ids: Iterable[int], actor: Actor) -> None:
    """For each new label, oldest first: a correction that is no longer violating reverses the
    decision its label made; a label on an item under appeal answers the appeal; otherwise a
    violating label makes a decision (if the item has none in force)."""
    ids = sorted(label_ids)
    if not ids:
        return
    labels = list(session.scalars(select(Label).where(Label.id.in_(ids)).order_by(Label.id)))
    # One query for the batch, not one per label: the items among these under open appeal.
    appealed = set(
        session.scalars(
            select(EnforcementDecision.item_id)
            .join(DecisionAppeal, DecisionAppeal.decision_id == EnforcementDecision.id)
            .where(
                EnforcementDecision.item_id.in_({lab.item_id for lab in labels}),
                DecisionAppeal.status == AppealStatus.open,
            )
        )
    )
    for label in labels:
        if label.supersedes_id is not None and label.decision != Decision.violating:
            made = session.scalar(
                select(EnforcementDecision).where(
                    EnforcementDecision.label_id == label.supersedes_id,
                    EnforcementDecision.revoked_at.is_(None),
                )
            )
            if made is not None:
                revoke(session, made, actor, f"label {label.supersedes_id} corrected by {label.id}")
        if label.item_id in appealed and resolve_from_label(session, label, actor) is not None:
            continue
        decide_from_label(session, label, actor)


def adjudication_resolved(session: Session, case: Adjudication, actor: Actor) -> None:
    decide_from_adjudication(session, case, actor)
