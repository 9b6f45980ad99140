"""The review queue's batched hot path: lease up to n entries in one statement and submit many
labels in one transaction, in SQLAlchemy Core, for clients that review fast (simulated reviewers,
a labelling API, a UI that prefetches).

Same invariants as `services/queue.py`, held by the same means:
- leasing is one guarded UPDATE on the entries' counters, so no entry ever has more active plus
  completed leases than its overlap target; on Postgres the candidates are picked with
  `FOR UPDATE SKIP LOCKED`, on SQLite the UPDATE runs under the single writer's lock;
- the UNIQUE (entry, reviewer) constraint on leases keeps an entry from reaching one reviewer
  twice even if two of their clients lease at once;
- a label's idempotency key is derived from its lease (`lease:{id}`, as the review page does),
  and the insert is ON CONFLICT DO NOTHING, so resubmitting a batch never makes a second label.
Every label gets its own `label.recorded` audit event, as one recorded by `record_label` does.
Gold items are not handed out here: they reach reviewers through `queue.lease_next`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    CTE,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    false,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from workbench.db.models import (
    AuditEvent,
    EntryKind,
    EntryStatus,
    Label,
    LabelSource,
    Lease,
    LeaseStatus,
    Project,
    QueueEntry,
    ReviewDraft,
    User,
)
from workbench.db.types import utcnow
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.labels.record import (
    LabelInput,
    PolicyRules,
    check_label,
    item_facts,
    label_values,
    require_may_record,
)
from workbench.services.projects import project_settings
from workbench.services.review.flow import lease_key
from workbench.services.taxonomy import current_policy_version, get_policy_version

# Core tables: the hot path builds no ORM objects.
entries = cast(Table, QueueEntry.__table__)
leases = cast(Table, Lease.__table__)
labels = cast(Table, Label.__table__)
audit_events = cast(Table, AuditEvent.__table__)
drafts = cast(Table, ReviewDraft.__table__)

# Expired leases reclaimed per call: bounded, so one call never stalls on a backlog.
RECLAIM_LIMIT = 1000


@dataclass(frozen=True)
class LeasedEntry:
    """One lease the reviewer holds, with what a client needs to show the item."""

    lease_id: int
    entry_id: int
    item_id: int
    expires_at: datetime
    idempotency_key: str  # the key the label of this lease must carry


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


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _insert(session: Session, table: Table) -> postgresql.Insert | sqlite.Insert:
    # The dialect's own INSERT, for ON CONFLICT DO NOTHING (same spelling on both backends).
    if _is_postgres(session):
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
    if _is_postgres(session):
        cte = cte.prefix_with("MATERIALIZED")
    return cte


# --------------------------------------------------------------------------------------------
# Leasing


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
    if _is_postgres(session):
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
    held = _held(session, project_id, reviewer_id, n, now)
    wanted = n - len(held)
    if wanted <= 0:
        return held

    room = entries.c.active_leases + entries.c.completed < entries.c.overlap_target
    already = exists().where(leases.c.entry_id == entries.c.id, leases.c.reviewer_id == reviewer_id)
    # project_id too, so the (project_id, item_id) index on labels answers it.
    labelled = exists().where(
        labels.c.project_id == entries.c.project_id,
        labels.c.item_id == entries.c.item_id,
        labels.c.reviewer_id == reviewer_id,
    )
    # Fast only with an index in this very order, (project_id, status, priority DESC, id): one
    # short range scan. An ascending priority index cannot give `DESC, id ASC`, so the database
    # then reads and sorts every pending entry of the project on each call.
    candidates = (
        select(entries.c.id)
        .where(
            entries.c.project_id == project_id,
            entries.c.status == EntryStatus.pending,
            entries.c.kind != EntryKind.gold,
            room,
            ~already,
            ~labelled,
        )
        .order_by(entries.c.priority.desc(), entries.c.id)
        .limit(wanted)
    )
    if _is_postgres(session):
        # Rows another reviewer is leasing right now are skipped, not waited for.
        candidates = candidates.with_for_update(skip_locked=True, of=entries)
    # The guard is repeated on the UPDATE itself: under Postgres READ COMMITTED it is evaluated
    # again on the locked row's latest version, so a slot filled meanwhile is never overfilled.
    picked = _once(session, candidates, "candidates")
    taken = session.execute(
        update(entries)
        .where(entries.c.id.in_(select(picked.c.id)), entries.c.status == EntryStatus.pending, room)
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
# Submitting


def _lock_leases(session: Session, lease_ids: list[int]) -> None:
    """Serialise submissions of the same leases (a retried batch, a second client)."""
    if _is_postgres(session):
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


class _Rules:
    """The policy rules a batch needs, each version loaded once."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.current: dict[int, PolicyRules] = {}
        self.versions: dict[tuple[int, int], PolicyRules] = {}

    def get(self, project: Project, version: int | None) -> PolicyRules | str:
        try:
            if version is None:
                if project.id not in self.current:
                    self.current[project.id] = PolicyRules.of(
                        current_policy_version(self.session, project)
                    )
                return self.current[project.id]
            if (project.id, version) not in self.versions:
                self.versions[(project.id, version)] = PolicyRules.of(
                    get_policy_version(self.session, project, version)
                )
            return self.versions[(project.id, version)]
        except WorkbenchError as exc:
            return exc.message


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
    (the same `check_label` as every label), is reported in `rejected` and leaves nothing
    behind. The others are recorded: label, lease submitted, entry counted (done once it has
    its overlap), one audit event per label.
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
    by_key = select(
        labels.c.id, labels.c.idempotency_key, labels.c.item_id, labels.c.reviewer_id
    ).where(labels.c.idempotency_key.in_(list(keys.values())))
    existing = {r.idempotency_key: r for r in session.execute(by_key)}

    candidates: list[int] = []
    for lid in lease_ids:
        row = rows.get(lid)
        if row is None:
            result.rejected[lid] = f"no lease {lid} held by {reviewer.name!r}"
            continue
        label = existing.get(keys[lid])
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
        if data_of[lid].supersedes is not None:
            result.rejected[lid] = "a lease's label corrects nothing; corrections go one by one"
            continue
        candidates.append(lid)
    if not candidates:
        return result

    # The same checks `record_label` makes, with the items and the taxonomy loaded once.
    facts = item_facts(session, {rows[lid].item_id for lid in candidates})
    projects = {
        pid: session.get_one(Project, pid) for pid in {rows[lid].project_id for lid in candidates}
    }
    rules = _Rules(session)
    started = dict(
        session.execute(
            select(drafts.c.item_id, drafts.c.started_at).where(
                drafts.c.reviewer_id == reviewer.id,
                drafts.c.item_id.in_([rows[lid].item_id for lid in candidates]),
            )
        ).all()
    )
    values: dict[int, dict[str, Any]] = {}
    for lid in candidates:
        row = rows[lid]
        data = data_of[lid]
        project = projects[row.project_id]
        pv = rules.get(project, data.policy_version)
        if isinstance(pv, str):
            result.rejected[lid] = pv
            continue
        updates: dict[str, Any] = {"idempotency_key": keys[lid]}
        if data.time_spent_ms is None:
            start = started.get(row.item_id, row.leased_at)
            updates["time_spent_ms"] = max(0, int((now - start).total_seconds() * 1000))
        data = data.model_copy(update=updates)
        problems = check_label(data, facts[row.item_id], pv, LabelSource.human)
        if problems:
            where = facts[row.item_id].external_id
            reasons = "; ".join(str(p) for p in problems)
            result.rejected[lid] = f"invalid label for item {where!r}: {reasons}"
            continue
        data_of[lid] = data
        values[lid] = label_values(
            project,
            row.item_id,
            reviewer.id,
            pv.policy_version_id,
            data,
            LabelSource.human,
            data.created_at or now,
        )
    if not values:
        return result

    # Count the entries first, in one guarded statement. An active lease holds its slot, so it
    # moves from active to completed; an expired one gave its slot back and takes it again
    # only if it is still free. `status` is computed from the old values (SQL SET semantics).
    active = sorted(lid for lid in values if rows[lid].status == LeaseStatus.active)
    active_entries = [rows[lid].entry_id for lid in active]
    room = entries.c.active_leases + entries.c.completed < entries.c.overlap_target
    was_active = entries.c.id.in_(active_entries) if active_entries else false()
    counted = {
        entry_id
        for (entry_id,) in session.execute(
            update(entries)
            .where(
                entries.c.id.in_(sorted(rows[lid].entry_id for lid in values)),
                or_(was_active, and_(entries.c.status == EntryStatus.pending, room)),
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
    inserted = {
        key: label_id
        for label_id, key in session.execute(
            _insert(session, labels)
            .on_conflict_do_nothing(index_elements=[labels.c.idempotency_key])
            .returning(labels.c.id, labels.c.idempotency_key),
            [values[lid] for lid in ordered],
        )
    }
    if len(inserted) != len(ordered):
        # The leases are locked, so only a submission of the same lease through another path
        # racing this one gets here; raising rolls the whole batch back and a retry sorts it.
        raise WorkbenchError(
            "another submission of the same leases was recorded at the same moment; "
            "submit the batch again (nothing was recorded twice)"
        )
    for lid in ordered:
        result.created[lid] = inserted[keys[lid]]

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
    # One audit event per label, with what `record_label` writes, in one executemany.
    session.execute(
        audit_events.insert(),
        [
            {
                "at": now,
                "actor": actor.name,
                "actor_user_id": actor.user_id,
                "action": "label.recorded",
                "project_id": rows[lid].project_id,
                "entity_type": "label",
                "entity_id": str(result.created[lid]),
                "details": {
                    "item": facts[rows[lid].item_id].external_id,
                    "reviewer": reviewer.name,
                    "decision": data_of[lid].decision.value,
                    "policies": list(data_of[lid].policies),
                    "source": LabelSource.human.value,
                    "supersedes": None,
                    "lease": lid,
                    "batch": len(ordered),
                },
            }
            for lid in ordered
        ],
    )
    return result
