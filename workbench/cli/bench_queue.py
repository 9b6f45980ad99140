"""`workbench bench queue`: simulated reviewers in parallel processes against the configured
database, some killed mid-lease, reporting throughput, duplicates and lost submissions."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import signal
import time
import uuid
from typing import Annotated, Any

import typer
from sqlalchemy import func, insert, select

from workbench.benchmarks import write_result
from workbench.cli._common import JsonFlag, database, emit, say

POLL_SECONDS = 0.2


def _prepare(project_name: str, workers: int, items: int, overlap: int, lease_seconds: int | None):
    """Project (if needed), this run's synthetic items and queue entries, and its reviewers."""
    from workbench.db.database import open_database
    from workbench.db.models import Item, Role, User
    from workbench.services.audit import Actor
    from workbench.services.projects import get_or_create_project, set_project_setting
    from workbench.services.queue import NewEntry, enqueue

    run = uuid.uuid4().hex[:8]
    db = open_database()
    with db.sessions.begin() as s:
        project, _ = get_or_create_project(s, project_name, Actor.system())
        if lease_seconds is not None:
            set_project_setting(s, project, "lease_seconds", lease_seconds, Actor.system())
        rows = [
            {
                "project_id": project.id,
                "external_id": f"bench-{run}-{n}",
                "text": f"synthetic item {n} of run {run}",
                "modalities": ["text"],
                "content_hash": hashlib.sha256(f"{run}:{n}".encode()).hexdigest(),
                "meta": {},
            }
            for n in range(items)
        ]
        # SQLAlchemy Core: a bulk insert, not a million ORM objects.
        s.execute(insert(Item), rows)
        ids = s.scalars(
            select(Item.id).where(
                Item.project_id == project.id, Item.external_id.like(f"bench-{run}-%")
            )
        ).all()
        enqueue(s, project, [NewEntry(i, overlap_target=overlap) for i in ids], Actor.system())
        users = []
        for n in range(workers):
            u = User(name=f"bench-{run}-r{n}", role=Role.reviewer, password_hash=None)
            s.add(u)
            users.append(u)
        s.flush()
        user_ids = [u.id for u in users]
        project_id = project.id
    db.dispose()
    return run, project_id, user_ids


def _reviewer(user_id: int, project_name: str, die_after: int | None, acks: Any, go: Any) -> None:
    """One simulated reviewer: lease, label, submit, until the queue is empty for them."""
    from workbench.db.database import open_database
    from workbench.db.models import EntryStatus, QueueEntry, User
    from workbench.services import review
    from workbench.services.audit import Actor
    from workbench.services.queue import lease_next

    db = open_database()
    with db.sessions() as s:
        user = s.get_one(User, user_id)
        actor = Actor.for_user(user.name, user.id, user.role)
    # Start together once every process has imported and connected: the clock measures work.
    acks.put(("ready", os.getpid()))
    go.wait()
    done = 0
    while True:
        with db.sessions.begin() as s:
            project = review.get_project_by_name(s, project_name)
            user = s.get_one(User, user_id)
            lease = lease_next(s, project, user)
            if lease is None:
                open_entries = s.scalar(
                    select(func.count()).where(
                        QueueEntry.project_id == project.id,
                        QueueEntry.status == EntryStatus.pending,
                    )
                )
                lease_id = None
            else:
                lease_id = lease.id
        if lease_id is None:
            if not open_entries:
                break
            time.sleep(POLL_SECONDS)  # others hold the rest; some leases may still expire
            continue
        if die_after is not None and done >= die_after:
            acks.put(("holding", os.getpid()))
            time.sleep(3600)  # killed by the parent, mid-lease
        with db.sessions.begin() as s:
            project = review.get_project_by_name(s, project_name)
            data = review.label_input({"decision": "not_violating"}, review.lease_key(lease_id))
            try:
                result = review.submit_review(s, project, actor, lease_id, data)
            except Exception as exc:  # an expired lease filled by others: not acknowledged
                acks.put(("rejected", str(exc)[:200]))
                continue
        acks.put(("ack", result.label_id))
        done += 1
    db.dispose()


def queue(
    project: Annotated[str, typer.Option("--project", "-p", help="Project (made if missing).")],
    workers: Annotated[int, typer.Option(min=1, max=512, help="Simulated reviewers.")] = 8,
    items: Annotated[int, typer.Option(min=1, help="Synthetic items added for this run.")] = 1000,
    overlap: Annotated[int, typer.Option(min=1, max=20, help="Reviewers per item.")] = 1,
    kill_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of workers killed mid-lease.")
    ] = 0.0,
    lease_seconds: Annotated[
        int | None, typer.Option(min=10, help="Lease length for the project.")
    ] = 10,
    json_mode: JsonFlag = False,
) -> None:
    """Throughput of the review queue with killed reviewers: duplicates and lost must be 0."""
    from workbench.db.models import Label

    with database(json_mode) as dbh:
        backend = dbh.engine.dialect.name
        if workers > items * overlap:
            say("note: more workers than label slots; some will find nothing to do")
        run, project_id, user_ids = _prepare(project, workers, items, overlap, lease_seconds)
        kills = round(kill_fraction * workers)
        ctx = mp.get_context("spawn")
        acks = ctx.Queue()
        go = ctx.Event()
        procs = []
        for n, uid in enumerate(user_ids):
            die_after = (3 + n) if n < kills else None
            p = ctx.Process(target=_reviewer, args=(uid, project, die_after, acks, go))
            p.start()
            procs.append(p)
        for _ in procs:
            kind, _pid = acks.get(timeout=600)
        go.set()
        started = time.perf_counter()
        acknowledged: list[int] = []
        rejected = 0
        killed = 0
        while any(p.is_alive() for p in procs) or not acks.empty():
            try:
                kind, value = acks.get(timeout=0.5)
            except Exception:
                continue
            if kind == "ack":
                acknowledged.append(int(value))
            elif kind == "holding":
                os.kill(int(value), signal.SIGKILL)
                killed += 1
            else:
                rejected += 1
        elapsed = time.perf_counter() - started
        with dbh.sessions() as s:
            labels = s.execute(
                select(Label.id, Label.item_id, Label.reviewer_id, Label.idempotency_key).where(
                    Label.reviewer_id.in_(user_ids)
                )
            ).all()
        pairs: dict[tuple[int, int], int] = {}
        keys: dict[str, int] = {}
        for lab in labels:
            pairs[(lab.item_id, lab.reviewer_id)] = pairs.get((lab.item_id, lab.reviewer_id), 0) + 1
            keys[lab.idempotency_key] = keys.get(lab.idempotency_key, 0) + 1
        duplicates = sum(v - 1 for v in pairs.values()) + sum(v - 1 for v in keys.values())
        stored = {lab.id for lab in labels}
        lost = sum(1 for a in acknowledged if a not in stored)
        result = {
            "backend": backend,
            "project": project,
            "run": run,
            "workers": workers,
            "killed": killed,
            "items": items,
            "overlap": overlap,
            "lease_seconds": lease_seconds,
            "acknowledged": len(acknowledged),
            "labels_in_db": len(labels),
            "rejected": rejected,
            "seconds": round(elapsed, 2),
            # Includes waiting for the killed workers' leases to expire (lease_seconds).
            "labels_per_second": round(len(acknowledged) / elapsed, 1) if elapsed else None,
            "duplicates": duplicates,
            "lost": lost,
            "complete": len(labels) == items * overlap,
        }
        path = write_result(f"queue-{backend}", result)
        say(f"wrote {path}")
        emit(
            result,
            json_mode,
            f"{len(acknowledged)} labels in {elapsed:.1f}s ({result['labels_per_second']}/s) on "
            f"{backend}, {killed} workers killed; duplicates {duplicates}, lost {lost}",
        )
        if duplicates or lost:
            raise typer.Exit(1)
    del project_id


def register(app: typer.Typer) -> None:
    """Add this module's commands to `workbench bench`."""
    app.command("queue")(queue)
