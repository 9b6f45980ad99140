"""Average precision with item weights, in numpy: the bootstrap's resamples are weights (how
often each item was drawn), and scikit-learn's function per resample is too slow for thousands.
Same definition as scikit-learn's `average_precision_score` (steps at distinct scores); tested
against it with `sample_weight`."""

from __future__ import annotations

import numpy as np


def average_precision(
    positive: np.ndarray, score: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """Sum over distinct score thresholds of (recall step) x precision; NaN without positives."""
    w = np.ones(len(score)) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(-np.asarray(score), kind="mergesort")
    s = np.asarray(score)[order]
    pos = np.asarray(positive, dtype=float)[order]
    wt = w[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each run of equal scores
    tp = np.cumsum(wt * pos)[last]
    fp = np.cumsum(wt * (1 - pos))[last]
    if tp.size == 0 or tp[-1] <= 0:
        return float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
