"""Adjudication: items whose reviewers disagree (or that sit in a slice with low agreement) go
to a queue of cases; a lead sees every label and rationale side by side and records the final
decision with a note, which then is the item's training label.

What counts as a label and as disagreement follows agreement.py: the counted labels (current,
made by people, the latest per reviewer and item), and an item disagrees when two or more
reviewers' counted labels differ on the decision or on the primary (first) policy code, where
no code and `none` are the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.db.models import (
    Adjudication,
    AdjudicationReason,
    AdjudicationStatus,
    Decision,
    Item,
    Label,
    Project,
    Role,
    User,
)
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.labels.current import HUMAN_SOURCES, current_labels_query
from workbench.services.membership import require_project_role
from workbench.services.projects import project_settings
from workbench.services.quality.agreement import (
    COUNTED_LABELS,
    UNKNOWN,
    SliceDimension,
    agreement_from_frame,
    load_counted_labels,
    majority_policy,
)
from workbench.services.quality.gold import (
    Answer,
    answer_choices,
    checked_answer,
    gold_answers,
)
from workbench.services.report.hooks import adjudication_resolved

NO_VIOLATION = "none"
# Slices whose alpha is judged: who labelled (reviewer) and when (week) are about the people
# and the calendar, not about the content, so a low alpha there is no reason to re-decide items.
SLICE_DIMENSIONS = (SliceDimension.policy, SliceDimension.language, SliceDimension.modality)


# --- finding the items -----------------------------------------------------------------------


def disagreeing_items(labels: pd.DataFrame) -> dict[int, str]:
    """Items whose counted labels (two or more reviewers) differ on decision or primary policy,
    with a short description of the split: item id -> "decision: violating 1, not_violating 1"."""
    if labels.empty:
        return {}
    frame = labels[["item_id", "reviewer", "decision", "primary_policy"]].copy()
    frame["policy"] = frame["primary_policy"].where(
        frame["primary_policy"].notna() & (frame["primary_policy"] != NO_VIOLATION), None
    )
    frame["policy"] = frame["policy"].fillna("(none)")
    grouped = frame.groupby("item_id")
    stats = pd.DataFrame(
        {
            "n": grouped["reviewer"].nunique(),
            "decisions": grouped["decision"].nunique(),
            "policies": grouped["policy"].nunique(),
        }
    )
    split = stats[(stats["n"] >= 2) & ((stats["decisions"] > 1) | (stats["policies"] > 1))]
    if split.empty:
        return {}
    # Tallies by one groupby over the split items (not a filter per item: there may be many).
    sub = frame[frame["item_id"].isin(split.index)]
    tallies: dict[str, dict[int, list[str]]] = {}
    for column in ("decision", "policy"):
        per_item: dict[int, list[str]] = {}
        counts = sub.groupby(["item_id", column]).size()
        for (item_id, value), n in sorted(counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            per_item.setdefault(int(item_id), []).append(f"{value} {n}")
        tallies[column] = per_item
    out: dict[int, str] = {}
    for item_id in split.index:
        parts = []
        if split.at[item_id, "decisions"] > 1:
            parts.append("decision: " + ", ".join(tallies["decision"][int(item_id)]))
        if split.at[item_id, "policies"] > 1:
            parts.append("policy: " + ", ".join(tallies["policy"][int(item_id)]))
        out[int(item_id)] = "; ".join(parts)
    return out


def _item_slices(labels: pd.DataFrame, dim: SliceDimension) -> dict[int, list[str]]:
    """Item id -> the slice value(s) it belongs to, as agreement.py slices them."""
    per_item = labels.drop_duplicates("item_id").set_index("item_id")
    if dim is SliceDimension.policy:
        return {int(i): [str(v)] for i, v in majority_policy(labels).items()}
    if dim is SliceDimension.language:
        return {int(i): [str(v)] for i, v in per_item["language"].fillna(UNKNOWN).items()}
    return {int(i): [str(m) for m in (v or [UNKNOWN])] for i, v in per_item["modalities"].items()}


def low_alpha_items(
    labels: pd.DataFrame, threshold: float, min_items: int
) -> tuple[dict[int, str], list[dict[str, Any]]]:
    """Items (with two or more counted labels) in a slice whose decision alpha is below
    `threshold`, judged only where the slice has at least `min_items` such items; and the
    slices found, lowest alpha first."""
    if labels.empty:
        return {}, []
    report = agreement_from_frame(labels, "decision", SLICE_DIMENSIONS, n_boot=0)
    low: list[dict[str, Any]] = []
    for dim_name, slices in report.get("by", {}).items():
        for value, fig in slices.items():
            alpha = fig["krippendorff_alpha"]
            if alpha is not None and fig["n_items"] >= min_items and alpha < threshold:
                low.append(
                    {"dimension": dim_name, "value": value, "alpha": alpha,
                     "n_items": fig["n_items"]}
                )  # fmt: skip
    low.sort(key=lambda x: x["alpha"])
    sizes = labels.groupby("item_id")["reviewer"].nunique()
    pairable = set(int(i) for i in sizes[sizes >= 2].index)
    out: dict[int, str] = {}
    for sl in low:
        membership = _item_slices(labels, SliceDimension(sl["dimension"]))
        for item_id, values in membership.items():
            if item_id in pairable and sl["value"] in values and item_id not in out:
                out[item_id] = f"{sl['dimension']}={sl['value']}, alpha {sl['alpha']:.3f}"
    return out, low


# --- the queue -------------------------------------------------------------------------------


def _closed_at_by_item(session: Session, project: Project) -> dict[int, datetime]:
    return {
        int(i): at
        for i, at in session.execute(
            select(Adjudication.item_id, func.max(Adjudication.closed_at))
            .where(
                Adjudication.project_id == project.id,
                Adjudication.status != AdjudicationStatus.open,
            )
            .group_by(Adjudication.item_id)
        ).all()
        if at is not None
    }


def _open_item_ids(session: Session, project: Project) -> set[int]:
    return set(
        session.scalars(
            select(Adjudication.item_id).where(
                Adjudication.project_id == project.id,
                Adjudication.status == AdjudicationStatus.open,
            )
        )
    )


def refresh_adjudication_queue(
    session: Session,
    project: Project,
    actor: Actor,
    *,
    slices: bool | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Open a case for each item that needs one; idempotent (one open case per item).

    Cases open for disagreeing items and, when `slices` (default: the project's
    `adjudicate_low_alpha_slices`), for items in a policy, language or modality slice whose
    decision alpha is below `adjudication_alpha_threshold`. Not reopened: active gold items
    (their answer is known), and items whose last case was closed after their newest counted
    label (the lead has seen every label there is).
    """
    require_project_role(
        session, actor, project, Role.lead, action="refresh the adjudication queue"
    )
    settings = project_settings(project)
    use_slices = settings.adjudicate_low_alpha_slices if slices is None else slices
    now = now or utcnow()
    # A lead who labelled an item disagrees like anyone else: the case decides the training
    # label, which counts everyone's labels (aggregation does too).
    labels = load_counted_labels(session, project, include_leads=True)
    found: dict[int, tuple[AdjudicationReason, str]] = {
        i: (AdjudicationReason.disagreement, detail)
        for i, detail in disagreeing_items(labels).items()
    }
    low_slices: list[dict[str, Any]] = []
    if use_slices:
        low, low_slices = low_alpha_items(
            labels, settings.adjudication_alpha_threshold, settings.adjudication_min_slice_items
        )
        for i, detail in low.items():
            found.setdefault(i, (AdjudicationReason.low_alpha, f"low-alpha slice {detail}"))
    gold = set(gold_answers(session, project))
    open_ids = _open_item_ids(session, project)
    closed_at = _closed_at_by_item(session, project)
    newest: dict[int, Any] = {}
    if not labels.empty:
        newest = {
            int(i): at
            for i, at in pd.to_datetime(labels["created_at"], utc=True)
            .groupby(labels["item_id"])
            .max()
            .items()
        }
    skipped = {"already_open": 0, "gold": 0, "closed_since_last_label": 0}
    opened: list[Adjudication] = []
    for item_id in sorted(found):
        reason, detail = found[item_id]
        if item_id in open_ids:
            skipped["already_open"] += 1
            continue
        if item_id in gold:
            skipped["gold"] += 1
            continue
        last_closed = closed_at.get(item_id)
        if last_closed is not None and pd.Timestamp(last_closed) >= newest[item_id]:
            skipped["closed_since_last_label"] += 1
            continue
        case = Adjudication(
            project_id=project.id, item_id=item_id, status=AdjudicationStatus.open,
            reason=reason, reason_detail=detail, created_by=actor.name, created_at=now,
            policies=[],
        )  # fmt: skip
        session.add(case)
        opened.append(case)
    session.flush()
    for case in opened:
        record_event(
            session, actor, "adjudication.opened", project_id=project.id,
            entity_type="adjudication", entity_id=case.id,
            details={"item_id": case.item_id, "reason": case.reason.value,
                     "detail": case.reason_detail},
        )  # fmt: skip
    by_reason = {r.value: sum(1 for c in opened if c.reason == r) for r in AdjudicationReason}
    summary = {
        "project": project.name,
        "opened": len(opened),
        "by_reason": by_reason,
        "skipped": skipped,
        "low_alpha_slices": low_slices,
        "slices_checked": use_slices,
        "alpha_threshold": settings.adjudication_alpha_threshold,
        "case_ids": [c.id for c in opened],
        "counted_labels": COUNTED_LABELS,
    }
    record_event(
        session, actor, "adjudication.refreshed", project_id=project.id,
        details={k: summary[k] for k in ("opened", "by_reason", "skipped", "slices_checked")},
    )  # fmt: skip
    return summary


def open_case(
    session: Session, project: Project, actor: Actor, external_id: str, note: str
) -> dict[str, Any]:
    """Open a case by hand (a lead's own doubt about an item)."""
    require_project_role(session, actor, project, Role.lead, action="open adjudication cases")
    if not note.strip():
        raise WorkbenchError("say why the item needs adjudication (a note is required)")
    item = session.scalar(
        select(Item).where(Item.project_id == project.id, Item.external_id == external_id)
    )
    if item is None:
        raise NotFoundError(f"no item with external_id {external_id!r} in {project.name!r}")
    existing = session.scalar(
        select(Adjudication.id).where(
            Adjudication.item_id == item.id, Adjudication.status == AdjudicationStatus.open
        )
    )
    if existing is not None:
        raise WorkbenchError(f"item {external_id!r} already has the open case {existing}")
    case = Adjudication(
        project_id=project.id, item_id=item.id, status=AdjudicationStatus.open,
        reason=AdjudicationReason.manual, reason_detail=note.strip(), created_by=actor.name,
        created_at=utcnow(), policies=[],
    )  # fmt: skip
    session.add(case)
    session.flush()
    record_event(
        session, actor, "adjudication.opened", project_id=project.id,
        entity_type="adjudication", entity_id=case.id,
        details={"item_id": item.id, "reason": "manual", "detail": note.strip()},
    )  # fmt: skip
    return _case_dict(case, item.external_id)


def _case_dict(case: Adjudication, external_id: str, n_labels: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": case.id,
        "item_id": case.item_id,
        "external_id": external_id,
        "status": case.status.value,
        "reason": case.reason.value,
        "reason_detail": case.reason_detail,
        "created_by": case.created_by,
        "created_at": case.created_at.isoformat(),
        "decision": case.decision.value if case.decision else None,
        "policies": list(case.policies or []),
        "severity": case.severity,
        "note": case.note,
        "closed_by": case.closed_by,
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
    }
    if n_labels is not None:
        out["n_labels"] = n_labels
    return out


def _counted_labels_query(project: Project, item_ids: Iterable[int]):  # type: ignore[no-untyped-def]
    """Current labels made by people on these items (the latest per reviewer is picked after)."""
    return (
        current_labels_query(project, item_ids=item_ids, sources=HUMAN_SOURCES)
        .add_columns(User.name)
        .join(User, User.id == Label.reviewer_id)
        .order_by(Label.created_at, Label.id)
    )


def _latest_per_reviewer(rows: Iterable[tuple[Label, str]]) -> list[tuple[Label, str]]:
    latest: dict[tuple[int, int], tuple[Label, str]] = {}
    for label, name in rows:
        latest[(label.item_id, label.reviewer_id)] = (label, name)
    return sorted(latest.values(), key=lambda r: (r[1], r[0].id))


def adjudication_cases(
    session: Session,
    project: Project,
    actor: Actor,
    *,
    status: AdjudicationStatus | str | None = AdjudicationStatus.open,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Cases of a project, oldest first (None: every status), with each item's label count."""
    require_project_role(session, actor, project, Role.lead, action="see adjudication cases")
    q = (
        select(Adjudication, Item.external_id)
        .join(Item, Item.id == Adjudication.item_id)
        .where(Adjudication.project_id == project.id)
        .order_by(Adjudication.id)
        .limit(limit)
    )
    if status is not None:
        q = q.where(Adjudication.status == parse_status(status))
    rows = session.execute(q).all()
    counts: dict[int, int] = {}
    item_ids = sorted({case.item_id for case, _ in rows})
    for i in range(0, len(item_ids), 500):
        chunk = item_ids[i : i + 500]
        for label, _name in _latest_per_reviewer(
            session.execute(_counted_labels_query(project, chunk)).all()
        ):
            counts[label.item_id] = counts.get(label.item_id, 0) + 1
    return [_case_dict(case, ext, counts.get(case.item_id, 0)) for case, ext in rows]


def parse_status(status: AdjudicationStatus | str) -> AdjudicationStatus:
    try:
        return AdjudicationStatus(status)
    except ValueError:
        expected = ", ".join(s.value for s in AdjudicationStatus)
        raise WorkbenchError(
            f"unknown case status {status!r}: expected one of {expected}"
        ) from None


def _get_case(session: Session, project: Project, case_id: int) -> Adjudication:
    case = session.get(Adjudication, case_id)
    if case is None or case.project_id != project.id:
        raise NotFoundError(f"no adjudication case {case_id} in project {project.name!r}")
    return case


def case_detail(session: Session, project: Project, actor: Actor, case_id: int) -> dict[str, Any]:
    """A case with its item and every counted label side by side (reviewer, decision, policies,
    severity, rationale, spans, confidence, time), earlier cases of the item, and the policy
    codes a final decision may use."""
    require_project_role(session, actor, project, Role.lead, action="see adjudication cases")
    case = _get_case(session, project, case_id)
    item = session.get_one(Item, case.item_id)
    labels = _latest_per_reviewer(session.execute(_counted_labels_query(project, [item.id])).all())
    history = session.scalars(
        select(Adjudication)
        .where(Adjudication.item_id == item.id, Adjudication.id != case.id)
        .order_by(Adjudication.id)
    ).all()
    gold = gold_answers(session, project).get(item.id)
    return {
        **_case_dict(case, item.external_id, len(labels)),
        "item": {
            "external_id": item.external_id,
            "text": item.text,
            "language": item.language,
            "modalities": list(item.modalities or []),
        },
        "labels": [
            {
                "label_id": lab.id,
                "reviewer": name,
                "decision": lab.decision.value,
                "policies": list(lab.policies or []),
                "severity": lab.severity,
                "rationale": lab.rationale,
                "spans": list(lab.spans or []),
                "confidence": lab.confidence,
                "time_spent_ms": lab.time_spent_ms,
                "source": lab.source.value,
                "created_at": lab.created_at.isoformat(),
            }
            for lab, name in labels
        ],
        "gold_answer": gold.as_dict() if gold else None,
        "earlier_cases": [_case_dict(h, item.external_id) for h in history],
        "taxonomy": answer_choices(session, project),
    }


def _close(
    session: Session, project: Project, actor: Actor, case_id: int, note: str, verb: str
) -> Adjudication:
    case = _get_case(session, project, case_id)
    if case.status != AdjudicationStatus.open:
        raise WorkbenchError(
            f"case {case_id} is already {case.status.value}; it cannot be {verb} again"
        )
    if not (note or "").strip():
        raise WorkbenchError(f"a note is required: say why the case is {verb}")
    case.note = note.strip()
    case.closed_by = actor.name
    case.closed_by_user_id = actor.user_id
    case.closed_at = utcnow()
    return case


def resolve_case(
    session: Session,
    project: Project,
    actor: Actor,
    case_id: int,
    decision: Decision | str,
    policy_codes: list[str] | tuple[str, ...] = (),
    severity: int | None = None,
    note: str = "",
) -> dict[str, Any]:
    """Record the final decision of an open case; it becomes the item's training label.

    Leads and admins only. The decision, codes and severity are checked against the current
    taxonomy as a label's are; the note is required. A final `unsure` keeps the item out of
    training.
    """
    require_project_role(session, actor, project, Role.lead, action="resolve adjudication cases")
    answer, pv = checked_answer(session, project, decision, policy_codes, severity)
    case = _close(session, project, actor, case_id, note, "resolved")
    case.status = AdjudicationStatus.resolved
    case.decision = answer.decision
    case.policies = list(answer.policies)
    case.severity = answer.severity
    case.policy_version_id = pv.id
    session.flush()
    external_id = session.get_one(Item, case.item_id).external_id
    record_event(
        session, actor, "adjudication.resolved", project_id=project.id,
        entity_type="adjudication", entity_id=case.id,
        details={"item_id": case.item_id, "external_id": external_id, **answer.as_dict(),
                 "note": case.note, "reason": case.reason.value, "policy_version": pv.version},
    )  # fmt: skip
    # The final decision is an enforcement decision (or reverses one): services/report/hooks.py.
    adjudication_resolved(session, case, actor)
    return _case_dict(case, external_id)


def dismiss_case(
    session: Session, project: Project, actor: Actor, case_id: int, note: str
) -> dict[str, Any]:
    """Close an open case without a decision (the aggregated label stands); note required."""
    require_project_role(session, actor, project, Role.lead, action="dismiss adjudication cases")
    case = _close(session, project, actor, case_id, note, "dismissed")
    case.status = AdjudicationStatus.dismissed
    session.flush()
    external_id = session.get_one(Item, case.item_id).external_id
    record_event(
        session, actor, "adjudication.dismissed", project_id=project.id,
        entity_type="adjudication", entity_id=case.id,
        details={"item_id": case.item_id, "external_id": external_id, "note": case.note},
    )  # fmt: skip
    return _case_dict(case, external_id)


# --- training labels -------------------------------------------------------------------------


def final_decisions(session: Session, project: Project) -> dict[int, Answer]:
    """Item id -> the final decision of its latest resolved case."""
    rows = session.scalars(
        select(Adjudication)
        .where(
            Adjudication.project_id == project.id,
            Adjudication.status == AdjudicationStatus.resolved,
        )
        .order_by(Adjudication.closed_at, Adjudication.id)
    )
    out: dict[int, Answer] = {}
    for case in rows:
        assert case.decision is not None  # a resolved case always has one
        out[case.item_id] = Answer(case.decision, tuple(case.policies or []), case.severity)
    return out


@dataclass(frozen=True)
class Override:
    """A training label that outranks the crowd: where it came from, and the answer."""

    source: str  # "adjudication" or "gold"
    answer: Answer


def training_overrides(session: Session, project: Project) -> dict[int, Override]:
    """Labels that replace the aggregated one, with confidence 1: an adjudicated final
    decision first, then an active gold answer."""
    out = {i: Override("gold", a) for i, a in gold_answers(session, project).items()}
    for item_id, answer in final_decisions(session, project).items():
        out[item_id] = Override("adjudication", answer)
    return out
