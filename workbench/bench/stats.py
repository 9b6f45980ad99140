"""The one percentile every benchmark reports (p50, p95, ...), and the latency summary built on it.

Definition: nearest rank. The q-th percentile of n values is the value at rank ceil(q/100 * n)
(at least 1) in ascending order: the smallest observed value with at least q % of the values at
or below it. numpy calls it `method="inverted_cdf"`.

Why this one: a p95 is quoted against targets such as "submit -> next item within 250 ms for 95 %
of labels", and nearest rank says exactly that (at least 95 % of the samples took at most the
figure), always names a time that was really measured, and never dips below the samples it sits
between as linear interpolation does on the few dozen samples a browser run takes. The median is
the same rule at q = 50 (the lower middle value when n is even), so p50 and p95 come from one
definition in every result file.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from fractions import Fraction
from typing import Any


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank q-th percentile (q in percent, 0 to 100) of `values`."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values: expected at least one")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q!r}: expected a percentage from 0 to 100")
    # Exact arithmetic on the decimal q: 95 % of 20 values is rank 19, never 19.000000000000004.
    rank = math.ceil(Fraction(str(q)) * len(ordered) / 100)
    return ordered[max(1, rank) - 1]


def latency_ms(values: list[float], digits: int) -> dict[str, float]:
    """p50, p95 and max of millisecond timings, rounded to `digits`."""
    return {
        "p50_ms": round(percentile(values, 50), digits),
        "p95_ms": round(percentile(values, 95), digits),
        "max_ms": round(max(values), digits),
    }


def latency_summary(values: list[float], digits: int = 1) -> dict[str, Any]:
    """Count, p50, p95, max and mean of millisecond timings; None for each figure when empty."""
    if not values:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "max_ms": None, "mean_ms": None}
    return {
        "n": len(values),
        **latency_ms(values, digits),
        "mean_ms": round(statistics.fmean(values), digits),
    }
