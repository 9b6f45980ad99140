"""Labels: where a label is recorded. One label (`record_label`: review page, corrections,
propagation) or many at once (`check_labels` + `insert_labels`: the batched queue path), by the
same rules and with the same `label.recorded` audit event per label.

Labels are append-only: a correction is a new label that supersedes the old one, and every
submission carries an idempotency key (unique in its project), so a retry never makes a second
label, and a key already held by another item's or reviewer's label is an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workbench.db.models import AuditEvent, Item, Label, LabelSource, Project, Role, User
from workbench.db.types import utcnow
from workbench.errors import Problem, WorkbenchError
from workbench.services.audit import Actor, record_event, require_role
from workbench.services.labels.current import is_superseded
from workbench.services.labels.validate import (
    ItemFacts,
    LabelInput,
    PolicyRules,
    check_label,
    media_durations,
    policy_rules,
)
from workbench.services.membership import require_member
from workbench.services.report.hooks import labels_recorded

K = TypeVar("K")  # the caller's handle of each label of a batch (the queue: a lease id)

RECORDED = "label.recorded"  # the audit action of every recorded label, one or batched

# The key formats the workbench makes itself, each from a row id of this installation:
# queue/lease.py `lease_key`, review/flow.py `correction_key`, labels/propagation.py
# `propagation_key`. A label file cannot bring keys of these shapes as they are: the import
# stores them under its own prefix (labels/import_.py), or `lease:7` from elsewhere would
# answer this installation's lease 7.
RESERVED_KEY_PREFIXES = ("lease:", "correct:", "propagated:")

# Core tables: the batched path builds no ORM objects.
_labels = cast(Table, Label.__table__)
_audit_events = cast(Table, AuditEvent.__table__)


# --------------------------------------------------------------------------------------------
# Rules of recording, for one label and for a batch


def find_label(session: Session, project_id: int, idempotency_key: str) -> Label | None:
    """The project's label with this key. Keys are unique per project only: the ones the
    workbench makes (`lease:7`) name rows of one installation."""
    mine = Label.project_id == project_id
    return session.scalar(select(Label).where(mine, Label.idempotency_key == idempotency_key))


def require_same_submission(existing: Label, item_id: int, reviewer_id: int) -> Label:
    """`existing` (found by a new label's key) if it is the same item's label by the same
    reviewer, i.e. a retry of that submission; an error naming the key otherwise."""
    if existing.item_id == item_id and existing.reviewer_id == reviewer_id:
        return existing
    raise _same_key_elsewhere(existing)


def require_may_record(actor: Actor, reviewer: User, source: LabelSource) -> None:
    """Refuse unless `actor` may record labels in `reviewer`'s name (one label or a batch)."""
    require_role(actor, Role.reviewer, action="record labels")
    if not actor.is_system and actor.user_id != reviewer.id:
        require_role(actor, Role.lead, action="record labels in another reviewer's name")
    if source == LabelSource.human and reviewer.disabled:
        raise WorkbenchError(f"user {reviewer.name!r} is disabled and cannot record labels")


def label_values(
    project: Project,
    item_id: int,
    reviewer_id: int,
    policy_version_id: int,
    data: LabelInput,
    source: LabelSource,
    created_at: datetime,
) -> dict[str, Any]:
    """The column values of a new label row (without `supersedes_id`)."""
    return {
        "project_id": project.id,
        "item_id": item_id,
        "reviewer_id": reviewer_id,
        "policy_version_id": policy_version_id,
        "decision": data.decision,
        "policies": list(data.policies),
        "severity": data.severity,
        "rationale": data.rationale,
        "spans": [dict(s) for s in data.spans],
        "confidence": data.confidence,
        "time_spent_ms": data.time_spent_ms,
        "source": source,
        "idempotency_key": data.idempotency_key,
        "created_at": created_at,
    }


def recorded_details(
    external_id: str, reviewer: User, data: LabelInput, source: LabelSource
) -> dict[str, Any]:
    """The details of a label's `label.recorded` audit event."""
    return {
        "item": external_id,
        "reviewer": reviewer.name,
        "decision": data.decision.value,
        "policies": list(data.policies),
        "source": source.value,
        "supersedes": data.supersedes,
    }


def _same_key_elsewhere(existing: Label) -> WorkbenchError:
    return WorkbenchError(
        f"idempotency key {existing.idempotency_key!r} already belongs to another label "
        f"(item {existing.item.external_id!r}, reviewer {existing.reviewer.name!r}); "
        "a key names exactly one submission",
        [Problem(field="idempotency_key", reason="already used by a different label")],
    )


def _supersede_problem(target: Label | None, item_id: int, created_at: datetime) -> str | None:
    if target is None:
        return "no label with that idempotency key"
    if target.item_id != item_id:
        return "that label is of another item; a correction must be of the same item"
    if created_at < target.created_at:
        return "a correction cannot be older than the label it corrects (created_at)"
    return None


# --------------------------------------------------------------------------------------------
# One label


def record_label(
    session: Session,
    project: Project,
    item: Item,
    reviewer: User,
    data: LabelInput,
    *,
    source: LabelSource,
    actor: Actor,
    audit: bool = True,
) -> tuple[Label, bool]:
    """Record one label; returns (label, created).

    The same idempotency key again returns the label it made (created False), so a double click
    or a retry is harmless. Raises WorkbenchError, with every problem listed, for a label that
    breaks the taxonomy, the item's bounds or the correction chain.
    """
    require_may_record(actor, reviewer, source)
    require_member(session, actor, project)
    if item.project_id != project.id:
        raise WorkbenchError(
            f"item {item.external_id!r} belongs to another project, not {project.name!r}"
        )

    existing = find_label(session, project.id, data.idempotency_key)
    if existing is not None:
        return require_same_submission(existing, item.id, reviewer.id), False

    rules = policy_rules(session, project, data.policy_version)
    duration = media_durations(session, [item.id]).get(item.id)
    problems = check_label(data, ItemFacts.of(item, duration), rules, source)
    created_at = data.created_at or utcnow()

    target: Label | None = None
    if data.supersedes is not None:
        target = find_label(session, project.id, data.supersedes)
        reason = _supersede_problem(target, item.id, created_at)
        if reason is None and target is not None and is_superseded(session, target):
            reason = "that label was already corrected; supersede its latest correction instead"
        if reason:
            problems.append(Problem(field="supersedes", reason=reason))
    if problems:
        raise WorkbenchError(
            f"invalid label for item {item.external_id!r}: {problems[0]}", problems
        )

    label = Label(
        **label_values(
            project, item.id, reviewer.id, rules.policy_version_id, data, source, created_at
        )
    )
    label.supersedes = target
    try:
        with session.begin_nested():
            session.add(label)
            session.flush()
    except IntegrityError:
        # A concurrent submission won the race: the same key (a retry in another tab), or
        # another correction of the same label (supersedes_id is UNIQUE).
        again = find_label(session, project.id, data.idempotency_key)
        if again is not None:
            if again.item_id == item.id and again.reviewer_id == reviewer.id:
                return again, False
            raise _same_key_elsewhere(again) from None
        if target is not None:
            raise WorkbenchError(
                f"label {data.supersedes!r} was corrected by another label at the same time; "
                "reload and correct the latest one",
                [Problem(field="supersedes", reason="already corrected by another label")],
            ) from None
        raise
    if audit:
        record_event(
            session,
            actor,
            RECORDED,
            project_id=project.id,
            entity_type="label",
            entity_id=label.id,
            details=recorded_details(item.external_id, reviewer, data, source),
        )
    # Enforcement decisions and appeals follow the judgement (services/report/hooks.py).
    labels_recorded(session, [label.id], actor)
    return label, True


# --------------------------------------------------------------------------------------------
# Many labels: the same rules, checked in memory and inserted in bulk


@dataclass(frozen=True)
class PendingLabel:
    """One label of a batch, before it is checked: the judgement, its item and project, and
    what else its audit event should say (the batched queue path names the lease)."""

    project: Project
    item: ItemFacts
    data: LabelInput
    audit: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckedLabel:
    """A label that passed every rule: its row and its audit event's details."""

    project_id: int
    values: dict[str, Any]
    details: dict[str, Any]


def check_labels(
    session: Session,
    reviewer: User,
    pending: Mapping[K, PendingLabel],
    *,
    source: LabelSource,
    now: datetime,
) -> tuple[dict[K, CheckedLabel], dict[K, str]]:
    """Check many new labels by `record_label`'s rules, each policy version loaded once;
    returns (the labels that pass, why each other one cannot be recorded), by the caller's key.

    A batch records new judgements only: a correction needs the chain checked against the
    label it corrects, so corrections go one by one through `record_label`. The caller has
    made sure each idempotency key is new and checked `require_may_record`.
    """
    rules: dict[tuple[int, int | None], PolicyRules | str] = {}
    checked: dict[K, CheckedLabel] = {}
    rejected: dict[K, str] = {}
    for handle, p in pending.items():
        if p.data.supersedes is not None:
            rejected[handle] = "a batched label corrects nothing; corrections go one by one"
            continue
        version = (p.project.id, p.data.policy_version)
        if version not in rules:
            try:
                rules[version] = policy_rules(session, p.project, p.data.policy_version)
            except WorkbenchError as exc:
                rules[version] = exc.message
        pv = rules[version]
        if isinstance(pv, str):
            rejected[handle] = pv
            continue
        problems = check_label(p.data, p.item, pv, source)
        if problems:
            reasons = "; ".join(str(q) for q in problems)
            rejected[handle] = f"invalid label for item {p.item.external_id!r}: {reasons}"
            continue
        values = label_values(
            p.project,
            p.item.id,
            reviewer.id,
            pv.policy_version_id,
            p.data,
            source,
            p.data.created_at or now,
        )
        details = {**recorded_details(p.item.external_id, reviewer, p.data, source), **p.audit}
        checked[handle] = CheckedLabel(p.project.id, values, details)
    return checked, rejected


def insert_labels(
    session: Session,
    checked: Mapping[K, CheckedLabel],
    *,
    actor: Actor,
    now: datetime,
) -> dict[K, int]:
    """Insert checked labels and their `label.recorded` audit events, one statement each;
    returns the new label ids by the caller's key.

    ON CONFLICT DO NOTHING on the project's idempotency key: a label whose key was stored
    meanwhile (a racing retry through another path) is left out of the result and gets no audit
    event; the caller decides whether that is an error.
    """
    if not checked:
        return {}
    handles = list(checked)
    unique_key = [_labels.c.project_id, _labels.c.idempotency_key]
    stmt: postgresql.Insert | sqlite.Insert
    if session.get_bind().dialect.name == "postgresql":
        stmt = postgresql.insert(_labels).on_conflict_do_nothing(index_elements=unique_key)
    else:
        stmt = sqlite.insert(_labels).on_conflict_do_nothing(index_elements=unique_key)
    inserted = {
        (project_id, key): label_id
        for label_id, project_id, key in session.execute(
            stmt.returning(_labels.c.id, _labels.c.project_id, _labels.c.idempotency_key),
            [checked[h].values for h in handles],
        )
    }

    def unique(h: K) -> tuple[int, str]:
        return checked[h].project_id, checked[h].values["idempotency_key"]

    ids = {h: inserted[unique(h)] for h in handles if unique(h) in inserted}
    if ids:
        session.execute(
            _audit_events.insert(),
            [
                {
                    "at": now,
                    "actor": actor.name,
                    "actor_user_id": actor.user_id,
                    "action": RECORDED,
                    "project_id": checked[h].project_id,
                    "entity_type": "label",
                    "entity_id": str(label_id),
                    "details": checked[h].details,
                }
                for h, label_id in ids.items()
            ],
        )
        labels_recorded(session, ids.values(), actor)
    return ids
