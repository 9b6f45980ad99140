"""Offline metrics of a model version on a frozen evaluation set: per-policy precision, recall, F1
and average precision, macro-F1, calibration (ECE over 15 equal-width bins, Brier score), the
confusion matrix, slices, and a percentile bootstrap interval on every figure. The predictions go
to a Parquet file (external_id, reference, predicted, score_<class>) from which anyone can
recompute precision and recall.

Point figures come from scikit-learn. The bootstrap recomputes them per resample from counts and
weights (numpy; tested against scikit-learn with sample weights): a thousand resamples of
scikit-learn calls per figure would take minutes on a large set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.config import Settings, private_dir, private_file
from workbench.db.models import (
    EmbeddingSpace,
    EvaluationSet,
    EvaluationSetStatus,
    Item,
    ModelStatus,
    ModelVersion,
    Project,
)
from workbench.errors import NotFoundError, WorkbenchError
from workbench.services.evaluate.compare import align
from workbench.services.evaluate.intervals import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    percentile_interval,
    wilson_interval,
)
from workbench.services.evaluate.members import set_references
from workbench.services.evaluate.ranking import average_precision
from workbench.services.evaluate.sets import get_evalset, parse_set_ref
from workbench.services.evaluate.thresholds import threshold_of
from workbench.services.train.train import load_head, score_vectors
from workbench.services.vectors.spaces import load_space_vectors

ECE_BINS = 15
CURVE_POINTS = 200  # PR curve points kept for charts
SLICE_KEYS = ("language", "modality", "source")


def get_model_version(session: Session, project: Project, version: int | None) -> ModelVersion:
    """Version `version`, or the champion when None."""
    stmt = select(ModelVersion).where(ModelVersion.project_id == project.id)
    if version is None:
        mv = session.scalar(stmt.where(ModelVersion.status == ModelStatus.champion))
        if mv is None:
            raise NotFoundError(f"project {project.name!r} has no champion model yet")
        return mv
    mv = session.scalar(stmt.where(ModelVersion.version == version))
    if mv is None:
        raise NotFoundError(f"project {project.name!r} has no model version {version}")
    return mv


def frozen_set(session: Session, project: Project, ref: str) -> EvaluationSet:
    name, version = parse_set_ref(ref)
    es = get_evalset(session, project, name, version)
    if es.status not in (EvaluationSetStatus.frozen, EvaluationSetStatus.retired):
        raise WorkbenchError(
            f"evaluation set {es.name!r} version {es.version} is {es.status.value}, not frozen: "
            "its reference labels are not final yet (see `workbench evalset show`)"
        )
    return es


@dataclass
class ScoredSet:
    """A model's scores on an evaluation set's items, columns in `classes` order."""

    item_ids: np.ndarray
    external_ids: list[str]
    reference: np.ndarray
    proba: np.ndarray
    classes: list[str]
    missing_vectors: int


def score_set(
    session: Session, settings: Settings, mv: ModelVersion, es: EvaluationSet
) -> ScoredSet:
    """Score the set's members with the model's head, over the vectors of the model's space.
    Classes: the model's training classes, plus any reference class it never learned (which it
    then scores 0, and can never predict)."""
    refs = set_references(session, es)
    if not refs:
        raise WorkbenchError(f"evaluation set {es.name!r} version {es.version} has no items")
    space = session.get(EmbeddingSpace, mv.space_id) if mv.space_id is not None else None
    if space is None:
        raise WorkbenchError(f"model version {mv.version} has no vector space (it was deleted)")
    wanted = sorted(refs)
    ids, vecs = load_space_vectors(session, settings, space, wanted if len(wanted) < 5000 else None)
    pos = {int(i): n for n, i in enumerate(ids)}
    present = [i for i in wanted if i in pos]
    if not present:
        raise WorkbenchError(
            f"no item of evaluation set {es.name!r} has a vector in model version {mv.version}'s "
            "space: run `workbench embed` first"
        )
    head = load_head(settings, mv.version, mv.artifact_path)
    own = [str(c) for c in head.classes_]
    classes = own + sorted({refs[i] for i in present} - set(own))
    proba = align(score_vectors(head, vecs[[pos[i] for i in present]]), own, classes)
    external = {
        int(i): e
        for i, e in session.execute(select(Item.id, Item.external_id).where(Item.id.in_(present)))
    }
    return ScoredSet(
        item_ids=np.asarray(present, dtype=np.int64),
        external_ids=[external[i] for i in present],
        reference=np.asarray([refs[i] for i in present], dtype=object),
        proba=proba,
        classes=classes,
        missing_vectors=len(wanted) - len(present),
    )


# --- the figures, on (optionally weighted) items -------------------------------------------------


def _confusion(ref: np.ndarray, pred: np.ndarray, k: int, w: np.ndarray | None) -> np.ndarray:
    return np.bincount(ref * k + pred, weights=w, minlength=k * k).reshape(k, k)


def _prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cm.sum(axis=0) > 0, tp / cm.sum(axis=0), 0.0)
        recall = np.where(cm.sum(axis=1) > 0, tp / cm.sum(axis=1), np.nan)
        f1 = np.where(
            precision + np.nan_to_num(recall) > 0,
            2 * precision * recall / (precision + recall),
            0.0,
        )
    return precision, recall, f1


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, w: np.ndarray | None, bins: int = ECE_BINS
) -> float:
    """Top-label ECE: |accuracy - mean confidence| per equal-width confidence bin, weighted by
    the bin's share of items (Guo et al. 2017). A confidence of exactly 1 goes to the last bin."""
    weights = np.ones(len(confidence)) if w is None else w
    b = np.minimum((confidence * bins).astype(int), bins - 1)
    n = np.bincount(b, weights=weights, minlength=bins)
    acc = np.bincount(b, weights=weights * correct, minlength=bins)
    conf = np.bincount(b, weights=weights * confidence, minlength=bins)
    total = n.sum()
    return float(np.sum(np.abs(acc - conf)) / total) if total else float("nan")


def brier(proba: np.ndarray, onehot: np.ndarray, w: np.ndarray | None) -> float:
    """Multiclass Brier score: mean over items of the squared distance to the one-hot label."""
    per_item = np.sum((proba - onehot) ** 2, axis=1)
    return float(np.average(per_item, weights=w))


def _figures(
    ref: np.ndarray, proba: np.ndarray, classes: list[str], present: list[int], w: np.ndarray | None
) -> dict[str, Any]:
    """Every figure on the items weighted by w (bootstrap counts), or on all items."""
    k = len(classes)
    pred = proba.argmax(axis=1)
    cm = _confusion(ref, pred, k, w)
    precision, recall, f1 = _prf(cm)
    onehot = np.eye(k)[ref]
    out: dict[str, Any] = {
        "macro_f1": float(np.mean(f1[present])) if present else float("nan"),
        "ece": expected_calibration_error(proba.max(axis=1), (pred == ref).astype(float), w),
        "brier": brier(proba, onehot, w),
        "accuracy": float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan"),
    }
    for c in range(k):
        out[f"precision/{c}"] = precision[c]
        out[f"recall/{c}"] = recall[c]
        out[f"f1/{c}"] = f1[c]
        out[f"average_precision/{c}"] = average_precision(ref == c, proba[:, c], w)
    return out


def bootstrap_figures(
    ref: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    present: list[int],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of every figure, from the same resamples of items (so the
    intervals of one resample hang together); resamples as counts per item (weights)."""
    rng = np.random.default_rng(seed)
    n = len(ref)
    draws: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        for key, value in _figures(ref, proba, classes, present, w).items():
            draws.setdefault(key, []).append(value)
    return {key: percentile_interval(v, confidence) for key, v in draws.items()}


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def _ci(interval: tuple[float, float]) -> list[float | None]:
    return [_r(interval[0]), _r(interval[1])]


def pr_curve(positive: np.ndarray, score: np.ndarray) -> list[dict[str, float]]:
    """Up to CURVE_POINTS operating points (threshold, precision, recall) of a class, each with
    the 95% Wilson interval of its precision (`precision_lo`, `precision_hi`)."""
    from sklearn.metrics import precision_recall_curve

    if not positive.any():
        return []
    precision, recall, thresholds = precision_recall_curve(positive, score)
    step = max(1, len(thresholds) // CURVE_POINTS)
    points = []
    for p, r, t in list(zip(precision[:-1], recall[:-1], thresholds, strict=True))[::step]:
        # Each point is an operating point: the items scored >= t are flagged. Its precision
        # is a proportion of the flagged items, so its band is their Wilson interval.
        flagged = score >= t
        lo, hi = wilson_interval(int(positive[flagged].sum()), int(flagged.sum()))
        points.append(
            {
                "threshold": float(t),
                "precision": float(p),
                "recall": float(r),
                "precision_lo": lo,
                "precision_hi": hi,
            }
        )
    return points


def reliability(positive: np.ndarray, score: np.ndarray) -> list[dict[str, Any]]:
    """One-vs-rest reliability diagram of a class: per equal-width bin of its score, the mean
    score and the share of items that are the class, with a Wilson interval on that share."""
    b = np.minimum((score * ECE_BINS).astype(int), ECE_BINS - 1)
    rows = []
    for i in range(ECE_BINS):
        m = b == i
        if m.any():
            lo, hi = wilson_interval(int(positive[m].sum()), int(m.sum()))
            rows.append(
                {
                    "bin": i,
                    "mean_score": float(score[m].mean()),
                    "observed": float(positive[m].mean()),
                    "observed_ci": [lo, hi],
                    "n": int(m.sum()),
                }
            )
    return rows


def metrics_for(
    scored: ScoredSet,
    thresholds: dict[str, Any] | None,
    *,
    curves: bool = False,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """All figures of one scored set (or slice of one)."""
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    classes = scored.classes
    index = {c: i for i, c in enumerate(classes)}
    ref = np.asarray([index[c] for c in scored.reference], dtype=np.int64)
    proba = scored.proba
    pred_idx = proba.argmax(axis=1)
    predicted = np.asarray([classes[i] for i in pred_idx], dtype=object)
    present = sorted(set(ref.tolist()))
    present_names = [classes[i] for i in present]
    p, r, f, support = precision_recall_fscore_support(
        scored.reference, predicted, labels=classes, zero_division=0
    )
    macro_f1 = f1_score(
        scored.reference, predicted, labels=present_names, average="macro", zero_division=0
    )
    point = _figures(ref, proba, classes, present, None)
    cis = bootstrap_figures(ref, proba, classes, present, n_resamples=n_resamples, seed=seed)
    policies: dict[str, Any] = {}
    for k, c in enumerate(classes):
        positive = ref == k
        t = threshold_of(thresholds, c)
        flagged = proba[:, k] >= t
        has = bool(positive.any())
        predicted_any = bool((pred_idx == k).any())
        # Undefined figures stay undefined (null), not 0: a class with no items in the set and
        # never predicted has no precision, recall or F1 here.
        entry: dict[str, Any] = {
            "precision": _r(p[k]) if predicted_any or has else None,
            "recall": _r(r[k]) if has else None,
            "f1": _r(f[k]) if predicted_any or has else None,
            "average_precision": _r(average_precision_score(positive, proba[:, k]))
            if has
            else None,
            "threshold": _r(t),
            "support": int(support[k]),
            "precision_ci": _ci(cis[f"precision/{k}"]) if predicted_any or has else [None, None],
            "recall_ci": _ci(cis[f"recall/{k}"]) if has else [None, None],
            "f1_ci": _ci(cis[f"f1/{k}"]) if predicted_any or has else [None, None],
            "average_precision_ci": _ci(cis[f"average_precision/{k}"]) if has else [None, None],
            "precision_at_threshold": _r(float(positive[flagged].mean()))
            if flagged.any()
            else None,
            "recall_at_threshold": _r(float(flagged[positive].mean())) if has else None,
            "flagged_at_threshold": int(flagged.sum()),
            "brier": _r(brier_score_loss(positive, proba[:, k])),
        }
        if curves:
            entry["pr_curve"] = pr_curve(positive, proba[:, k])
            entry["reliability"] = reliability(positive, proba[:, k])
        policies[c] = entry
    return {
        "n_items": len(ref),
        "macro_f1": _r(macro_f1),
        "macro_f1_ci": _ci(cis["macro_f1"]),
        "macro_over": present_names,
        "ece": _r(point["ece"]),
        "ece_ci": _ci(cis["ece"]),
        "ece_bins": f"{ECE_BINS} equal-width bins of the top-class score (top-label ECE)",
        "brier": _r(point["brier"]),
        "brier_ci": _ci(cis["brier"]),
        "accuracy": _r(point["accuracy"]),
        "accuracy_ci": _ci(cis["accuracy"]),
        "policies": policies,
        "confusion_matrix": {
            "labels": classes,
            "rows_are": "reference",
            "matrix": confusion_matrix(scored.reference, predicted, labels=classes).tolist(),
        },
    }


def _slice_values(session: Session, item_ids: np.ndarray, key: str) -> list[str]:
    rows = {
        int(i): (lang, mods, source, meta)
        for i, lang, mods, source, meta in session.execute(
            select(Item.id, Item.language, Item.modalities, Item.source, Item.meta).where(
                Item.id.in_([int(i) for i in item_ids])
            )
        )
    }
    out = []
    for i in item_ids:
        lang, mods, source, meta = rows[int(i)]
        if key == "language":
            value = lang
        elif key == "modality":
            value = "+".join(sorted(mods or [])) or None
        elif key == "source":
            value = source
        else:
            value = (meta or {}).get(key)
        out.append("(none)" if value is None else str(value))
    return out


def _subset(scored: ScoredSet, mask: np.ndarray) -> ScoredSet:
    return ScoredSet(
        item_ids=scored.item_ids[mask],
        external_ids=[e for e, m in zip(scored.external_ids, mask, strict=True) if m],
        reference=scored.reference[mask],
        proba=scored.proba[mask],
        classes=scored.classes,
        missing_vectors=0,
    )


def predictions_path(
    settings: Settings, project: Project, mv: ModelVersion, es: EvaluationSet
) -> Path:
    folder = private_dir(settings.resolved_home / "evaluations" / str(project.id))
    return folder / f"model-v{mv.version:04d}_{es.name}@{es.version}.parquet"


def write_predictions(scored: ScoredSet, path: Path) -> Path:
    frame = pd.DataFrame(
        {
            "external_id": scored.external_ids,
            "reference": scored.reference.astype(str),
            "predicted": [scored.classes[i] for i in scored.proba.argmax(axis=1)],
        }
    )
    for k, c in enumerate(scored.classes):
        frame[f"score_{c}"] = scored.proba[:, k]
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
    return private_file(path)


def evaluate(
    session: Session,
    settings: Settings,
    project: Project,
    evalset: str,
    *,
    version: int | None = None,
    slice_key: str | None = None,
    policy: str | None = None,
    curves: bool = False,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """The `workbench evaluate` object (see the README's Evaluation section); with `policy`,
    only that class's entry under "policies" (every other figure stays over all classes)."""
    es = frozen_set(session, project, evalset)
    mv = get_model_version(session, project, version)
    scored = score_set(session, settings, mv, es)
    if policy is not None and policy not in scored.classes:
        raise WorkbenchError(
            f"policy {policy!r} is not a class of model version {mv.version} or of the set "
            f"(classes: {', '.join(scored.classes)})"
        )
    figures = metrics_for(scored, mv.thresholds, curves=curves, n_resamples=n_resamples, seed=seed)
    if policy is not None:
        figures["policies"] = {policy: figures["policies"][policy]}
    path = write_predictions(scored, predictions_path(settings, project, mv, es))
    out: dict[str, Any] = {
        "model_version": mv.version,
        "evalset": f"{es.name}@{es.version}",
        **figures,
        "predictions": str(path),
        "missing_vectors": scored.missing_vectors,
        "intervals": f"{int(DEFAULT_CONFIDENCE * 100)}% percentile bootstrap over items, "
        f"{n_resamples} resamples, seed {seed}",
        "thresholds_from": (mv.lineage or {}).get("thresholds_from")
        or ("none stored: 0.5 used" if not mv.thresholds else "stored with the model"),
    }
    if slice_key is not None:
        values = np.asarray(_slice_values(session, scored.item_ids, slice_key), dtype=object)
        if slice_key not in SLICE_KEYS and (values == "(none)").all():
            raise WorkbenchError(
                f"no item of the set has metadata key {slice_key!r} (slice by language, "
                "modality, source or a metadata key the items have)"
            )
        out["slices"] = {
            "key": slice_key,
            "values": {
                str(v): _slice_summary(
                    metrics_for(
                        _subset(scored, values == v),
                        mv.thresholds,
                        n_resamples=n_resamples,
                        seed=seed,
                    )
                )
                for v in sorted(set(values.tolist()))
            },
        }
    return out


def _slice_summary(m: dict[str, Any]) -> dict[str, Any]:
    return {
        "n_items": m["n_items"],
        "macro_f1": m["macro_f1"],
        "macro_f1_ci": m["macro_f1_ci"],
        "accuracy": m["accuracy"],
        "ece": m["ece"],
        "policies": {
            c: {k: v[k] for k in ("precision", "recall", "support", "precision_ci", "recall_ci")}
            for c, v in m["policies"].items()
        },
    }
