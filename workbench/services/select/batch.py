"""Fill the review queue: rank the pool with a strategy (or the project's mix) and enqueue a
batch with who chose each item and why.

Items already queued, leased or labelled are never picked, nor two items of one near-duplicate
group. Overlap copies (k reviewers for agreement) are planned here by the project's overlap
share; gold items and re-reviews enter the queue by their own paths, not through a strategy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.db.database import Database
from workbench.db.models import EntryKind, Item, Project, QueueEntry, Role
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor, require_role
from workbench.services.evaluate.members import held_out_item_ids
from workbench.services.membership import require_member
from workbench.services.projects import get_project, project_settings
from workbench.services.queue.enqueue import NewEntry, enqueue, queued_item_ids
from workbench.services.select.strategies.base import (
    Selection,
    SelectionContext,
    Strategy,
    make_strategy,
)
from workbench.services.select.strategies.mix import MixStrategy
from workbench.services.train.train import champion, counted_labels, label_class, load_head
from workbench.services.vectors.spaces import FUSED, get_space, load_space_vectors

COLD_START_STRATEGY = "typiclust"


def near_duplicate_groups(session: Session, project: Project, ids: np.ndarray) -> np.ndarray:
    """Group id per pool row: the group's root item id, or -1 for an item on its own."""
    roots = {
        iid: near if near is not None else exact
        for iid, near, exact in session.execute(
            select(Item.id, Item.near_duplicate_of_id, Item.duplicate_of_id).where(
                Item.project_id == project.id,
                (Item.near_duplicate_of_id.is_not(None)) | (Item.duplicate_of_id.is_not(None)),
            )
        )
    }
    root_ids = set(roots.values())
    return np.array(
        [roots.get(int(i), int(i) if int(i) in root_ids else -1) for i in ids], dtype=np.int64
    )


def _strategy(name: str, mix: dict[str, float]) -> Strategy:
    """`mix` is the project's own mix; any other name goes to the strategy registry."""
    if name == "mix":
        return MixStrategy(mix)
    return make_strategy(name)


def select_batch(
    db: Database,
    project_name: str,
    strategy: str | None,
    batch: int | None,
    actor: Actor,
    *,
    seed: int | None = None,
) -> dict[str, Any]:
    """Rank the pool and enqueue `batch` entries. `strategy` None means the project's mix."""
    require_role(actor, Role.engineer, Role.lead, Role.admin, action="fill the queue")
    with db.sessions() as s:
        project = get_project(s, project_name)
        require_member(s, actor, project)
        settings = project_settings(project)
        n = batch or settings.batch_size
        name = strategy or "mix"
        space = get_space(s, project, FUSED)
        ids, vecs = load_space_vectors(s, db.settings, space)
        if len(ids) == 0:
            raise WorkbenchError(f"project {project_name!r} has no embedded items to select from")
        pos = {int(i): r for r, i in enumerate(ids)}
        labels = counted_labels(s, project)
        labelled_rows, labelled_cls = [], []
        seen: set[int] = set()
        for lab in labels:
            if lab.item_id in pos and lab.item_id not in seen:
                seen.add(lab.item_id)
                cls = label_class(lab)
                labelled_rows.append(pos[lab.item_id])
                labelled_cls.append("none" if cls in (None, "none") else "violation")
        excluded = np.zeros(len(ids), dtype=bool)
        # Evaluation-set items are never trained on, so a review chosen for training there
        # would be wasted; they are not selected either.
        for iid in queued_item_ids(s, project) | held_out_item_ids(s, project):
            if iid in pos:
                excluded[pos[iid]] = True
        groups = near_duplicate_groups(s, project, ids)
        model = champion(s, project)
        head = None
        if model is not None:
            head = load_head(db.settings, model.version, model.artifact_path)
        model_id = model.id if model is not None else None
        next_batch = (
            s.scalar(select(func.max(QueueEntry.batch)).where(QueueEntry.project_id == project.id))
            or 0
        ) + 1
    cold_start = head is None
    chooser = _strategy(name, settings.selection_mix)
    if cold_start and chooser.needs_model:
        name = COLD_START_STRATEGY  # nothing to be uncertain about yet: diversity only
        chooser = make_strategy(name)
    ctx = SelectionContext(
        vectors=vecs,
        labelled=np.asarray(labelled_rows, dtype=np.int64),
        labels=np.asarray(labelled_cls, dtype=object),
        head=head,
        excluded=excluded,
        groups=groups,
        positive="violation",
        rng=np.random.default_rng(seed if seed is not None else next_batch),
    )
    chosen: Selection = chooser.select(ctx, n)
    rng = np.random.default_rng(next_batch)
    n_overlap = round(settings.overlap_share * len(chosen))
    overlap_rows = (
        set(rng.choice(len(chosen), n_overlap, replace=False).tolist()) if n_overlap else set()
    )
    entries = []
    for rank, (row, score, reason, strat) in enumerate(
        zip(chosen.indices, chosen.scores, chosen.reasons, chosen.strategies, strict=True)
    ):
        overlap = rank in overlap_rows
        entries.append(
            NewEntry(
                item_id=int(ids[row]),
                kind=EntryKind.overlap if overlap else EntryKind.selected,
                strategy=strat,
                score=float(score),
                reason=(("cold start, no model yet: " if cold_start else "") + reason)[:2000],
                priority=float(len(chosen) - rank),
                overlap_target=settings.overlap_k if overlap else 1,
            )
        )
    with db.sessions.begin() as s:
        project = get_project(s, project_name)
        rows = enqueue(s, project, entries, actor, batch=next_batch, model_version_id=model_id)
        names = dict(
            s.execute(
                select(Item.id, Item.external_id).where(Item.id.in_([e.item_id for e in rows]))
            ).all()
        )
        by_strategy: dict[str, int] = {}
        for e in rows:
            by_strategy[e.strategy or "?"] = by_strategy.get(e.strategy or "?", 0) + 1
        return {
            "project": project_name,
            "strategy": name,
            "cold_start": cold_start,
            "batch": next_batch,
            "queued": len(rows),
            "overlap_entries": sum(1 for e in rows if e.kind == EntryKind.overlap),
            "by_strategy": by_strategy,
            "entries": [
                {
                    "external_id": names[e.item_id],
                    "item_id": e.item_id,
                    "strategy": e.strategy,
                    "score": e.score,
                    "reason": e.reason,
                    "overlap_target": e.overlap_target,
                }
                for e in rows
            ],
        }
