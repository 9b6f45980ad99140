"""Builders for the label-quality tests: labels with chosen times, and fused vectors written
straight into a project's vector store (no encoder run)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session

from workbench.config import Settings
from workbench.db.models import (
    Decision,
    Embedding,
    EmbeddingSpace,
    EmbeddingStatus,
    Item,
    Label,
    LabelSource,
    Project,
    ProjectMember,
    Role,
    User,
)
from workbench.services.taxonomy import current_policy_version
from workbench.services.vectors.spaces import FUSED, space_folder
from workbench.services.vectors.vector_store import SegmentStore

T0 = datetime(2026, 11, 2, 12, tzinfo=UTC)  # a Monday: ISO week 2026-W45


class Labels:
    """Items, reviewers and labels of one project, made with the ORM."""

    def __init__(self, session: Session, project: Project) -> None:
        self.s = session
        self.project = project
        self.pv = current_policy_version(session, project)
        self.users: dict[str, User] = {}
        self.items: dict[str, Item] = {}
        self.n = 0

    def user(self, name: str, role: Role = Role.reviewer) -> User:
        """A user, and a member of the project (membership has its own tests)."""
        if name not in self.users:
            user = User(name=name, role=role, password_hash=None)
            self.s.add(user)
            self.s.flush()
            self.s.add(ProjectMember(project_id=self.project.id, user_id=user.id, added_by="test"))
            self.s.flush()
            self.users[name] = user
        return self.users[name]

    def item(self, ext: str) -> Item:
        if ext not in self.items:
            item = Item(
                project_id=self.project.id,
                external_id=ext,
                text=ext,
                language="en",
                modalities=["text"],
                content_hash=hashlib.sha256(ext.encode()).hexdigest(),
            )
            self.s.add(item)
            self.s.flush()
            self.items[ext] = item
        return self.items[ext]

    def label(self, ext: str, reviewer: str, cls: str, *, days: float = 0) -> Label:
        """A human label of class `cls`: `none` is not violating, `unsure` unsure, anything
        else violating with that policy code."""
        self.n += 1
        if cls == "none":
            decision, policies = Decision.not_violating, []
        elif cls == "unsure":
            decision, policies = Decision.unsure, []
        else:
            decision, policies = Decision.violating, [cls]
        label = Label(
            project_id=self.project.id,
            item_id=self.item(ext).id,
            reviewer_id=self.user(reviewer).id,
            policy_version_id=self.pv.id,
            decision=decision,
            policies=policies,
            source=LabelSource.human,
            idempotency_key=f"q{self.n}",
            created_at=T0 + timedelta(days=days, minutes=self.n),
        )
        self.s.add(label)
        self.s.flush()
        return label


def add_fused_vectors(
    session: Session, settings: Settings, project: Project, items: list[Item], vectors: np.ndarray
) -> EmbeddingSpace:
    """Store `vectors` (one row per item) as the project's fused space, as `embed` would."""
    space = EmbeddingSpace(
        project_id=project.id, name=FUSED, encoder_id="test-fused", encoder_version="t1",
        dim=int(vectors.shape[1]),
    )  # fmt: skip
    session.add(space)
    session.flush()
    segment = SegmentStore(space_folder(settings, project.id, space.id)).write(vectors)
    for row, item in enumerate(items):
        session.add(
            Embedding(
                space_id=space.id, item_id=item.id, item_revision=item.revision,
                encoder_version="t1", status=EmbeddingStatus.ok, segment=segment, row=row,
            )
        )  # fmt: skip
    session.flush()
    return space


def separable_vectors(classes: list[str], per_class: int, dim: int = 8, seed: int = 0):  # type: ignore[no-untyped-def]
    """(vectors, true class of each row): one tight cluster per class, far apart."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (len(classes), dim)) * 6.0
    rows, truth = [], []
    for k, cls in enumerate(classes):
        rows.append(centres[k] + rng.normal(0.0, 1.0, (per_class, dim)))
        truth += [cls] * per_class
    return np.vstack(rows).astype(np.float32), truth
