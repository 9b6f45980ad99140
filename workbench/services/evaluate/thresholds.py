"""Operating thresholds: per class, the lowest score threshold whose precision on a validation
split reaches the project's target (so recall is as high as that precision allows).

Chosen at train time on the round's validation split (random holdout, else out-of-fold scores of
the training items), never on an evaluation set, and stored with the model version.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.5  # a class the validation split cannot judge (too few positives)
MIN_POSITIVES = 3


def choose_threshold(positive: np.ndarray, scores: np.ndarray, target: float) -> dict[str, Any]:
    """The threshold for one class: `positive` marks its items, `scores` is its score column."""
    from sklearn.metrics import precision_recall_curve

    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    base: dict[str, Any] = {
        "target_precision": target,
        "n_validation": len(positive),
        "positives": n_pos,
    }
    if n_pos < MIN_POSITIVES or n_pos == len(positive):
        # Too few positives to choose from: a curve through one or two points picks a threshold
        # of 0 (flag everything) as often as not.
        return base | {
            "threshold": DEFAULT_THRESHOLD,
            "precision": None,
            "recall": None,
            "target_met": False,
            "note": f"fewer than {MIN_POSITIVES} positives in the validation split"
            if n_pos < MIN_POSITIVES
            else "the validation split has no negatives",
        }
    precision, recall, thresholds = precision_recall_curve(positive, scores)
    # precision[i], recall[i] hold for "score >= thresholds[i]"; the last point has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    meets = np.flatnonzero(precision >= target)
    if meets.size:
        i = int(meets[0])  # thresholds ascend: the first that meets the target has most recall
        met = True
    else:
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        i = int(np.argmax(f1))
        met = False
    out: dict[str, Any] = base | {
        "threshold": float(thresholds[i]),
        "precision": round(float(precision[i]), 4),
        "recall": round(float(recall[i]), 4),
        "target_met": met,
    }
    if not met:
        out["note"] = f"no threshold reaches precision {target}; the best-F1 threshold is used"
    return out


def choose_thresholds(
    reference: np.ndarray, proba: np.ndarray, classes: list[str], target: float
) -> dict[str, dict[str, Any]]:
    """Per class (one-vs-rest over `proba`'s columns, in `classes` order)."""
    reference = np.asarray(reference, dtype=object)
    return {c: choose_threshold(reference == c, proba[:, k], target) for k, c in enumerate(classes)}


def threshold_of(thresholds: dict[str, Any] | None, cls: str) -> float:
    entry = (thresholds or {}).get(cls)
    return float(entry["threshold"]) if entry else DEFAULT_THRESHOLD
