"""A project's vital counts, for `workbench status` and the dashboards."""

from __future__ import annotations

from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from workbench.db.models import (
    Embedding,
    EmbeddingSpace,
    EmbeddingStatus,
    Item,
    Label,
    MediaAsset,
    Modality,
    ModelVersion,
    Project,
)
from workbench.services.queue.health import queue_health
from workbench.services.vectors.spaces import FUSED


def project_status(session: Session, project: Project) -> dict[str, Any]:
    items = session.scalar(select(func.count()).where(Item.project_id == project.id)) or 0
    by_modality: dict[str, int] = {m.value: 0 for m in Modality}
    by_modality["text"] = (
        session.scalar(
            select(func.count()).where(Item.project_id == project.id, Item.text.is_not(None))
        )
        or 0
    )
    rows = session.execute(
        select(MediaAsset.modality, func.count())
        .join(Item, Item.id == MediaAsset.item_id)
        .where(Item.project_id == project.id)
        .group_by(MediaAsset.modality)
    )
    for modality, n in rows:
        by_modality[modality.value] = n
    labels = session.scalar(select(func.count()).where(Label.project_id == project.id)) or 0
    labelled = (
        session.scalar(
            select(func.count(distinct(Label.item_id))).where(Label.project_id == project.id)
        )
        or 0
    )
    reviewers = (
        session.scalar(
            select(func.count(distinct(Label.reviewer_id))).where(Label.project_id == project.id)
        )
        or 0
    )
    duplicates = (
        session.scalar(
            select(func.count()).where(
                Item.project_id == project.id, Item.duplicate_of_id.is_not(None)
            )
        )
        or 0
    )
    fused = session.scalar(
        select(EmbeddingSpace.id)
        .where(EmbeddingSpace.project_id == project.id, EmbeddingSpace.name == FUSED)
        .order_by(EmbeddingSpace.id.desc())
        .limit(1)
    )
    embedded = 0
    if fused is not None:
        embedded = (
            session.scalar(
                select(func.count()).where(
                    Embedding.space_id == fused, Embedding.status == EmbeddingStatus.ok
                )
            )
            or 0
        )
    failures = (
        session.scalar(
            select(func.count(distinct(Embedding.item_id)))
            .join(EmbeddingSpace, EmbeddingSpace.id == Embedding.space_id)
            .where(
                EmbeddingSpace.project_id == project.id, Embedding.status == EmbeddingStatus.failed
            )
        )
        or 0
    )
    health = queue_health(session, project)  # one definition of pending and leased
    queued, leased = health["pending"], health["leased"]
    models = session.scalar(select(func.count()).where(ModelVersion.project_id == project.id)) or 0
    return {
        "project": project.name,
        "items": items,
        "items_by_modality": by_modality,
        "exact_duplicates": duplicates,
        "labels": labels,
        "labelled_items": labelled,
        "reviewers": reviewers,
        "embedded": embedded,
        "embedding_failures": failures,
        "queued": queued,
        "leased": leased,
        "model_versions": models,
    }
