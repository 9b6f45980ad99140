"""Queue benchmarks: many simulated reviewers in parallel processes on the batched path, some
killed mid-lease (throughput, duplicates, lost labels), and the single-item path's latency as
the queue grows to a million entries. Both run on the configured database, SQLite or Postgres.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast

from sqlalchemy import CursorResult, Float, Table, func, insert, literal, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from workbench.bench.stats import latency_ms
from workbench.db.database import Database, open_database
from workbench.db.models import (
    AuditEvent,
    EntryKind,
    EntryStatus,
    Item,
    Label,
    Lease,
    LeaseStatus,
    Project,
    ProjectMember,
    QueueEntry,
    Role,
    User,
)
from workbench.db.types import utcnow
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.labels.validate import LabelInput, parse_label_input

POLL_SECONDS = 0.2
INSERT_CHUNK = 5000
# Retries of one transaction that lost a deadlock or a lock wait, before the worker gives up.
MAX_RETRIES = 20

Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


# --------------------------------------------------------------------------------------------
# Synthetic queues, inserted in bulk (Core; a million ORM objects would take minutes)


def add_synthetic_items(
    session: Session,
    project: Project,
    n: int,
    *,
    prefix: str,
    overlap: int = 1,
    priority: str = "equal",
    text: Callable[[int], str] | None = None,
    progress: Progress = _quiet,
) -> int:
    """Add `n` text items named `{prefix}{k}` (text `text(k)`, or a plain synthetic one) and
    one pending queue entry for each.

    priority "equal": every entry 0.0, as `queue.enqueue` gives by default (the worst case for
    the `ORDER BY priority DESC, id` of leasing); "ranked": a distinct priority per entry, as
    one large selection batch gives.
    """
    if priority not in ("equal", "ranked"):
        raise WorkbenchError(f"priority must be 'equal' or 'ranked', got {priority!r}")
    now = utcnow()
    items = cast(Table, Item.__table__)
    for start in range(0, n, INSERT_CHUNK):
        rows = [
            {
                "project_id": project.id,
                "external_id": f"{prefix}{k}",
                "text": text(k) if text else f"synthetic item {k} ({prefix})",
                "metadata": {},
                "modalities": ["text"],
                "content_hash": hashlib.sha256(f"{project.id}:{prefix}{k}".encode()).hexdigest(),
                "revision": 1,
                "created_at": now,
                "updated_at": now,
            }
            for k in range(start, min(n, start + INSERT_CHUNK))
        ]
        session.execute(insert(items), rows)
        if (start // INSERT_CHUNK) % 20 == 19:
            progress(f"  {start + len(rows):,} items")
    prio: Any = literal(0.0, Float) if priority == "equal" else -items.c.id.cast(Float)
    entries = cast(Table, QueueEntry.__table__)
    source = select(
        items.c.project_id,
        items.c.id,
        literal(0),
        literal(EntryKind.selected.value),
        literal("benchmark"),
        prio,
        literal(overlap),
        literal(0),
        literal(0),
        literal(EntryStatus.pending.value),
        literal(now, QueueEntry.created_at.type),
    ).where(items.c.project_id == project.id, items.c.external_id.like(f"{prefix}%"))
    columns = [
        "project_id", "item_id", "batch", "kind", "strategy", "priority", "overlap_target",
        "active_leases", "completed", "status", "created_at",
    ]  # fmt: skip
    inserted = session.execute(insert(entries).from_select(columns, source))
    made = cast(CursorResult[Any], inserted).rowcount
    record_event(
        session,
        Actor.system(),
        "queue.enqueued",
        project_id=project.id,
        entity_type="batch",
        entity_id=0,
        details={"entries": made, "synthetic": prefix, "overlap_target": overlap},
    )
    return n


def add_reviewers(session: Session, names: list[str], project_id: int) -> list[int]:
    """Reviewer accounts that cannot log in (simulated reviewers), inserted in one statement,
    members of the project they work on (in one more)."""
    now = utcnow()
    session.execute(
        insert(cast(Table, User.__table__)),
        [
            {"name": n, "role": Role.reviewer.value, "password_hash": None, "disabled": False,
             "created_at": now}
            for n in names
        ],
    )  # fmt: skip
    ids = dict(session.execute(select(User.name, User.id).where(User.name.in_(names))).all())
    for n in names:
        record_event(session, Actor.system(), "user.added", entity_type="user", entity_id=n,
                     details={"role": Role.reviewer.value, "can_log_in": False,
                              "reason": "simulated reviewer of a queue benchmark"})  # fmt: skip
    session.execute(
        insert(cast(Table, ProjectMember.__table__)),
        [{"project_id": project_id, "user_id": ids[n], "added_at": now, "added_by": "system"}
         for n in names],
    )  # fmt: skip
    return [ids[n] for n in names]


def _retrying(what: Callable[[], Any], counter: list[int]) -> Any:
    """Run one transaction again when the database chose it as a deadlock or lock victim.

    Safe because each attempt is a whole transaction: a rolled-back attempt left nothing.
    """
    for attempt in range(MAX_RETRIES):
        try:
            return what()
        except (DBAPIError, WorkbenchError) as exc:
            transient = isinstance(exc, WorkbenchError) and "at the same moment" in exc.message
            if isinstance(exc, DBAPIError):
                text = str(exc.orig).lower()
                transient = any(
                    t in text for t in ("deadlock", "could not serialize", "database is locked")
                )
            if not transient or attempt == MAX_RETRIES - 1:
                raise
            counter[0] += 1
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# Throughput: simulated reviewers in processes


def _not_violating() -> LabelInput:
    # The key is a placeholder: submit_batch sets each label's key from its lease.
    return parse_label_input({"decision": "not_violating", "idempotency_key": "from-lease"})


def reviewer_process(
    user_id: int,
    project_id: int,
    batch: int,
    lease_seconds: int,
    die_after_batches: int | None,
    report: Any,
    go: Any,
) -> None:
    """One simulated reviewer: lease a batch, label it, submit it, until nothing is left.

    A reviewer with `die_after_batches` reports that it holds its next batch and waits to be
    killed: its leases expire after `lease_seconds` and the others finish those items.
    `report` is this worker's own pipe: a process killed while writing to a queue shared with
    others can leave that queue's lock held and stall every other writer.
    """
    from workbench.services.queue.batch import Submission, submit_batch
    from workbench.services.queue.lease import lease_batch

    db = open_database()
    with db.sessions() as s:
        user = s.get_one(User, user_id)
        s.expunge(user)
    actor = Actor.for_user(user.name, user.id, user.role)
    data = _not_violating()
    retries = [0]
    report.send(("ready", os.getpid()))
    go.wait()  # start together once every process has imported and connected

    def lease() -> list[Any]:
        with db.sessions.begin() as s:
            return lease_batch(s, project_id, user_id, batch, lease_seconds)

    def open_entries() -> int:
        with db.sessions() as s:
            return s.scalar(
                select(func.count()).where(
                    QueueEntry.project_id == project_id, QueueEntry.status == EntryStatus.pending
                )
            ) or 0  # fmt: skip

    done = 0
    while True:
        leased = _retrying(lease, retries)
        if not leased:
            if not open_entries():
                break
            time.sleep(POLL_SECONDS)  # others hold the rest; some leases may still expire
            continue
        if die_after_batches is not None and done >= die_after_batches:
            report.send(("holding", os.getpid(), len(leased)))
            time.sleep(3600)  # killed by the parent, mid-lease

        def submit(leased: list[Any] = leased) -> Any:
            with db.sessions.begin() as s:
                subs = [Submission(le.lease_id, data) for le in leased]
                return submit_batch(s, user, subs, actor=actor)

        result = _retrying(submit, retries)
        report.send(("ack", list(result.label_ids.values()), len(result.rejected), retries[0]))
        retries[0] = 0
        done += 1
    db.dispose()
    report.close()


@dataclass
class _Tally:
    acknowledged: set[int]
    rejected: int = 0
    retries: int = 0
    killed: int = 0
    held_by_killed: int = 0
    steady_at: float | None = None  # when only the killed reviewers' leases were left
    steady_acks: int = 0


def gather_statistics(db: Database) -> str | None:
    """Planner statistics for the rows a benchmark just loaded, as autovacuum would soon gather
    them. Without them (a server with autovacuum off, or the first minute after a big load) the
    planner keeps plans made for a near-empty queue, and the lease and reclaim queries cost
    seconds each once reviewers have a few hundred labels: a missing ANALYZE, not the
    workbench. Returns Postgres's autovacuum setting (None on SQLite), for the result file.
    Raw SQL: SQLAlchemy has no construct for ANALYZE or SHOW."""
    if db.engine.dialect.name != "postgresql":
        with db.engine.begin() as c:
            c.exec_driver_sql("ANALYZE")
        return None
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("ANALYZE items, queue_entries, leases, labels, users")
        return str(c.exec_driver_sql("SHOW autovacuum").scalar())


def _take_message(conn: Connection, tally: _Tally) -> bool:
    """Count one reviewer's message (killing it when it says it holds its leases); False at EOF,
    when the reviewer has finished or died."""
    try:
        msg = conn.recv()
    except EOFError:
        return False
    if msg[0] == "ack":
        tally.acknowledged.update(int(i) for i in msg[1])
        tally.rejected += msg[2]
        tally.retries += msg[3]
    elif msg[0] == "holding":
        os.kill(int(msg[1]), signal.SIGKILL)
        tally.killed += 1
        tally.held_by_killed += int(msg[2])
    return True


def run_queue_benchmark(
    db: Database,
    project_name: str,
    *,
    workers: int,
    items: int,
    overlap: int = 1,
    kill_fraction: float = 0.0,
    lease_seconds: int = 10,
    batch: int = 20,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Run `workers` simulated reviewers on `items` new synthetic items of the project (made if
    missing) and check the result in the database: every acknowledged label stored, none
    twice, every item labelled by exactly `overlap` reviewers, an audit event per label."""
    from workbench.services.projects import get_or_create_project, set_project_setting

    if not 0.0 <= kill_fraction < 1.0:
        raise WorkbenchError(f"kill fraction must be in [0, 1), got {kill_fraction}")
    if batch < 1:
        raise WorkbenchError(f"batch must be at least 1, got {batch}")
    backend = db.engine.dialect.name
    run = uuid.uuid4().hex[:8]
    t0 = time.perf_counter()
    with db.sessions.begin() as s:
        project, _ = get_or_create_project(s, project_name, Actor.system())
        set_project_setting(s, project, "lease_seconds", lease_seconds, Actor.system())
        # The benchmark measures the queue; gold checks go through lease_next, not this path.
        add_synthetic_items(s, project, items, prefix=f"bench-{run}-", overlap=overlap,
                            progress=progress)  # fmt: skip
        user_ids = add_reviewers(s, [f"bench-{run}-r{n}" for n in range(workers)], project.id)
        project_id = project.id
    autovacuum = gather_statistics(db)
    progress(f"prepared {items:,} items and {workers} reviewers in {time.perf_counter() - t0:.1f}s")

    kills = round(kill_fraction * workers)
    ctx = mp.get_context("spawn")
    # Reviewers who die holding their first batch lease it before the others start, so that
    # the kill and the reclaim of its leases happen on every run, however the race would go.
    go_first, go = ctx.Event(), ctx.Event()
    procs = []
    readers = []
    first_doomed = []
    for n, uid in enumerate(user_ids):
        die_after = n % 2 if n < kills else None  # some die holding their first batch
        reader, writer = ctx.Pipe(duplex=False)
        p = ctx.Process(
            target=reviewer_process,
            args=(uid, project_id, batch, lease_seconds, die_after, writer,
                  go_first if die_after == 0 else go),
        )  # fmt: skip
        p.start()
        writer.close()  # the child's copy stays open: EOF here means the child is gone
        procs.append(p)
        readers.append(reader)
        if die_after == 0:
            first_doomed.append(reader)
    for reader in readers:
        if not reader.poll(600):
            raise WorkbenchError("a simulated reviewer did not start within 10 minutes")
        reader.recv()
    tally = _Tally(acknowledged=set())
    started = time.perf_counter()
    go_first.set()
    for reader in first_doomed:
        if not reader.poll(600):
            raise WorkbenchError("a reviewer to be killed leased nothing within 10 minutes")
        _take_message(reader, tally)
    go.set()
    slots = items * overlap
    open_readers = list(readers)
    while open_readers:
        for ready in mp_connection.wait(open_readers, timeout=1.0):
            conn = cast(Connection, ready)
            if not _take_message(conn, tally):
                open_readers.remove(conn)
        if (
            tally.steady_at is None
            and tally.killed == kills
            and len(tally.acknowledged) >= slots - tally.held_by_killed
        ):
            tally.steady_at = time.perf_counter() - started
            tally.steady_acks = len(tally.acknowledged)
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join(timeout=60)  # a loaded machine can take seconds to end a finished process
    failed = sum(1 for p in procs if p.exitcode not in (0, -signal.SIGKILL))
    check = check_queue_run(db, project_id, user_ids, tally.acknowledged, overlap)
    acknowledged = len(tally.acknowledged)
    return {
        "backend": backend,
        "postgres_autovacuum": autovacuum,
        "project": project_name,
        "run": run,
        "workers": workers,
        "workers_failed": failed,
        "killed": tally.killed,
        "items": items,
        "overlap": overlap,
        "batch": batch,
        "lease_seconds": lease_seconds,
        "acknowledged": acknowledged,
        "rejected": tally.rejected,
        "retries": tally.retries,
        "seconds": round(elapsed, 2),
        # End to end, including the wait for killed reviewers' leases to expire.
        "labels_per_second": round(acknowledged / elapsed, 1) if elapsed else None,
        # Until only the killed reviewers' items were left (they wait lease_seconds to expire).
        "steady_seconds": None if tally.steady_at is None else round(tally.steady_at, 2),
        "steady_labels_per_second": (
            round(tally.steady_acks / tally.steady_at, 1) if tally.steady_at else None
        ),
        **check,
        "complete": check["labels_in_db"] == slots and check["items_short"] == 0,
    }


def check_queue_run(
    db: Database, project_id: int, user_ids: list[int], acknowledged: set[int], overlap: int
) -> dict[str, Any]:
    """Duplicates, lost labels and the audit trail, counted from the database alone."""
    with db.sessions() as s:
        labels = s.execute(
            select(Label.id, Label.item_id, Label.reviewer_id, Label.idempotency_key).where(
                Label.reviewer_id.in_(user_ids)
            )
        ).all()
        audited = set(
            s.scalars(
                select(AuditEvent.entity_id).where(
                    AuditEvent.project_id == project_id,
                    AuditEvent.action == "label.recorded",
                    AuditEvent.actor_user_id.in_(user_ids),
                )
            )
        )
        expired = (
            s.scalar(
                select(func.count())
                .select_from(Lease)
                .where(Lease.reviewer_id.in_(user_ids), Lease.status == LeaseStatus.expired)
            )
            or 0
        )
    pairs = Counter((lab.item_id, lab.reviewer_id) for lab in labels)
    keys = Counter(lab.idempotency_key for lab in labels)
    per_item = Counter(lab.item_id for lab in labels)
    stored = {lab.id for lab in labels}
    return {
        "labels_in_db": len(labels),
        # One reviewer twice on an item, or one submission stored twice.
        "duplicates": sum(v - 1 for v in pairs.values()) + sum(v - 1 for v in keys.values()),
        # Acknowledged to a reviewer but not in the database.
        "lost": len(acknowledged - stored),
        # In the database but never acknowledged (a reviewer would submit it again).
        "unacknowledged": len(stored - acknowledged),
        "items_over_overlap": sum(1 for v in per_item.values() if v > overlap),
        "items_short": sum(1 for v in per_item.values() if v < overlap),
        "labels_without_audit": sum(1 for i in stored if str(i) not in audited),
        "leases_expired": expired,
    }


# --------------------------------------------------------------------------------------------
# Latency of the single-item path (what the review page does) as the queue grows


def _pending(session: Session, project_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).where(
                QueueEntry.project_id == project_id, QueueEntry.status == EntryStatus.pending
            )
        )
        or 0
    )


def ensure_latency_project(
    db: Database, name: str, size: int, *, priority: str, progress: Progress = _quiet
) -> dict[str, Any]:
    """The project `name` with at least `size` pending queue entries (one per item), made or
    topped up: each run labels some, so a project used again gets new items for those."""
    from workbench.services.projects import get_or_create_project

    t0 = time.perf_counter()
    with db.sessions.begin() as s:
        project, _ = get_or_create_project(s, name, Actor.system())
        have = _pending(s, project.id)
        added = 0
        if have < size:
            progress(f"{name}: adding {size - have:,} items and queue entries")
            added = add_synthetic_items(
                s, project, size - have, prefix=f"lat-{uuid.uuid4().hex[:6]}-",
                priority=priority, progress=progress,
            )  # fmt: skip
    if added:
        gather_statistics(db)
    with db.sessions() as s:
        pending = _pending(s, project.id)
        items = s.scalar(select(func.count()).where(Item.project_id == project.id)) or 0
    return {
        "items": items,
        "pending_entries": pending,
        "setup_seconds": round(time.perf_counter() - t0, 1),
    }


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t) * 1000


SINGLE_WARMUP = 5


def measure_single_path(
    db: Database, project_name: str, iterations: int, *, warmup: int = SINGLE_WARMUP
) -> dict[str, Any]:
    """One new reviewer: `queue.lease_next` then `review.submit_review`, each in its own
    transaction as the review page runs them; milliseconds per step and for both."""
    from workbench.services.projects import get_project
    from workbench.services.queue.lease import lease_next
    from workbench.services.review import flow as review

    with db.sessions.begin() as s:
        project_id = get_project(s, project_name).id
        (uid,) = add_reviewers(s, [f"latency-{uuid.uuid4().hex[:8]}"], project_id)
        user = s.get_one(User, uid)
        s.expunge(user)
    actor = Actor.for_user(user.name, user.id, user.role)
    lease_ms: list[float] = []
    submit_ms: list[float] = []
    for n in range(warmup + iterations):

        def lease() -> int | None:
            with db.sessions.begin() as s:
                project = get_project(s, project_name)
                lease = lease_next(s, project, s.get_one(User, uid))
                return None if lease is None else lease.id

        lease_id, t_lease = _timed(lease)
        if lease_id is None:
            raise WorkbenchError(f"project {project_name!r} ran out of entries to lease")

        def submit(lease_id: int = lease_id) -> Any:
            with db.sessions.begin() as s:
                project = get_project(s, project_name)
                form = review.ReviewForm(decision="not_violating")
                return review.submit_review(s, project, actor, lease_id, form)

        result, t_submit = _timed(submit)
        if not result.created:
            raise WorkbenchError(f"lease {lease_id} was submitted before: the benchmark is wrong")
        if n >= warmup:
            lease_ms.append(t_lease)
            submit_ms.append(t_submit)
    total = [a + b for a, b in zip(lease_ms, submit_ms, strict=True)]
    return {
        "iterations": iterations,
        "lease_next": latency_ms(lease_ms, 2),
        "submit_review": latency_ms(submit_ms, 2),
        "lease_and_submit": latency_ms(total, 2),
    }


def measure_batch_path(db: Database, project_name: str, batches: int, batch: int) -> dict[str, Any]:
    """One new reviewer on the batched path: milliseconds per label, lease plus submit."""
    from workbench.services.projects import get_project
    from workbench.services.queue.batch import Submission, submit_batch
    from workbench.services.queue.lease import lease_batch

    with db.sessions.begin() as s:
        project_id = get_project(s, project_name).id
        (uid,) = add_reviewers(s, [f"latency-{uuid.uuid4().hex[:8]}"], project_id)
        user = s.get_one(User, uid)
        s.expunge(user)
        project_id = get_project(s, project_name).id
    data = _not_violating()
    per_label: list[float] = []
    for _ in range(batches):
        t = time.perf_counter()
        with db.sessions.begin() as s:
            leased = lease_batch(s, project_id, uid, batch)
        with db.sessions.begin() as s:
            result = submit_batch(s, user, [Submission(le.lease_id, data) for le in leased])
        if len(result.created) != batch:
            raise WorkbenchError(f"a batch of {batch} recorded {len(result.created)} labels")
        per_label.append((time.perf_counter() - t) * 1000 / batch)
    return {"batches": batches, "batch": batch, "per_label": latency_ms(per_label, 2)}


def run_latency_benchmark(
    db: Database,
    sizes: list[int],
    *,
    iterations: int = 200,
    project_prefix: str = "latency",
    priority: str = "equal",
    batch: int = 20,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """For each size, p50/p95 of lease + submit on a project with that many queued items."""
    if not sizes or min(sizes) < 1:
        raise WorkbenchError(f"sizes must be positive numbers of items, got {sizes}")
    batches = max(5, iterations // batch)
    needed = SINGLE_WARMUP + iterations + batches * batch
    if min(sizes) < needed:
        raise WorkbenchError(
            f"--sizes: each size must be at least {needed:,} (a run leases and labels that many: "
            f"{SINGLE_WARMUP} warm-up and {iterations} timed single leases, {batches} batches "
            f"of {batch}), got {min(sizes):,}"
        )
    out: list[dict[str, Any]] = []
    for size in sizes:
        name = f"{project_prefix}-{priority}-{size}"
        setup = ensure_latency_project(db, name, size, priority=priority, progress=progress)
        progress(f"{name}: timing {iterations} lease + submit")
        single = measure_single_path(db, name, iterations)
        batched = measure_batch_path(db, name, batches, batch)
        row = {"size": size, "project": name, **setup, **single, "batched": batched}
        progress(
            f"{name}: lease+submit p50 {single['lease_and_submit']['p50_ms']} ms, "
            f"p95 {single['lease_and_submit']['p95_ms']} ms; batched "
            f"{batched['per_label']['p50_ms']} ms/label"
        )
        out.append(row)
    return {
        "backend": db.engine.dialect.name,
        "priority": priority,
        "target_ms_p50": 20,
        "sizes": out,
    }


def iter_sizes(text: str) -> Iterator[int]:
    """`10000,100000,1e6` -> 10000, 100000, 1000000."""
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if not part:
            continue
        try:
            yield int(float(part)) if "e" in part.lower() else int(part)
        except ValueError:
            raise WorkbenchError(
                f"sizes must be whole numbers separated by commas, found {part!r}"
            ) from None
