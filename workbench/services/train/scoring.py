"""Score the pool with a trained head, range by range of item ids, on a batch engine.

The pool is cut into ranges of item ids; a worker reads the vectors of its range from the
space's segment files and scores them, so a Ray actor needs only the database and the files,
never this process's memory. Scores come back here and are saved by the caller, in item-id
order, the same for every engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from sqlalchemy import select

from workbench.config import Settings
from workbench.db.database import Database, open_database
from workbench.db.models import Embedding, EmbeddingSpace, EmbeddingStatus
from workbench.engines import BatchEngine
from workbench.progress import ProgressFactory, no_progress
from workbench.services.vectors.spaces import space_folder
from workbench.services.vectors.vector_store import SegmentStore

SCORE_CHUNK = 65_536  # items per range: one predict_proba call, ~100 MB of 384-d vectors

Scorer = Callable[[Any, np.ndarray], np.ndarray]


def id_ranges(ids: np.ndarray, chunk: int = SCORE_CHUNK) -> list[tuple[int, int]]:
    """Inclusive (first, last) item ids of consecutive runs of `chunk` sorted ids."""
    return [
        (int(ids[start]), int(ids[min(start + chunk, len(ids)) - 1]))
        for start in range(0, len(ids), chunk)
    ]


@dataclass
class PoolScoring:
    """The worker spec of pool scoring: the head (loaded once per worker) over id ranges."""

    settings: Settings
    space_id: int
    score: Scorer
    load_head: Callable[[], Any]
    database: Database | None = None

    def __call__(self) -> Callable[[tuple[int, int]], tuple[np.ndarray, np.ndarray]]:
        db = self.database or open_database(self.settings, check_schema=False)
        with db.sessions() as s:
            space = s.get_one(EmbeddingSpace, self.space_id)
            store = SegmentStore(space_folder(self.settings, space.project_id, space.id))
            dim = space.dim
        return partial(_score_range, db, store, self.space_id, dim, self.score, self.load_head())


def _score_range(
    db: Database,
    store: SegmentStore,
    space_id: int,
    dim: int,
    score: Scorer,
    head: Any,
    unit: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    first, last = unit
    with db.sessions() as s:
        rows = s.execute(
            select(Embedding.item_id, Embedding.segment, Embedding.row)
            .where(
                Embedding.space_id == space_id,
                Embedding.status == EmbeddingStatus.ok,
                Embedding.item_id.between(first, last),
            )
            .order_by(Embedding.item_id)
        ).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    # Rows with status ok always point into a segment.
    vectors = store.read(((str(r[1]), int(r[2] or 0)) for r in rows), dim)
    return ids, score(head, vectors)


def loaded(value: Any) -> Any:
    """A `load_head` for a head already in memory (the local engine)."""
    return value


def score_pool(
    engine: BatchEngine,  # type: ignore[type-arg]
    spec: PoolScoring,
    ids: np.ndarray,
    *,
    chunk: int | None = None,
    progress: ProgressFactory = no_progress,
) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, scores) of the pool, ordered by item id, whatever order ranges finish in."""
    ranges = id_ranges(np.sort(ids), chunk or SCORE_CHUNK)
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, part in engine.map(ranges, spec, progress=progress, desc="score pool"):
        parts[i] = part
    done = [parts[i] for i in sorted(parts) if len(parts[i][0])]
    if not done:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.concatenate([p[0] for p in done]), np.concatenate([p[1] for p in done])
