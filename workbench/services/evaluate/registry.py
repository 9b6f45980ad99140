"""The model registry: compare two versions on a frozen evaluation set, promote a version by hand,
roll back to the champion before, each audited; and the model versions as rows for the page."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.config import Settings
from workbench.db.models import AuditEvent, ModelStatus, ModelVersion, Project, Role
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.evaluate.compare import Scored, align, compare_models
from workbench.services.evaluate.offline import frozen_set, get_model_version, score_set
from workbench.services.membership import require_project_role
from workbench.services.projects import project_settings

# Audit actions that change the champion: a training round that promoted, a promotion by hand
# (both push a version), a rollback (pops one).
PROMOTING = ("model.trained", "model.promoted")
ROLLBACK = "model.rolled_back"


def compare_versions(
    session: Session, settings: Settings, project: Project, a: int, b: int, evalset: str
) -> dict[str, Any]:
    """Version a (the champion's role) against b (the challenger's) on one frozen set, judged by
    the project's promotion rule."""
    es = frozen_set(session, project, evalset)
    mva, mvb = get_model_version(session, project, a), get_model_version(session, project, b)
    sa, sb = score_set(session, settings, mva, es), score_set(session, settings, mvb, es)
    common = np.intersect1d(sa.item_ids, sb.item_ids)
    ia = np.searchsorted(sa.item_ids, common)
    ib = np.searchsorted(sb.item_ids, common)
    classes = sorted(set(sa.classes) | set(sb.classes))
    result = compare_models(
        sa.reference[ia],
        Scored(mva.version, align(sa.proba[ia], sa.classes, classes), mva.thresholds),
        Scored(mvb.version, align(sb.proba[ib], sb.classes, classes), mvb.thresholds),
        classes,
        project_settings(project).promotion_rule,
    )
    return {"evalset": f"{es.name}@{es.version}", **result}


def _set_champion(session: Session, project: Project, mv: ModelVersion) -> ModelVersion | None:
    old = session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project.id, ModelVersion.status == ModelStatus.champion
        )
    )
    if old is not None and old.id == mv.id:
        return old
    # Demote, flush, then promote: the database allows one champion per project at every
    # statement (uq_model_versions_one_champion).
    if old is not None:
        old.status = ModelStatus.retired
        session.flush()
    mv.status = ModelStatus.champion
    session.flush()
    return old


def promote_version(
    session: Session, project: Project, version: int, actor: Actor, reason: str | None = None
) -> dict[str, Any]:
    require_project_role(session, actor, project, Role.engineer, action="promote model versions")
    mv = get_model_version(session, project, version)
    if mv.status == ModelStatus.champion:
        return {"champion": mv.version, "previous": mv.version, "changed": False}
    old = _set_champion(session, project, mv)
    record_event(
        session,
        actor,
        "model.promoted",
        project_id=project.id,
        entity_type="model_version",
        entity_id=mv.version,
        details={"promoted": True, "previous": old.version if old else None, "reason": reason},
    )
    return {"champion": mv.version, "previous": old.version if old else None, "changed": True}


def champion_history(session: Session, project: Project) -> list[int]:
    """The stack of champions, oldest first, from the audit trail: a promotion pushes, a
    rollback pops, so repeated rollbacks walk further back."""
    stack: list[int] = []
    events = session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.project_id == project.id,
            AuditEvent.action.in_([*PROMOTING, ROLLBACK]),
            AuditEvent.entity_type == "model_version",
        )
        .order_by(AuditEvent.id)
    )
    for ev in events:
        if ev.action == ROLLBACK:
            if stack:
                stack.pop()
        elif ev.details.get("promoted") and ev.entity_id is not None:
            stack.append(int(ev.entity_id))
    return stack


def rollback(
    session: Session, project: Project, actor: Actor, reason: str | None = None
) -> dict[str, Any]:
    """Make the champion before the current one champion again."""
    require_project_role(
        session, actor, project, Role.engineer, action="roll back the champion model"
    )
    current = session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project.id, ModelVersion.status == ModelStatus.champion
        )
    )
    if current is None:
        raise WorkbenchError(f"project {project.name!r} has no champion to roll back")
    stack = champion_history(session, project)
    while stack and stack[-1] == current.version:
        stack.pop()
    if not stack:
        raise WorkbenchError(
            f"model version {current.version} of project {project.name!r} has no earlier "
            "champion to roll back to"
        )
    target = get_model_version(session, project, stack[-1])
    _set_champion(session, project, target)
    record_event(
        session,
        actor,
        ROLLBACK,
        project_id=project.id,
        entity_type="model_version",
        entity_id=current.version,
        details={"from": current.version, "to": target.version, "reason": reason},
    )
    return {"champion": target.version, "previous": current.version, "changed": True}


def model_rows(session: Session, project: Project) -> list[dict[str, Any]]:
    """One flat row per model version, newest first: the figures the page shows in columns."""
    versions = list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project.id)
            .order_by(ModelVersion.version.desc())
        )
    )
    # Macro average precision on the golden sets, from every comparison a round made (a
    # champion's figure comes from the comparison with its challenger).
    golden_ap: dict[int, float] = {}
    for mv in reversed(versions):
        c = mv.comparison or {}
        if ap := c.get("macro_average_precision"):
            golden_ap[int(c["champion"])] = ap["champion"]
            golden_ap[int(c["challenger"])] = ap["challenger"]
    rows = []
    for mv in versions:
        metrics = mv.metrics or {}
        comparison = mv.comparison or {}
        rows.append(
            {
                "version": mv.version,
                "status": mv.status.value,
                "created_at": mv.created_at,
                "head": mv.head,
                "trained_on": mv.trained_on,
                "macro_f1": metrics.get("macro_f1"),
                "golden_macro_ap": golden_ap.get(mv.version),
                "evaluated_by": metrics.get("evaluation"),
                "calibrated": mv.calibrated,
                "verdict": comparison.get("verdict"),
                "macro_ap_delta": comparison.get("macro_average_precision_delta"),
                "flip_rate": comparison.get("flip_rate"),
                "guard": metrics.get("guard"),
                "labels_sha256": (mv.lineage or {}).get("labels_snapshot_sha256"),
            }
        )
    return rows


def latest_comparison(session: Session, project: Project) -> dict[str, Any] | None:
    """The champion/challenger comparison of the newest version a round judged on frozen sets."""
    mv = session.scalar(
        select(ModelVersion)
        .where(ModelVersion.project_id == project.id, ModelVersion.comparison.is_not(None))
        .order_by(ModelVersion.version.desc())
        .limit(1)
    )
    return dict(mv.comparison) if mv is not None and mv.comparison else None
