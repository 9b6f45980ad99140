"""Which items are in evaluation sets, and the reference classes of frozen ones.

Read-only and free of training imports, so training can ask "which items are held out?" without
an import cycle (sets.py, which freezes a sampled set from training labels, imports training).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import (
    EvaluationMember,
    EvaluationSet,
    EvaluationSetStatus,
    Project,
)

# Queue entries of sampled evaluation sets carry this strategy: online metrics and selection
# yield leave them out, they are measurement, not selection.
EVALUATION_STRATEGY = "evaluation"


def held_out_item_ids(session: Session, project: Project) -> set[int]:
    """Items in any evaluation set of the project, whatever its status: never trained on.

    Retired sets count too: a model trained on a retired set's items could not be compared
    fairly with the versions evaluated on it, and old reports must stay explainable.
    """
    return set(
        session.scalars(
            select(EvaluationMember.item_id)
            .join(EvaluationSet, EvaluationSet.id == EvaluationMember.set_id)
            .where(EvaluationSet.project_id == project.id)
            .distinct()
        )
    )


def frozen_sets(session: Session, project: Project) -> list[EvaluationSet]:
    """The project's frozen evaluation sets (the golden sets a challenger is judged on)."""
    return list(
        session.scalars(
            select(EvaluationSet)
            .where(
                EvaluationSet.project_id == project.id,
                EvaluationSet.status == EvaluationSetStatus.frozen,
            )
            .order_by(EvaluationSet.name, EvaluationSet.version)
        )
    )


def set_references(session: Session, evalset: EvaluationSet) -> dict[int, str]:
    """Item id -> reference class of a set's members that have one."""
    rows = session.execute(
        select(EvaluationMember.item_id, EvaluationMember.reference).where(
            EvaluationMember.set_id == evalset.id, EvaluationMember.reference.is_not(None)
        )
    )
    return {int(i): str(r) for i, r in rows}
