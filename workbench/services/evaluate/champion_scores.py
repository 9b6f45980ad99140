"""The champion's scores over the pool, scored now from its head and its own vector space, for
the prevalence plan (strata by score) and for drift (the score distribution over time)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from workbench.config import Settings
from workbench.db.models import EmbeddingSpace, ModelVersion, Project
from workbench.errors import NotFoundError, WorkbenchError
from workbench.services.taxonomy import current_policy_version
from workbench.services.train.train import champion, load_head, score_vectors
from workbench.services.vectors.spaces import FUSED, get_space, load_space_vectors

DEFAULT_THRESHOLD = 0.5


@dataclass
class ChampionScores:
    model: ModelVersion
    classes: list[str]  # the head's columns, in order
    item_ids: np.ndarray  # sorted
    scores: np.ndarray  # [n items, n classes]
    vectors: np.ndarray  # the vectors the scores came from, row per item

    def column(self, policy: str) -> np.ndarray:
        return self.scores[:, self.classes.index(policy)]


def check_policy(session: Session, project: Project, policy: str) -> None:
    """Refuse a policy code the project's current taxonomy does not have."""
    # `none` (not violating) is a class of the models, not a policy whose prevalence is asked.
    codes = [p.code for p in current_policy_version(session, project).policies if p.code != "none"]
    if policy not in codes:
        raise NotFoundError(
            f"unknown policy {policy!r}: project {project.name!r}'s taxonomy has "
            f"{', '.join(codes) or 'no policies'}"
        )


def require_champion(session: Session, project: Project) -> ModelVersion:
    model = champion(session, project)
    if model is None:
        raise WorkbenchError(
            f"project {project.name!r} has no champion model: train one first "
            f"(`workbench train --project {project.name}`)"
        )
    return model


def champion_scores(
    session: Session,
    settings: Settings,
    project: Project,
    *,
    item_ids: np.ndarray | None = None,
) -> ChampionScores:
    """Score the pool (or `item_ids`) with the champion's head, on the space it was trained on.

    Scored now rather than read from the round's score file: items ingested since the round
    have no score there, and both prevalence and drift are about the pool as it is today.
    """
    model = require_champion(session, project)
    space = session.get(EmbeddingSpace, model.space_id) if model.space_id is not None else None
    if space is None:
        space = get_space(session, project, FUSED)
    ids, vectors = load_space_vectors(
        session, settings, space, None if item_ids is None else item_ids.tolist()
    )
    head: Any = load_head(settings, model.version, model.artifact_path)
    classes = [str(c) for c in head.classes_]
    if len(ids) == 0:
        raise WorkbenchError(
            f"project {project.name!r} has no embedded items to score: run "
            f"`workbench embed --project {project.name}` first"
        )
    return ChampionScores(model, classes, ids, score_vectors(head, vectors), vectors)


def require_class(scores: ChampionScores, policy: str) -> None:
    if policy not in scores.classes:
        raise WorkbenchError(
            f"the champion model v{scores.model.version} has no class {policy!r} (its classes: "
            f"{', '.join(scores.classes)}); label some {policy!r} items and retrain"
        )


def operating_threshold(model: ModelVersion, policy: str) -> tuple[float, str]:
    """The model's stored operating threshold for the policy, else 0.5; and where it came from."""
    entry = (model.thresholds or {}).get(policy)
    if isinstance(entry, dict) and isinstance(entry.get("threshold"), int | float):
        return float(entry["threshold"]), f"model v{model.version}'s operating threshold"
    return DEFAULT_THRESHOLD, (
        f"default {DEFAULT_THRESHOLD} (model v{model.version} stores no operating threshold "
        f"for {policy!r})"
    )
