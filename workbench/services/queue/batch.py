"""Submitting many labels of leased items in one transaction, in SQLAlchemy Core, for clients
that review fast (simulated reviewers, a labelling API, a UI that prefetches); their leases come
from `queue.lease.lease_batch`.

Same invariants as the one-at-a-time path, held by the same means:
- the labels are checked and recorded by labels/record.py (`check_labels`, `insert_labels`), the
  rules and the `label.recorded` audit event of `record_label`, inserted in bulk;
- a label's idempotency key is derived from its lease (`lease:{id}`, as the review page does),
  and the insert is ON CONFLICT DO NOTHING on (project, key), so resubmitting a batch never
  makes a second label, and a key held by another label of the project is refused, named;
- an entry is counted by one guarded UPDATE, so it never gets more completed plus active leases
  than its overlap target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, case, delete, false, or_, select, update
from sqlalchemy.orm import Session

from workbench.db.models import EntryStatus, LabelSource, LeaseStatus, Project, ReviewDraft, User
from workbench.db.types import utcnow
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.labels.record import (
    PendingLabel,
    check_labels,
    insert_labels,
    require_may_record,
)
from workbench.services.labels.validate import LabelInput, item_facts
from workbench.services.membership import is_member
from workbench.services.queue.lease import (
    HAS_FREE_SLOT,
    entries,
    is_postgres,
    labels,
    lease_key,
    leases,
    lock_entries,
)

drafts = cast(Table, ReviewDraft.__table__)


@dataclass(frozen=True)
class Submission:
    """The label of one leased item. Its idempotency key is set from the lease."""

    lease_id: int
    data: LabelInput


@dataclass
class BatchSubmitResult:
    """What a batch submission did, per lease."""

    created: dict[int, int] = field(default_factory=dict)  # lease id -> new label id
    already: dict[int, int] = field(default_factory=dict)  # lease id -> label from before
    rejected: dict[int, str] = field(default_factory=dict)  # lease id -> why nothing happened

    @property
    def label_ids(self) -> dict[int, int]:
        """Every lease's label, new or from an earlier submission of the same lease."""
        return {**self.already, **self.created}


def _lock_leases(session: Session, lease_ids: list[int]) -> None:
    """Serialise submissions of the same leases (a retried batch, a second client)."""
    if is_postgres(session):
        session.execute(
            select(leases.c.id).where(leases.c.id.in_(lease_ids)).order_by(leases.c.id)
            .with_for_update()
        )  # fmt: skip
    else:
        # SQLite has no row locks: a write that changes nothing takes the one writer's lock,
        # so the reads below cannot go stale before this transaction commits.
        session.execute(
            update(leases).where(leases.c.id.in_(lease_ids)).values(status=leases.c.status)
        )


def submit_batch(
    session: Session,
    reviewer: User,
    submissions: Sequence[Submission],
    *,
    actor: Actor | None = None,
    now: datetime | None = None,
) -> BatchSubmitResult:
    """Record the labels of leased items and close their leases, each exactly once.

    Per lease, like `review.submit_review`: a lease whose label exists already is reported in
    `already` (a retry changes nothing); a lease that is not the reviewer's, was closed, or
    expired and went to someone else, or whose label breaks the taxonomy or the item's bounds
    (`labels.record.check_labels`: `record_label`'s rules), is reported in `rejected` and
    leaves nothing behind. The others are recorded: label, lease submitted, entry counted (done
    once it has its overlap), one `label.recorded` audit event per label.
    """
    now = now or utcnow()
    actor = actor or Actor.for_user(reviewer.name, reviewer.id, reviewer.role)
    require_may_record(actor, reviewer, LabelSource.human)
    result = BatchSubmitResult()
    data_of: dict[int, LabelInput] = {}
    for sub in submissions:
        data_of.setdefault(sub.lease_id, sub.data)  # the same lease twice: the first counts
    if not data_of:
        return result
    lease_ids = sorted(data_of)
    _lock_leases(session, lease_ids)

    rows = {
        r.id: r
        for r in session.execute(
            select(
                leases.c.id,
                leases.c.entry_id,
                leases.c.status,
                leases.c.leased_at,
                entries.c.project_id,
                entries.c.item_id,
                entries.c.status.label("entry_status"),
                entries.c.active_leases,
                entries.c.completed,
                entries.c.overlap_target,
            )
            .join(entries, entries.c.id == leases.c.entry_id)
            .where(leases.c.id.in_(lease_ids), leases.c.reviewer_id == reviewer.id)
        )
    }
    keys = {lid: lease_key(lid) for lid in lease_ids}
    # Keys are unique per project: a label is this lease's only if it is of the lease's project.
    by_key = select(
        labels.c.id, labels.c.project_id, labels.c.idempotency_key, labels.c.item_id,
        labels.c.reviewer_id,
    ).where(
        labels.c.idempotency_key.in_(list(keys.values())),
        labels.c.project_id.in_(sorted({r.project_id for r in rows.values()})),
    )  # fmt: skip
    existing = {(r.project_id, r.idempotency_key): r for r in session.execute(by_key)}

    candidates: list[int] = []
    for lid in lease_ids:
        row = rows.get(lid)
        if row is None:
            result.rejected[lid] = f"no lease {lid} held by {reviewer.name!r}"
            continue
        label = existing.get((row.project_id, keys[lid]))
        if label is not None:
            if label.item_id == row.item_id and label.reviewer_id == reviewer.id:
                result.already[lid] = label.id
            else:
                result.rejected[lid] = f"idempotency key {keys[lid]!r} belongs to another label"
            continue
        if row.status not in (LeaseStatus.active, LeaseStatus.expired):
            result.rejected[lid] = (
                f"lease {lid} was already {row.status.value}; the item is no longer yours"
            )
            continue
        # A reclaimed lease gave its slot back; its work still counts if nobody took the slot.
        if row.status == LeaseStatus.expired and (
            row.entry_status != EntryStatus.pending
            or row.active_leases + row.completed >= row.overlap_target
        ):
            result.rejected[lid] = "the lease expired and the item went to another reviewer"
            continue
        candidates.append(lid)
    projects = {
        pid: session.get_one(Project, pid) for pid in {rows[lid].project_id for lid in candidates}
    }
    # A reviewer removed from a project keeps no way in through leases taken before.
    outside = {pid for pid, p in projects.items() if not is_member(session, actor, p)}
    for lid in [lid for lid in candidates if rows[lid].project_id in outside]:
        project = projects[rows[lid].project_id]
        result.rejected[lid] = f"{actor.name} is not a member of project {project.name!r}"
        candidates.remove(lid)
    if not candidates:
        return result

    # `record_label`'s rules, with the items and the taxonomy loaded once.
    facts = item_facts(session, {rows[lid].item_id for lid in candidates})
    started = dict(
        session.execute(
            select(drafts.c.item_id, drafts.c.started_at).where(
                drafts.c.reviewer_id == reviewer.id,
                drafts.c.item_id.in_([rows[lid].item_id for lid in candidates]),
            )
        ).all()
    )
    pending: dict[int, PendingLabel] = {}
    for lid in candidates:
        row = rows[lid]
        data = data_of[lid]
        updates: dict[str, Any] = {"idempotency_key": keys[lid]}
        if data.time_spent_ms is None:
            start = started.get(row.item_id, row.leased_at)
            updates["time_spent_ms"] = max(0, int((now - start).total_seconds() * 1000))
        pending[lid] = PendingLabel(
            project=projects[row.project_id],
            item=facts[row.item_id],
            data=data.model_copy(update=updates),
            audit={"lease": lid},
        )
    values, rejected = check_labels(session, reviewer, pending, source=LabelSource.human, now=now)
    result.rejected.update(rejected)
    if not values:
        return result

    # Count the entries first, in one guarded statement. An active lease holds its slot, so it
    # moves from active to completed; an expired one gave its slot back and takes it again
    # only if it is still free. `status` is computed from the old values (SQL SET semantics).
    active = sorted(lid for lid in values if rows[lid].status == LeaseStatus.active)
    active_entries = [rows[lid].entry_id for lid in active]
    was_active = entries.c.id.in_(active_entries) if active_entries else false()
    lock_entries(session, (rows[lid].entry_id for lid in values))
    counted = {
        entry_id
        for (entry_id,) in session.execute(
            update(entries)
            .where(
                entries.c.id.in_(sorted(rows[lid].entry_id for lid in values)),
                or_(was_active, and_(entries.c.status == EntryStatus.pending, HAS_FREE_SLOT)),
            )
            .values(
                completed=entries.c.completed + 1,
                active_leases=entries.c.active_leases - case((was_active, 1), else_=0),
                status=case(
                    (entries.c.completed + 1 >= entries.c.overlap_target, EntryStatus.done.value),
                    else_=entries.c.status,
                ),
            )
            .returning(entries.c.id)
        )
    }
    for lid in list(values):
        if rows[lid].entry_id not in counted:
            # Only an expired lease can miss: its slot was taken between the read and now.
            result.rejected[lid] = "the lease expired and the item went to another reviewer"
            del values[lid]
    if not values:
        return result

    ordered = sorted(values)
    batch = {lid: replace(values[lid], details={**values[lid].details, "batch": len(ordered)})
             for lid in ordered}  # fmt: skip
    result.created.update(insert_labels(session, batch, actor=actor, now=now))
    if len(result.created) != len(ordered):
        # The leases are locked, so only a submission of the same lease through another path
        # racing this one gets here; raising rolls the whole batch back and a retry sorts it.
        raise WorkbenchError(
            "another submission of the same leases was recorded at the same moment; "
            "submit the batch again (nothing was recorded twice)"
        )

    session.execute(
        update(leases)
        .where(
            leases.c.id == bindparam("lease_id"),
            or_(leases.c.status == LeaseStatus.active, leases.c.status == LeaseStatus.expired),
        )
        .values(status=LeaseStatus.submitted, finished_at=now, label_id=bindparam("label_id")),
        [{"lease_id": lid, "label_id": result.created[lid]} for lid in ordered],
    )
    done_items = [rows[lid].item_id for lid in ordered]
    session.execute(
        delete(drafts).where(
            and_(drafts.c.reviewer_id == reviewer.id, drafts.c.item_id.in_(done_items))
        )
    )
    return result
