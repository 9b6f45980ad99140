"""Embedding spaces: one per project, modality (or `fused`) and encoder. Where a space's
vectors live, which encoder fills it, how its vectors and its FAISS index are read back.

`embed.py` fills spaces; selection, training, similarity and near-duplicate grouping read
them through this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.config import Settings
from workbench.db.models import Embedding, EmbeddingSpace, EmbeddingStatus, Modality, Project
from workbench.encoders.base import Encoder
from workbench.encoders.registry import encoder_for_modality
from workbench.errors import NotFoundError
from workbench.services.projects import project_settings
from workbench.services.vectors.index import VectorIndex
from workbench.services.vectors.vector_store import SegmentStore

FUSED = "fused"
MODALITIES = [m.value for m in Modality]


def space_folder(settings: Settings, project_id: int, space_id: int) -> Path:
    return settings.resolved_home / "vectors" / str(project_id) / str(space_id)


def default_encoder_lookup(modality: str, project: Project) -> Encoder:
    """The encoder the project's settings choose for `modality` (loaded once, cached)."""
    return encoder_for_modality(modality, project_settings(project).encoders)


def get_or_create_space(
    session: Session, project: Project, name: str, enc_id: str, version: str, dim: int
) -> EmbeddingSpace:
    """The space of that name and encoder, made on first use; a new encoder version or
    dimension is recorded on it (its vectors then count as stale)."""
    space = session.scalar(
        select(EmbeddingSpace).where(
            EmbeddingSpace.project_id == project.id,
            EmbeddingSpace.name == name,
            EmbeddingSpace.encoder_id == enc_id,
        )
    )
    if space is None:
        space = EmbeddingSpace(
            project_id=project.id, name=name, encoder_id=enc_id, encoder_version=version, dim=dim
        )
        session.add(space)
        session.flush()
    elif space.encoder_version != version or space.dim != dim:
        space.encoder_version, space.dim = version, dim
    return space


def get_space(session: Session, project: Project, name: str) -> EmbeddingSpace:
    """The space of that name filled by the encoder configured now (or the newest one)."""
    spaces = list(
        session.scalars(
            select(EmbeddingSpace)
            .where(EmbeddingSpace.project_id == project.id, EmbeddingSpace.name == name)
            .order_by(EmbeddingSpace.created_at.desc(), EmbeddingSpace.id.desc())
        )
    )
    if not spaces:
        raise NotFoundError(
            f"project {project.name!r} has no {name} vectors yet: run "
            f"`workbench embed --project {project.name}` first"
        )
    if name != FUSED:
        configured = getattr(project_settings(project).encoders, name, None)
        for sp in spaces:
            if sp.encoder_id == configured:
                return sp
    return spaces[0]


def load_space_vectors(
    session: Session,
    settings: Settings,
    space: EmbeddingSpace,
    item_ids: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, vectors) of the space's good embeddings, ordered by item id."""
    q = select(Embedding.item_id, Embedding.segment, Embedding.row).where(
        Embedding.space_id == space.id, Embedding.status == EmbeddingStatus.ok
    )
    if item_ids is not None:
        q = q.where(Embedding.item_id.in_(list(item_ids)))
    rows = session.execute(q.order_by(Embedding.item_id)).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    store = SegmentStore(space_folder(settings, space.project_id, space.id))
    # An ok embedding always has its segment and row; the columns are nullable for failures.
    vecs = store.read(((str(r[1]), int(r[2] or 0)) for r in rows), space.dim)
    return ids, vecs


def _fingerprint(session: Session, space: EmbeddingSpace) -> str:
    n, newest, id_sum = session.execute(
        select(func.count(), func.max(Embedding.created_at), func.sum(Embedding.item_id)).where(
            Embedding.space_id == space.id, Embedding.status == EmbeddingStatus.ok
        )
    ).one()
    return f"{n}:{newest.isoformat() if newest else '-'}:{id_sum or 0}:{space.encoder_version}"


def refresh_index(session: Session, settings: Settings, space: EmbeddingSpace) -> VectorIndex:
    """Rebuild the space's FAISS index when its vectors changed since the last build."""
    folder = space_folder(settings, space.project_id, space.id) / "index"
    fp = _fingerprint(session, space)
    current = VectorIndex.load(folder)
    if current is not None and current.meta.extra.get("fingerprint") == fp:
        return current
    ids, vecs = load_space_vectors(session, settings, space)
    if len(ids) == 0:
        index = VectorIndex.build(
            np.zeros(0, np.int64), np.zeros((0, space.dim), np.float32), kind="flat"
        )
    else:
        index = VectorIndex.build(ids, vecs)
    index.meta.extra = {
        "fingerprint": fp,
        "space": space.name,
        "encoder": space.encoder_id,
        "encoder_version": space.encoder_version,
    }
    index.save(folder)
    return index


def collect_garbage(session: Session, settings: Settings, space: EmbeddingSpace) -> int:
    live = set(
        session.scalars(
            select(Embedding.segment)
            .where(Embedding.space_id == space.id, Embedding.segment.is_not(None))
            .distinct()
        )
    )
    return SegmentStore(space_folder(settings, space.project_id, space.id)).collect_garbage(
        {s for s in live if s}
    )
