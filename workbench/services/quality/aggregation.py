"""Training labels from several reviewers' labels: majority vote, Dawid–Skene, MACE and GLAD,
all from crowd-kit (Toloka's maintained library), each giving an item a label and a confidence.

Decisions that outrank the crowd (adjudications, gold answers) come in through `overrides`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.db.models import Item, Project
from workbench.errors import WorkbenchError
from workbench.services.quality.agreement import (
    AgreementField,
    field_values,
    load_counted_labels,
    parse_field,
)


class AggregationMethod(StrEnum):
    """How one training label is made from several reviewers' labels."""

    majority = "majority"  # most votes; confidence = vote share
    dawid_skene = "dawid_skene"  # per-reviewer confusion matrices, EM (Dawid & Skene 1979)
    mace = "mace"  # per-reviewer competence vs spamming (Hovy et al. 2013)
    glad = "glad"  # reviewer ability × item difficulty (Whitehill et al. 2009)


RESULT_COLUMNS = ["label", "confidence", "n_labels", "source", "method"]


def _model(method: AggregationMethod, n_iter: int, seed: int) -> Any:
    # crowdkit is imported here only: it takes about 0.7 s, and training imports this module.
    from crowdkit.aggregation import GLAD, MACE, DawidSkene, MajorityVote

    if method is AggregationMethod.majority:
        return MajorityVote()
    if method is AggregationMethod.dawid_skene:
        return DawidSkene(n_iter=n_iter)
    if method is AggregationMethod.mace:
        return MACE(n_iter=n_iter, random_state=seed)
    return GLAD(n_iter=n_iter)


def parse_method(method: AggregationMethod | str) -> AggregationMethod:
    try:
        return AggregationMethod(method)
    except ValueError:
        expected = ", ".join(m.value for m in AggregationMethod)
        raise WorkbenchError(
            f"unknown aggregation {method!r}: expected one of {expected}"
        ) from None


def aggregate_labels(
    labels: pd.DataFrame,
    method: AggregationMethod | str = AggregationMethod.dawid_skene,
    *,
    overrides: Mapping[Any, Any] | None = None,
    n_iter: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """One training label per item, with a confidence in [0, 1].

    `labels` has columns `item`, `reviewer`, `label` (one row per label; a reviewer may
    label many items). The result is indexed by item with columns `label`, `confidence` (the
    model's posterior probability of that label; for majority vote the vote share), `n_labels`,
    `source` ("crowd" or "override") and `method`. Ties in majority vote go to the label that
    sorts first. `overrides` (item -> label) replaces the crowd's answer with confidence 1 and
    adds items nobody labelled: the hook for adjudicated and gold answers.
    """
    method = parse_method(method)
    missing = [c for c in ("item", "reviewer", "label") if c not in labels.columns]
    if missing:
        raise WorkbenchError(f"labels to aggregate lack the column(s) {', '.join(missing)}")
    data = labels.dropna(subset=["label"])
    result = pd.DataFrame(columns=RESULT_COLUMNS)
    if not data.empty:
        # crowd-kit gets integer codes: its EM loops do pandas work per iteration, which is
        # several times slower on (arrow) strings. Labels are coded in sorted order, so a tie
        # still goes to the label that sorts first.
        task, items = pd.factorize(data["item"])
        worker, _ = pd.factorize(data["reviewer"])
        label, values = pd.factorize(data["label"], sort=True)
        crowd = pd.DataFrame({"task": task, "worker": worker, "label": label})
        model = _model(method, n_iter, seed)
        with warnings.catch_warnings():
            # crowd-kit's EM can divide 0 by 0 for a label nobody used; it handles the NaN.
            warnings.simplefilter("ignore", RuntimeWarning)
            # crowd-kit 1.4.2 still uses pandas keywords that pandas 3 deprecates (inplace=,
            # copy=); they work, and the warnings would bury ours.
            warnings.filterwarnings("ignore", module=r"crowdkit\.")
            probas = model.fit_predict_proba(crowd)
        probas = probas.reindex(columns=range(len(values))).fillna(0.0)
        matrix = probas.to_numpy(dtype=np.float64)
        best = matrix.argmax(axis=1)
        result = pd.DataFrame(
            {
                "label": np.asarray(values, dtype=object)[best],
                "confidence": matrix[np.arange(len(best)), best],
                "n_labels": np.bincount(task)[probas.index.to_numpy()],
                "source": "crowd",
                "method": method.value,
            },
            index=pd.Index(np.asarray(items, dtype=object)[probas.index.to_numpy()]),
        )
        result.index.name = "item"
    if overrides:
        fixed = pd.DataFrame(
            {
                "label": list(overrides.values()),
                "confidence": 1.0,
                "n_labels": 0,
                "source": "override",
                "method": method.value,
            },
            index=pd.Index(list(overrides.keys()), name="item"),
        )
        if not result.empty:
            in_crowd = fixed.index.intersection(result.index)
            fixed.loc[in_crowd, "n_labels"] = result.loc[in_crowd, "n_labels"].to_numpy()
            result = result.drop(index=in_crowd)
            result = pd.concat([result, fixed])
        else:
            result = fixed
        result.index.name = "item"
    return result


def training_labels(
    session: Session,
    project: Project,
    *,
    field: AgreementField | str = AgreementField.decision,
    method: AggregationMethod | str = AggregationMethod.dawid_skene,
    overrides: Mapping[int, str] | None = None,
    n_iter: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """Training labels for a project's items from its counted labels (see
    `load_counted_labels`): columns item_id, external_id and those of `aggregate_labels`.

    `overrides` maps item id -> label (adjudicated or gold answers, when they exist).
    """
    field = parse_field(field)
    # Every person's judgement trains the model, a lead's too; only agreement statistics
    # leave leads out by default (they often label what they then audit).
    counted = load_counted_labels(session, project, include_leads=True)
    columns = ["item_id", "external_id", *RESULT_COLUMNS]
    if counted.empty and not overrides:
        return pd.DataFrame(columns=columns)
    if counted.empty:
        labels = pd.DataFrame(columns=["item", "reviewer", "label"])
    else:
        labels = pd.DataFrame(
            {
                "item": counted["item_id"],
                "reviewer": counted["reviewer"],
                "label": field_values(counted, field),
            }
        )
        labels = labels.dropna(subset=["label"]).astype({"label": object})
    result = aggregate_labels(labels, method, overrides=overrides, n_iter=n_iter, seed=seed)
    result = result.reset_index().rename(columns={"item": "item_id"})
    external = dict(zip(counted.get("item_id", []), counted.get("external_id", []), strict=False))
    result["external_id"] = result["item_id"].map(external)
    if overrides:
        unknown = result["external_id"].isna()
        if unknown.any():
            ids = [int(i) for i in result.loc[unknown, "item_id"]]
            found = dict(
                session.execute(
                    select(Item.id, Item.external_id).where(
                        Item.project_id == project.id, Item.id.in_(ids)
                    )
                ).all()
            )
            absent = sorted(set(ids) - set(found))
            if absent:
                raise WorkbenchError(
                    f"overrides name item ids not in project {project.name!r}: {absent[:20]}"
                )
            result.loc[unknown, "external_id"] = result.loc[unknown, "item_id"].map(found)
    return result[columns].sort_values("item_id", kind="stable").reset_index(drop=True)
