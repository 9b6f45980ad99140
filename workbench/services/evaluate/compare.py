"""Champion against challenger on the same evaluation items: a paired bootstrap of the macro
average precision, McNemar's test per policy on recall at each model's threshold, the flip rate
of predictions, and the project's promotion rule applied to them. Arrays in, verdict out: no
database here, so a training round and `workbench models compare` share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.schemas import PromotionRule
from workbench.services.evaluate.intervals import bootstrap_interval
from workbench.services.evaluate.ranking import average_precision
from workbench.services.evaluate.thresholds import threshold_of

NONE_CLASS = "none"


@dataclass
class Scored:
    """One model's scores on the evaluation items, columns aligned to `classes`."""

    version: int
    proba: np.ndarray
    thresholds: dict[str, Any] | None


def align(proba: np.ndarray, own: list[str], classes: list[str]) -> np.ndarray:
    """Columns of `proba` (in `own` order) rearranged to `classes`; a class the model never
    learned scores 0."""
    out = np.zeros((proba.shape[0], len(classes)), dtype=np.float64)
    for k, c in enumerate(classes):
        if c in own:
            out[:, k] = proba[:, own.index(c)]
    return out


def macro_average_precision(reference: np.ndarray, proba: np.ndarray, classes: list[str]) -> float:
    """Mean one-vs-rest average precision over the classes present in `reference`."""
    aps = [
        average_precision(reference == c, proba[:, k])
        for k, c in enumerate(classes)
        if (reference == c).any()
    ]
    return float(np.mean(aps)) if aps else float("nan")


def mcnemar_recall(
    positive: np.ndarray, flagged_a: np.ndarray, flagged_b: np.ndarray
) -> dict[str, Any]:
    """McNemar's test on the class's positives: is B's recall different from A's? Exact
    (binomial) below 25 discordant pairs, the chi-square with continuity correction above."""
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = flagged_a[positive], flagged_b[positive]
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    discordant = int(table[0, 1] + table[1, 0])
    n = int(positive.sum())
    out: dict[str, Any] = {
        "positives": n,
        "recall_a": round(float(a.mean()), 4) if n else None,
        "recall_b": round(float(b.mean()), 4) if n else None,
        "a_only": int(table[0, 1]),
        "b_only": int(table[1, 0]),
    }
    if discordant == 0:
        return out | {"pvalue": 1.0, "test": "no discordant pairs"}
    exact = discordant < 25
    result = mcnemar(table, exact=exact, correction=True)
    return out | {
        "pvalue": round(float(result.pvalue), 6),
        "test": "exact binomial" if exact else "chi-square, continuity corrected",
    }


def compare_models(
    reference: np.ndarray,
    champion: Scored,
    challenger: Scored,
    classes: list[str],
    rule: PromotionRule,
    seed: int = 0,
) -> dict[str, Any]:
    """The comparison and the verdict of `rule`: promote the challenger or keep the champion."""
    reference = np.asarray(reference, dtype=object)
    pa, pb = champion.proba, challenger.proba
    ap_a = macro_average_precision(reference, pa, classes)
    ap_b = macro_average_precision(reference, pb, classes)

    def delta(idx: np.ndarray) -> float:
        r = reference[idx]
        return macro_average_precision(r, pb[idx], classes) - macro_average_precision(
            r, pa[idx], classes
        )

    lo, hi = bootstrap_interval(
        delta, len(reference), confidence=rule.confidence, n_resamples=rule.n_resamples, seed=seed
    )
    flips = float(np.mean(pa.argmax(axis=1) != pb.argmax(axis=1))) if len(reference) else 0.0
    policies: dict[str, Any] = {}
    worse: list[str] = []
    for k, c in enumerate(classes):
        positive = reference == c
        if c == NONE_CLASS or not positive.any():  # recall needs positives in the set
            continue
        test = mcnemar_recall(
            positive,
            pa[:, k] >= threshold_of(champion.thresholds, c),
            pb[:, k] >= threshold_of(challenger.thresholds, c),
        )
        test["threshold_a"] = round(threshold_of(champion.thresholds, c), 4)
        test["threshold_b"] = round(threshold_of(challenger.thresholds, c), 4)
        policies[c] = test
        if (
            test["recall_b"] is not None
            and test["recall_b"] < test["recall_a"]
            and test["pvalue"] < rule.mcnemar_alpha
        ):
            worse.append(c)
    reasons = []
    ap_ok = bool(np.isfinite(lo)) and lo >= -rule.max_macro_ap_drop
    if ap_ok:
        reasons.append(
            f"macro AP {ap_b:.3f} vs {ap_a:.3f}: the lower bound of the difference "
            f"({lo:+.3f}) is within the allowed drop of {rule.max_macro_ap_drop}"
        )
    else:
        reasons.append(
            f"macro AP {ap_b:.3f} vs {ap_a:.3f}: the lower bound of the difference "
            f"({lo:+.3f}) is below -{rule.max_macro_ap_drop}"
        )
    if worse:
        reasons.append(
            "recall at threshold worse by McNemar's test (p < "
            f"{rule.mcnemar_alpha}) for {', '.join(worse)}"
        )
    else:
        reasons.append(
            f"no policy's recall at its threshold worse (McNemar, p < {rule.mcnemar_alpha})"
        )
    promote = ap_ok and not worse
    return {
        "champion": champion.version,
        "challenger": challenger.version,
        "n_items": len(reference),
        "macro_average_precision": {"champion": round(ap_a, 4), "challenger": round(ap_b, 4)},
        "macro_average_precision_delta": round(ap_b - ap_a, 4),
        "macro_average_precision_delta_ci": [round(lo, 4), round(hi, 4)],
        "flip_rate": round(flips, 4),
        "policies": policies,
        "rule": rule.model_dump(),
        "promote": promote,
        "verdict": "promote" if promote else "keep champion",
        "reason": "; ".join(reasons),
    }
