"""Suspected mislabels: confident learning (cleanlab) on out-of-fold predicted probabilities of
the project's head, and the suspects sent back to review with a reason a person can read.

Why out of fold: a head scores the items it was trained on with the labels it was shown, so a
wrong label looks right to it. Each item is scored by a head that never saw it, and cleanlab
compares those probabilities with the given label, with a threshold per class (so a rare class
whose probabilities run low is not flagged wholesale).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.config import Settings
from workbench.db.database import Database
from workbench.db.models import EmbeddingSpace, EntryKind, EntryStatus, Item, QueueEntry, Role
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor, record_event, require_role
from workbench.services.membership import require_member
from workbench.services.projects import get_project
from workbench.services.queue.enqueue import NewEntry
from workbench.services.queue.enqueue import enqueue as add_to_queue
from workbench.services.train.heads import make_head
from workbench.services.train.train import champion, training_set
from workbench.services.vectors.spaces import FUSED, get_space, load_space_vectors

DEFAULT_FOLDS = 5
MIN_ITEMS = 10  # below this, out-of-fold heads learn from a handful of items: noise, not evidence
MIN_PER_CLASS = 2  # an item of a class with one item is never predicted by a head that saw it
# The same head `workbench train` fits when there is no champion yet (see train.train_round).
DEFAULT_HEAD: dict[str, Any] = {"name": "logistic", "class_weight": "balanced", "random_state": 0}
VECTOR_CHUNK = 10_000
STRATEGY = "mislabel"  # QueueEntry.strategy of the rereview entries this module makes
# Ahead of every selection batch (their priorities count down from the batch size, at most
# 100 000): a training label that is probably wrong costs more than one more new item.
REREVIEW_PRIORITY = 1_000_000.0

# What happened to a suspect in the queue.
SENT_BACK = "sent back to review"
ALREADY_QUEUED = "already in the queue"
SENT_BEFORE = "sent back before (a second look was already asked for)"
NOT_SENT = "not sent (report only)"
FINAL = "not sent: the label is an adjudicated decision or a gold answer"
# Training labels that are final: a second look is not what they need (a suspect among them
# may mean the gold answer or the decision deserves a lead's attention, hence reported).
FINAL_SOURCES = ("adjudication", "gold")


@dataclass(frozen=True)
class SuspectedMislabel:
    """One item whose training label the out-of-fold head finds implausible."""

    item_id: int
    external_id: str
    given_label: str
    suggested_label: str  # the most probable class other than the given one
    suggested_probability: float
    label_quality: float  # cleanlab self-confidence: the probability of the given label
    reason: str
    queue: str  # one of SENT_BACK, ALREADY_QUEUED, SENT_BEFORE, NOT_SENT, FINAL


@dataclass
class MislabelReport:
    project: str
    head: str
    folds: int
    n_checked: int
    class_counts: dict[str, int]
    classes_left_out: dict[str, int] = field(default_factory=dict)
    n_without_vector: int = 0
    suspects: list[SuspectedMislabel] = field(default_factory=list)
    sent_back: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- the pure part: probabilities, issues, reasons --------------------------------------------


def effective_folds(class_counts: np.ndarray, folds: int) -> int:
    """Folds such that every class has an item in every fold (so in every training split).

    Stratified folds spread each class over the folds, but a class with fewer items than folds
    is missing from some training splits; a head trained there gives that class probability 0,
    which confident learning would read as "this label is certainly wrong". So the folds are
    cut down to the size of the smallest class (never below two).
    """
    return max(2, min(folds, int(np.min(class_counts))))


def out_of_fold_probabilities(
    X: np.ndarray, y: np.ndarray, head_params: dict[str, Any], folds: int, seed: int = 0
) -> np.ndarray:
    """P(class) of each item from a head trained on the other folds; columns are 0..K-1.

    `y` must hold codes 0..K-1, each with at least `folds` items (see `effective_folds`).
    """
    probabilities = cross_val_predict(
        make_head(**head_params),
        X,
        y,
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        method="predict_proba",
    )
    return np.asarray(probabilities, dtype=np.float64)


def label_issues(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices of suspected label errors, worst first; label quality of every item).

    cleanlab's confident learning (`filter.find_label_issues`, pruning by noise rate), ranked by
    self-confidence, and `rank.get_label_quality_scores` (self-confidence, the probability of
    the given label). One process: the machine is shared, and the data is small.
    """
    # cleanlab is imported here only: it adds about 0.2 s to every importer of this module.
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    issues = find_label_issues(
        labels, pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    quality = get_label_quality_scores(labels, pred_probs)
    return np.asarray(issues, dtype=np.int64), np.asarray(quality, dtype=np.float64)


def describe_suspect(
    given: str, probabilities: np.ndarray, classes: list[str], quality: float
) -> tuple[str, float, str]:
    """(suggested class, its probability, the reason shown to the lead and the reviewer)."""
    given_code = classes.index(given)
    others = probabilities.copy()
    others[given_code] = -np.inf
    best = int(np.argmax(others))
    p = float(probabilities[best])
    reason = (
        f"suspected mislabel: labelled {given}, model out-of-fold gives {classes[best]} "
        f"{p:.2f}; label quality {quality:.2f}"
    )
    return classes[best], p, reason


# --- the service -------------------------------------------------------------------------------


def _labelled_vectors(
    session: Session, settings: Settings, space: EmbeddingSpace, item_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, vectors) of the labelled items only, ordered by item id; read in chunks so
    no statement carries more bound ids than a driver accepts (Postgres: 65 535)."""
    ids, vecs = [], []
    for start in range(0, len(item_ids), VECTOR_CHUNK):
        chunk = sorted(int(i) for i in item_ids[start : start + VECTOR_CHUNK])
        got_ids, got_vecs = load_space_vectors(session, settings, space, chunk)
        ids.append(got_ids)
        vecs.append(got_vecs)
    if not ids:
        return np.empty(0, dtype=np.int64), np.empty((0, space.dim), dtype=np.float32)
    return np.concatenate(ids), np.concatenate(vecs)


def find_mislabels(
    db: Database,
    project_name: str,
    actor: Actor,
    *,
    folds: int = DEFAULT_FOLDS,
    enqueue: bool = True,
    only: set[str] | None = None,
    seed: int = 0,
) -> MislabelReport:
    """Look for training labels that the project's head, trained without them, contradicts.

    The training labels are those `workbench train` uses (one per item, aggregated); the
    vectors those of the fused space; the head the champion's kind, else the default logistic
    head. With `enqueue`, each suspect goes back to review as a `rereview` queue entry with
    its reason, once: items with an open entry, sent back as a suspect before, or whose label
    is final (adjudicated, gold) are left, and the report says which. `only` (external ids)
    sends back just those of the suspects: the ones a lead saw listed and confirmed.
    """
    require_role(actor, Role.lead, Role.engineer, Role.admin, action="look for suspected mislabels")
    if folds < 2:
        raise WorkbenchError(f"--folds must be at least 2, got {folds}")
    with db.sessions() as s:
        project = get_project(s, project_name)
        require_member(s, actor, project)
        ts = training_set(s, project)
        space = get_space(s, project, FUSED)
        ids, vecs = _labelled_vectors(s, db.settings, space, ts.item_ids)
        model = champion(s, project)
        head_params = dict(model.params) if model is not None and model.params else DEFAULT_HEAD
    # Where each training label came from (aggregation, adjudication, gold); getattr because
    # older TrainingSets have no sources.
    source_of = dict(zip(ts.item_ids.tolist(), getattr(ts, "sources", None) or [], strict=False))
    pos = {int(i): r for r, i in enumerate(ids)}
    has_vector = np.array([int(i) in pos for i in ts.item_ids], dtype=bool)
    item_ids, codes = ts.item_ids[has_vector], ts.y[has_vector]
    per_class = np.bincount(codes, minlength=len(ts.classes))
    counts = {c: int(per_class[k]) for k, c in enumerate(ts.classes) if per_class[k]}
    left_out = {c: n for c, n in counts.items() if n < MIN_PER_CLASS}
    kept = [c for c in ts.classes if counts.get(c, 0) >= MIN_PER_CLASS]
    keep = np.isin(codes, [ts.classes.index(c) for c in kept])
    item_ids, codes = item_ids[keep], codes[keep]
    if len(item_ids) < MIN_ITEMS or len(kept) < 2:
        have = ", ".join(f"{c} {n}" for c, n in sorted(counts.items())) or "none"
        raise WorkbenchError(
            f"need at least {MIN_ITEMS} labelled, embedded items in at least two classes of "
            f"{MIN_PER_CLASS} or more items each to look for mislabels; project "
            f"{project_name!r} has {len(item_ids)} usable items in {len(kept)} such classes "
            f"(training labels with vectors by class: {have})"
        )
    # Dense codes over the kept classes: cleanlab wants labels 0..K-1 and K probability columns.
    y = np.searchsorted(np.array([ts.classes.index(c) for c in kept]), codes)
    n_folds = effective_folds(np.bincount(y), folds)
    X = vecs[[pos[int(i)] for i in item_ids]]
    pred_probs = out_of_fold_probabilities(X, y, head_params, n_folds, seed)
    issues, quality = label_issues(y, pred_probs)

    report = MislabelReport(
        project=project_name,
        head=str(head_params.get("name", "logistic")),
        folds=n_folds,
        n_checked=len(item_ids),
        class_counts={c: counts[c] for c in kept},
        classes_left_out=left_out,
        n_without_vector=int((~has_vector).sum()),
    )
    if n_folds < folds:
        smallest = kept[int(np.argmin(np.bincount(y)))]
        report.notes.append(
            f"{n_folds} folds instead of {folds}: class {smallest!r} has only "
            f"{int(np.bincount(y).min())} items, and every class must be in every training fold"
        )
    if left_out:
        report.notes.append(
            "not checked (fewer than "
            f"{MIN_PER_CLASS} items in the class): "
            + ", ".join(f"{c} ({n})" for c, n in sorted(left_out.items()))
        )
    if report.n_without_vector:
        report.notes.append(
            f"{report.n_without_vector} labelled items have no {FUSED} vector yet and were not "
            f"checked (run `workbench embed --project {project_name}`)"
        )

    candidates = []
    for row in issues.tolist():
        given = kept[int(y[row])]
        suggested, p, reason = describe_suspect(given, pred_probs[row], kept, float(quality[row]))
        candidates.append((int(item_ids[row]), given, suggested, p, float(quality[row]), reason))
    if not candidates:
        return report

    with db.sessions.begin() as s:
        project = get_project(s, project_name)
        suspect_ids = [c[0] for c in candidates]
        external = dict(
            s.execute(select(Item.id, Item.external_id).where(Item.id.in_(suspect_ids))).all()
        )
        status = {i: NOT_SENT for i in suspect_ids}
        if enqueue:
            open_ids = set(
                s.scalars(
                    select(QueueEntry.item_id).where(
                        QueueEntry.item_id.in_(suspect_ids),
                        QueueEntry.status == EntryStatus.pending,
                    )
                )
            )
            sent_before = set(
                s.scalars(
                    select(QueueEntry.item_id).where(
                        QueueEntry.item_id.in_(suspect_ids),
                        QueueEntry.kind == EntryKind.rereview,
                        QueueEntry.strategy == STRATEGY,
                    )
                )
            )
            new = []
            for item_id, _given, _suggested, _p, q, reason in candidates:
                if only is not None and external.get(item_id) not in only:
                    continue  # not among the suspects the lead confirmed
                if source_of.get(item_id) in FINAL_SOURCES:
                    status[item_id] = FINAL
                elif item_id in open_ids:
                    status[item_id] = ALREADY_QUEUED
                elif item_id in sent_before:
                    status[item_id] = SENT_BEFORE
                else:
                    new.append(
                        NewEntry(
                            item_id=item_id,
                            kind=EntryKind.rereview,
                            strategy=STRATEGY,
                            score=q,
                            reason=reason,
                            priority=REREVIEW_PRIORITY + (1.0 - q),
                        )
                    )
            rows = add_to_queue(s, project, new, actor) if new else []
            by_item = {c[0]: c for c in candidates}
            for entry in rows:
                status[entry.item_id] = SENT_BACK
                _, given, suggested, _p, q, reason = by_item[entry.item_id]
                record_event(
                    s,
                    actor,
                    "quality.mislabel_sent_back",
                    project_id=project.id,
                    entity_type="item",
                    entity_id=entry.item_id,
                    details={
                        "external_id": external.get(entry.item_id),
                        "queue_entry": entry.id,
                        "given": given,
                        "suggested": suggested,
                        "label_quality": round(q, 4),
                        "reason": reason,
                    },
                )
            # Items that got an open entry between our check and enqueue's own.
            for item_id in {e.item_id for e in new} - {r.item_id for r in rows}:
                status[item_id] = ALREADY_QUEUED
        report.sent_back = sum(1 for v in status.values() if v == SENT_BACK)
        report.suspects = [
            SuspectedMislabel(
                item_id=item_id,
                external_id=str(external.get(item_id, item_id)),
                given_label=given,
                suggested_label=suggested,
                suggested_probability=round(p, 4),
                label_quality=round(q, 4),
                reason=reason,
                queue=status[item_id],
            )
            for item_id, given, suggested, p, q, reason in candidates
        ]
    return report
