"""Agreement benchmarks: a real crowd (Davidson et al. 2017: Fleiss' kappa, alpha, and Dawid–Skene
against majority vote on the same votes), and the full agreement computation timed over a million
synthetic labels shaped like that crowd, bootstrap included."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import Problem, WorkbenchError
from workbench.services.quality.aggregation import aggregate_labels
from workbench.services.quality.agreement import (
    agreement_from_frame,
    bootstrap_figures,
    fleiss_kappa,
    krippendorff_alpha,
    modal_labels_per_item,
    percent_agreement,
    percentile_interval,
)

DAVIDSON_CLASSES = ("hate_speech", "offensive_language", "neither")


def read_vote_counts(path: Path) -> pd.DataFrame:
    """The Davidson CSV, checked: the three vote-count columns, `count` and `class`."""
    if not path.is_file():
        raise WorkbenchError(f"{path}: no such file")
    frame = pd.read_csv(path)
    needed = ["count", *DAVIDSON_CLASSES, "class"]
    absent = [c for c in needed if c not in frame.columns]
    if absent:
        raise WorkbenchError(
            f"{path} lacks the column(s) {', '.join(absent)}",
            [Problem("column missing", file=str(path), field=c) for c in absent],
        )
    problems = []
    for column in needed:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | (values < 0) | (values != values.round())
        for row in np.flatnonzero(bad.to_numpy())[:20]:
            # +2: the header is line 1 and rows count from 0.
            problems.append(
                Problem(
                    "not a non-negative whole number",
                    line=int(row) + 2,
                    field=column,
                    file=str(path),
                )
            )
    if problems:
        raise WorkbenchError(f"{path} has bad vote counts", problems)
    return frame


def davidson_crowd_benchmark(path: Path, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """`bench agreement`: the crowd's agreement with bootstrap intervals, and how Dawid–Skene's
    labels differ from majority vote's and from the published class."""
    frame = read_vote_counts(path)
    counts = frame[list(DAVIDSON_CLASSES)].to_numpy(dtype=np.int64)
    modal = modal_labels_per_item(counts)
    modal_rows = counts[counts.sum(axis=1) == modal]
    started = time.perf_counter()
    boot, resamples = bootstrap_figures(counts, "nominal", modal, n_boot=n_boot, seed=seed)
    boot_s = time.perf_counter() - started
    crowd = {
        "n_tweets": int(counts.shape[0]),
        "n_votes": int(counts.sum()),
        "votes_per_tweet": {
            str(k): int(v)
            for k, v in zip(*np.unique(counts.sum(axis=1), return_counts=True), strict=True)
        },
        "krippendorff_alpha": krippendorff_alpha(counts, "nominal"),
        "krippendorff_alpha_ci": percentile_interval(boot["krippendorff_alpha"]),
        "fleiss_kappa": fleiss_kappa(modal_rows),
        "fleiss_kappa_ci": percentile_interval(boot["fleiss_kappa"]),
        "fleiss_n_items": int(modal_rows.shape[0]),
        "fleiss_labels_per_item": modal,
        "percent_agreement": percent_agreement(counts),
        "percent_agreement_ci": percentile_interval(boot["percent_agreement"]),
        "bootstrap": {"resamples": resamples, "seed": seed, "seconds": round(boot_s, 3)},
    }
    # The file has vote counts, not who voted: all votes come from one pooled "crowd" worker,
    # so Dawid–Skene learns one shared confusion matrix and the class priors.
    task = np.repeat(np.arange(counts.shape[0]), counts.sum(axis=1))
    label = np.concatenate([np.repeat(np.arange(3), row) for row in counts])
    votes = pd.DataFrame({"item": task, "reviewer": "crowd", "label": label})
    published = frame["class"].to_numpy()
    models: dict[str, Any] = {}
    predictions: dict[str, np.ndarray] = {}
    for method in ("majority", "dawid_skene"):
        started = time.perf_counter()
        result = aggregate_labels(votes, method)
        seconds = time.perf_counter() - started
        predicted = result.loc[np.arange(counts.shape[0]), "label"].to_numpy(dtype=np.int64)
        predictions[method] = predicted
        models[method] = {
            "seconds": round(seconds, 3),
            "agreement_with_published_class": float((predicted == published).mean()),
            "mean_confidence": float(result["confidence"].mean()),
            "label_share": {
                name: float((predicted == k).mean()) for k, name in enumerate(DAVIDSON_CLASSES)
            },
        }
    mv, ds = predictions["majority"], predictions["dawid_skene"]
    flips = pd.crosstab(
        pd.Series(mv, name="majority").map(dict(enumerate(DAVIDSON_CLASSES))),
        pd.Series(ds, name="dawid_skene").map(dict(enumerate(DAVIDSON_CLASSES))),
    )
    return {
        "data": str(path),
        "crowd": crowd,
        "aggregation": {
            "worker_model": "one pooled worker (the file has vote counts, not voter ids)",
            **models,
            "majority_vs_dawid_skene_agreement": float((mv == ds).mean()),
            "changed_items": int((mv != ds).sum()),
            "majority_to_dawid_skene": {
                f"{a}->{b}": int(flips.loc[a, b])
                for a in flips.index
                for b in flips.columns
                if a != b and flips.loc[a, b] > 0
            },
        },
    }


def synthetic_labels(n_labels: int, *, reviewers: int = 200, seed: int = 0) -> pd.DataFrame:
    """Labels shaped like the Davidson crowd: 3 votes on most items (6, 4, 9, 7 on the rest),
    class shares 6/77/17 %, reviewers of accuracy 0.6–0.95, one label per reviewer and item."""
    rng = np.random.default_rng(seed)
    sizes_seen = np.array([3, 4, 6, 7, 9])
    weights = np.array([22807, 211, 1571, 27, 167], dtype=float)
    sizes = rng.choice(sizes_seen, p=weights / weights.sum(), size=n_labels // 3 + 1)
    ends = np.cumsum(sizes)
    n_items = int(np.searchsorted(ends, n_labels)) + 1
    sizes = sizes[:n_items]
    sizes[-1] -= int(ends[n_items - 1] - n_labels)
    item = np.repeat(np.arange(n_items), sizes)
    rank = np.arange(n_labels) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    # Consecutive reviewers from a random start: distinct within an item (sizes < reviewers).
    reviewer = (np.repeat(rng.integers(0, reviewers, n_items), sizes) + rank) % reviewers
    truth = rng.choice(3, p=[0.06, 0.77, 0.17], size=n_items)
    accuracy = rng.uniform(0.6, 0.95, reviewers)
    correct = rng.random(n_labels) < accuracy[reviewer]
    value = np.where(correct, truth[item], rng.integers(0, 3, n_labels))
    decisions = np.array(["violating", "not_violating", "unsure"])
    return pd.DataFrame(
        {
            "item_id": item,
            "reviewer": np.array([f"reviewer{r:04d}" for r in range(reviewers)])[reviewer],
            "decision": decisions[value],
        }
    )


def agreement_scale_benchmark(
    n_labels: int, *, reviewers: int = 200, seed: int = 0
) -> dict[str, Any]:
    """`bench agreement-scale`: `agreement_from_frame` over `n_labels` synthetic labels, best of
    three runs."""
    labels = synthetic_labels(n_labels, reviewers=reviewers, seed=seed)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        report = agreement_from_frame(labels, "decision", seed=seed)
        runs.append(time.perf_counter() - started)
    return {
        "n_labels": len(labels),
        "n_items": report["n_items_total"],
        "n_reviewers": report["n_reviewers"],
        "seconds": [round(s, 3) for s in runs],
        "seconds_best": round(min(runs), 3),
        "measured": "agreement_from_frame on labels in memory (not the database read): counts, "
        "alpha, Fleiss, percent agreement, reviewer x reviewer Cohen, bootstrap intervals",
        "bootstrap": report["bootstrap"],
        "krippendorff_alpha": report["krippendorff_alpha"],
        "krippendorff_alpha_ci": report["krippendorff_alpha_ci"],
        "fleiss_kappa": report["fleiss_kappa"],
        "fleiss_n_items": report["fleiss_n_items"],
        "percent_agreement": report["percent_agreement"],
    }
