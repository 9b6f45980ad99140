"""Label propagation to duplicate groups: one reviewer's judgement copied to the item's exact
and near-duplicates (services/near_duplicates.py), so forty copies of one meme cost one review.

A propagated label is recorded with source `propagated`, in the name of the reviewer whose
label it copies, with the source label's id in its idempotency key. It is never counted as a
human judgement: agreement, gold accuracy and adjudication ignore it, and training uses it only
for an item that has no human or imported label of its own. A member that already has its own
label keeps it. A propagated label is replaced (superseded) when the source label is corrected
or when another member of the group is labelled later: the latest judgement in a group wins.
"Unsure" is an escalation, not a judgement, and is never copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from workbench.db.models import Decision, Item, Label, LabelSource, Project, Role
from workbench.services.audit import Actor, record_event
from workbench.services.labels.current import HUMAN_SOURCES, current_labels_query
from workbench.services.labels.record import record_label
from workbench.services.labels.validate import LabelInput
from workbench.services.membership import require_project_role


def propagation_key(source_label_id: int, item_id: int) -> str:
    return f"propagated:{source_label_id}:{item_id}"


def propagation_source_id(key: str) -> int | None:
    """The id of the label a copy was propagated from, read from its `propagation_key`; None for
    a propagated label made elsewhere (imported: its key is not this installation's)."""
    prefix, _, rest = key.partition(":")
    source, _, item = rest.partition(":")
    if prefix != "propagated" or not source.isdigit() or not item.isdigit():
        return None
    return int(source)


def group_root(item: Item) -> int:
    return item.near_duplicate_of_id or item.duplicate_of_id or item.id


def group_members(session: Session, item: Item) -> list[Item]:
    """Every item of `item`'s duplicate group, itself included, by id."""
    root = group_root(item)
    return list(
        session.scalars(
            select(Item)
            .where(
                Item.project_id == item.project_id,
                or_(
                    Item.id == root,
                    Item.near_duplicate_of_id == root,
                    Item.duplicate_of_id == root,
                ),
            )
            .order_by(Item.id)
        )
    )


@dataclass
class PropagationReport:
    source_labels: int = 0
    propagated: int = 0
    replaced: int = 0
    kept_own_label: int = 0
    items: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source_labels": self.source_labels,
            "propagated": self.propagated,
            "replaced": self.replaced,
            "kept_own_label": self.kept_own_label,
            "items": self.items,
        }


def propagate_label(
    session: Session,
    project: Project,
    label: Label,
    actor: Actor,
    report: PropagationReport | None = None,
) -> PropagationReport:
    """Copy one current human (or imported) label to the other members of its item's group."""
    require_project_role(session, actor, project, Role.reviewer, action="propagate labels")
    report = report or PropagationReport()
    if label.source not in HUMAN_SOURCES or label.decision == Decision.unsure:
        return report  # only people's judgements travel; a copy is never copied again
    item = session.get_one(Item, label.item_id)
    members = [m for m in group_members(session, item) if m.id != item.id]
    if not members:
        return report
    report.source_labels += 1
    current = session.scalars(current_labels_query(project, item_ids=(m.id for m in members))).all()
    own = {lab.item_id for lab in current if lab.source in HUMAN_SOURCES}
    copies: dict[int, Label] = {
        lab.item_id: lab for lab in current if lab.source == LabelSource.propagated
    }
    changed: list[str] = []
    for member in members:
        if member.id in own:
            report.kept_own_label += 1
            continue
        key = propagation_key(label.id, member.id)
        previous = copies.get(member.id)
        if previous is not None and previous.idempotency_key == key:
            continue  # already carries this label
        data = LabelInput(
            decision=label.decision,
            policies=list(label.policies),
            severity=label.severity,
            rationale=f"propagated from {item.external_id} (label {label.id})",
            idempotency_key=key,
            policy_version=label.policy_version.version,
            supersedes=previous.idempotency_key if previous is not None else None,
        )
        reviewer = label.reviewer
        _, created = record_label(
            session,
            project,
            member,
            reviewer,
            data,
            source=LabelSource.propagated,
            actor=Actor.system(),  # the copy is the system's act; the audit names the actor
            audit=False,
        )
        if created:
            report.propagated += 1
            report.replaced += previous is not None
            changed.append(member.external_id)
    if changed:
        report.items.extend(changed)
        record_event(
            session,
            actor,
            "labels.propagated",
            project_id=project.id,
            entity_type="label",
            entity_id=str(label.id),
            details={"from": item.external_id, "to": changed},
        )
    return report


def propagated_training_labels(session: Session, project: Project) -> dict[int, tuple[Label, int]]:
    """Item -> (its current propagated label, the item that label was copied from; the item
    itself for an imported copy, whose source is not a label of this installation)."""
    copies = session.scalars(current_labels_query(project, sources=[LabelSource.propagated])).all()
    # The key names the source label (propagation_key); one query finds their items.
    source_ids = {lab.id: propagation_source_id(lab.idempotency_key) for lab in copies}
    wanted = {i for i in source_ids.values() if i is not None}
    source_items = dict(
        session.execute(
            select(Label.id, Label.item_id).where(
                Label.project_id == project.id, Label.id.in_(wanted)
            )
        ).all()
    )
    out: dict[int, tuple[Label, int]] = {}
    for lab in copies:
        source = source_ids[lab.id]
        if source is None:
            out[lab.item_id] = (lab, lab.item_id)
        elif source in source_items:
            out[lab.item_id] = (lab, source_items[source])
    return out


def propagate_project(session: Session, project: Project, actor: Actor) -> PropagationReport:
    """Propagate every current human label of items in a duplicate group (idempotent)."""
    require_project_role(session, actor, project, Role.lead, action="propagate a project's labels")
    grouped = select(Item.id).where(
        Item.project_id == project.id,
        or_(Item.near_duplicate_of_id.is_not(None), Item.duplicate_of_id.is_not(None)),
    )
    roots = select(Item.near_duplicate_of_id).where(
        Item.project_id == project.id, Item.near_duplicate_of_id.is_not(None)
    )
    exact_roots = select(Item.duplicate_of_id).where(
        Item.project_id == project.id, Item.duplicate_of_id.is_not(None)
    )
    labels = session.scalars(
        current_labels_query(project, sources=HUMAN_SOURCES)
        .where(
            or_(
                Label.item_id.in_(grouped),
                Label.item_id.in_(roots),
                Label.item_id.in_(exact_roots),
            ),
        )
        .order_by(Label.created_at, Label.id)
    ).all()
    report = PropagationReport()
    for label in labels:
        propagate_label(session, project, label, actor, report)
    return report
