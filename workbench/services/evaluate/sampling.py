"""The survey maths behind prevalence and recall estimates: score strata, Neyman allocation,
the stratified estimator of a proportion and the combined ratio estimator of recall.

Pure numpy, no database: `prevalence.py` draws and reads the samples, this module only counts.
References: Cochran, *Sampling Techniques* (3rd ed., 1977), sections 5.3-5.5 (stratified
estimator, its variance with the finite population correction, Neyman allocation) and 6.11
(combined ratio estimate); Korn & Graubard (1998), "Confidence intervals for proportions with
small expected number of positive counts estimated from survey data", *Survey Methodology* 24;
Dean & Pagano (2015), "Evaluating confidence interval methods for binomial proportions in
clustered surveys", *J. Survey Statistics and Methodology* 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_PER_STRATUM = 2  # the within-stratum variance needs two reviewed items
# Half a pseudo-observation at the overall estimate, in each stratum's p_h for the interval's
# variance only: a stratum of a rare class often shows no positive among its few draws, and its
# unbiased variance estimate is then 0, which made 95 % intervals cover 93 % of the time on the
# Davidson data (`workbench bench eval`); with it, 95 %, at 3 points of width.
VARIANCE_PSEUDO_COUNT = 0.5

PREVALENCE_METHOD = (
    "stratified estimator sum_h W_h p_h, variance sum_h W_h^2 (1 - n_h/N_h) p_h (1 - p_h) / "
    "(n_h - 1) (Cochran 1977, 5.3-5.5); interval: Wilson score interval on the effective sample "
    "size n_eff = p (1 - p) / var (Korn & Graubard 1998; Dean & Pagano 2015), which keeps its "
    "coverage for rare classes where the normal interval does not, with var taken with each "
    "p_h shrunk by half a pseudo-observation towards p (so a stratum without a positive among "
    "its draws does not claim zero variance); n_eff = n reviewed when p is 0 or 1"
)
RECALL_METHOD = (
    "combined ratio estimator: estimated positives scored at or above the threshold / "
    "estimated positives, both stratified totals (Cochran 1977, 6.11; as in Wei, Zufall & Jia "
    "2023); interval: delta method on the logit scale with the finite population correction; "
    "Wilson on the reviewed positives when every or no positive is flagged"
)


def quantile_strata(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(stratum of each item, bucket edges): `k` quantile buckets of the score, lowest first.

    Buckets whose edges coincide (many equal scores) merge, so there may be fewer than `k`;
    strata are numbered 0.. without gaps.
    """
    if k < 1:
        raise ValueError(f"need at least one stratum, got {k}")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    edges = np.unique(np.quantile(scores, np.linspace(0.0, 1.0, k + 1)))
    # Interior edges only; an item equal to an edge goes to the bucket above it.
    strata = np.searchsorted(edges[1:-1], scores, side="right")
    used, strata = np.unique(strata, return_inverse=True)
    bounds = np.concatenate([[edges[0]], edges[1:-1][used[1:] - 1], [edges[-1]]])
    return strata.astype(np.int64), bounds


def bernoulli_prior_sd(mean_scores: np.ndarray) -> np.ndarray:
    """Prior guess of each stratum's standard deviation of the 0/1 outcome: sqrt(p (1 - p)) of
    the stratum's mean score. Exact when the scores are calibrated probabilities (the outcome
    of an item with score s is Bernoulli(s), whose mixture over the stratum has variance
    p (1 - p)); only a guess otherwise, which costs efficiency, never bias."""
    p = np.clip(np.asarray(mean_scores, dtype=np.float64), 0.0, 1.0)
    return np.sqrt(p * (1.0 - p))


def neyman_allocation(
    sizes: np.ndarray, sds: np.ndarray, n: int, minimum: int = MIN_PER_STRATUM
) -> np.ndarray:
    """Split `n` draws over strata in proportion to N_h S_h (Cochran 5.25), each stratum given
    at least `minimum` (or all of it, when smaller) and at most N_h; integers summing to n."""
    sizes = np.asarray(sizes, dtype=np.int64)
    sds = np.asarray(sds, dtype=np.float64)
    if n > int(sizes.sum()):
        raise ValueError(f"sample of {n} is larger than the population of {int(sizes.sum())}")
    floor = np.minimum(sizes, minimum)
    if n < int(floor.sum()):
        raise ValueError(
            f"a sample of {n} cannot give each of {len(sizes)} strata {minimum} items; "
            f"draw at least {int(floor.sum())} or use fewer strata"
        )
    # Strata with no spread in their prior still get a share by size, so a wrong prior of 0
    # (all scores 0 in a bucket) never leaves it at the minimum for good.
    weights = sizes * np.maximum(sds, 1e-3)
    alloc = np.zeros(len(sizes), dtype=np.float64)
    fixed = np.zeros(len(sizes), dtype=bool)
    while True:
        free = ~fixed
        rest = n - alloc[fixed].sum()
        share = weights[free] / weights[free].sum() if weights[free].sum() > 0 else None
        alloc[free] = rest * share if share is not None else 0.0
        over = free & (alloc > sizes)
        under = free & (alloc < floor)
        if not over.any() and not under.any():
            break
        alloc[over] = sizes[over]
        alloc[under] = floor[under]
        fixed |= over | under
    # Largest remainder rounding, never past N_h nor below the floor.
    out = np.floor(alloc).astype(np.int64)
    out = np.clip(out, floor, sizes)
    order = np.argsort(-(alloc - np.floor(alloc)), kind="stable")
    i = 0
    while out.sum() < n:
        h = order[i % len(order)]
        if out[h] < sizes[h]:
            out[h] += 1
        i += 1
    while out.sum() > n:  # only after clipping up to the floor
        h = int(np.argmax(np.where(out > floor, out - alloc, -np.inf)))
        out[h] -= 1
    return out


@dataclass(frozen=True)
class StratifiedProportion:
    estimate: float
    variance: float  # Cochran's unbiased estimate
    n: int  # reviewed items, all strata
    interval_variance: float  # with VARIANCE_PSEUDO_COUNT: what the interval is built on

    @property
    def effective_n(self) -> float:
        """Kish's effective sample size: n over the design effect (n when it is undefined)."""
        p = self.estimate
        if self.interval_variance <= 0.0 or p <= 0.0 or p >= 1.0:
            return float(self.n)
        return p * (1.0 - p) / self.interval_variance


def stratified_proportion(
    population: np.ndarray, reviewed: np.ndarray, positives: np.ndarray
) -> StratifiedProportion:
    """Cochran's stratified estimate of a proportion, p = sum W_h p_h, and its unbiased
    variance estimate sum W_h^2 (1 - f_h) s_h^2 / n_h with s_h^2 = n_h p_h (1 - p_h) / (n_h - 1),
    i.e. W_h^2 (1 - f_h) p_h (1 - p_h) / (n_h - 1). Every stratum needs n_h >= 2."""
    N = np.asarray(population, dtype=np.float64)
    n = np.asarray(reviewed, dtype=np.float64)
    y = np.asarray(positives, dtype=np.float64)
    if (n < MIN_PER_STRATUM).any():
        raise ValueError("every stratum needs at least two reviewed items")
    if (n > N).any() or (y > n).any() or (y < 0).any():
        raise ValueError("need 0 <= positives <= reviewed <= population in every stratum")
    W = N / N.sum()
    p = y / n
    fpc = 1.0 - n / N
    var = float(np.sum(W**2 * fpc * p * (1.0 - p) / (n - 1.0)))
    estimate = float(np.sum(W * p))
    shrunk = (y + VARIANCE_PSEUDO_COUNT * estimate) / (n + VARIANCE_PSEUDO_COUNT)
    interval_var = float(np.sum(W**2 * fpc * shrunk * (1.0 - shrunk) / (n - 1.0)))
    return StratifiedProportion(estimate, max(var, 0.0), int(n.sum()), max(interval_var, 0.0))


def wilson_effective(estimate: float, effective_n: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a proportion estimated with `effective_n` worth of simple
    random sample (statsmodels' `proportion_confint`, which takes a non-integer count)."""
    # statsmodels is heavy to import; only the estimate commands pay for it.
    from statsmodels.stats.proportion import proportion_confint

    if effective_n <= 0:
        return (0.0, 1.0)
    lo, hi = proportion_confint(
        estimate * effective_n, effective_n, alpha=1.0 - confidence, method="wilson"
    )
    return (float(max(lo, 0.0)), float(min(hi, 1.0)))


def stratified_interval(est: StratifiedProportion, confidence: float = 0.95) -> tuple[float, float]:
    return wilson_effective(est.estimate, est.effective_n, confidence)


@dataclass(frozen=True)
class RatioEstimate:
    estimate: float | None
    variance: float | None
    ci: tuple[float, float] | None
    positives_reviewed: int


def stratified_recall(
    population: np.ndarray,
    strata: np.ndarray,
    positive: np.ndarray,
    flagged: np.ndarray,
    confidence: float = 0.95,
) -> RatioEstimate:
    """Recall at a threshold from a stratified sample: R = X / Y, Y the estimated positives,
    X the estimated positives that the model flags, each sum_h N_h * (sample mean in h).

    `population[h]` is N_h; `strata`, `positive`, `flagged` are per reviewed item. The variance
    is the linearised one, sum_h N_h^2 (1 - f_h) s_dh^2 / n_h / Y^2 with d = y (a - R)
    (Cochran 6.11); the interval is taken on the logit scale so it stays inside (0, 1).
    """
    # statsmodels and scipy are heavy to import; only the estimate commands pay for them.
    from scipy.stats import norm

    N = np.asarray(population, dtype=np.float64)
    h = np.asarray(strata, dtype=np.int64)
    y = np.asarray(positive, dtype=np.float64)
    a = np.asarray(flagged, dtype=np.float64)
    counts = np.bincount(h, minlength=len(N)).astype(np.float64)
    n_pos = int(y.sum())
    if n_pos == 0 or (counts < MIN_PER_STRATUM).any():
        return RatioEstimate(None, None, None, n_pos)
    mean_y = np.bincount(h, weights=y, minlength=len(N)) / counts
    mean_ya = np.bincount(h, weights=y * a, minlength=len(N)) / counts
    Y = float(np.sum(N * mean_y))
    X = float(np.sum(N * mean_ya))
    R = X / Y
    d = y * (a - R)
    mean_d = np.bincount(h, weights=d, minlength=len(N)) / counts
    ss = np.bincount(h, weights=(d - mean_d[h]) ** 2, minlength=len(N))
    s2 = ss / (counts - 1.0)
    var = float(np.sum(N**2 * (1.0 - counts / N) * s2 / counts) / Y**2)
    z = float(norm.ppf(0.5 + confidence / 2.0))
    if R <= 0.0 or R >= 1.0 or var <= 0.0:
        # The logit is undefined at 0 and 1 and the linearised variance is 0 there: fall back
        # to Wilson on the reviewed positives (as if they were a simple random sample).
        lo, hi = wilson_effective(R, float(n_pos), confidence)
        return RatioEstimate(R, var, (lo, hi), n_pos)
    se_logit = math.sqrt(var) / (R * (1.0 - R))
    centre = math.log(R / (1.0 - R))
    lo, hi = (1.0 / (1.0 + math.exp(-(centre + s * z * se_logit))) for s in (-1.0, 1.0))
    return RatioEstimate(R, var, (lo, hi), n_pos)


def draw_stratified(
    strata: np.ndarray, allocation: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Indices of a stratified simple random sample without replacement, sorted."""
    picked = []
    for h, n_h in enumerate(allocation):
        members = np.flatnonzero(strata == h)
        if n_h:
            picked.append(rng.choice(members, size=int(n_h), replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
