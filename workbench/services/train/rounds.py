"""Retraining rounds: request one (by hand or every N new labels), let a worker claim and run
it (or `run_round_now` here and now), record progress, log and outcome. A round trains a head,
then refills the queue. A failed round keeps the previous model in use.

Claiming is race-free on both backends: Postgres picks the oldest queued round with
`FOR UPDATE SKIP LOCKED`; SQLite flips `queued -> running` with one guarded UPDATE.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from workbench.db.database import Database
from workbench.db.models import Label, Project, Role, RoundStatus, TrainingRound
from workbench.db.types import utcnow
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor, record_event, require_role
from workbench.services.projects import get_project, project_settings
from workbench.services.select.batch import select_batch
from workbench.services.train.train import train_round

ACTIVE = (RoundStatus.queued, RoundStatus.running)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def label_count(session: Session, project: Project) -> int:
    return session.scalar(select(func.count()).where(Label.project_id == project.id)) or 0


def open_round(session: Session, project: Project) -> TrainingRound | None:
    return session.scalar(
        select(TrainingRound)
        .where(TrainingRound.project_id == project.id, TrainingRound.status.in_(ACTIVE))
        .order_by(TrainingRound.id)
        .limit(1)
    )


def request_round(
    session: Session,
    project: Project,
    actor: Actor,
    *,
    trigger: str = "manual",
    refill_queue: bool = True,
) -> tuple[TrainingRound, bool]:
    """Queue a round for the worker; an already queued or running round is returned instead."""
    require_role(actor, Role.engineer, Role.admin, action="launch retrain rounds")
    existing = open_round(session, project)
    if existing is not None:
        return existing, False
    number = (
        session.scalar(
            select(func.max(TrainingRound.number)).where(TrainingRound.project_id == project.id)
        )
        or 0
    ) + 1
    rnd = TrainingRound(
        project_id=project.id,
        number=number,
        trigger=trigger,
        requested_by=actor.name,
        status=RoundStatus.queued,
        labels_at_request=label_count(session, project),
        refill_queue=refill_queue,
        log="",
    )
    session.add(rnd)
    session.flush()
    record_event(
        session,
        actor,
        "round.requested",
        project_id=project.id,
        entity_type="training_round",
        entity_id=number,
        details={"trigger": trigger},
    )
    return rnd, True


def maybe_request_round(session: Session, project: Project) -> TrainingRound | None:
    """Start a round when `retrain_every_n_labels` new labels arrived since the last one."""
    n = project_settings(project).retrain_every_n_labels
    if n <= 0 or open_round(session, project) is not None:
        return None
    last = (
        session.scalar(
            select(func.max(TrainingRound.labels_at_request)).where(
                TrainingRound.project_id == project.id
            )
        )
        or 0
    )
    if label_count(session, project) - last < n:
        return None
    rnd, _ = request_round(session, project, Actor.system(), trigger="label_count")
    return rnd


def claim_next_round(
    session: Session, worker: str, round_id: int | None = None
) -> TrainingRound | None:
    """Take the oldest queued round (or that one round) for this worker, or None."""
    q = (
        select(TrainingRound.id)
        .where(TrainingRound.status == RoundStatus.queued)
        .order_by(TrainingRound.id)
        .limit(1)
    )
    if round_id is not None:
        q = q.where(TrainingRound.id == round_id)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    round_id = session.scalar(q)
    if round_id is None:
        return None
    flipped = session.execute(
        update(TrainingRound)
        .where(TrainingRound.id == round_id, TrainingRound.status == RoundStatus.queued)
        .values(status=RoundStatus.running, worker=worker, started_at=utcnow(), progress=0.0)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not flipped:
        return None
    return session.get(TrainingRound, round_id, populate_existing=True)


def fail_stale_rounds(
    session: Session, older_than: timedelta = timedelta(hours=6), now: datetime | None = None
) -> int:
    """Rounds left `running` by a worker that died are marked failed with a reason."""
    now = now or utcnow()
    return session.execute(
        update(TrainingRound)
        .where(
            TrainingRound.status == RoundStatus.running, TrainingRound.started_at < now - older_than
        )
        .values(
            status=RoundStatus.failed,
            finished_at=now,
            error="the worker stopped before finishing this round",
        )
        .execution_options(synchronize_session=False)
    ).rowcount


class RoundLog:
    """Progress and log lines written in their own short transactions, so the UI sees them
    while the round runs."""

    def __init__(self, db: Database, round_id: int) -> None:
        self.db, self.round_id = db, round_id

    def __call__(self, message: str, progress: float | None = None) -> None:
        stamp = utcnow().strftime("%H:%M:%S")
        with self.db.sessions.begin() as s:
            rnd = s.get_one(TrainingRound, self.round_id)
            rnd.log = (rnd.log or "") + f"[{stamp}] {message}\n"
            if progress is not None:
                rnd.progress = max(0.0, min(1.0, progress))


RoundRunner = Callable[[Database, int, RoundLog], int | None]


def run_claimed_round(db: Database, round_id: int, runner: RoundRunner) -> RoundStatus:
    """Run one claimed round; any failure is recorded on the round, never raised."""
    log = RoundLog(db, round_id)
    try:
        model_version_id = runner(db, round_id, log)
    except Exception as exc:
        detail = exc.message if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
        with db.sessions.begin() as s:
            rnd = s.get_one(TrainingRound, round_id)
            rnd.status, rnd.error, rnd.finished_at = RoundStatus.failed, detail, utcnow()
            rnd.log = (rnd.log or "") + traceback.format_exc(limit=5)
            record_event(
                s,
                Actor.system(),
                "round.failed",
                project_id=rnd.project_id,
                entity_type="training_round",
                entity_id=rnd.number,
                details={"error": detail},
            )
        return RoundStatus.failed
    with db.sessions.begin() as s:
        rnd = s.get_one(TrainingRound, round_id)
        rnd.status, rnd.finished_at, rnd.progress = RoundStatus.succeeded, utcnow(), 1.0
        rnd.model_version_id = model_version_id
        record_event(
            s,
            Actor.system(),
            "round.succeeded",
            project_id=rnd.project_id,
            entity_type="training_round",
            entity_id=rnd.number,
            details={"model_version_id": model_version_id},
        )
    return RoundStatus.succeeded


def run_round_job(db: Database, round_id: int, log: RoundLog) -> int | None:
    """What a round does: train, then refill the queue with the project's selection mix."""
    model_version_id = train_round(db, round_id, log)
    with db.sessions() as s:
        rnd = s.get_one(TrainingRound, round_id)
        refill, project = rnd.refill_queue, s.get_one(Project, rnd.project_id).name
    if refill:
        report = select_batch(db, project, None, None, Actor.system())
        log(f"queue refilled: {report.get('queued', 0)} entries", 0.95)
    return model_version_id


@dataclass(frozen=True)
class RoundRun:
    """What `run_round_now` did: the round, whether this call queued it, and its outcome
    (`queued` when it was only queued)."""

    round_id: int
    number: int
    created: bool
    status: RoundStatus


def _quiet(message: str) -> None:
    """The default `say`: a service prints nothing unless its caller asks."""


def run_round_now(
    db: Database,
    project_name: str,
    actor: Actor,
    *,
    trigger: str = "manual",
    refill_queue: bool = True,
    queue_only: bool = False,
    worker: str = "cli",
    say: Callable[[str], None] = _quiet,
) -> RoundRun:
    """Request a round and run it here, in this process, unless `queue_only`.

    A round of the project that is already queued is taken over and run here; one that a
    worker is already running is left to it (WorkbenchError). A failed round is recorded on
    the round, not raised.
    """
    with db.sessions.begin() as s:
        rnd, created = request_round(
            s, get_project(s, project_name), actor, trigger=trigger, refill_queue=refill_queue
        )
        round_id, number = rnd.id, rnd.number
    if not created:
        say(f"round {number} is already queued or running; not starting another")
    if queue_only:
        return RoundRun(round_id, number, created, RoundStatus.queued)
    with db.sessions.begin() as s:
        claimed = claim_next_round(s, worker, round_id)
    if claimed is None:
        raise WorkbenchError(f"round {number} was taken by a running worker; follow it there")
    say(f"running round {number}")
    return RoundRun(round_id, number, created, run_claimed_round(db, round_id, run_round_job))


def list_rounds(session: Session, project: Project, limit: int = 20) -> list[TrainingRound]:
    return list(
        session.scalars(
            select(TrainingRound)
            .where(TrainingRound.project_id == project.id)
            .order_by(TrainingRound.id.desc())
            .limit(limit)
        )
    )
