"""The review flow behind the browser: the reviewer's current item with its draft, idempotent
submission, skip, undo (a superseding label), wellbeing, and read-outs for leads.

Every function takes the acting user's `Actor` and checks its role here, whatever a page shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

from PIL import Image, ImageFilter, ImageOps
from sqlalchemy import and_, delete, func, select
from sqlalchemy.orm import Session, aliased

from workbench.db.models import (
    EntryKind,
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
    ReviewerSettings,
    Role,
    User,
    WellbeingFlag,
)
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, PermissionDenied, WorkbenchError
from workbench.services.audit import Actor, record_event, require_role
from workbench.services.auth import count_reviewed_in_session
from workbench.services.projects import project_settings
from workbench.services.queue import lease as queue
from workbench.services.taxonomy import current_policy_version

# Draft fields the form may save; anything else is refused so a draft never grows unbounded keys.
DRAFT_FIELDS = {"decision", "policies", "severity", "rationale", "spans", "confidence"}
MAX_DRAFT_RATIONALE = 20_000


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
    draft: dict[str, Any]
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


@dataclass(frozen=True)
class WellbeingSettings:
    blur_images: bool = True
    greyscale_images: bool = True
    exposure_cap: int | None = None


@dataclass
class ReviewerStats:
    reviewer: str
    labels: int
    median_seconds: float | None
    skips: int = 0
    decisions: dict[str, int] = field(default_factory=dict)


def _reviewer(session: Session, actor: Actor) -> User:
    require_role(actor, Role.reviewer, action="review items")
    if actor.user_id is None:
        raise PermissionDenied(f"{actor.name} is not a user and cannot hold review leases")
    user = session.get(User, actor.user_id)
    if user is None or user.disabled:
        raise PermissionDenied(f"{actor.name} may not review: the account is missing or disabled")
    return user


def lease_key(lease_id: int) -> str:
    """The idempotency key of the one label a lease can produce.

    Derived from the lease, not from the browser, so a double click, a retry after a reconnect
    and a second tab all name the same submission and at most one label results.
    """
    return f"lease:{lease_id}"


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
    flagged = session.scalar(
        select(func.count()).where(
            WellbeingFlag.reviewer_id == user.id, WellbeingFlag.item_id == item.id
        )
    )
    root = media_root or Path(".")
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
        draft=dict(draft.data) if draft else {},
        lease_id=lease.id if lease else None,
        lease_expires_at=lease.expires_at if lease else None,
        supersedes_label_id=supersedes,
        idempotency_key=correction_key(supersedes) if supersedes else lease_key(lease.id),  # type: ignore[union-attr]
        policy_version=version,
        policies=policies,
        flagged_affected=bool(flagged),
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
    user = _reviewer(session, actor)
    now = now or utcnow()
    correction = session.scalar(
        select(ReviewDraft).where(
            ReviewDraft.project_id == project.id,
            ReviewDraft.reviewer_id == user.id,
            ReviewDraft.supersedes_label_id.is_not(None),
        )
    )
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
    draft = session.scalar(
        select(ReviewDraft).where(
            ReviewDraft.reviewer_id == user.id, ReviewDraft.item_id == item.id
        )
    )
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


def _clean_draft(data: dict[str, Any]) -> dict[str, Any]:
    unknown = set(data) - DRAFT_FIELDS
    if unknown:
        raise WorkbenchError(
            f"unknown draft field(s) {sorted(unknown)}: expected some of {sorted(DRAFT_FIELDS)}"
        )
    rationale = data.get("rationale")
    if isinstance(rationale, str) and len(rationale) > MAX_DRAFT_RATIONALE:
        raise WorkbenchError(f"the rationale is longer than {MAX_DRAFT_RATIONALE} characters")
    return data


def save_draft(
    session: Session,
    project: Project,
    actor: Actor,
    item_id: int,
    data: dict[str, Any],
    *,
    now: datetime | None = None,
) -> None:
    """Store the form as it is now (the whole form, replacing the previous draft)."""
    user = _reviewer(session, actor)
    now = now or utcnow()
    draft = session.scalar(
        select(ReviewDraft).where(
            ReviewDraft.reviewer_id == user.id, ReviewDraft.item_id == item_id
        )
    )
    if draft is None:
        # Only an item the reviewer holds may get a draft: a lease or an open correction.
        held = queue.active_lease(session, project, user, now)
        entry = session.get(QueueEntry, held.entry_id) if held else None
        if entry is None or entry.item_id != item_id:
            raise PermissionDenied(f"{actor.name} holds no lease on item {item_id}")
        draft = ReviewDraft(
            project_id=project.id, reviewer_id=user.id, item_id=item_id, lease_id=held.id,  # type: ignore[union-attr]
            data={}, started_at=now, updated_at=now,
        )  # fmt: skip
        session.add(draft)
    draft.data = _clean_draft(dict(data))
    draft.updated_at = now


def _existing_label(session: Session, key: str) -> Label | None:
    return session.scalar(select(Label).where(Label.idempotency_key == key))


def _time_spent_ms(draft: ReviewDraft | None, fallback: datetime, now: datetime) -> int:
    start = draft.started_at if draft else fallback
    return max(0, int((now - start).total_seconds() * 1000))


def _model_suggestion(
    session: Session, project: Project, entry: QueueEntry
) -> dict[str, Any] | None:
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


def label_input(form: dict[str, Any], idempotency_key: str) -> Any:
    """The form (a draft's fields) as a `labels.LabelInput`, with located problems if invalid."""
    from workbench.services.labels.record import parse_label_input

    data = {k: v for k, v in form.items() if k in DRAFT_FIELDS and v not in (None, "", [])}
    if "confidence" in data:
        data["confidence"] = float(data["confidence"])
    return parse_label_input({**data, "idempotency_key": idempotency_key})


def submit_review(
    session: Session,
    project: Project,
    actor: Actor,
    lease_id: int,
    data: Any,
    *,
    session_id: int | None = None,
    now: datetime | None = None,
) -> SubmitResult:
    """Record the label of a leased item and close the lease, exactly once.

    `data` is a `labels.LabelInput`; its idempotency key is set from the lease, so retries of the
    same submission return the first label (created=False) and change nothing.
    """
    from workbench.services.labels.record import record_label

    user = _reviewer(session, actor)
    now = now or utcnow()
    key = lease_key(lease_id)
    lease = session.get(Lease, lease_id)
    if lease is None or lease.reviewer_id != user.id:
        raise NotFoundError(f"no lease {lease_id} held by {actor.name!r}")
    entry = session.get_one(QueueEntry, lease.entry_id)
    if entry.project_id != project.id:
        raise NotFoundError(f"lease {lease_id} is not in project {project.name!r}")
    existing = _existing_label(session, key)
    if existing is not None:
        return SubmitResult(existing.id, False, None, _model_suggestion(session, project, entry))
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
    draft = session.scalar(
        select(ReviewDraft).where(
            ReviewDraft.reviewer_id == user.id, ReviewDraft.item_id == item.id
        )
    )
    updates: dict[str, Any] = {"idempotency_key": key}
    if getattr(data, "time_spent_ms", None) is None:
        updates["time_spent_ms"] = _time_spent_ms(draft, lease.leased_at, now)
    data = data.model_copy(update=updates)
    label, created = record_label(
        session, project, item, user, data, source=LabelSource.human, actor=actor
    )
    queue.finish_lease(session, lease, status=LeaseStatus.submitted, label_id=label.id, now=now)
    if created:
        _maybe_propagate(session, project, label, actor)
    if draft is not None:
        session.delete(draft)
    count = count_reviewed_in_session(session, session_id) if session_id and created else None
    return SubmitResult(label.id, created, count, _model_suggestion(session, project, entry))


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
    user = _reviewer(session, actor)
    lease = queue.get_lease(session, lease_id, user)
    queue.release(session, lease, actor, reason)
    session.execute(
        delete(ReviewDraft).where(
            ReviewDraft.reviewer_id == user.id, ReviewDraft.lease_id == lease.id
        )
    )


def _live_labels_of(session: Session, project: Project, user: User):  # type: ignore[no-untyped-def]
    newer = aliased(Label)
    return (
        select(Label)
        .outerjoin(newer, newer.supersedes_id == Label.id)
        .where(
            Label.project_id == project.id,
            Label.reviewer_id == user.id,
            Label.source == LabelSource.human,
            newer.id.is_(None),
        )
    )


def undo_last(
    session: Session, project: Project, actor: Actor, *, now: datetime | None = None
) -> ReviewItem:
    """Reopen the reviewer's latest label for correction; submitting makes a superseding label.

    The original stays (labels are append-only) until the correction replaces it.
    """
    user = _reviewer(session, actor)
    now = now or utcnow()
    open_correction = session.scalar(
        select(ReviewDraft).where(
            ReviewDraft.project_id == project.id,
            ReviewDraft.reviewer_id == user.id,
            ReviewDraft.supersedes_label_id.is_not(None),
        )
    )
    if open_correction is None:
        last = session.scalar(
            _live_labels_of(session, project, user).order_by(
                Label.created_at.desc(), Label.id.desc()
            )
        )
        if last is None:
            raise WorkbenchError("there is no label of yours to undo")
        data = {
            "decision": last.decision.value,
            "policies": list(last.policies or []),
            "severity": last.severity,
            "rationale": last.rationale or "",
            "spans": list(last.spans or []),
            "confidence": last.confidence,
        }
        existing = session.scalar(
            select(ReviewDraft).where(
                ReviewDraft.reviewer_id == user.id, ReviewDraft.item_id == last.item_id
            )
        )
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
                data=data,
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
    data: Any,
    *,
    now: datetime | None = None,
) -> SubmitResult:
    """Record the corrected label, superseding `label_id`; idempotent like a submission."""
    from workbench.services.labels.record import record_label

    user = _reviewer(session, actor)
    now = now or utcnow()
    key = correction_key(label_id)
    existing = _existing_label(session, key)
    if existing is not None:
        return SubmitResult(existing.id, False, None)
    old = session.get(Label, label_id)
    if old is None or old.reviewer_id != user.id or old.project_id != project.id:
        raise NotFoundError(f"no label {label_id} of {actor.name!r} in {project.name!r}")
    draft = session.scalar(
        select(ReviewDraft).where(
            ReviewDraft.reviewer_id == user.id, ReviewDraft.supersedes_label_id == label_id
        )
    )
    updates: dict[str, Any] = {"idempotency_key": key, "supersedes": old.idempotency_key}
    if getattr(data, "time_spent_ms", None) is None:
        updates["time_spent_ms"] = _time_spent_ms(draft, now, now)
    data = data.model_copy(update=updates)
    item = session.get_one(Item, old.item_id)
    label, created = record_label(
        session, project, item, user, data, source=LabelSource.human, actor=actor
    )
    if created:
        _maybe_propagate(session, project, label, actor)
    if draft is not None:
        session.delete(draft)
    return SubmitResult(label.id, created, None)


def _maybe_propagate(session: Session, project: Project, label: Label, actor: Actor) -> None:
    """With `propagate_to_duplicates` on, copy the new label to the item's duplicate group."""
    from workbench.services.labels.propagation import propagate_label
    from workbench.services.projects import project_settings

    if project_settings(project).propagate_to_duplicates:
        propagate_label(session, project, label, actor)


def cancel_correction(session: Session, project: Project, actor: Actor) -> None:
    """Leave the earlier label as it was."""
    user = _reviewer(session, actor)
    session.execute(
        delete(ReviewDraft).where(
            ReviewDraft.project_id == project.id,
            ReviewDraft.reviewer_id == user.id,
            ReviewDraft.supersedes_label_id.is_not(None),
        )
    )


# --- wellbeing ---------------------------------------------------------------------------------


def wellbeing_settings(session: Session, actor: Actor) -> WellbeingSettings:
    if actor.user_id is None:
        return WellbeingSettings()
    row = session.get(ReviewerSettings, actor.user_id)
    if row is None:
        return WellbeingSettings()
    return WellbeingSettings(row.blur_images, row.greyscale_images, row.exposure_cap)


def update_wellbeing_settings(
    session: Session, actor: Actor, new: WellbeingSettings
) -> WellbeingSettings:
    """Each user sets their own; nobody else's."""
    if actor.user_id is None:
        raise PermissionDenied("only a logged-in user has wellbeing settings")
    if new.exposure_cap is not None and new.exposure_cap < 1:
        raise WorkbenchError(f"exposure cap must be at least 1 item, got {new.exposure_cap}")
    row = session.get(ReviewerSettings, actor.user_id)
    if row is None:
        row = ReviewerSettings(user_id=actor.user_id)
        session.add(row)
    row.blur_images = new.blur_images
    row.greyscale_images = new.greyscale_images
    row.exposure_cap = new.exposure_cap
    row.updated_at = utcnow()
    record_event(
        session, actor, "review.wellbeing_settings", entity_type="user", entity_id=actor.name,
        details={"blur": new.blur_images, "greyscale": new.greyscale_images,
                 "exposure_cap": new.exposure_cap},
    )  # fmt: skip
    return new


def break_due(settings: WellbeingSettings, items_reviewed: int) -> bool:
    return settings.exposure_cap is not None and items_reviewed >= settings.exposure_cap


def flag_affected(session: Session, project: Project, actor: Actor, item_id: int) -> bool:
    """ "This affected me": kept per reviewer and item; returns False if already flagged."""
    user = _reviewer(session, actor)
    if session.scalar(
        select(func.count()).where(
            WellbeingFlag.reviewer_id == user.id, WellbeingFlag.item_id == item_id
        )
    ):
        return False
    item = session.get(Item, item_id)
    if item is None or item.project_id != project.id:
        raise NotFoundError(f"no item {item_id} in project {project.name!r}")
    session.add(WellbeingFlag(project_id=project.id, reviewer_id=user.id, item_id=item_id))
    # The audit trail records that a flag was raised, not by whom, so leads see no names.
    record_event(session, Actor.system(), "review.affected_flag", project_id=project.id)
    return True


def affected_counts(session: Session, project: Project, actor: Actor) -> dict[str, Any]:
    """Aggregates only: how many flags, on how many items, from how many reviewers."""
    require_role(actor, Role.lead, action="see wellbeing flags")
    flags, items, reviewers = session.execute(
        select(
            func.count(),
            func.count(func.distinct(WellbeingFlag.item_id)),
            func.count(func.distinct(WellbeingFlag.reviewer_id)),
        ).where(WellbeingFlag.project_id == project.id)
    ).one()
    return {"flags": flags, "items": items, "reviewers": reviewers}


def display_image(
    asset_path: Path, sha256: str, cache_dir: Path, *, blur: bool, greyscale: bool
) -> Path:
    """The file to send to the browser: the original only when neither blur nor grey is asked.

    The blurred copy is made here, on the server, so the unblurred bytes never reach a browser
    before the reviewer clicks to reveal (a CSS blur would send the original).
    """
    if not blur and not greyscale:
        return asset_path
    mode = ("b" if blur else "") + ("g" if greyscale else "")
    out = cache_dir / f"{sha256}-{mode}.jpg"
    if out.exists():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    with Image.open(asset_path) as img:
        img.thumbnail((640, 640))
        im = img.convert("RGB")
        if greyscale:
            im = ImageOps.grayscale(im).convert("RGB")
        if blur:
            im = im.filter(ImageFilter.GaussianBlur(radius=max(8, max(im.size) // 24)))
        tmp = out.with_suffix(".tmp")
        im.save(tmp, format="JPEG", quality=80)
        tmp.replace(out)
    return out


# --- read-outs for leads -----------------------------------------------------------------------


def reviewer_stats(session: Session, project: Project, actor: Actor) -> list[ReviewerStats]:
    """Live human labels and time per reviewer."""
    require_role(actor, Role.lead, action="see reviewer statistics")
    rows = session.execute(
        select(User.name, Label.decision, Label.time_spent_ms)
        .join(User, User.id == Label.reviewer_id)
        .where(Label.project_id == project.id, Label.source == LabelSource.human)
    ).all()
    stats: dict[str, ReviewerStats] = {}
    times: dict[str, list[int]] = {}
    for name, decision, ms in rows:
        st = stats.setdefault(name, ReviewerStats(name, 0, None))
        st.labels += 1
        st.decisions[decision.value] = st.decisions.get(decision.value, 0) + 1
        if ms is not None:
            times.setdefault(name, []).append(ms)
    skips = session.execute(
        select(User.name, func.count())
        .join(Lease, Lease.reviewer_id == User.id)
        .join(QueueEntry, QueueEntry.id == Lease.entry_id)
        .where(QueueEntry.project_id == project.id, Lease.status == LeaseStatus.released)
        .group_by(User.name)
    ).all()
    for name, n in skips:
        stats.setdefault(name, ReviewerStats(name, 0, None)).skips = n
    for name, ms_list in times.items():
        stats[name].median_seconds = median(ms_list) / 1000
    return sorted(stats.values(), key=lambda s: s.reviewer)


def overlap_items(
    session: Session, project: Project, actor: Actor, limit: int = 200
) -> list[dict[str, Any]]:
    """Items queued for k > 1 reviewers, with each reviewer's live label."""
    require_role(actor, Role.lead, action="see overlap labels")
    entries = session.execute(
        select(
            QueueEntry.item_id, Item.external_id, QueueEntry.overlap_target, QueueEntry.completed
        )
        .join(Item, Item.id == QueueEntry.item_id)
        .where(
            QueueEntry.project_id == project.id,
            QueueEntry.overlap_target > 1,
            QueueEntry.kind != EntryKind.gold,  # every reviewer gets a gold item once: not overlap
        )
        .order_by(QueueEntry.id.desc())
        .limit(limit)
    ).all()
    ids = [e[0] for e in entries]
    newer = aliased(Label)
    labels = session.execute(
        select(Label.item_id, User.name, Label.decision, Label.policies, Label.severity)
        .join(User, User.id == Label.reviewer_id)
        .outerjoin(newer, newer.supersedes_id == Label.id)
        .where(Label.item_id.in_(ids), newer.id.is_(None))
    ).all()
    by_item: dict[int, list[dict[str, Any]]] = {}
    for item_id, name, decision, policies, severity in labels:
        by_item.setdefault(item_id, []).append(
            {"reviewer": name, "decision": decision.value, "policies": policies,
             "severity": severity}
        )  # fmt: skip
    return [
        {"item_id": i, "external_id": ext, "overlap_target": k, "completed": done,
         "labels": by_item.get(i, [])}
        for i, ext, k, done in entries
    ]  # fmt: skip


def spot_check_table(
    session: Session, project: Project, actor: Actor, limit: int = 500
) -> list[dict[str, Any]]:
    """Recently queued items with their selection score and live labels, for spot checks."""
    require_role(actor, Role.lead, action="spot-check items")
    newer = aliased(Label)
    rows = session.execute(
        select(
            Item.id, Item.external_id, Item.text, QueueEntry.score, QueueEntry.strategy,
            QueueEntry.status, Label.decision, Label.policies, User.name,
        )
        .join(Item, Item.id == QueueEntry.item_id)
        .outerjoin(Label, and_(Label.item_id == Item.id, Label.project_id == project.id))
        .outerjoin(newer, newer.supersedes_id == Label.id)
        .outerjoin(User, User.id == Label.reviewer_id)
        .where(QueueEntry.project_id == project.id, newer.id.is_(None))
        .order_by(QueueEntry.id.desc())
        .limit(limit)
    ).all()  # fmt: skip
    return [
        {
            "item_id": r[0], "external_id": r[1], "text": (r[2] or "")[:200], "score": r[3],
            "strategy": r[4], "queue_status": r[5].value,
            "decision": r[6].value if r[6] else None, "policies": ", ".join(r[7] or []),
            "reviewer": r[8],
        }
        for r in rows
    ]  # fmt: skip


def project_names(session: Session) -> list[str]:
    """Every project, by name, for the page's project picker."""
    return list(session.scalars(select(Project.name).order_by(Project.name)))


# --- project administration from the browser (role-checked here, not only by the page) -------


def change_project_setting(
    session: Session, project: Project, actor: Actor, key: str, value: Any
) -> dict[str, Any]:
    """Set one project setting; engineers (selection, batch size) and admins may."""
    from workbench.services.projects import set_project_setting

    require_role(actor, Role.engineer, Role.admin, action="change project settings")
    return set_project_setting(session, project, key, value, actor).model_dump(mode="json")


def load_taxonomy_version(
    session: Session, project: Project, actor: Actor, raw: bytes, source: str
) -> int:
    """Add a policy taxonomy version from an uploaded JSON file; returns its version number."""
    import json

    from workbench.services.taxonomy import add_policy_version, parse_taxonomy

    require_role(actor, Role.admin, action="load a policy taxonomy")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorkbenchError(f"{source}: not a JSON file: {exc}") from None
    pv, _created = add_policy_version(session, project, parse_taxonomy(data, source=source), actor)
    return pv.version


def taxonomy_versions(session: Session, project: Project, actor: Actor) -> list[dict[str, Any]]:
    from workbench.services.taxonomy import list_policy_versions, policy_version_as_dict

    require_role(actor, Role.lead, Role.engineer, Role.admin, action="view taxonomy versions")
    return [policy_version_as_dict(pv) for pv in list_policy_versions(session, project)]


def project_settings_view(session: Session, project: Project, actor: Actor) -> dict[str, Any]:
    require_role(actor, Role.lead, Role.engineer, Role.admin, action="view project settings")
    return project_settings(project).model_dump(mode="json")


def get_project_by_name(session: Session, name: str) -> Project:
    """The project a page or a simulated reviewer works in."""
    from workbench.services.projects import get_project

    return get_project(session, name)
