"""Confidence intervals shared by every evaluation figure: Wilson for a proportion, a seeded
percentile bootstrap for any statistic of the items (paired when several arrays are indexed)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

Interval = tuple[float, float]

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0


def wilson_interval(
    successes: int, trials: int, confidence: float = DEFAULT_CONFIDENCE
) -> Interval:
    """Wilson score interval for successes/trials (statsmodels' `proportion_confint`).

    With no trials the proportion is unconstrained, so the interval is the whole [0, 1] (not NaN,
    which JSON cannot carry and a table would show as a blank).
    """
    # statsmodels is heavy to import; only commands that compute intervals pay for it.
    from statsmodels.stats.proportion import proportion_confint

    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return (0.0, 1.0)
    lo, hi = proportion_confint(successes, trials, alpha=1 - confidence, method="wilson")
    return (float(lo), float(hi))


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Interval:
    """Percentile bootstrap interval of `statistic(indices)` over n items resampled with
    replacement (scipy's `bootstrap`, method "percentile", seeded).

    The statistic receives an array of item indices, so it can index as many arrays as it likes
    (reference, predictions, two models' scores): the resampling is then paired by construction.
    Resamples where the statistic is undefined (it returns NaN, e.g. a class absent from the
    resample) are dropped; with fewer than two defined resamples the interval is the statistic on
    all items, repeated.
    """
    from scipy.stats import bootstrap

    if n <= 0:
        raise ValueError("cannot bootstrap an empty sample")
    full = float(statistic(np.arange(n)))
    if n == 1:
        return (full, full)
    # scipy draws the resamples from one seeded generator; the percentiles are taken here over
    # the defined values, since scipy's own would turn one NaN resample into a NaN bound.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bootstrap(
            (np.arange(n),),
            lambda idx: float(statistic(np.asarray(idx, dtype=np.int64))),
            vectorized=False,
            n_resamples=n_resamples,
            method="percentile",
            confidence_level=confidence,
            random_state=np.random.default_rng(seed),
        )
    values = result.bootstrap_distribution
    return percentile_interval(values, confidence, fallback=full)


def percentile_interval(
    values: Any, confidence: float = DEFAULT_CONFIDENCE, fallback: float | None = None
) -> Interval:
    """The central `confidence` range of bootstrap values, NaNs dropped."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size < 2:
        v = float(arr[0]) if arr.size else float("nan") if fallback is None else fallback
        return (v, v)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(arr, [tail, 100 - tail])
    return (float(lo), float(hi))
