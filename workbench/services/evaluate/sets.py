"""Evaluation sets: made from a label file (frozen at once) or sampled from the pool and reviewed
with overlap (frozen once every member has its final label). A frozen set never changes; a new
version of a name is a new set. Members are never trained on (members.py, train/train.py).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from workbench.db.models import (
    Adjudication,
    AdjudicationStatus,
    EntryKind,
    EntryStatus,
    EvaluationMember,
    EvaluationSet,
    EvaluationSetKind,
    EvaluationSetStatus,
    Item,
    Label,
    Project,
    QueueEntry,
    Role,
)
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, Problem, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.evaluate.members import EVALUATION_STRATEGY, held_out_item_ids
from workbench.services.labels.import_ import LabelRow, parse_label_file
from workbench.services.labels.validate import item_facts_by_external_id
from workbench.services.membership import require_project_role
from workbench.services.projects import project_settings
from workbench.services.queue.enqueue import NewEntry, enqueue, labelled_item_ids, queued_item_ids
from workbench.services.train.train import (
    aggregated_training_labels,
    counted_labels,
    label_class,
    majority_training_labels,
    training_set,
)

# Sampled members are queued ahead of selected work: a golden set is only useful once complete.
EVALUATION_PRIORITY = 1000.0
DEFAULT_OVERLAP = 3


def get_evalset(
    session: Session, project: Project, name: str, version: int | None = None
) -> EvaluationSet:
    """The named set (its latest version unless `version` is given), or a NotFoundError."""
    stmt = select(EvaluationSet).where(
        EvaluationSet.project_id == project.id, EvaluationSet.name == name
    )
    if version is not None:
        stmt = stmt.where(EvaluationSet.version == version)
    found = session.scalar(stmt.order_by(EvaluationSet.version.desc()).limit(1))
    if found is None:
        which = f"{name!r} version {version}" if version is not None else repr(name)
        raise NotFoundError(f"no evaluation set {which} in project {project.name!r}")
    return found


def parse_set_ref(ref: str) -> tuple[str, int | None]:
    """`golden` or `golden@2` (a given version)."""
    name, _, version = ref.partition("@")
    if version and not version.isdigit():
        raise WorkbenchError(f"evaluation set {ref!r}: the version after '@' must be a number")
    return name, int(version) if version else None


def _next_version(session: Session, project: Project, name: str) -> int:
    latest = session.scalar(
        select(func.max(EvaluationSet.version)).where(
            EvaluationSet.project_id == project.id, EvaluationSet.name == name
        )
    )
    open_set = session.scalar(
        select(EvaluationSet).where(
            EvaluationSet.project_id == project.id,
            EvaluationSet.name == name,
            EvaluationSet.status.in_([EvaluationSetStatus.draft, EvaluationSetStatus.sampling]),
        )
    )
    if open_set is not None:
        raise WorkbenchError(
            f"evaluation set {name!r} version {open_set.version} is still {open_set.status.value}; "
            "freeze or retire it before making a new version"
        )
    return (latest or 0) + 1


def _check_name(name: str) -> None:
    if not name or len(name) > 128 or "@" in name or not name.strip() == name:
        raise WorkbenchError(
            f"evaluation set name {name!r} is not allowed (1-128 characters, no '@', no blanks "
            "around it)"
        )


@dataclass
class _FileLabel:
    """A label-file row in the shape the training aggregation reads."""

    item_id: int
    reviewer_id: int
    decision: Any
    policies: list[str]


def reference_classes_from_rows(
    rows: list[LabelRow], item_ids: dict[str, int], method: str
) -> dict[int, str]:
    """Item -> reference class, several reviewers per item aggregated as training labels are
    (the project's `label_aggregation`); unsure-only and tied items get none."""
    reviewers: dict[str, int] = {}
    labels = [
        _FileLabel(
            item_ids[r.external_id],
            reviewers.setdefault(r.reviewer, len(reviewers)),
            r.data.decision,
            list(r.data.policies),
        )
        for r in rows
    ]
    # Same rule as training (train.py), fed rows of the file instead of stored labels.
    as_labels = cast(list[Label], labels)
    if method == "majority_ties_dropped":
        per_item = majority_training_labels(as_labels)
    else:
        per_item = aggregated_training_labels(as_labels, method)
    return {i: c for i, (c, _) in per_item.items()}


def create_from_labels(
    session: Session, project: Project, name: str, path: Path, actor: Actor
) -> dict[str, Any]:
    """A frozen set from a label file; all or nothing: any bad row or item not in the project
    is reported with its file, line and external id, and nothing is written."""
    require_project_role(
        session, actor, project, Role.lead, Role.engineer, action="create evaluation sets"
    )
    _check_name(name)
    rows, problems, n_rows = parse_label_file(path, project.name)
    facts = item_facts_by_external_id(session, project, (r.external_id for r in rows))
    for r in rows:
        if r.external_id not in facts:
            problems.append(
                Problem(
                    reason=f"no item with this external_id in project {project.name!r}",
                    line=r.line,
                    external_id=r.external_id,
                    field="external_id",
                    file=str(path),
                )
            )
    if problems:
        raise WorkbenchError(
            f"{path}: {len(problems)} problem(s); no evaluation set was made", problems
        )
    if not rows:
        raise WorkbenchError(f"{path}: no labels in the file; no evaluation set was made")
    item_ids = {eid: f.id for eid, f in facts.items()}
    method = project_settings(project).label_aggregation
    references = reference_classes_from_rows(rows, item_ids, method)
    if not references:
        raise WorkbenchError(
            f"{path}: no item has a reference class (only unsure labels or ties); no evaluation "
            "set was made"
        )
    version = _next_version(session, project, name)
    now = utcnow()
    es = EvaluationSet(
        project_id=project.id,
        name=name,
        version=version,
        kind=EvaluationSetKind.labels_file,
        status=EvaluationSetStatus.frozen,
        source={
            "file": path.name,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": n_rows,
            "aggregation": method,
        },
        created_by=actor.name,
        created_at=now,
        frozen_at=now,
    )
    session.add(es)
    session.flush()
    languages = {
        int(i): lang
        for i, lang in session.execute(
            select(Item.id, Item.language).where(Item.id.in_(list(references)))
        )
    }
    session.add_all(
        EvaluationMember(
            set_id=es.id, item_id=i, reference=c, stratum=languages.get(i) or "unknown"
        )
        for i, c in sorted(references.items())
    )
    session.flush()
    left_out = len(set(item_ids[r.external_id] for r in rows)) - len(references)
    record_event(
        session,
        actor,
        "evalset.created",
        project_id=project.id,
        entity_type="evaluation_set",
        entity_id=es.id,
        details={"name": name, "version": version, "items": len(references), "file": path.name},
    )
    return {**evalset_summary(session, es), "left_out_without_reference": left_out}


def _stratum(item: tuple[int, str | None, list[str]]) -> str:
    _, language, modalities = item
    return f"{language or 'unknown'}/{(sorted(modalities) or ['none'])[0]}"


def proportional_allocation(sizes: dict[str, int], n: int) -> dict[str, int]:
    """n split over strata in proportion to their sizes (largest remainders get the rest)."""
    total = sum(sizes.values())
    exact = {k: n * v / total for k, v in sizes.items()}
    out = {k: int(np.floor(v)) for k, v in exact.items()}
    rest = n - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[:rest]:
        out[k] += 1
    return out


def sample_evalset(
    session: Session,
    project: Project,
    name: str,
    n: int,
    actor: Actor,
    *,
    overlap: int = DEFAULT_OVERLAP,
    seed: int = 0,
) -> dict[str, Any]:
    """Draw a stratified random sample (language x modality, proportional) of the unlabelled
    pool and queue it for review by `overlap` reviewers each; the set freezes when complete."""
    require_project_role(session, actor, project, Role.lead, action="sample evaluation sets")
    _check_name(name)
    if n < 1:
        raise WorkbenchError(f"--n must be at least 1, found {n}")
    if overlap < 1:
        raise WorkbenchError(f"--overlap must be at least 1, found {overlap}")
    excluded = (
        labelled_item_ids(session, project)
        | queued_item_ids(session, project)
        | held_out_item_ids(session, project)
    )
    rows = [
        (int(i), lang, list(mods or []))
        for i, lang, mods in session.execute(
            select(Item.id, Item.language, Item.modalities).where(
                Item.project_id == project.id, Item.duplicate_of_id.is_(None)
            )
        )
        if int(i) not in excluded
    ]
    if n > len(rows):
        raise WorkbenchError(
            f"a sample of {n} is larger than the pool of {len(rows)} unlabelled, unqueued items "
            f"not already in an evaluation set in project {project.name!r}"
        )
    version = _next_version(session, project, name)
    strata: dict[str, list[int]] = defaultdict(list)
    for row in sorted(rows):
        strata[_stratum(row)].append(row[0])
    allocation = proportional_allocation({k: len(v) for k, v in strata.items()}, n)
    rng = np.random.default_rng(seed)
    chosen: list[tuple[int, str]] = []
    for key in sorted(strata):
        if allocation[key]:
            picks = rng.choice(strata[key], size=allocation[key], replace=False)
            chosen.extend((int(i), key) for i in picks)
    es = EvaluationSet(
        project_id=project.id,
        name=name,
        version=version,
        kind=EvaluationSetKind.sample,
        status=EvaluationSetStatus.sampling,
        # Each stratum's pool size with its allocation: the design weights N_h / n_h that an
        # estimate over the whole pool needs (the DSA report's accuracy figures).
        source={
            "n": n,
            "overlap": overlap,
            "seed": seed,
            "pool": len(rows),
            "strata": allocation,
            "stratum_sizes": {k: len(v) for k, v in sorted(strata.items())},
        },
        created_by=actor.name,
    )
    session.add(es)
    session.flush()
    session.add_all(
        EvaluationMember(set_id=es.id, item_id=i, reference=None, stratum=s) for i, s in chosen
    )
    reason = f"evaluation set {name} v{version}: stratified random sample"
    enqueue(
        session,
        project,
        [
            NewEntry(
                item_id=i,
                kind=EntryKind.overlap if overlap > 1 else EntryKind.selected,
                strategy=EVALUATION_STRATEGY,
                reason=reason,
                priority=EVALUATION_PRIORITY,
                overlap_target=overlap,
            )
            for i, _ in chosen
        ],
        actor,
    )
    record_event(
        session,
        actor,
        "evalset.sampled",
        project_id=project.id,
        entity_type="evaluation_set",
        entity_id=es.id,
        details={"name": name, "version": version, "n": n, "overlap": overlap, "seed": seed},
    )
    return evalset_summary(session, es)


def _members(session: Session, es: EvaluationSet) -> list[EvaluationMember]:
    return list(
        session.scalars(
            select(EvaluationMember)
            .where(EvaluationMember.set_id == es.id)
            .order_by(EvaluationMember.item_id)
        )
    )


def final_labels(session: Session, project: Project, es: EvaluationSet) -> dict[int, str]:
    """Members of a sampled set whose label is final: reviewed by `overlap` people (or settled by
    an adjudicated or gold answer), no open adjudication, and a training label by the project's
    rule (adjudication > gold > aggregate)."""
    members = {m.item_id for m in _members(session, es)}
    overlap = int(es.source.get("overlap", 1))
    votes = Counter(
        lab.item_id
        for lab in counted_labels(session, project)
        if lab.item_id in members and label_class(lab) is not None
    )
    open_cases = set(
        session.scalars(
            select(Adjudication.item_id).where(
                Adjudication.project_id == project.id,
                Adjudication.status == AdjudicationStatus.open,
            )
        )
    )
    try:
        ts = training_set(session, project)
    except WorkbenchError:  # no usable labels in the project yet
        return {}
    out: dict[int, str] = {}
    for i, c, source in zip(ts.item_ids.tolist(), ts.y.tolist(), ts.sources, strict=True):
        settled = source in ("adjudication", "gold") or votes[i] >= overlap
        if i in members and i not in open_cases and settled:
            out[int(i)] = ts.classes[int(c)]
    return out


def try_freeze(session: Session, project: Project, es: EvaluationSet, actor: Actor) -> bool:
    """Freeze a sampling set whose members all have final labels; True when it froze."""
    if es.status != EvaluationSetStatus.sampling:
        return False
    members = _members(session, es)
    final = final_labels(session, project, es)
    if len(final) < len(members):
        return False
    for m in members:
        m.reference = final[m.item_id]
    es.status = EvaluationSetStatus.frozen
    es.frozen_at = utcnow()
    session.flush()
    record_event(
        session,
        actor,
        "evalset.frozen",
        project_id=project.id,
        entity_type="evaluation_set",
        entity_id=es.id,
        details={"name": es.name, "version": es.version, "items": len(members)},
    )
    return True


def freeze_evalset(
    session: Session, project: Project, name: str, actor: Actor, version: int | None = None
) -> dict[str, Any]:
    require_project_role(
        session, actor, project, Role.lead, Role.engineer, action="freeze evaluation sets"
    )
    es = get_evalset(session, project, name, version)
    if es.status == EvaluationSetStatus.frozen:
        return evalset_summary(session, es)
    if es.status == EvaluationSetStatus.retired:
        raise WorkbenchError(f"evaluation set {name!r} version {es.version} is retired")
    if not try_freeze(session, project, es, actor):
        total = len(_members(session, es))
        done = len(final_labels(session, project, es))
        raise WorkbenchError(
            f"evaluation set {name!r} version {es.version} cannot freeze yet: {total - done} of "
            f"{total} items still lack a final label (reviews by {es.source.get('overlap')} "
            "people and no open adjudication)"
        )
    return evalset_summary(session, es)


def retire_evalset(
    session: Session, project: Project, name: str, actor: Actor, version: int | None = None
) -> dict[str, Any]:
    """Retire a set: kept (old reports stay explainable), its open review entries cancelled."""
    require_project_role(
        session, actor, project, Role.lead, Role.engineer, action="retire evaluation sets"
    )
    es = get_evalset(session, project, name, version)
    if es.status == EvaluationSetStatus.retired:
        return evalset_summary(session, es)
    members = [m.item_id for m in _members(session, es)]
    cancelled = session.execute(
        update(QueueEntry)
        .where(
            QueueEntry.project_id == project.id,
            QueueEntry.item_id.in_(members),
            QueueEntry.strategy == EVALUATION_STRATEGY,
            QueueEntry.status == EntryStatus.pending,
        )
        .values(status=EntryStatus.cancelled)
    )
    es.status = EvaluationSetStatus.retired
    es.retired_at = utcnow()
    session.flush()
    record_event(
        session,
        actor,
        "evalset.retired",
        project_id=project.id,
        entity_type="evaluation_set",
        entity_id=es.id,
        details={"name": es.name, "version": es.version, "entries_cancelled": cancelled.rowcount},  # type: ignore[attr-defined]
    )
    return evalset_summary(session, es)


def show_evalset(
    session: Session, project: Project, name: str, actor: Actor, version: int | None = None
) -> dict[str, Any]:
    """A set's summary; a sampling set that has become complete is frozen first."""
    es = get_evalset(session, project, name, version)
    try_freeze(session, project, es, actor)
    out = evalset_summary(session, es)
    if es.status == EvaluationSetStatus.sampling:
        out["final_labels"] = len(final_labels(session, project, es))
    return out


def evalset_summary(session: Session, es: EvaluationSet) -> dict[str, Any]:
    members = _members(session, es)
    return {
        "name": es.name,
        "version": es.version,
        "kind": es.kind.value,
        "status": es.status.value,
        "n_items": len(members),
        "classes": dict(sorted(Counter(m.reference for m in members if m.reference).items())),
        "strata": dict(sorted(Counter(m.stratum or "unknown" for m in members).items())),
        "source": es.source,
        "created_by": es.created_by,
        "created_at": es.created_at.isoformat() if es.created_at else None,
        "frozen_at": es.frozen_at.isoformat() if es.frozen_at else None,
        "retired_at": es.retired_at.isoformat() if es.retired_at else None,
    }


def list_evalsets(session: Session, project: Project) -> list[dict[str, Any]]:
    sets = session.scalars(
        select(EvaluationSet)
        .where(EvaluationSet.project_id == project.id)
        .order_by(EvaluationSet.name, EvaluationSet.version)
    )
    return [evalset_summary(session, es) for es in sets]
