"""Leasing from the review queue: which entry a reviewer may lease, one at a time (the review
page, `lease_next`) or n at once (fast clients, `lease_batch`), by one rule (`_leasable`); gold
checks mixed in; expiry, reclaim, release and closing a lease.

Leasing is one guarded UPDATE on the entry's counters, so two reviewers can never both take the
last slot of an entry:
- SQLite (one writer at a time): the UPDATE re-checks `active_leases + completed <
  overlap_target` under the write lock.
- Postgres: the candidate rows are picked with `FOR UPDATE SKIP LOCKED`, so concurrent reviewers
  take different rows instead of queueing behind one another.
The UNIQUE (entry, reviewer) constraint on leases makes "never twice to the same reviewer" hold
even if everything else went wrong.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CTE, ColumnElement, Select, Table, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workbench.db.models import (
    EntryKind,
    EntryStatus,
    Label,
    Lease,
    LeaseStatus,
    Project,
    QueueEntry,
    User,
)
from workbench.db.rows import rows_changed
from workbench.db.types import utcnow
from workbench.errors import NotFoundError, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.membership import require_member
from workbench.services.projects import project_settings

# Core tables: the batched path builds no ORM objects.
entries = cast(Table, QueueEntry.__table__)
leases = cast(Table, Lease.__table__)
labels = cast(Table, Label.__table__)

# Expired leases reclaimed per batched call: bounded, so one call never stalls on a backlog.
RECLAIM_LIMIT = 1000


@dataclass(frozen=True)
class LeasedEntry:
    """One lease the reviewer holds, with what a client needs to show the item."""

    lease_id: int
    entry_id: int
    item_id: int
    expires_at: datetime
    idempotency_key: str  # the key the label of this lease must carry


def lease_key(lease_id: int) -> str:
    """The idempotency key of the one label a lease can produce.

    Derived from the lease, not from the browser, so a double click, a retry after a reconnect
    and a second tab all name the same submission and at most one label results.
    """
    return f"lease:{lease_id}"


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_entries(session: Session, entry_ids: Iterable[int]) -> None:
    """Lock queue entries in ascending id order before a statement that changes several.

    Why: Postgres locks the rows of `UPDATE ... WHERE id IN (...)` in whatever order its scan
    meets them, so two transactions counting overlapping entries (two reviewers of one overlap
    item, a submit beside a reclaim) can each hold a row the other waits for: a deadlock, and
    one of them fails. Every multi-entry write takes its locks here first, in one global order,
    so they queue instead. (SQLite has one writer at a time; nothing to do there.)
    """
    ids = sorted(set(entry_ids))
    if ids and is_postgres(session):
        session.execute(
            select(entries.c.id).where(entries.c.id.in_(ids)).order_by(entries.c.id)
            .with_for_update()
        )  # fmt: skip


def _insert(session: Session, table: Table) -> postgresql.Insert | sqlite.Insert:
    # The dialect's own INSERT, for ON CONFLICT DO NOTHING (same spelling on both backends).
    if is_postgres(session):
        return postgresql.insert(table)
    return sqlite.insert(table)


def _once(session: Session, rows: Select[Any], name: str) -> CTE:
    """`rows` as a CTE that runs exactly once.

    Why: in `UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` Postgres may
    rescan the subquery, and a rescan skips the rows this statement already updated and takes
    the next ones, so more than n rows change. A MATERIALIZED CTE is computed once. (SQLite
    evaluates an uncorrelated IN list once anyway; the CTE changes nothing there.)
    """
    cte = rows.cte(name)
    if is_postgres(session):
        cte = cte.prefix_with("MATERIALIZED")
    return cte


# --------------------------------------------------------------------------------------------
# Which entry a reviewer may lease


# An entry has a free slot while its active plus completed leases are below its overlap target.
HAS_FREE_SLOT = entries.c.active_leases + entries.c.completed < entries.c.overlap_target


def _leasable(project_id: int, reviewer_id: int) -> list[ColumnElement[bool]]:
    """Entries of the ordinary queue this reviewer may lease: pending, not gold (gold items
    reach reviewers only through `lease_gold_if_due`), with a free slot, never leased by them
    and of an item they have not labelled. The same rule for `lease_next` and `lease_batch`."""
    already = exists().where(leases.c.entry_id == entries.c.id, leases.c.reviewer_id == reviewer_id)
    # project_id too, so the (project_id, item_id) index on labels answers it.
    labelled = exists().where(
        labels.c.project_id == entries.c.project_id,
        labels.c.item_id == entries.c.item_id,
        labels.c.reviewer_id == reviewer_id,
    )
    return [
        entries.c.project_id == project_id,
        entries.c.status == EntryStatus.pending,
        entries.c.kind != EntryKind.gold,
        HAS_FREE_SLOT,
        ~already,
        ~labelled,
    ]


def _best_first(session: Session, project_id: int, reviewer_id: int, n: int) -> Select[Any]:
    """Up to `n` leasable entries' ids, highest priority then oldest first.

    Fast only with an index in this very order, (project_id, status, priority DESC, id): one
    short range scan. An ascending priority index cannot give `DESC, id ASC`, so the database
    then reads and sorts every pending entry of the project on each call.
    """
    best = (
        select(entries.c.id)
        .where(*_leasable(project_id, reviewer_id))
        .order_by(entries.c.priority.desc(), entries.c.id)
        .limit(n)
    )
    if is_postgres(session):
        # Rows another reviewer is leasing right now are skipped, not waited for.
        best = best.with_for_update(skip_locked=True, of=entries)
    return best


# --------------------------------------------------------------------------------------------
# Expiry


def reclaim_expired(
    session: Session, project: Project | None = None, now: datetime | None = None
) -> int:
    """Return the slots of expired leases to their entries; returns how many expired."""
    now = now or utcnow()
    q = select(Lease.id, Lease.entry_id).where(
        Lease.status == LeaseStatus.active, Lease.expires_at < now
    )
    if project is not None:
        q = q.join(QueueEntry, QueueEntry.id == Lease.entry_id).where(
            QueueEntry.project_id == project.id
        )
    n = 0
    for lease_id, entry_id in session.execute(q.limit(10_000)).all():
        # Guarded: only the transaction that flips the lease gives the slot back.
        flipped = rows_changed(
            session,
            update(Lease)
            .where(Lease.id == lease_id, Lease.status == LeaseStatus.active)
            .values(status=LeaseStatus.expired, finished_at=now)
            .execution_options(synchronize_session=False),
        )
        if flipped:
            session.execute(
                update(QueueEntry)
                .where(QueueEntry.id == entry_id, QueueEntry.active_leases > 0)
                .values(active_leases=QueueEntry.active_leases - 1)
                .execution_options(synchronize_session=False)
            )
            n += 1
    return n


def reclaim_expired_batch(session: Session, project_id: int, now: datetime) -> int:
    """Return the slots of the project's expired leases (up to RECLAIM_LIMIT); how many expired.

    Guarded like `queue.reclaim_expired`: only the statement that flips a lease from active to
    expired gives its slot back, so two reviewers reclaiming at once never give one back twice.
    """
    expired = (
        select(leases.c.id)
        .join(entries, entries.c.id == leases.c.entry_id)
        .where(
            entries.c.project_id == project_id,
            leases.c.status == LeaseStatus.active,
            leases.c.expires_at < now,
        )
        .order_by(leases.c.id)
        .limit(RECLAIM_LIMIT)
    )
    if is_postgres(session):
        # Leases another reviewer is reclaiming (or submitting) right now are theirs to handle.
        expired = expired.with_for_update(skip_locked=True, of=leases)
    picked = _once(session, expired, "expired")
    flipped = session.execute(
        update(leases)
        .where(leases.c.id.in_(select(picked.c.id)), leases.c.status == LeaseStatus.active)
        .values(status=LeaseStatus.expired, finished_at=now)
        .returning(leases.c.entry_id)
    ).all()
    slots = Counter(entry_id for (entry_id,) in flipped)
    lock_entries(session, slots)
    by_count: dict[int, list[int]] = defaultdict(list)
    for entry_id, n in slots.items():
        by_count[n].append(entry_id)
    for n, entry_ids in sorted(by_count.items()):
        session.execute(
            update(entries)
            .where(entries.c.id.in_(sorted(entry_ids)))
            .values(active_leases=entries.c.active_leases - n)
        )
    return len(flipped)


# --------------------------------------------------------------------------------------------
# One lease at a time (the review page)


def active_lease(
    session: Session, project: Project, reviewer: User, now: datetime | None = None
) -> Lease | None:
    now = now or utcnow()
    return session.scalar(
        select(Lease)
        .join(QueueEntry, QueueEntry.id == Lease.entry_id)
        .where(
            QueueEntry.project_id == project.id,
            Lease.reviewer_id == reviewer.id,
            Lease.status == LeaseStatus.active,
            Lease.expires_at >= now,
        )
        .order_by(Lease.leased_at)
        .limit(1)
    )


def lease_next(
    session: Session,
    project: Project,
    reviewer: User,
    *,
    lease_seconds: int | None = None,
    now: datetime | None = None,
) -> Lease | None:
    """The reviewer's current lease if one holds, else a new lease on the best open entry.

    Returns None when nothing is left for this reviewer.
    """
    require_member(session, reviewer, project)
    now = now or utcnow()
    current = active_lease(session, project, reviewer, now)
    if current is not None:
        return current
    reclaim_expired(session, project, now)
    seconds = lease_seconds or project_settings(project).lease_seconds
    # Gold checks: at the project's gold rate this lease is a gold item instead, handed out by
    # its own path so it looks like any other item.
    gold = lease_gold_if_due(session, project, reviewer, now=now, lease_seconds=seconds)
    if gold is not None:
        return gold
    for _attempt in range(5):
        entry_id = session.scalar(_best_first(session, project.id, reviewer.id, 1))
        if entry_id is None:
            return None
        lease = take_slot(session, entry_id, reviewer, now=now, lease_seconds=seconds)
        if lease is not None:
            return lease
        # another reviewer took the last slot first, or this reviewer's other tab: pick again
    return None


def take_slot(
    session: Session, entry_id: int, reviewer: User, *, now: datetime, lease_seconds: int
) -> Lease | None:
    """Lease one slot of an entry: a guarded UPDATE of its counter, then the lease row.

    None when the entry is full or no longer pending (another reviewer won the race), or when
    this reviewer already holds a lease on it (a second tab): the slot is given back then.
    """
    taken = rows_changed(
        session,
        update(QueueEntry)
        .where(
            QueueEntry.id == entry_id,
            QueueEntry.status == EntryStatus.pending,
            QueueEntry.active_leases + QueueEntry.completed < QueueEntry.overlap_target,
        )
        .values(active_leases=QueueEntry.active_leases + 1)
        .execution_options(synchronize_session=False),
    )
    if not taken:
        return None
    lease = Lease(
        entry_id=entry_id,
        reviewer_id=reviewer.id,
        status=LeaseStatus.active,
        leased_at=now,
        expires_at=now + timedelta(seconds=lease_seconds),
    )
    try:
        with session.begin_nested():
            session.add(lease)
            session.flush()
    except IntegrityError:
        # Same reviewer twice on one entry (a race with their own other tab): undo the slot.
        session.execute(
            update(QueueEntry)
            .where(QueueEntry.id == entry_id)
            .values(active_leases=QueueEntry.active_leases - 1)
            .execution_options(synchronize_session=False)
        )
        return None
    return lease


# --------------------------------------------------------------------------------------------
# Gold checks mixed into a reviewer's leases (quality/gold.py marks the gold items)


def gold_period(gold_rate: float) -> int | None:
    """One gold lease in every `period` leases; None when gold is off."""
    if gold_rate <= 0:
        return None
    return max(1, round(1 / gold_rate))


def gold_slot_due(project_id: int, reviewer_id: int, leases_before: int, period: int) -> bool:
    """Whether the reviewer's next lease (after `leases_before` of them) is the gold one of its
    block. The position within each block comes from a hash, so it is repeatable but not
    always the same place."""
    block, position = divmod(leases_before, period)
    digest = hashlib.sha256(f"gold:{project_id}:{reviewer_id}:{block}".encode()).digest()
    return position == int.from_bytes(digest[:8], "big") % period


def lease_gold_if_due(
    session: Session,
    project: Project,
    reviewer: User,
    *,
    now: datetime,
    lease_seconds: int,
) -> Lease | None:
    """A lease on a gold item when this reviewer's next lease is due to be gold, else None.

    Called by `queue.lease_next` before the ordinary queue. Returns None (and the ordinary
    queue serves) when gold is off, the project has no gold, it is not the gold slot, or the
    reviewer has had or labelled every gold item already.
    """
    period = gold_period(project_settings(project).gold_rate)
    if period is None:
        return None
    gold_open = (
        select(QueueEntry.id)
        .where(
            QueueEntry.project_id == project.id,
            QueueEntry.kind == EntryKind.gold,
            QueueEntry.status == EntryStatus.pending,
        )
        .limit(1)
    )
    if session.scalar(gold_open) is None:
        return None
    leases_before = (
        session.scalar(
            select(func.count())
            .select_from(Lease)
            .join(QueueEntry, QueueEntry.id == Lease.entry_id)
            .where(QueueEntry.project_id == project.id, Lease.reviewer_id == reviewer.id)
        )
        or 0
    )
    if not gold_slot_due(project.id, reviewer.id, leases_before, period):
        return None
    already = exists().where(Lease.entry_id == QueueEntry.id, Lease.reviewer_id == reviewer.id)
    labelled = exists().where(Label.item_id == QueueEntry.item_id, Label.reviewer_id == reviewer.id)
    # The least-served gold item first, so answers spread over all gold items. No SKIP LOCKED:
    # a gold entry never fills up, so concurrent reviewers only queue briefly on its counter.
    entry_id = session.scalar(
        select(QueueEntry.id)
        .where(
            QueueEntry.project_id == project.id,
            QueueEntry.kind == EntryKind.gold,
            QueueEntry.status == EntryStatus.pending,
            ~already,
            ~labelled,
        )
        .order_by(QueueEntry.completed + QueueEntry.active_leases, QueueEntry.id)
        .limit(1)
    )
    if entry_id is None:
        return None
    return take_slot(session, entry_id, reviewer, now=now, lease_seconds=lease_seconds)


# --------------------------------------------------------------------------------------------
# n leases at once (fast clients)


def _held(
    session: Session, project_id: int, reviewer_id: int, n: int, now: datetime
) -> list[LeasedEntry]:
    rows = session.execute(
        select(leases.c.id, leases.c.entry_id, entries.c.item_id, leases.c.expires_at)
        .join(entries, entries.c.id == leases.c.entry_id)
        .where(
            entries.c.project_id == project_id,
            leases.c.reviewer_id == reviewer_id,
            leases.c.status == LeaseStatus.active,
            leases.c.expires_at >= now,
        )
        .order_by(leases.c.leased_at, leases.c.id)
        .limit(n)
    ).all()
    return [LeasedEntry(r.id, r.entry_id, r.item_id, r.expires_at, lease_key(r.id)) for r in rows]


def lease_batch(
    session: Session,
    project_id: int,
    reviewer_id: int,
    n: int,
    lease_seconds: int | None = None,
    now: datetime | None = None,
) -> list[LeasedEntry]:
    """Up to `n` leases for the reviewer: the ones they still hold first, then new ones on the
    best open entries (highest priority, then oldest). An empty list: nothing is left for them.
    """
    if n < 1:
        raise WorkbenchError(f"a batch leases at least 1 entry, got n={n}")
    now = now or utcnow()
    if lease_seconds is None:
        lease_seconds = project_settings(session.get_one(Project, project_id)).lease_seconds
    # First statement is a write: on SQLite it takes the writer's lock, so everything below
    # sees the latest state and no other writer can change it before this transaction ends.
    reclaim_expired_batch(session, project_id, now)
    require_member(
        session, session.get_one(User, reviewer_id), session.get_one(Project, project_id)
    )
    held = _held(session, project_id, reviewer_id, n, now)
    wanted = n - len(held)
    if wanted <= 0:
        return held

    candidates = _best_first(session, project_id, reviewer_id, wanted)
    # The guard is repeated on the UPDATE itself: under Postgres READ COMMITTED it is evaluated
    # again on the locked row's latest version, so a slot filled meanwhile is never overfilled.
    picked = _once(session, candidates, "candidates")
    taken = session.execute(
        update(entries)
        .where(
            entries.c.id.in_(select(picked.c.id)),
            entries.c.status == EntryStatus.pending,
            HAS_FREE_SLOT,
        )
        .values(active_leases=entries.c.active_leases + 1)
        .returning(entries.c.id, entries.c.item_id, entries.c.priority)
    ).all()
    if not taken:
        return held

    expires_at = now + timedelta(seconds=lease_seconds)
    # DO NOTHING on (entry, reviewer): the same reviewer's other client took one of these
    # entries a moment ago; that slot is given back below instead of failing the whole batch.
    inserted = session.execute(
        _insert(session, leases)
        .on_conflict_do_nothing(index_elements=[leases.c.entry_id, leases.c.reviewer_id])
        .returning(leases.c.id, leases.c.entry_id),
        [
            {
                "entry_id": t.id,
                "reviewer_id": reviewer_id,
                "status": LeaseStatus.active,
                "leased_at": now,
                "expires_at": expires_at,
            }
            for t in taken
        ],
    ).all()
    lease_of = {entry_id: lease_id for lease_id, entry_id in inserted}
    lost = sorted(t.id for t in taken if t.id not in lease_of)
    if lost:
        session.execute(
            update(entries)
            .where(entries.c.id.in_(lost))
            .values(active_leases=entries.c.active_leases - 1)
        )
    order = sorted((t for t in taken if t.id in lease_of), key=lambda t: (-t.priority, t.id))
    return held + [
        LeasedEntry(lease_of[t.id], t.id, t.item_id, expires_at, lease_key(lease_of[t.id]))
        for t in order
    ]


# --------------------------------------------------------------------------------------------
# Closing a lease


def get_lease(session: Session, lease_id: int, reviewer: User) -> Lease:
    lease = session.get(Lease, lease_id)
    if lease is None or lease.reviewer_id != reviewer.id:
        raise NotFoundError(f"no lease {lease_id} held by {reviewer.name!r}")
    return lease


def finish_lease(
    session: Session,
    lease: Lease,
    *,
    status: LeaseStatus,
    label_id: int | None = None,
    skip_reason: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Close a lease (submitted, released); returns False when it was already closed.

    Guarded like the lease itself, so a retried submission never counts twice.
    """
    now = now or utcnow()
    was_active = rows_changed(
        session,
        update(Lease)
        .where(Lease.id == lease.id, Lease.status.in_([LeaseStatus.active, LeaseStatus.expired]))
        .values(status=status, finished_at=now, label_id=label_id, skip_reason=skip_reason)
        .execution_options(synchronize_session=False),
    )
    if not was_active:
        return False
    prior = lease.status  # as loaded: an expired lease already gave its slot back
    values: dict[str, Any] = {}
    if prior == LeaseStatus.active:
        values["active_leases"] = QueueEntry.active_leases - 1
    if status == LeaseStatus.submitted:
        values["completed"] = QueueEntry.completed + 1
    if values:
        session.execute(
            update(QueueEntry)
            .where(QueueEntry.id == lease.entry_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    session.execute(
        update(QueueEntry)
        .where(QueueEntry.id == lease.entry_id, QueueEntry.completed >= QueueEntry.overlap_target)
        .values(status=EntryStatus.done)
        .execution_options(synchronize_session=False)
    )
    session.expire(lease)
    return True


def release(session: Session, lease: Lease, actor: Actor, reason: str) -> None:
    """Skip: hand the entry back (to other reviewers; this one will not get it again)."""
    if not reason.strip():
        raise WorkbenchError("a skip needs a reason")
    entry = session.get_one(QueueEntry, lease.entry_id)
    if finish_lease(session, lease, status=LeaseStatus.released, skip_reason=reason):
        record_event(
            session,
            actor,
            "queue.skipped",
            project_id=entry.project_id,
            entity_type="item",
            entity_id=entry.item_id,
            details={"reason": reason},
        )
