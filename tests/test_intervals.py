"""Interval functions every evaluation figure uses, checked against published values and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap

from workbench.services.evaluate.intervals import bootstrap_interval, wilson_interval


def test_wilson_interval_matches_newcombe_worked_example() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553 to 0.3662.
    lo, hi = wilson_interval(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)


def test_wilson_interval_without_trials_is_the_unit_range_and_bad_counts_refused() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


def test_bootstrap_interval_equals_scipy_percentile_on_the_same_draws() -> None:
    x = np.random.default_rng(1).normal(size=200)
    ours = bootstrap_interval(lambda i: x[i].mean(), len(x), seed=3)
    ref = bootstrap(
        (np.arange(200),),
        lambda i: x[i].mean(),
        vectorized=False,
        n_resamples=1000,
        method="percentile",
        random_state=np.random.default_rng(3),
    ).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high))
    assert bootstrap_interval(lambda i: x[i].mean(), len(x), seed=3) == ours  # seeded


def test_bootstrap_interval_drops_resamples_where_the_statistic_is_undefined() -> None:
    x = np.array([1.0] + [0.0] * 9)
    # The statistic is undefined (NaN) when the one positive is not drawn.
    lo, hi = bootstrap_interval(lambda i: x[i].mean() if x[i].any() else float("nan"), 10)
    assert 0.0 < lo <= hi <= 1.0
