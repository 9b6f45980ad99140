"""Retraining rounds: request one (by hand or every N new labels), let a worker claim and run
it (or `run_round_now` here and now), record progress, log and outcome. A round trains a head,
then refills the queue. A failed round keeps the previous model in use.

Claiming is race-free on both backends: Postgres picks the oldest queued round with
`FOR UPDATE SKIP LOCKED`; SQLite flips `queued -> running` with one guarded UPDATE. The worker
running a round stamps its heartbeat (progress.py); a round whose heartbeat went stale (its
worker died) is reclaimed: the attempt is marked failed in the log and audited, and the round
queued again, or failed after `max_attempts` attempts.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from workbench.db.database import Database
from workbench.db.models import Label, Project, Role, RoundStatus, TrainingRound
from workbench.db.rows import rows_changed
from workbench.db.types import utcnow
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.membership import require_member, require_project_role
from workbench.services.projects import get_project, project_settings
from workbench.services.select.batch import select_batch
from workbench.services.train.progress import (
    Heartbeat,
    HeartbeatPolicy,
    RoundLog,
    RoundReclaimed,
)
from workbench.services.train.train import train_round

ACTIVE = (RoundStatus.queued, RoundStatus.running)
DEFAULT_POLICY = HeartbeatPolicy()


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
    policy: HeartbeatPolicy = DEFAULT_POLICY,
) -> tuple[TrainingRound, bool]:
    """Queue a round for the worker; an already queued or running round is returned instead
    (one whose worker died is reclaimed first, so it is not handed back as running)."""
    require_project_role(
        session, actor, project, Role.engineer, Role.admin, action="launch retrain rounds"
    )
    reclaim_stale_rounds(session, policy, project_id=project.id)
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
    """Take the oldest queued round (or that one round) for this worker, or None. The claim
    starts a new attempt with a fresh heartbeat."""
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
    now = utcnow()
    flipped = rows_changed(
        session,
        update(TrainingRound)
        .where(TrainingRound.id == round_id, TrainingRound.status == RoundStatus.queued)
        .values(
            status=RoundStatus.running,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
            progress=0.0,
            attempts=TrainingRound.attempts + 1,
        )
        .execution_options(synchronize_session=False),
    )
    if not flipped:
        return None
    return session.get(TrainingRound, round_id, populate_existing=True)


def reclaim_stale_rounds(
    session: Session,
    policy: HeartbeatPolicy = DEFAULT_POLICY,
    *,
    now: datetime | None = None,
    project_id: int | None = None,
) -> list[int]:
    """Rounds left `running` by a worker whose heartbeat stopped: each attempt is marked failed
    in the round's log and audited, and the round queued again (or failed, after
    `max_attempts`). Returns the ids of the rounds reclaimed.

    One guarded UPDATE per round makes a round reclaimed once even when workers race."""
    now = now or utcnow()
    cutoff = now - policy.stale_after
    # A round claimed before heartbeats existed has none: its start is its last sign of life.
    last_sign = func.coalesce(TrainingRound.heartbeat_at, TrainingRound.started_at)
    q = select(TrainingRound.id, TrainingRound.attempts, TrainingRound.worker).where(
        TrainingRound.status == RoundStatus.running, last_sign < cutoff
    )
    if project_id is not None:
        q = q.where(TrainingRound.project_id == project_id)
    reclaimed = []
    for round_id, attempts, worker in session.execute(q.order_by(TrainingRound.id)).all():
        give_up = attempts >= policy.max_attempts
        error = (
            f"the worker stopped sending heartbeats {attempts} times (attempt limit "
            f"{policy.max_attempts}); this round is given up"
        )
        values: dict[str, object] = (
            {"status": RoundStatus.failed, "finished_at": now, "error": error}
            if give_up
            else {"status": RoundStatus.queued, "worker": None}
        )
        flipped = rows_changed(
            session,
            update(TrainingRound)
            .where(
                TrainingRound.id == round_id,
                TrainingRound.status == RoundStatus.running,
                TrainingRound.attempts == attempts,
                last_sign < cutoff,
            )
            .values(**values)
            .execution_options(synchronize_session=False),
        )
        if not flipped:
            continue  # another worker reclaimed it first, or its heartbeat just came back
        rnd = session.get_one(TrainingRound, round_id, populate_existing=True)
        last = rnd.heartbeat_at or rnd.started_at
        seen = last.isoformat(timespec="seconds") if last else "never"
        outcome = "giving up" if give_up else "queued again"
        rnd.log = (rnd.log or "") + (
            f"[{now.strftime('%H:%M:%S')}] attempt {attempts} failed: worker "
            f"{worker or '?'} stopped sending heartbeats (last at {seen}); {outcome}\n"
        )
        details = {
            "attempt": attempts,
            "worker": worker,
            "last_heartbeat": seen,
            "outcome": outcome,
        }
        record_event(
            session,
            Actor.system(),
            "round.reclaimed",
            project_id=rnd.project_id,
            entity_type="training_round",
            entity_id=rnd.number,
            details=details,
        )
        if give_up:
            record_event(
                session,
                Actor.system(),
                "round.failed",
                project_id=rnd.project_id,
                entity_type="training_round",
                entity_id=rnd.number,
                details={"error": error},
            )
        reclaimed.append(round_id)
    session.flush()
    return reclaimed


RoundRunner = Callable[[Database, int, RoundLog], int | None]


def _current_status(db: Database, round_id: int) -> RoundStatus:
    with db.sessions() as s:
        return s.get_one(TrainingRound, round_id).status


def run_claimed_round(
    db: Database, round_id: int, runner: RoundRunner, policy: HeartbeatPolicy = DEFAULT_POLICY
) -> RoundStatus:
    """Run one claimed round with a heartbeat; any failure is recorded on the round, never
    raised. An attempt that another worker reclaimed meanwhile writes nothing more and returns
    the round's status as the new holder left it."""
    with db.sessions() as s:
        attempt = s.get_one(TrainingRound, round_id).attempts
    log = RoundLog(db, round_id, attempt)
    try:
        with Heartbeat(log, policy.heartbeat_seconds):
            model_version_id = runner(db, round_id, log)
    except RoundReclaimed:
        return _current_status(db, round_id)
    except Exception as exc:
        detail = exc.message if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
        return _finish(
            db, round_id, log, RoundStatus.failed, {"error": detail},
            error=detail, log_tail=traceback.format_exc(limit=5),
        )  # fmt: skip
    return _finish(
        db, round_id, log, RoundStatus.succeeded, {"model_version_id": model_version_id},
        progress=1.0, model_version_id=model_version_id,
    )  # fmt: skip


def _finish(
    db: Database,
    round_id: int,
    log: RoundLog,
    status: RoundStatus,
    details: dict[str, object],
    log_tail: str = "",
    **fields: object,
) -> RoundStatus:
    """Record how an attempt ended, audited, unless another worker reclaimed the round meanwhile
    (then the round's status is the new holder's, and this attempt writes nothing)."""
    with db.sessions.begin() as s:
        try:
            log.confirm_claim(s)
        except RoundReclaimed:
            return _current_status(db, round_id)
        rnd = s.get_one(TrainingRound, round_id)
        rnd.status, rnd.finished_at = status, utcnow()
        for name, value in fields.items():
            setattr(rnd, name, value)
        if log_tail:
            rnd.log = (rnd.log or "") + log_tail
        record_event(
            s, Actor.system(), f"round.{status.value}", project_id=rnd.project_id,
            entity_type="training_round", entity_id=rnd.number, details=details,
        )  # fmt: skip
    return status


def run_round_job(
    db: Database, round_id: int, log: RoundLog, engine: str | None = None
) -> int | None:
    """What a round does: train, then refill the queue with the project's selection mix.
    `engine` scores the pool (`local` or `ray`); None means the project's setting."""
    model_version_id = train_round(db, round_id, log, engine)
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
    policy: HeartbeatPolicy = DEFAULT_POLICY,
    engine: str | None = None,
) -> RoundRun:
    """Request a round and run it here, in this process, unless `queue_only`; `engine` scores
    the pool (None: the project's `engine` setting).

    A round of the project that is already queued is taken over and run here; one that a
    worker is already running is left to it (WorkbenchError). A failed round is recorded on
    the round, not raised.
    """
    with db.sessions.begin() as s:
        rnd, created = request_round(
            s,
            get_project(s, project_name),
            actor,
            trigger=trigger,
            refill_queue=refill_queue,
            policy=policy,
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
    status = run_claimed_round(db, round_id, partial(run_round_job, engine=engine), policy)
    return RoundRun(round_id, number, created, status)


def list_rounds(
    session: Session, project: Project, actor: Actor, limit: int = 20
) -> list[TrainingRound]:
    """The project's latest rounds, newest first, for those who may open it."""
    require_member(session, actor, project)
    return list(
        session.scalars(
            select(TrainingRound)
            .where(TrainingRound.project_id == project.id)
            .order_by(TrainingRound.id.desc())
            .limit(limit)
        )
    )
