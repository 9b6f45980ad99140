"""The benchmarks' one percentile: nearest rank, as numpy's `inverted_cdf`, on a worked example."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.bench.stats import latency_ms, latency_summary, percentile

# Twenty timings, unsorted: nearest rank puts p95 at rank ceil(0.95 * 20) = 19 and p50 at rank
# ceil(0.5 * 20) = 10 of the sorted list, where linear interpolation (numpy's default) would
# answer 167.0 and 99.5, values nobody measured.
TIMINGS = [120.0, 80.0, 95.0, 300.0, 60.0, 70.0, 110.0, 90.0, 85.0, 100.0,
           75.0, 65.0, 105.0, 115.0, 130.0, 140.0, 150.0, 81.0, 99.0, 160.0]  # fmt: skip


def test_percentile_is_the_nearest_rank_on_a_worked_example() -> None:
    ordered = sorted(TIMINGS)
    assert percentile(TIMINGS, 95) == ordered[18] == 160.0
    assert percentile(TIMINGS, 50) == ordered[9] == 99.0
    assert percentile(TIMINGS, 100) == 300.0
    assert percentile(TIMINGS, 0) == 60.0
    assert percentile(TIMINGS, 95) != np.percentile(TIMINGS, 95)  # not the interpolated one


@pytest.mark.parametrize("n", [1, 2, 3, 7, 20, 49, 50, 51, 100, 1000])
@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 95, 99, 100])
def test_percentile_agrees_with_numpy_inverted_cdf(n: int, q: int) -> None:
    values = np.random.default_rng(n).exponential(50.0, n).tolist()
    assert percentile(values, q) == np.percentile(values, q, method="inverted_cdf")


def test_percentile_refuses_no_values_and_a_share_outside_0_to_100() -> None:
    with pytest.raises(ValueError, match="at least one"):
        percentile([], 50)
    with pytest.raises(ValueError, match="from 0 to 100"):
        percentile([1.0], 0.95 * 200)


def test_latency_figures_use_the_same_percentile() -> None:
    assert latency_ms(TIMINGS, 1) == {"p50_ms": 99.0, "p95_ms": 160.0, "max_ms": 300.0}
    summary = latency_summary(TIMINGS)
    assert (summary["n"], summary["p95_ms"], summary["mean_ms"]) == (20, 160.0, 111.5)
    assert latency_summary([]) == {
        "n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None, "mean_ms": None
    }  # fmt: skip
