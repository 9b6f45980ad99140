"""Online metrics from the review stream, per ISO week: the precision of model-flagged items as
reviewers judge them, how often reviewers overturn the model's suggestion, and the yield of each
selection strategy (violations per 100 reviews), each with a Wilson interval.

The model's view of an item is the one it had when the item was queued: the top class in the pool
scores of the version that queued it (queue_entries.model_version_id). "Flagged" means that top
class is a policy, not `none`. Reviews are the labels submitted on leases (a reviewer's judgement
at review time; a later correction is not a new review). Gold and evaluation-set entries are
measurement, not selection: they are left out of the yield.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import EntryKind, Label, Lease, ModelVersion, Project, QueueEntry
from workbench.services.evaluate.intervals import wilson_interval
from workbench.services.evaluate.members import EVALUATION_STRATEGY
from workbench.services.train.train import label_class

NONE_CLASS = "none"


def iso_week(when: Any) -> str:
    year, week, _ = when.isocalendar()
    return f"{year}-W{week:02d}"


def _model_predictions(mv: ModelVersion) -> dict[int, str] | None:
    """Item -> top class in a version's pool scores; None when its files are gone."""
    if not mv.scores_path:
        return None
    folder = Path(mv.scores_path).parent
    try:
        scores = np.load(mv.scores_path)
        item_ids = np.load(folder / "item_ids.npy")
        classes = json.loads((folder / "classes.json").read_text())
    except (OSError, ValueError):
        return None
    if scores.ndim != 2 or scores.shape[0] != len(item_ids) or scores.shape[1] != len(classes):
        return None
    top = scores.argmax(axis=1)
    return {int(i): str(classes[t]) for i, t in zip(item_ids, top, strict=True)}


def _rate(hits: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(hits, n)
    return {"value": round(hits / n, 4) if n else None, "ci": [round(lo, 4), round(hi, 4)]}


def online_metrics(session: Session, project: Project) -> dict[str, Any]:
    rows = session.execute(
        select(
            Label.created_at,
            Label.decision,
            Label.policies,
            QueueEntry.item_id,
            QueueEntry.strategy,
            QueueEntry.kind,
            QueueEntry.model_version_id,
        )
        .join(Lease, Lease.label_id == Label.id)
        .join(QueueEntry, QueueEntry.id == Lease.entry_id)
        .where(Label.project_id == project.id)
        .order_by(Label.created_at)
    ).all()
    versions = {r.model_version_id for r in rows if r.model_version_id is not None}
    predictions: dict[int, dict[int, str] | None] = {}
    for mv in session.scalars(select(ModelVersion).where(ModelVersion.id.in_(versions))):
        predictions[mv.id] = _model_predictions(mv)

    flagged: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # week -> [confirmed, flagged]
    overturned: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # week -> [overturned, n]
    reviews: dict[str, int] = defaultdict(int)
    yields: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        week = iso_week(r.created_at)
        reviews[week] += 1
        judged = label_class(cast(Label, _Judgement(r.decision, r.policies)))
        if r.kind != EntryKind.gold and r.strategy != EVALUATION_STRATEGY:
            y = yields[(week, r.strategy or "unknown")]
            y[0] += judged is not None and judged != NONE_CLASS
            y[1] += 1
        preds = predictions.get(r.model_version_id) if r.model_version_id is not None else None
        model_says = preds.get(int(r.item_id)) if preds else None
        if model_says is None or judged is None:
            continue
        o = overturned[week]
        o[0] += judged != model_says
        o[1] += 1
        if model_says != NONE_CLASS:
            f = flagged[week]
            f[0] += judged != NONE_CLASS
            f[1] += 1
    weeks = sorted(reviews)
    return {
        "project": project.name,
        "weeks": [
            {
                "week": w,
                "reviews": reviews[w],
                "flagged": flagged[w][1],
                "flagged_precision": _rate(*flagged[w]),
                "with_model_suggestion": overturned[w][1],
                "overturn_rate": _rate(*overturned[w]),
            }
            for w in weeks
        ],
        "yield": [
            {
                "week": w,
                "strategy": s,
                "reviews": n,
                "violations": v,
                "per_100_reviews": round(100 * v / n, 2) if n else None,
                "per_100_ci": [round(100 * x, 2) for x in wilson_interval(v, n)],
            }
            for (w, s), (v, n) in sorted(yields.items())
        ],
        "definitions": {
            "flagged": "the model version that queued the item had a policy, not none, as its "
            "top class",
            "flagged_precision": "share of flagged items the reviewer judged violating",
            "overturn_rate": "share of reviews whose class differs from the model's top class",
            "yield": "violating judgements per 100 reviews, per selection strategy (gold and "
            "evaluation-set entries left out)",
            "intervals": "95% Wilson",
        },
    }


class _Judgement:
    """The two fields `label_class` reads, from a row instead of a Label."""

    def __init__(self, decision: Any, policies: list[str]) -> None:
        self.decision = decision
        self.policies = policies
