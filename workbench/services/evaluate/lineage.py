"""What a model version was made from: the training labels' snapshot hash, the encoders and their
versions, the head and its parameters, and the code version (package version and git commit)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

import workbench
from workbench.db.models import EmbeddingSpace, Project


def labels_snapshot_hash(item_ids: np.ndarray, labels: np.ndarray) -> str:
    """sha256 over the sorted (item id, class) pairs a head learned from: the same training
    labels give the same hash, whatever order they were read in."""
    pairs = sorted(zip((int(i) for i in item_ids), (str(c) for c in labels), strict=True))
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


@cache
def git_commit() -> str | None:
    """The commit of the checkout the package runs from, when it runs from one (not a wheel)."""
    root = Path(workbench.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def code_version() -> dict[str, Any]:
    return {"package": workbench.__version__, "git_commit": git_commit()}


def encoders_of(session: Session, project: Project) -> list[dict[str, Any]]:
    return [
        {"space": s.name, "encoder": s.encoder_id, "version": s.encoder_version, "dim": s.dim}
        for s in session.scalars(
            select(EmbeddingSpace)
            .where(EmbeddingSpace.project_id == project.id)
            .order_by(EmbeddingSpace.name, EmbeddingSpace.id)
        )
    ]


def lineage(
    encoders: list[dict[str, Any]],
    *,
    item_ids: np.ndarray,
    labels: np.ndarray,
    head: str,
    params: dict[str, Any],
    held_out: int,
    thresholds_from: str,
) -> dict[str, Any]:
    return {
        "labels_snapshot_sha256": labels_snapshot_hash(item_ids, labels),
        "n_training_labels": len(item_ids),
        "held_out_in_evaluation_sets": held_out,
        "encoders": encoders,
        "head": head,
        "params": params,
        "thresholds_from": thresholds_from,
        "code": code_version(),
    }
