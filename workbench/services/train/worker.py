"""The background worker: takes queued retrain rounds from the database and runs them, so the
browser never waits. Several workers may run at once; each round goes to exactly one."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import select

from workbench.db.database import Database
from workbench.db.models import Project, RoundStatus
from workbench.services.train.progress import HeartbeatPolicy
from workbench.services.train.rounds import (
    DEFAULT_POLICY,
    RoundRunner,
    claim_next_round,
    maybe_request_round,
    reclaim_stale_rounds,
    run_claimed_round,
    run_round_job,
    worker_name,
)


def work_once(
    db: Database,
    worker: str | None = None,
    job: RoundRunner = run_round_job,
    policy: HeartbeatPolicy = DEFAULT_POLICY,
) -> RoundStatus | None:
    """Reclaim rounds of dead workers, check thresholds, then run at most one round. Returns
    its outcome, or None if idle."""
    worker = worker or worker_name()
    with db.sessions.begin() as s:
        reclaim_stale_rounds(s, policy)
        for project in s.scalars(select(Project)):
            maybe_request_round(s, project)
    with db.sessions.begin() as s:
        rnd = claim_next_round(s, worker)
        round_id = rnd.id if rnd else None
    if round_id is None:
        return None
    return run_claimed_round(db, round_id, job, policy)


def run_worker(
    db: Database,
    *,
    once: bool = False,
    poll_seconds: float = 2.0,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
    policy: HeartbeatPolicy = DEFAULT_POLICY,
) -> int:
    """Loop until stopped (or, with once, until no round is left). Returns rounds run."""
    stop = stop or threading.Event()
    name = worker_name()
    ran = 0
    say(f"worker {name} started")
    while not stop.is_set():
        outcome = work_once(db, name, policy=policy)
        if outcome is None:
            if once:
                break
            stop.wait(poll_seconds)
            continue
        ran += 1
        say(f"round finished: {outcome.value}")
    return ran
