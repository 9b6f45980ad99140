"""Train a classifier head on the current labels, score the pool, and keep the better model.

One training label per item from the project's `label_aggregation` (Dawid-Skene by default,
through crowd-kit; majority, MACE and GLAD too), `unsure` left out. The class of an
item is its primary policy code (`none` for not violating).

Evaluation and the promotion guard use labels of items that the `random` strategy chose: they
are the only unbiased sample of the pool. They are split by a hash of the item id into a
calibration half and an evaluation half that no model ever trains on; until there are enough
of them the model is stored uncalibrated, says so, and is judged by cross-validation.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.config import Settings, private_dir, private_file
from workbench.db.database import Database
from workbench.db.models import (
    Decision,
    Label,
    Lease,
    ModelStatus,
    ModelVersion,
    Project,
    QueueEntry,
    TrainingRound,
)
from workbench.engines import BatchEngine, engine_scope
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.evaluate.compare import Scored, align, compare_models
from workbench.services.evaluate.lineage import encoders_of, lineage
from workbench.services.evaluate.members import frozen_sets, held_out_item_ids, set_references
from workbench.services.evaluate.thresholds import choose_thresholds
from workbench.services.labels.current import HUMAN_SOURCES, current_labels
from workbench.services.labels.propagation import propagated_training_labels
from workbench.services.membership import require_member
from workbench.services.projects import get_project, project_settings
from workbench.services.quality.adjudication import training_overrides
from workbench.services.quality.aggregation import aggregate_labels
from workbench.services.train.heads import CalibratedHead, make_head
from workbench.services.train.progress import RoundLog
from workbench.services.train.scoring import PoolScoring, loaded, score_pool
from workbench.services.vectors.spaces import FUSED, get_space, load_space_vectors

MIN_EVAL_ITEMS = 20
MIN_TRAINING_ITEMS = 4


@dataclass
class TrainingSet:
    item_ids: np.ndarray
    classes: list[str]
    y: np.ndarray  # indices into classes
    confidence: np.ndarray
    random_item_ids: set[int]
    # Where each item's label came from, in item_ids order: "adjudication" or "gold" (they
    # override the crowd, with confidence 1), else the aggregation method.
    sources: list[str] = field(default_factory=list)


def counted_labels(session: Session, project: Project) -> list[Label]:
    """Current human or imported labels, the latest per reviewer and item."""
    latest: dict[tuple[int, int], Label] = {}
    for lab in current_labels(session, project, sources=HUMAN_SOURCES):  # oldest first
        latest[(lab.item_id, lab.reviewer_id)] = lab
    return list(latest.values())


def label_class(label: Label) -> str | None:
    if label.decision == Decision.unsure:
        return None
    if label.decision == Decision.not_violating:
        return "none"
    codes = [c for c in label.policies if c != "none"]
    return codes[0] if codes else None


def majority_training_labels(labels: list[Label]) -> dict[int, tuple[str, float]]:
    """Item -> (class, share of votes). Ties are left out: a lead should adjudicate them."""
    votes: dict[int, Counter[str]] = {}
    for lab in labels:
        cls = label_class(lab)
        if cls is not None:
            votes.setdefault(lab.item_id, Counter())[cls] += 1
    out = {}
    for item_id, counter in votes.items():
        (top, n), *rest = counter.most_common()
        if rest and rest[0][1] == n:
            continue
        out[item_id] = (top, n / sum(counter.values()))
    return out


def random_sampled_items(session: Session, project: Project) -> set[int]:
    return set(
        session.scalars(
            select(QueueEntry.item_id)
            .join(Lease, Lease.entry_id == QueueEntry.id)
            .where(
                QueueEntry.project_id == project.id,
                QueueEntry.strategy == "random",
                Lease.label_id.is_not(None),
            )
        )
    )


def aggregated_training_labels(
    labels: list[Label], method: str, overrides: dict[int, str] | None = None
) -> dict[int, tuple[str, float]]:
    """Item -> (class, confidence) through the label-quality aggregation (crowd-kit)."""
    rows = [(lab.item_id, lab.reviewer_id, label_class(lab)) for lab in labels]
    frame = pd.DataFrame(
        [r for r in rows if r[2] is not None], columns=["item", "reviewer", "label"]
    )
    if frame.empty and not overrides:
        return {}
    result = aggregate_labels(frame, method, overrides=overrides)
    return {int(i): (str(r.label), float(r.confidence)) for i, r in result.iterrows()}


def training_set(session: Session, project: Project) -> TrainingSet:
    labels = counted_labels(session, project)
    method = project_settings(project).label_aggregation
    # Adjudicated final decisions, then gold answers, outrank the crowd.
    overrides = training_overrides(session, project)
    fixed: dict[int, str] = {}
    for item_id, o in overrides.items():
        if (cls := o.answer.training_class) is not None:
            fixed[item_id] = cls
    if method == "majority_ties_dropped":
        per_item = majority_training_labels(labels)
        per_item.update({i: (c, 1.0) for i, c in fixed.items()})
    else:
        per_item = aggregated_training_labels(labels, method, fixed or None)
    for item_id, o in overrides.items():
        if o.answer.training_class is None:
            per_item.pop(item_id, None)  # a final "unsure" keeps the item out of training
    # Copies of a reviewer's label on duplicates (services/propagation.py): only for items with
    # no judgement of their own, with the confidence of the item they were copied from.
    human_items = {lab.item_id for lab in labels}
    propagated: set[int] = set()
    for item_id, (lab, source_item) in propagated_training_labels(session, project).items():
        cls = label_class(lab)
        if cls is None or item_id in per_item or item_id in human_items or item_id in overrides:
            continue
        per_item[item_id] = (cls, per_item.get(source_item, (cls, 1.0))[1])
        propagated.add(item_id)
    if not per_item:
        raise WorkbenchError(
            f"project {project.name!r} has no usable labels yet (unsure labels and ties are "
            "left out of training)"
        )
    ids = np.array(sorted(per_item), dtype=np.int64)
    classes = sorted({c for c, _ in per_item.values()})
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[per_item[i][0]] for i in ids], dtype=np.int64)
    conf = np.array([per_item[i][1] for i in ids], dtype=np.float32)
    sources = [
        overrides[int(i)].source
        if int(i) in fixed
        else "propagated"
        if int(i) in propagated
        else method
        for i in ids
    ]
    return TrainingSet(ids, classes, y, conf, random_sampled_items(session, project), sources)


def _half(item_id: int) -> int:
    return hashlib.sha256(str(item_id).encode()).digest()[0] & 1


def model_dir(settings: Settings, project: Project, version: int) -> Path:
    return settings.resolved_home / "models" / str(project.id) / f"v{version:04d}"


def _metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    p, r, f, sup = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    return {
        "macro_f1": round(
            float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)), 4
        ),
        "per_class": {
            c: {
                "precision": round(float(p[i]), 4),
                "recall": round(float(r[i]), 4),
                "f1": round(float(f[i]), 4),
                "support": int(sup[i]),
            }
            for i, c in enumerate(classes)
        },
    }


def load_head(settings: Settings, version: int, artifact_path: str) -> Any:
    """Unpickle model version `version`'s head, only from under the workbench home.

    Why the check: joblib runs code as it loads, and the path comes from the database; a row
    changed to point elsewhere (or a link out of the home) must not run a file of someone
    else's choosing."""
    home = settings.resolved_home
    path = Path(artifact_path).expanduser().resolve()
    if not path.is_relative_to(home):
        raise WorkbenchError(
            f"model version {version}: its artifact {artifact_path} is outside the workbench "
            f"home {home}; refusing to load it (retrain, or restore the file under the home)"
        )
    return joblib.load(path)


def new_head(params: dict[str, Any]) -> Any:
    return make_head(**params)


def train_round(
    db: Database,
    round_id: int,
    log: RoundLog,
    engine: BatchEngine | str | None = None,  # type: ignore[type-arg]
) -> int:
    """The worker's job for one round; returns the new model version's id. `engine` scores
    the pool (an engine, `local` or `ray`; None means the project's `engine` setting)."""
    settings = db.settings
    with db.sessions() as s:
        rnd = s.get_one(TrainingRound, round_id)
        project = s.get_one(Project, rnd.project_id)
        log(f"round {rnd.number}: collecting training labels", 0.05)
        ts = training_set(s, project)
        space = get_space(s, project, FUSED)
        ids, vecs = load_space_vectors(s, settings, space)
        champion = s.scalar(
            select(ModelVersion).where(
                ModelVersion.project_id == project.id, ModelVersion.status == ModelStatus.champion
            )
        )
        version = (
            s.scalar(
                select(func.max(ModelVersion.version)).where(ModelVersion.project_id == project.id)
            )
            or 0
        ) + 1
        champion_artifact = champion.artifact_path if champion is not None else None
        champion_thresholds = champion.thresholds if champion is not None else None
        held_out = held_out_item_ids(s, project)
        # The golden sets a challenger is judged on: every frozen set, pooled (a later set's
        # reference wins for an item in two).
        golden_sets = frozen_sets(s, project)
        golden: dict[int, str] = {}
        for es in golden_sets:
            golden.update(set_references(s, es))
        golden_names = [f"{es.name}@{es.version}" for es in golden_sets]
        settings_now = project_settings(project)
        encoders = encoders_of(s, project)
        default_engine = project_settings(project).engine
        project_name, project_id, space_id, round_number = (
            project.name,
            project.id,
            space.id,
            rnd.number,
        )
    pos = {int(i): n for n, i in enumerate(ids)}
    held = np.array([int(i) in held_out for i in ts.item_ids], dtype=bool)
    log(f"{int(held.sum())} items held out in evaluation sets (never trained on)")
    keep = np.array([int(i) in pos for i in ts.item_ids]) & ~held
    if not (keep | held).all():
        log(
            f"{int((~(keep | held)).sum())} labelled items have no vector yet "
            "(run `workbench embed`)"
        )
    item_ids, y = ts.item_ids[keep], ts.y[keep]
    label_sources = dict(Counter(src for src, k in zip(ts.sources, keep, strict=True) if k))
    log(f"training labels by source: {label_sources}")
    if len(item_ids) < MIN_TRAINING_ITEMS or len(set(y.tolist())) < 2:
        raise WorkbenchError(
            f"need at least {MIN_TRAINING_ITEMS} labelled, embedded items of at least two "
            f"classes to train; have {len(item_ids)} of {len(set(y.tolist()))}"
        )
    X = vecs[[pos[int(i)] for i in item_ids]]
    names = np.asarray([ts.classes[c] for c in y], dtype=object)
    is_random = np.array([int(i) in ts.random_item_ids for i in item_ids])
    halves = np.array([_half(int(i)) for i in item_ids])
    eval_mask = is_random & (halves == 1)
    cal_mask = is_random & (halves == 0)
    train_mask = ~eval_mask & ~cal_mask
    params: dict[str, Any] = {"name": "logistic", "class_weight": "balanced", "random_state": 0}
    log(
        f"training {params['name']} head on {int(train_mask.sum())} items, "
        f"{len(set(names[train_mask].tolist()))} classes",
        0.2,
    )
    head = new_head(params)
    warm = ""
    if champion is not None and champion_artifact is not None and hasattr(head, "warm_start_from"):
        try:
            if head.warm_start_from(load_head(settings, champion.version, champion_artifact)):
                warm = " (warm start from the champion)"
        except (OSError, ValueError, EOFError) as exc:  # a missing or unreadable artifact
            log(f"no warm start: the champion's artifact could not be read ({exc})")
    head.fit(X[train_mask], names[train_mask])
    warm_started = bool(getattr(head, "warm_started_", False))
    if warm_started:
        log(f"trained{warm}")
    # Calibration learns only from randomly sampled labels; below the minimum the wrapper
    # stays uncalibrated and says why.
    head = CalibratedHead(head).fit(X[cal_mask], names[cal_mask])
    calibrated, note = bool(head.calibrated_), str(head.reason_)
    log(note, 0.4)
    classes = [str(c) for c in head.classes_]
    metrics: dict[str, Any]
    if int(eval_mask.sum()) >= MIN_EVAL_ITEMS:
        pred = head.predict(X[eval_mask])
        metrics = {
            "evaluation": "random_holdout",
            "n_eval": int(eval_mask.sum()),
            **_metrics(names[eval_mask], pred, classes),
        }
    else:
        _, counts = np.unique(names[train_mask], return_counts=True)
        # As many folds as the commonest class allows: one rare class (a single example) used
        # to leave the whole round without a figure; now that class alone scores badly.
        folds = int(min(5, counts.max())) if len(counts) > 1 else 0
        if folds >= 2 and int(train_mask.sum()) >= 2 * folds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "least populated class ..."
                cv_pred = cross_val_predict(
                    new_head(params),
                    X[train_mask],
                    names[train_mask],
                    cv=StratifiedKFold(folds, shuffle=True, random_state=0),
                )
            metrics = {
                "evaluation": f"{folds}-fold cross-validation (too few random labels)",
                "n_eval": int(train_mask.sum()),
                **_metrics(names[train_mask], np.asarray(cv_pred), classes),
            }
        else:
            metrics = {
                "evaluation": "none (too few training items for cross-validation)",
                "n_eval": 0,
                "macro_f1": None,
            }
    metrics["n_train"] = int(train_mask.sum())
    metrics["class_counts"] = {c: int((names == c).sum()) for c in ts.classes}
    metrics["label_sources"] = label_sources
    metrics["warm_start"] = warm_started
    log(f"evaluated: macro-F1 {metrics.get('macro_f1')} ({metrics['evaluation']})", 0.55)
    thresholds, thresholds_from = _operating_thresholds(
        head, params, X, names, eval_mask, train_mask, classes, settings_now.target_precision
    )
    log(f"operating thresholds for precision {settings_now.target_precision}: {thresholds_from}")
    comparison: dict[str, Any] | None = None
    promote, guard = True, "no champion yet"
    if champion is not None:
        golden_pos = [(pos[i], c) for i, c in sorted(golden.items()) if i in pos]
        if golden_pos and champion_artifact is not None:
            old_head = load_head(settings, champion.version, champion_artifact)
            gx = vecs[[p for p, _ in golden_pos]]
            reference = np.asarray([c for _, c in golden_pos], dtype=object)
            old_classes = [str(c) for c in old_head.classes_]
            all_classes = sorted(set(reference.tolist()) | set(old_classes) | set(classes))
            comparison = compare_models(
                reference,
                Scored(
                    champion.version,
                    align(score_vectors(old_head, gx), old_classes, all_classes),
                    champion_thresholds,
                ),
                Scored(version, align(score_vectors(head, gx), classes, all_classes), thresholds),
                all_classes,
                settings_now.promotion_rule,
            )
            comparison["evaluation_sets"] = golden_names
            promote = bool(comparison["promote"])
            guard = (
                f"{'promoted' if promote else f'kept champion v{champion.version}'} by the "
                f"promotion rule on frozen evaluation sets {', '.join(golden_names)} "
                f"({comparison['n_items']} items): {comparison['reason']}; prediction flip rate "
                f"{comparison['flip_rate']:.1%}"
            )
        else:
            promote, old_rule = _guard(settings, champion, metrics, X, names, eval_mask, classes)
            why = "no frozen evaluation set" if not golden else "no frozen item has a vector"
            guard = f"{why}; by the old rule (macro-F1 on held-out random labels): {old_rule}"
    log(f"guard: {guard}", 0.6)
    model_lineage = lineage(
        encoders,
        item_ids=item_ids[train_mask],
        labels=names[train_mask],
        head=params["name"],
        params=params,
        held_out=int(held.sum()),
        thresholds_from=thresholds_from,
    )
    out = model_dir(settings, project, version)
    private_dir(out)
    joblib.dump(head, out / "head.joblib")
    (out / "classes.json").write_text(json.dumps(classes))
    with engine_scope(engine, default_engine) as batch_engine:
        log(f"scoring the pool ({batch_engine.name} engine)", 0.65)
        # In this process the head in memory is used; elsewhere each worker loads the file
        # just written, through the same check as every other load.
        spec = PoolScoring(
            settings,
            space_id,
            score_vectors,
            partial(loaded, head)
            if batch_engine.in_process
            else partial(load_head, settings, version, str(out / "head.joblib")),
            database=db if batch_engine.in_process else None,
        )
        scored_ids, scores = score_pool(batch_engine, spec, ids)
    np.save(out / "scores.npy", scores)
    np.save(out / "item_ids.npy", scored_ids)
    for f in out.iterdir():  # trained on reviewed content: for the owner only
        private_file(f)
    with db.sessions.begin() as s:
        # A worker that stalled past its heartbeat and lost the round commits no model.
        log.confirm_claim(s)
        project = get_project(s, project_name)
        mv = ModelVersion(
            project_id=project_id,
            version=version,
            round_id=round_id,
            parent_id=champion.id if champion else None,
            head=params["name"],
            params=params,
            classes=ts.classes,
            metrics=metrics | {"guard": guard},
            calibrated=calibrated,
            calibration_note=note,
            space_id=space_id,
            trained_on=int(train_mask.sum()),
            artifact_path=str(out / "head.joblib"),
            scores_path=str(out / "scores.npy"),
            status=ModelStatus.candidate,
            thresholds=thresholds,
            lineage=model_lineage,
            comparison=comparison,
        )
        s.add(mv)
        s.flush()
        if promote:
            # Demote, flush, then promote, all in this transaction: the database allows one
            # champion per project (uq_model_versions_one_champion) at every statement.
            if champion is not None:
                s.get_one(ModelVersion, champion.id).status = ModelStatus.retired
                s.flush()
            mv.status = ModelStatus.champion
        record_event(
            s,
            Actor.system(),
            "model.trained",
            project_id=project_id,
            entity_type="model_version",
            entity_id=version,
            details={
                "round": round_number,
                "promoted": promote,
                "guard": guard,
                "macro_f1": metrics.get("macro_f1"),
                "labels_snapshot_sha256": model_lineage["labels_snapshot_sha256"],
            },
        )
        mv_id = mv.id
    log(f"model version {version} {'promoted' if promote else 'kept as candidate'}", 0.8)
    return mv_id


def _operating_thresholds(
    head: Any,
    params: dict[str, Any],
    X: np.ndarray,
    names: np.ndarray,
    eval_mask: np.ndarray,
    train_mask: np.ndarray,
    classes: list[str],
    target: float,
) -> tuple[dict[str, Any], str]:
    """Per class thresholds for the target precision, on the round's validation split: the
    random holdout when it is big enough, else out-of-fold scores of the training items (an
    uncalibrated head's; the head is uncalibrated too then: calibration needs more random
    labels than the holdout does). Never on an evaluation set: their items are not here."""
    if int(eval_mask.sum()) >= MIN_EVAL_ITEMS:
        proba = np.asarray(head.predict_proba(X[eval_mask]))
        return (
            choose_thresholds(names[eval_mask], proba, classes, target),
            f"random holdout ({int(eval_mask.sum())} items)",
        )
    _, counts = np.unique(names[train_mask], return_counts=True)
    # A rare class (one example) must not cost every other class its threshold: the folds are
    # as many as the commonest class allows; a fold's head that never saw a rare class scores
    # it 0 (scikit-learn fills the column), which only makes that class's threshold cautious.
    folds = int(min(5, counts.max())) if len(counts) > 1 else 0
    if folds < 2 or int(train_mask.sum()) < 2 * folds:
        return {}, "none (too few training items for out-of-fold scores)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only 1 member"
        warnings.simplefilter("ignore", RuntimeWarning)
        proba = cross_val_predict(
            new_head(params),
            X[train_mask],
            names[train_mask],
            cv=StratifiedKFold(folds, shuffle=True, random_state=0),
            method="predict_proba",
        )
    return (
        choose_thresholds(names[train_mask], np.asarray(proba), classes, target),
        f"{folds}-fold out-of-fold scores of the training items",
    )


def _guard(
    settings: Settings,
    champion: ModelVersion,
    metrics: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    eval_mask: np.ndarray,
    classes: list[str],
) -> tuple[bool, str]:
    """Promote unless the new head is worse than the champion on the same held-out labels."""
    if int(eval_mask.sum()) < MIN_EVAL_ITEMS:
        return True, "promoted: too few held-out random labels to compare with the champion"
    if list(champion.classes) != classes:
        return True, "promoted: the set of classes changed since the champion"
    old = load_head(settings, champion.version, champion.artifact_path)
    old_f1 = _metrics(y[eval_mask], old.predict(X[eval_mask]), classes)["macro_f1"]
    new_f1 = metrics["macro_f1"]
    if new_f1 < old_f1:
        return False, f"kept champion v{champion.version}: macro-F1 {new_f1} < {old_f1}"
    return True, f"promoted: macro-F1 {new_f1} >= champion v{champion.version}'s {old_f1}"


def score_vectors(head: Any, vectors: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    out = []
    for start in range(0, len(vectors), chunk):
        out.append(np.asarray(head.predict_proba(vectors[start : start + chunk]), dtype=np.float32))
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out)


def champion(session: Session, project: Project) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(
            ModelVersion.project_id == project.id, ModelVersion.status == ModelStatus.champion
        )
    )


def list_model_versions(session: Session, project: Project, actor: Actor) -> list[ModelVersion]:
    """The project's model versions, newest first, for those who may open it."""
    require_member(session, actor, project)
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project.id)
            .order_by(ModelVersion.version.desc())
        )
    )
