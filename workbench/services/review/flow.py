"""The reviewer's flow: the current item with its draft, idempotent submission, skip, undo and
the correction it opens (a superseding label).

Every function takes the acting user's `Actor` and checks its role here, whatever a page shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from workbench.db.models import (
    EntryStatus,
    Item,
    Label,
    LabelSource,
    Lease,
    LeaseStatus,
    MediaAsset,
    Project,
    QueueEntry,
    ReviewDraft,
    User,
)
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, PermissionDenied, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.auth import count_reviewed_in_session
from workbench.services.labels.current import current_labels_query
from workbench.services.labels.propagation import propagate_label
from workbench.services.labels.record import find_label, record_label, require_same_submission
from workbench.services.labels.validate import LabelInput, parse_label_input
from workbench.services.projects import project_settings
from workbench.services.queue import lease as queue
from workbench.services.queue.lease import lease_key
from workbench.services.review.wellbeing import is_flagged
from workbench.services.taxonomy import current_policy_version
from workbench.services.users import reviewing_user

MAX_DRAFT_RATIONALE = 20_000


@dataclass(frozen=True)
class ReviewForm:
    """The label form as the reviewer fills it in: what a draft keeps and a submission sends.

    It holds no idempotency key and no time spent: the service derives both from the lease (or
    the corrected label) and the draft, so no caller can name a submission other than its own.
    """

    decision: str | None = None
    policies: tuple[str, ...] = ()
    severity: int | None = None
    rationale: str = ""
    # Text: {"start", "end"} characters; audio/video: {"start_s", "end_s"} seconds.
    spans: tuple[dict[str, Any], ...] = ()
    confidence: float | None = None

    def as_draft(self) -> dict[str, Any]:
        """The filled-in fields, as a draft row stores them."""
        out: dict[str, Any] = {
            "decision": self.decision, "policies": list(self.policies),
            "severity": self.severity, "rationale": self.rationale,
            "spans": [dict(s) for s in self.spans], "confidence": self.confidence,
        }  # fmt: skip
        return {k: v for k, v in out.items() if v not in (None, "", [])}

    @classmethod
    def from_draft(cls, data: Mapping[str, Any]) -> ReviewForm:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        for name in ("policies", "spans"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def from_label(cls, label: Label) -> ReviewForm:
        return cls(
            decision=label.decision.value, policies=tuple(label.policies or []),
            severity=label.severity, rationale=label.rationale or "",
            spans=tuple(label.spans or []), confidence=label.confidence,
        )  # fmt: skip

    def label_input(self, idempotency_key: str, **extra: Any) -> LabelInput:
        """As a `LabelInput` (shape checked, with located problems), keyed by the service."""
        data = self.as_draft()
        if "confidence" in data:
            data["confidence"] = float(data["confidence"])
        return parse_label_input({**data, **extra, "idempotency_key": idempotency_key})


@dataclass(frozen=True)
class PolicyView:
    code: str
    title: str
    guideline: str
    severity_scale: list[dict[str, Any]]


@dataclass(frozen=True)
class AssetView:
    asset_id: int
    modality: str
    mime_type: str
    path: Path
    sha256: str
    duration_seconds: float | None


@dataclass(frozen=True)
class ReviewItem:
    """What the review page shows: the item, the form's saved draft, the taxonomy at hand.

    Blind by construction: no other reviewer's label and no model score is part of it.
    """

    item_id: int
    external_id: str
    text: str | None
    modalities: list[str]
    assets: list[AssetView]
    draft: ReviewForm
    lease_id: int | None
    lease_expires_at: datetime | None
    # Set while the reviewer corrects an earlier label of theirs (after undo).
    supersedes_label_id: int | None
    idempotency_key: str
    policy_version: int
    policies: list[PolicyView]
    flagged_affected: bool


@dataclass(frozen=True)
class SubmitResult:
    label_id: int
    created: bool  # False when this was a retry of a submission already recorded
    items_reviewed_in_session: int | None
    # Only when the project shows the model's suggestion after a submission.
    model_suggestion: dict[str, Any] | None = None


def correction_key(label_id: int) -> str:
    return f"correct:{label_id}"


def _policies(session: Session, project: Project) -> tuple[int, list[PolicyView]]:
    pv = current_policy_version(session, project)
    return pv.version, [
        PolicyView(p.code, p.title, p.guideline, list(p.severity_scale or [])) for p in pv.policies
    ]


def _item_view(
    session: Session,
    project: Project,
    user: User,
    item: Item,
    draft: ReviewDraft | None,
    *,
    lease: Lease | None,
    supersedes: int | None,
    media_root: Path | None,
) -> ReviewItem:
    version, policies = _policies(session, project)
    assets = session.scalars(select(MediaAsset).where(MediaAsset.item_id == item.id)).all()
    root = media_root or Path(".")
    if supersedes is not None:
        key = correction_key(supersedes)
    else:
        assert lease is not None  # an item is shown under a lease or as a correction
        key = lease_key(lease.id)
    return ReviewItem(
        item_id=item.id,
        external_id=item.external_id,
        text=item.text,
        modalities=list(item.modalities or []),
        assets=[
            AssetView(
                a.id,
                a.modality.value,
                a.mime_type,
                root / a.store_path,
                a.sha256,
                a.duration_seconds,
            )
            for a in assets
        ],
        draft=ReviewForm.from_draft(draft.data) if draft else ReviewForm(),
        lease_id=lease.id if lease else None,
        lease_expires_at=lease.expires_at if lease else None,
        supersedes_label_id=supersedes,
        idempotency_key=key,
        policy_version=version,
        policies=policies,
        flagged_affected=is_flagged(session, user.id, item.id),
    )


def _open_correction(session: Session, project: Project, user: User) -> ReviewDraft | None:
    return session.scalar(
        select(ReviewDraft).where(
            ReviewDraft.project_id == project.id,
            ReviewDraft.reviewer_id == user.id,
            ReviewDraft.supersedes_label_id.is_not(None),
        )
    )


def _draft_of(session: Session, user: User, item_id: int) -> ReviewDraft | None:
    return session.scalar(
        select(ReviewDraft).where(
            ReviewDraft.reviewer_id == user.id, ReviewDraft.item_id == item_id
        )
    )


def current_item(
    session: Session,
    project: Project,
    actor: Actor,
    *,
    media_root: Path | None = None,
    now: datetime | None = None,
) -> ReviewItem | None:
    """The item the reviewer should see now, with the draft as they left it.

    An open correction (after undo) comes first; otherwise the reviewer's current lease, or a new
    one. After a reload or a new login the same leased item comes back while the lease holds.
    """
    user = reviewing_user(session, actor, project)
    now = now or utcnow()
    correction = _open_correction(session, project, user)
    if correction is not None:
        item = session.get_one(Item, correction.item_id)
        return _item_view(
            session, project, user, item, correction, lease=None,
            supersedes=correction.supersedes_label_id, media_root=media_root,
        )  # fmt: skip
    lease = queue.lease_next(session, project, user, now=now)
    if lease is None:
        return None
    entry = session.get_one(QueueEntry, lease.entry_id)
    item = session.get_one(Item, entry.item_id)
    draft = _draft_of(session, user, item.id)
    if draft is None:
        # The draft row also marks when work on the item began, for time spent.
        draft = ReviewDraft(
            project_id=project.id, reviewer_id=user.id, item_id=item.id, lease_id=lease.id,
            data={}, started_at=now, updated_at=now,
        )  # fmt: skip
        session.add(draft)
        session.flush()
    elif draft.lease_id != lease.id:
        # A draft left from an earlier (expired or skipped) lease of the same item: keep the
        # text, but restart the clock for this lease.
        draft.lease_id = lease.id
        draft.started_at = now
    return _item_view(
        session, project, user, item, draft, lease=lease, supersedes=None, media_root=media_root
    )


def items_left(session: Session, project: Project) -> int:
    """Queue entries still waiting for a label in the project (the reviewer's "left" counter):
    one count on the queue's (project, kind, status) index."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(QueueEntry)
            .where(QueueEntry.project_id == project.id, QueueEntry.status == EntryStatus.pending)
        )
        or 0
    )


def save_draft(
    session: Session,
    project: Project,
    actor: Actor,
    item_id: int,
    form: ReviewForm,
    *,
    now: datetime | None = None,
) -> None:
    """Store the form as it is now (the whole form, replacing the previous draft)."""
    user = reviewing_user(session, actor, project)
    now = now or utcnow()
    if len(form.rationale) > MAX_DRAFT_RATIONALE:
        raise WorkbenchError(f"the rationale is longer than {MAX_DRAFT_RATIONALE} characters")
    draft = _draft_of(session, user, item_id)
    if draft is None:
        # Only an item the reviewer holds may get a draft: a lease or an open correction.
        held = queue.active_lease(session, project, user, now)
        entry = session.get(QueueEntry, held.entry_id) if held else None
        if held is None or entry is None or entry.item_id != item_id:
            raise PermissionDenied(f"{actor.name} holds no lease on item {item_id}")
        draft = ReviewDraft(
            project_id=project.id, reviewer_id=user.id, item_id=item_id, lease_id=held.id,
            data={}, started_at=now, updated_at=now,
        )  # fmt: skip
        session.add(draft)
    draft.data = form.as_draft()
    draft.updated_at = now


def _time_spent_ms(draft: ReviewDraft | None, fallback: datetime, now: datetime) -> int:
    start = draft.started_at if draft else fallback
    return max(0, int((now - start).total_seconds() * 1000))


def _model_suggestion(project: Project, entry: QueueEntry) -> dict[str, Any] | None:
    if not project_settings(project).show_model_suggestion_after_submit:
        return None
    if entry.score is None and entry.reason is None:
        return {"available": False}
    return {
        "available": True,
        "score": entry.score,
        "strategy": entry.strategy,
        "reason": entry.reason,
        "model_version_id": entry.model_version_id,
    }


def _maybe_propagate(session: Session, project: Project, label: Label, actor: Actor) -> None:
    """With `propagate_to_duplicates` on, copy the new label to the item's duplicate group."""
    if project_settings(project).propagate_to_duplicates:
        propagate_label(session, project, label, actor)


def submit_review(
    session: Session,
    project: Project,
    actor: Actor,
    lease_id: int,
    form: ReviewForm,
    *,
    session_id: int | None = None,
    now: datetime | None = None,
) -> SubmitResult:
    """Record the label of a leased item and close the lease, exactly once.

    In the caller's transaction: the form is checked (shape, then taxonomy and item bounds),
    the label recorded, the lease closed, the label propagated if the project says so, the
    draft dropped. The idempotency key comes from the lease, so retries of the same submission
    return the first label (created=False) and change nothing.
    """
    user = reviewing_user(session, actor, project)
    now = now or utcnow()
    key = lease_key(lease_id)
    lease = session.get(Lease, lease_id)
    if lease is None or lease.reviewer_id != user.id:
        raise NotFoundError(f"no lease {lease_id} held by {actor.name!r}")
    entry = session.get_one(QueueEntry, lease.entry_id)
    if entry.project_id != project.id:
        raise NotFoundError(f"lease {lease_id} is not in project {project.name!r}")
    existing = find_label(session, project.id, key)
    if existing is not None:
        # A retry of this lease's submission. A label of another item or reviewer under the
        # lease's key is an error, never the answer: answering with it left the lease open.
        require_same_submission(existing, entry.item_id, user.id)
        return SubmitResult(existing.id, False, None, _model_suggestion(project, entry))
    if lease.status not in (LeaseStatus.active, LeaseStatus.expired):
        raise WorkbenchError(
            f"lease {lease_id} was already {lease.status.value}; the item is no longer yours"
        )
    # A reclaimed lease gave its slot back; its work still counts if nobody took the slot since.
    slot_retaken = entry.active_leases + entry.completed >= entry.overlap_target
    if lease.status == LeaseStatus.expired and (
        entry.status != EntryStatus.pending or slot_retaken
    ):
        raise WorkbenchError("the lease expired and the item went to another reviewer meanwhile")
    item = session.get_one(Item, entry.item_id)
    draft = _draft_of(session, user, item.id)
    data = form.label_input(key, time_spent_ms=_time_spent_ms(draft, lease.leased_at, now))
    label, created = record_label(
        session, project, item, user, data, source=LabelSource.human, actor=actor
    )
    queue.finish_lease(session, lease, status=LeaseStatus.submitted, label_id=label.id, now=now)
    if created:
        _maybe_propagate(session, project, label, actor)
    if draft is not None:
        session.delete(draft)
    count = count_reviewed_in_session(session, session_id) if session_id and created else None
    return SubmitResult(label.id, created, count, _model_suggestion(project, entry))


def skip(
    session: Session,
    project: Project,
    actor: Actor,
    lease_id: int,
    reason: str,
    *,
    now: datetime | None = None,
) -> None:
    """Hand the item back with a reason; this reviewer will not get it again."""
    user = reviewing_user(session, actor, project)
    lease = queue.get_lease(session, lease_id, user)
    queue.release(session, lease, actor, reason)
    session.execute(
        delete(ReviewDraft).where(
            ReviewDraft.reviewer_id == user.id, ReviewDraft.lease_id == lease.id
        )
    )


def undo_last(
    session: Session, project: Project, actor: Actor, *, now: datetime | None = None
) -> ReviewItem:
    """Reopen the reviewer's latest current label for correction; submitting makes a
    superseding label. The original stays (labels are append-only) until the correction
    replaces it."""
    user = reviewing_user(session, actor, project)
    now = now or utcnow()
    if _open_correction(session, project, user) is None:
        last = session.scalar(
            current_labels_query(project, sources=[LabelSource.human], reviewer=user).order_by(
                Label.created_at.desc(), Label.id.desc()
            )
        )
        if last is None:
            raise WorkbenchError("there is no label of yours to undo")
        existing = _draft_of(session, user, last.item_id)
        if existing is not None:
            session.delete(existing)
            session.flush()
        session.add(
            ReviewDraft(
                project_id=project.id,
                reviewer_id=user.id,
                item_id=last.item_id,
                lease_id=None,
                supersedes_label_id=last.id,
                data=ReviewForm.from_label(last).as_draft(),
                started_at=now,
                updated_at=now,
            )
        )
        session.flush()
        record_event(
            session, actor, "review.undo", project_id=project.id, entity_type="label",
            entity_id=last.id,
        )  # fmt: skip
    item = current_item(session, project, actor, now=now)
    assert item is not None  # the correction just opened is always the current item
    return item


def submit_correction(
    session: Session,
    project: Project,
    actor: Actor,
    label_id: int,
    form: ReviewForm,
    *,
    now: datetime | None = None,
) -> SubmitResult:
    """Record the corrected label, superseding `label_id`; idempotent like a submission."""
    user = reviewing_user(session, actor, project)
    now = now or utcnow()
    key = correction_key(label_id)
    old = session.get(Label, label_id)
    if old is None or old.reviewer_id != user.id or old.project_id != project.id:
        raise NotFoundError(f"no label {label_id} of {actor.name!r} in {project.name!r}")
    existing = find_label(session, project.id, key)
    if existing is not None:
        require_same_submission(existing, old.item_id, user.id)
        return SubmitResult(existing.id, False, None)
    draft = session.scalar(
        select(ReviewDraft).where(
            ReviewDraft.reviewer_id == user.id, ReviewDraft.supersedes_label_id == label_id
        )
    )
    data = form.label_input(
        key, supersedes=old.idempotency_key, time_spent_ms=_time_spent_ms(draft, now, now)
    )
    item = session.get_one(Item, old.item_id)
    label, created = record_label(
        session, project, item, user, data, source=LabelSource.human, actor=actor
    )
    if created:
        _maybe_propagate(session, project, label, actor)
    if draft is not None:
        session.delete(draft)
    return SubmitResult(label.id, created, None)


def cancel_correction(session: Session, project: Project, actor: Actor) -> None:
    """Leave the earlier label as it was."""
    user = reviewing_user(session, actor, project)
    session.execute(
        delete(ReviewDraft).where(
            ReviewDraft.project_id == project.id,
            ReviewDraft.reviewer_id == user.id,
            ReviewDraft.supersedes_label_id.is_not(None),
        )
    )
