"""Reviewer wellbeing: each reviewer's own image protection and exposure cap, the break it calls
for, and "this affected me" flags, which leads see only in aggregate."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.db.models import Item, Project, ReviewerSettings, Role, WellbeingFlag
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, PermissionDenied, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.membership import require_project_role
from workbench.services.users import reviewing_user


@dataclass(frozen=True)
class WellbeingSettings:
    # Protective by default: a new reviewer sees no image unblurred before choosing to.
    blur_images: bool = True
    greyscale_images: bool = True
    exposure_cap: int | None = None


@dataclass(frozen=True)
class AffectedCounts:
    """How many flags, on how many items, from how many reviewers: never who."""

    flags: int
    items: int
    reviewers: int


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


def is_flagged(session: Session, reviewer_id: int, item_id: int) -> bool:
    """Whether this reviewer has said this item affected them."""
    return bool(
        session.scalar(
            select(func.count()).where(
                WellbeingFlag.reviewer_id == reviewer_id, WellbeingFlag.item_id == item_id
            )
        )
    )


def flag_affected(session: Session, project: Project, actor: Actor, item_id: int) -> bool:
    """ "This affected me": kept per reviewer and item; returns False if already flagged."""
    user = reviewing_user(session, actor, project)
    if is_flagged(session, user.id, item_id):
        return False
    item = session.get(Item, item_id)
    if item is None or item.project_id != project.id:
        raise NotFoundError(f"no item {item_id} in project {project.name!r}")
    session.add(WellbeingFlag(project_id=project.id, reviewer_id=user.id, item_id=item_id))
    # The audit trail records that a flag was raised, not by whom, so leads see no names.
    record_event(session, Actor.system(), "review.affected_flag", project_id=project.id)
    return True


def affected_counts(session: Session, project: Project, actor: Actor) -> AffectedCounts:
    """Aggregates only, for leads."""
    require_project_role(session, actor, project, Role.lead, action="see wellbeing flags")
    flags, items, reviewers = session.execute(
        select(
            func.count(),
            func.count(func.distinct(WellbeingFlag.item_id)),
            func.count(func.distinct(WellbeingFlag.reviewer_id)),
        ).where(WellbeingFlag.project_id == project.id)
    ).one()
    return AffectedCounts(flags, items, reviewers)
