"""Drift between a reference window and a current window of items (by `created_at`): the
population stability index of the champion's scores, and embedding drift measured as a domain
classifier's cross-validated ROC-AUC (reference vs current vectors), as Evidently does; each
compared with the project's alert threshold (`drift_psi_alert`, `drift_auc_alert`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.config import Settings
from workbench.db.models import Item, Project
from workbench.errors import WorkbenchError
from workbench.services.evaluate.champion_scores import champion_scores
from workbench.services.projects import get_project, project_settings

PSI_BINS = 10
PSI_FLOOR = 1e-4  # share given to an empty bin, so ln(c / r) stays finite
CURRENT_DAYS = 30
MIN_WINDOW_ITEMS = 10
MAX_DOMAIN_ITEMS = 5000  # per window: a sample big enough for a stable AUC, fitted in seconds
DOMAIN_FOLDS = 5
PSI_METHOD = (
    f"population stability index sum (c - r) ln(c / r) over {PSI_BINS} quantile bins of the "
    f"reference window's scores (outer bins open-ended); an empty bin counts as {PSI_FLOOR}"
)
DOMAIN_METHOD = (
    "domain classifier: logistic regression (standardised vectors) telling current from "
    f"reference items, ROC-AUC by {DOMAIN_FOLDS}-fold stratified cross-validation, at most "
    f"{MAX_DOMAIN_ITEMS} items per window (a seeded sample); 0.5 = no drift"
)


class TooFewItems(WorkbenchError):
    """A window holds fewer (embedded) items than drift needs: a state to report, not a fault."""


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime  # exclusive

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def _parse_time(text: str, option: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise WorkbenchError(
            f"{option}: {text!r} is not a date or time (expected e.g. 2026-01-01 or "
            "2026-01-01T12:00)"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def parse_window(text: str, option: str) -> Window:
    """`START/END` (ISO dates or times, UTC unless given; END exclusive) -> Window."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise WorkbenchError(
            f"{option}: {text!r} is not a window START/END, e.g. 2026-01-01/2026-02-01"
        )
    start, end = (_parse_time(p, option) for p in parts)
    if end <= start:
        raise WorkbenchError(f"{option}: {text!r} ends before it starts")
    return Window(start, end)


def default_windows(
    session: Session, project: Project, reference: Window | None, current: Window | None
) -> tuple[Window, Window]:
    """Current: given, or the 30 days up to (and including) the newest item. Reference: given,
    or everything created before the current window starts."""
    oldest, newest = session.execute(
        select(func.min(Item.created_at), func.max(Item.created_at)).where(
            Item.project_id == project.id
        )
    ).one()
    if newest is None:
        raise WorkbenchError(f"project {project.name!r} has no items")
    if current is None:
        end = newest + timedelta(microseconds=1)
        current = Window(end - timedelta(days=CURRENT_DAYS), end)
    if reference is None:
        reference = Window(min(oldest, current.start), current.start)
    return reference, current


def _window_items(session: Session, project: Project, w: Window) -> np.ndarray:
    return np.array(
        sorted(
            session.scalars(
                select(Item.id).where(
                    Item.project_id == project.id,
                    Item.created_at >= w.start,
                    Item.created_at < w.end,
                )
            )
        ),
        dtype=np.int64,
    )


def population_stability_index(
    reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS
) -> dict[str, Any]:
    """PSI of `current` against `reference`, bins at the reference's quantiles."""
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    inner = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1))[1:-1])
    r = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(inner) + 1)
    c = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(inner) + 1)
    r_share = np.maximum(r / r.sum(), PSI_FLOOR)
    c_share = np.maximum(c / c.sum(), PSI_FLOOR)
    psi = float(np.sum((c_share - r_share) * np.log(c_share / r_share)))
    return {
        "psi": round(psi, 6),
        "inner_edges": [round(float(e), 6) for e in inner],
        "reference_share": [round(float(x), 6) for x in r / r.sum()],
        "current_share": [round(float(x), 6) for x in c / c.sum()],
    }


def domain_classifier_auc(
    reference: np.ndarray, current: np.ndarray, seed: int = 0
) -> dict[str, Any]:
    """Cross-validated ROC-AUC of a classifier telling `current` rows from `reference` rows."""
    # scikit-learn is heavy to import; only `workbench drift` pays for it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)

    def cap(x: np.ndarray) -> np.ndarray:
        if len(x) <= MAX_DOMAIN_ITEMS:
            return x
        return x[np.sort(rng.choice(len(x), MAX_DOMAIN_ITEMS, replace=False))]

    ref, cur = cap(np.asarray(reference)), cap(np.asarray(current))
    X = np.vstack([ref, cur]).astype(np.float64)
    y = np.concatenate([np.zeros(len(ref)), np.ones(len(cur))])
    folds = min(DOMAIN_FOLDS, len(ref), len(cur))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    aucs = cross_val_score(
        model, X, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), scoring="roc_auc"
    )
    return {
        "roc_auc": round(float(np.mean(aucs)), 4),
        "fold_auc": [round(float(a), 4) for a in aucs],
        "n_reference": len(ref),
        "n_current": len(cur),
    }


def drift_report(
    session: Session,
    settings: Settings,
    project_name: str,
    *,
    reference: Window | None = None,
    current: Window | None = None,
) -> dict[str, Any]:
    """PSI of every class score of the champion and the domain classifier's AUC, between the
    windows, with the project's alert thresholds and the alerts that fire."""
    project = get_project(session, project_name)
    knobs = project_settings(project)
    reference, current = default_windows(session, project, reference, current)
    ref_ids = _window_items(session, project, reference)
    cur_ids = _window_items(session, project, current)
    for name, ids, w in (("reference", ref_ids, reference), ("current", cur_ids, current)):
        if len(ids) < MIN_WINDOW_ITEMS:
            raise TooFewItems(
                f"the {name} window {w.start.isoformat()} to {w.end.isoformat()} has {len(ids)} "
                f"items; drift needs at least {MIN_WINDOW_ITEMS} in each (choose windows with "
                "--reference START/END and --current START/END)"
            )
    scored = champion_scores(
        session, settings, project, item_ids=np.concatenate([ref_ids, cur_ids])
    )
    in_ref = np.isin(scored.item_ids, ref_ids)
    in_cur = np.isin(scored.item_ids, cur_ids)
    for name, mask in (("reference", in_ref), ("current", in_cur)):
        if int(mask.sum()) < MIN_WINDOW_ITEMS:
            raise TooFewItems(
                f"the {name} window has {int(mask.sum())} embedded items; drift needs at least "
                f"{MIN_WINDOW_ITEMS} (run `workbench embed --project {project_name}`)"
            )
    per_class = {
        cls: population_stability_index(scored.scores[in_ref, k], scored.scores[in_cur, k])
        for k, cls in enumerate(scored.classes)
    }
    psi_max = max(v["psi"] for v in per_class.values())
    domain = domain_classifier_auc(scored.vectors[in_ref], scored.vectors[in_cur])
    alerts = [
        f"score drift: {cls} PSI {v['psi']:.3f} >= {knobs.drift_psi_alert}"
        for cls, v in per_class.items()
        if v["psi"] >= knobs.drift_psi_alert
    ]
    if domain["roc_auc"] >= knobs.drift_auc_alert:
        alerts.append(
            f"embedding drift: domain classifier ROC-AUC {domain['roc_auc']:.3f} >= "
            f"{knobs.drift_auc_alert}"
        )
    return {
        "project": project_name,
        "model_version": scored.model.version,
        "reference": reference.as_dict() | {"items": len(ref_ids), "scored": int(in_ref.sum())},
        "current": current.as_dict() | {"items": len(cur_ids), "scored": int(in_cur.sum())},
        "score_psi": {
            "method": PSI_METHOD,
            "bins": PSI_BINS,
            "classes": per_class,
            "max": psi_max,
            "threshold": knobs.drift_psi_alert,
            "alert": psi_max >= knobs.drift_psi_alert,
        },
        "embedding_drift": {
            "method": DOMAIN_METHOD,
            **domain,
            "threshold": knobs.drift_auc_alert,
            "alert": domain["roc_auc"] >= knobs.drift_auc_alert,
        },
        "alerts": alerts,
    }
