"""Which labels are current: the one rule, written once.

Labels are append-only: a correction is a new row that supersedes the old one, so "current"
means "no other label supersedes it". Every service that reads labels (training, agreement,
adjudication, propagation, the review flow, export) asks here instead of writing its own join.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, select
from sqlalchemy.orm import Session, aliased

from workbench.db.models import Item, Label, LabelSource, Project, User

# Judgements made by people. A propagated label is a copy of one, never a judgement of its own,
# so agreement, aggregation and propagation itself count only these.
HUMAN_SOURCES: tuple[LabelSource, ...] = (LabelSource.human, LabelSource.import_)


def superseded() -> ColumnElement[bool]:
    """SQL truth value: another label supersedes `Label` (it was corrected)."""
    newer = aliased(Label)
    return exists().where(newer.supersedes_id == Label.id)


def is_current() -> ColumnElement[bool]:
    """SQL truth value: no label supersedes `Label`. Use in any query over `Label`."""
    return ~superseded()


def current_labels_query(
    project: Project,
    *,
    item_ids: Iterable[int] | None = None,
    sources: Iterable[LabelSource] | None = None,
    reviewer: User | None = None,
) -> Select[Label]:
    """The project's current labels, optionally on some items, from some sources, by one
    reviewer (each reviewer's latest word on each item they labelled)."""
    stmt = select(Label).where(Label.project_id == project.id, is_current())
    if item_ids is not None:
        stmt = stmt.where(Label.item_id.in_(list(item_ids)))
    if sources is not None:
        stmt = stmt.where(Label.source.in_(list(sources)))
    if reviewer is not None:
        stmt = stmt.where(Label.reviewer_id == reviewer.id)
    return stmt


def current_labels(
    session: Session, project: Project, item: Item | None = None, **filters: Any
) -> list[Label]:
    """Current labels (see `current_labels_query` for the filters), oldest first."""
    stmt = current_labels_query(
        project, item_ids=[item.id] if item is not None else filters.pop("item_ids", None),
        **filters,
    )  # fmt: skip
    return list(session.scalars(stmt.order_by(Label.created_at, Label.id)))


def is_superseded(session: Session, label: Label) -> bool:
    return bool(session.scalar(select(exists().where(Label.supersedes_id == label.id))))
