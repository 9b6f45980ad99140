"""Random sampling and uncertainty sampling (least confidence, margin, entropy, ranked batch).

The scores are modAL's (`classifier_uncertainty`, `classifier_margin`, `classifier_entropy`),
computed here from the pool's probabilities so a million rows are scored once, in place; the
tests compare them with modAL's functions. Ranked batch calls modAL itself, as the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workbench.services.select.strategies.base import (
    Selection,
    SelectionContext,
    Strategy,
    register,
    take_ranked,
)


def least_confidence_scores(proba: np.ndarray) -> np.ndarray:
    """1 - max p (modAL's `classifier_uncertainty`): higher is more uncertain."""
    return 1.0 - proba.max(axis=1)


def margin_scores(proba: np.ndarray) -> np.ndarray:
    """p(first) - p(second) (modAL's `classifier_margin`): lower is more uncertain."""
    if proba.shape[1] == 1:
        return np.ones(proba.shape[0], dtype=proba.dtype)
    part = -np.partition(-proba, 1, axis=1)
    return part[:, 0] - part[:, 1]


def entropy_scores(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats (modAL's `classifier_entropy`): higher is more uncertain."""
    p = np.clip(proba, 1e-12, 1.0)
    return -(proba * np.log(p)).sum(axis=1)


def top_two(proba_rows: np.ndarray, names: list[str]) -> list[tuple[str, str]]:
    if proba_rows.shape[1] < 2:
        return [(names[0], names[0])] * len(proba_rows)
    order = np.argsort(-proba_rows, axis=1)[:, :2]
    return [(names[a], names[b]) for a, b in order]


@register
class RandomStrategy(Strategy):
    """Uniform random picks: the unbiased sample that evaluation and calibration rely on."""

    name = "random"
    needs_model = False

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        cand = ctx.candidates()
        order = cand[ctx.rng.permutation(len(cand))]
        picked = take_ranked(ctx, order, n)
        return Selection(
            picked,
            np.zeros(len(picked)),
            ["random sample (unbiased, for evaluation and calibration)"] * len(picked),
            [self.name] * len(picked),
        )


class _UncertaintyStrategy(Strategy):
    # Subclasses give the score and whether low scores are the most uncertain.
    ascending: bool = False

    def scores(self, proba: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reason(self, score: float, pair: tuple[str, str]) -> str:
        raise NotImplementedError

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        proba = ctx.proba()
        cand = ctx.candidates()
        s = self.scores(proba[cand])
        order = cand[np.argsort(s if self.ascending else -s, kind="stable")]
        picked = take_ranked(ctx, order, n)
        chosen = self.scores(proba[picked])
        pairs = top_two(proba[picked], ctx.class_names())
        return Selection(
            picked,
            chosen,
            [self.reason(float(v), p) for v, p in zip(chosen, pairs, strict=True)],
            [self.name] * len(picked),
        )


@register
class LeastConfidenceStrategy(_UncertaintyStrategy):
    name = "least_confidence"

    def scores(self, proba: np.ndarray) -> np.ndarray:
        return least_confidence_scores(proba)

    def reason(self, score: float, pair: tuple[str, str]) -> str:
        return f"least confidence: top class {pair[0]} at {1 - score:.2f}"


@register
class MarginStrategy(_UncertaintyStrategy):
    name = "margin"
    ascending = True

    def scores(self, proba: np.ndarray) -> np.ndarray:
        return margin_scores(proba)

    def reason(self, score: float, pair: tuple[str, str]) -> str:
        return f"margin {score:.2f} between {pair[0]} and {pair[1]}"


@register
class EntropyStrategy(_UncertaintyStrategy):
    name = "entropy"

    def scores(self, proba: np.ndarray) -> np.ndarray:
        return entropy_scores(proba)

    def reason(self, score: float, pair: tuple[str, str]) -> str:
        return f"entropy {score:.2f} nats (top classes {pair[0]}, {pair[1]})"


def _positive_column(ctx: SelectionContext) -> int | None:
    """The positive (rare) class's column in the probabilities, None until it has been seen."""
    names = ctx.class_names()
    return names.index(str(ctx.positive)) if str(ctx.positive) in names else None


@register
class PositiveScoreStrategy(Strategy):
    """The items most likely to be the positive (rare) class: exploitation, for searching."""

    name = "top_positive"

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        col = _positive_column(ctx)
        if col is None:
            # Positive class not seen yet: nothing to search for, so fall back to margin.
            return MarginStrategy().select(ctx, n)
        proba = ctx.proba()
        cand = ctx.candidates()
        order = cand[np.argsort(-proba[cand, col], kind="stable")]
        picked = take_ranked(ctx, order, n)
        p = proba[picked, col]
        return Selection(
            picked,
            p,
            [f"likely {ctx.positive}: p={v:.2f}" for v in p],
            [self.name] * len(picked),
        )


def positive_margin_scores(proba: np.ndarray, col: int) -> np.ndarray:
    """|p(positive) - max p(other)|: lower is closer to the positive class's own boundary."""
    others = np.delete(proba, col, axis=1)
    rival = others.max(axis=1) if others.shape[1] else np.zeros(len(proba), proba.dtype)
    return np.abs(proba[:, col] - rival)


@register
class PositiveMarginStrategy(Strategy):
    """Margin on the rare class's own boundary: items the model is torn on between the positive
    class and its strongest rival. Unlike margin, which spends most picks on the boundaries
    between common classes, it searches and learns at once: about half of such items are
    positive, and they are exactly where the positive class is confused (hate vs offensive)."""

    name = "positive_margin"

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        col = _positive_column(ctx)
        if col is None:
            # Positive class not seen yet: nothing to search for, so fall back to margin.
            return MarginStrategy().select(ctx, n)
        names = ctx.class_names()
        proba = ctx.proba()
        cand = ctx.candidates()
        order = cand[np.argsort(positive_margin_scores(proba[cand], col), kind="stable")]
        picked = take_ranked(ctx, order, n)
        scores = positive_margin_scores(proba[picked], col)
        rivals = np.delete(np.arange(proba.shape[1]), col)
        others = np.delete(proba[picked], col, axis=1)
        rival_names = (
            [names[rivals[i]] for i in others.argmax(axis=1)]
            if others.shape[1]
            else ["-"] * len(picked)
        )
        return Selection(
            picked,
            scores,
            [
                f"positive margin {v:.2f}: {ctx.positive} p={p:.2f} vs {r}"
                for v, p, r in zip(scores, proba[picked, col], rival_names, strict=True)
            ],
            [self.name] * len(picked),
        )


class _ProbaLookup:
    """What modAL's ranked batch needs of a learner: probabilities and the training vectors."""

    on_transformed = False

    def __init__(self, proba: np.ndarray, x_training: np.ndarray | None) -> None:
        self._proba = proba
        self.X_training = x_training

    def predict_proba(self, x: np.ndarray, **_: Any) -> np.ndarray:
        # modAL asks for the probabilities of exactly the candidate rows it was given.
        assert x.shape[0] == self._proba.shape[0]
        return self._proba


@register
class RankedBatchStrategy(Strategy):
    """modAL's ranked batch (Cardoso et al. 2017), run by modAL itself as the reference.

    Its distance matrix is candidates x labelled, so on a large pool it only sees a random
    `max_candidates` subsample (None: the whole pool).
    """

    name = "ranked_batch"

    def __init__(self, max_candidates: int | None = 20_000) -> None:
        self.max_candidates = max_candidates

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        # modAL here only: it is the reference for this one strategy and takes seconds to load.
        from modAL.batch import uncertainty_batch_sampling

        proba = ctx.proba()
        cand = ctx.candidates()
        if self.max_candidates is not None and len(cand) > self.max_candidates:
            cand = np.sort(ctx.rng.choice(cand, self.max_candidates, replace=False))
        x = np.asarray(ctx.vectors[cand])
        x_train = np.asarray(ctx.vectors[ctx.labelled]) if len(ctx.labelled) else None
        extra = 0 if ctx.groups is None else n  # room to drop near-duplicates afterwards
        want = min(len(cand), n + extra)
        if want == 0:
            return Selection(np.zeros(0), np.zeros(0), [], [])
        learner = _ProbaLookup(proba[cand], x_train)
        result = uncertainty_batch_sampling(learner, x, n_instances=want)
        rows = result[0] if isinstance(result, tuple) else result
        order = cand[np.asarray(rows, dtype=np.int64)]
        picked = take_ranked(ctx, order, n)
        unc = least_confidence_scores(proba[picked])
        return Selection(
            picked,
            unc,
            [
                f"ranked batch rank {r + 1}: uncertainty {u:.2f}, far from labelled items"
                for r, u in enumerate(unc)
            ],
            [self.name] * len(picked),
        )
