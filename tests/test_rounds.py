"""Retrain rounds: one open round per project, each claimed by exactly one worker, failures
recorded with their error, rounds started every N new labels, and rounds whose worker died
(its heartbeat went stale) reclaimed and run again by another worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from builders import make_items, make_project, make_user
from migration_rows import fill
from quality_builders import Labels, add_fused_vectors, separable_vectors
from sqlalchemy import inspect, select, text, update

from workbench.db import migrate
from workbench.db.database import Database
from workbench.db.engine import make_engine
from workbench.db.models import (
    AuditEvent,
    Decision,
    Label,
    LabelSource,
    Role,
    RoundStatus,
    TrainingRound,
)
from workbench.db.types import utcnow
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.services.audit import Actor
from workbench.services.projects import set_project_setting
from workbench.services.taxonomy import current_policy_version
from workbench.services.train.progress import HeartbeatPolicy, RoundLog
from workbench.services.train.rounds import (
    claim_next_round,
    maybe_request_round,
    reclaim_stale_rounds,
    request_round,
    run_claimed_round,
    run_round_now,
)
from workbench.services.train.worker import work_once

FAST = HeartbeatPolicy(heartbeat_seconds=0.1)


def _label(s, project, item, reviewer, n: int) -> None:
    s.add(
        Label(
            project_id=project.id,
            item_id=item.id,
            reviewer_id=reviewer.id,
            policy_version_id=current_policy_version(s, project).id,
            decision=Decision.not_violating,
            policies=[],
            spans=[],
            source=LabelSource.human,
            idempotency_key=f"k{n}",
        )
    )


def test_a_second_request_returns_the_open_round(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        first, created = request_round(s, p, Actor.system())
        again, created_again = request_round(s, p, Actor.system())
        assert created and not created_again and again.id == first.id


def test_reviewers_cannot_launch_rounds(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        u = make_user(s, "rita")
        try:
            request_round(s, p, Actor.for_user(u.name, u.id, Role.reviewer))
        except PermissionDenied as exc:
            assert "engineer" in exc.message
        else:
            raise AssertionError("a reviewer launched a round")


def test_each_round_is_claimed_by_exactly_one_worker(db) -> None:
    with db.sessions.begin() as s:
        for n in range(3):
            request_round(s, make_project(s, f"p{n}"), Actor.system())
    claimed: list[int] = []
    lock = threading.Lock()

    def claim_all(name: str) -> None:
        while True:
            with db.sessions.begin() as s:
                rnd = claim_next_round(s, name)
                if rnd is None:
                    return
                with lock:
                    claimed.append(rnd.id)

    workers = [threading.Thread(target=claim_all, args=(f"w{n}",)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(claimed) == sorted(set(claimed)) and len(claimed) == 3


def test_failed_round_records_its_error(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        rnd, _ = request_round(s, p, Actor.system())
        claim_next_round(s, "w")
        round_id = rnd.id

    def broken(_db, _round_id, log) -> int:
        log("starting", 0.1)
        raise RuntimeError("the head diverged")

    assert run_claimed_round(db, round_id, broken) == RoundStatus.failed
    with db.sessions() as s:
        rnd = s.get_one(TrainingRound, round_id)
        assert rnd.status == RoundStatus.failed and "the head diverged" in rnd.error
        assert "starting" in rnd.log and rnd.finished_at is not None


def test_round_starts_every_n_new_labels(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        set_project_setting(s, p, "retrain_every_n_labels", 3, Actor.system())
        items = make_items(s, p, ["a", "b", "c", "d"])
        alice = make_user(s, "alice")
        for n, item in enumerate(items[:2]):
            _label(s, p, item, alice, n)
        s.flush()
        assert maybe_request_round(s, p) is None
        _label(s, p, items[2], alice, 2)
        s.flush()
        rnd = maybe_request_round(s, p)
        assert rnd is not None and rnd.trigger == "label_count" and rnd.labels_at_request == 3
        assert maybe_request_round(s, p) is None  # one open round at a time


def test_worker_runs_queued_round_with_the_given_job(db) -> None:
    with db.sessions.begin() as s:
        request_round(s, make_project(s), Actor.system())
    seen = []
    outcome = work_once(db, "w", job=lambda _db, rid, log: seen.append(rid) or None)
    assert outcome == RoundStatus.succeeded and len(seen) == 1
    assert work_once(db, "w", job=lambda *_: None) is None
    with db.sessions() as s:
        assert s.scalars(select(TrainingRound.status)).all() == [RoundStatus.succeeded]


def test_run_round_now_with_queue_only_leaves_the_round_to_a_worker(db) -> None:
    with db.sessions.begin() as s:
        make_project(s)
    run = run_round_now(db, "p", Actor.system(), queue_only=True)
    assert run.created and run.status == RoundStatus.queued
    with db.sessions() as s:
        rnd = s.get_one(TrainingRound, run.round_id)
        assert rnd.status == RoundStatus.queued and rnd.worker is None


def test_run_round_now_takes_over_a_queued_round_and_runs_it_here(db) -> None:
    with db.sessions.begin() as s:
        queued, _ = request_round(s, make_project(s), Actor.system(), refill_queue=False)
        queued_id = queued.id
    said: list[str] = []
    run = run_round_now(db, "p", Actor.system(), worker="here", say=said.append)
    assert run.round_id == queued_id and not run.created
    assert said == [
        f"round {run.number} is already queued or running; not starting another",
        f"running round {run.number}",
    ]
    with db.sessions() as s:
        rnd = s.get_one(TrainingRound, queued_id)
        # No labels in this project: the round ran here and recorded why it failed.
        assert rnd.worker == "here" and rnd.status == run.status == RoundStatus.failed
        assert "no usable labels" in (rnd.error or "")


def test_run_round_now_leaves_a_round_that_a_worker_runs_to_that_worker(db) -> None:
    with db.sessions.begin() as s:
        request_round(s, make_project(s), Actor.system())
        running = claim_next_round(s, "elsewhere")
        assert running is not None
    with pytest.raises(WorkbenchError, match=r"round 1 was taken by a running worker"):
        run_round_now(db, "p", Actor.system())
    with db.sessions() as s:
        assert s.get_one(TrainingRound, running.id).worker == "elsewhere"


def _round(db: Database, project: str = "p") -> int:
    with db.sessions.begin() as s:
        rnd, _ = request_round(s, make_project(s, project), Actor.system(), refill_queue=False)
        return rnd.id


def _silence(db: Database, round_id: int, for_: timedelta = timedelta(hours=1)) -> None:
    """As if the round's worker died `for_` ago: its last heartbeat is that old."""
    with db.sessions.begin() as s:
        s.execute(
            update(TrainingRound)
            .where(TrainingRound.id == round_id)
            .values(heartbeat_at=utcnow() - for_)
        )


def _events(db: Database, action: str) -> list[AuditEvent]:
    with db.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_claiming_a_round_starts_an_attempt_with_a_fresh_heartbeat(db) -> None:
    round_id = _round(db)
    with db.sessions.begin() as s:
        rnd = claim_next_round(s, "w")
        assert rnd is not None and rnd.id == round_id
        assert rnd.attempts == 1 and rnd.heartbeat_at is not None
        assert rnd.heartbeat_at >= utcnow() - timedelta(minutes=1)


def test_a_round_with_a_stale_heartbeat_is_requeued_with_the_attempt_logged_and_audited(
    db,
) -> None:
    round_id = _round(db)
    with db.sessions.begin() as s:
        claim_next_round(s, "host:123")
    _silence(db, round_id, timedelta(seconds=30))
    with db.sessions.begin() as s:
        # 30 s is under the default four beats of 10 s: that worker may still be alive.
        assert reclaim_stale_rounds(s) == []
        assert reclaim_stale_rounds(s, HeartbeatPolicy(heartbeat_seconds=5)) == [round_id]
        assert reclaim_stale_rounds(s, HeartbeatPolicy(heartbeat_seconds=5)) == []  # once
    with db.sessions() as s:
        rnd = s.get_one(TrainingRound, round_id)
        assert rnd.status == RoundStatus.queued and rnd.worker is None and rnd.attempts == 1
        assert "attempt 1 failed: worker host:123 stopped sending heartbeats" in rnd.log
        assert "queued again" in rnd.log
    [event] = _events(db, "round.reclaimed")
    assert event.details["attempt"] == 1 and event.details["outcome"] == "queued again"
    # The next claim is the second attempt.
    assert work_once(db, "w2", job=lambda *_: None) == RoundStatus.succeeded
    with db.sessions() as s:
        assert s.get_one(TrainingRound, round_id).attempts == 2


def test_a_round_whose_worker_dies_on_every_attempt_fails_after_the_last(db) -> None:
    round_id = _round(db)
    policy = HeartbeatPolicy(heartbeat_seconds=1, max_attempts=2)
    for attempt in (1, 2):
        with db.sessions.begin() as s:
            assert claim_next_round(s, f"w{attempt}") is not None
        _silence(db, round_id)
        with db.sessions.begin() as s:
            assert reclaim_stale_rounds(s, policy) == [round_id]
    with db.sessions() as s:
        rnd = s.get_one(TrainingRound, round_id)
        assert rnd.status == RoundStatus.failed and rnd.finished_at is not None
        assert "2 times" in (rnd.error or "") and "giving up" in rnd.log
    assert [e.details["outcome"] for e in _events(db, "round.reclaimed")] == [
        "queued again",
        "giving up",
    ]
    assert len(_events(db, "round.failed")) == 1


def test_a_running_worker_keeps_its_round_by_beating_while_the_job_is_silent(db) -> None:
    round_id = _round(db)
    reclaimed: list[list[int]] = []

    def silent_job(db_: Database, rid: int, log: RoundLog) -> None:
        # Longer than FAST's stale limit (4 x 0.1 s) without a single progress line.
        time.sleep(1.0)
        with db_.sessions.begin() as s:
            reclaimed.append(reclaim_stale_rounds(s, FAST))

    assert work_once(db, "w", job=silent_job, policy=FAST) == RoundStatus.succeeded
    assert reclaimed == [[]]
    with db.sessions() as s:
        rnd = s.get_one(TrainingRound, round_id)
        assert rnd.attempts == 1 and rnd.heartbeat_at > rnd.started_at + timedelta(seconds=0.5)


def test_an_attempt_that_lost_its_round_writes_nothing_more(db) -> None:
    """A worker that stalled past its heartbeat and woke after another took the round over: its
    progress lines and its outcome are refused, the new attempt's are kept."""

    def taken_over(db_: Database, rid: int, log: RoundLog) -> Callable[[], None]:
        log("attempt 1 started", 0.1)
        _silence(db_, rid)
        with db_.sessions.begin() as s:
            reclaim_stale_rounds(s)
            assert claim_next_round(s, "w2") is not None
        return lambda: log("attempt 1 still talking", 0.5)

    def logs_late(db_: Database, rid: int, log: RoundLog) -> int | None:
        taken_over(db_, rid, log)()
        return None

    def returns_late(db_: Database, rid: int, log: RoundLog) -> int | None:
        taken_over(db_, rid, log)
        return None

    for job in (logs_late, returns_late):
        round_id = _round(db, job.__name__)
        with db.sessions.begin() as s:
            assert claim_next_round(s, "w1", round_id) is not None
        assert run_claimed_round(db, round_id, job) == RoundStatus.running
        with db.sessions() as s:
            rnd = s.get_one(TrainingRound, round_id)
            assert rnd.status == RoundStatus.running and rnd.worker == "w2"
            assert "attempt 1 still talking" not in rnd.log and rnd.finished_at is None
    assert _events(db, "round.succeeded") == []


def test_a_request_reclaims_a_round_whose_worker_died_instead_of_handing_it_back(db) -> None:
    round_id = _round(db)
    with db.sessions.begin() as s:
        claim_next_round(s, "dead")
    _silence(db, round_id)
    # Without the reclaim this raised "taken by a running worker" for as long as it stayed so.
    run = run_round_now(db, "p", Actor.system(), worker="here")
    assert run.round_id == round_id and not run.created
    with db.sessions() as s:
        rnd = s.get_one(TrainingRound, round_id)
        assert rnd.worker == "here" and rnd.attempts == 2
        assert "no usable labels" in (rnd.error or "")  # this project has none


# The worker in a child process: its first progress line hangs the job forever (the heartbeat
# thread goes on beating), so the test can kill it at a known point mid-round.
HANGING_WORKER = textwrap.dedent(
    """
    import sys, time
    from workbench.services.train import progress

    said = progress.RoundLog.__call__

    def hang(self, message, progress=None):
        said(self, message, progress)
        time.sleep(3600)

    progress.RoundLog.__call__ = hang
    from workbench.cli import main

    sys.argv = ["workbench", "worker", "--heartbeat-seconds", "0.2", "--poll-seconds", "0.1"]
    main()
    """
)


def _wait_for(what: str, check: Callable[[], bool], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.1)


def test_a_worker_killed_mid_round_is_reclaimed_and_finished_by_another_worker(db) -> None:
    vectors, truth = separable_vectors(["hate", "none"], 10)
    with db.sessions.begin() as s:
        p = make_project(s)
        lab = Labels(s, p)
        items = [lab.item(f"x{n}") for n in range(len(truth))]
        add_fused_vectors(s, db.settings, p, items, vectors)
        for n, cls in enumerate(truth):
            lab.label(f"x{n}", "alice", cls)
        round_id = request_round(s, p, Actor.system())[0].id

    def round_now() -> TrainingRound:
        with db.sessions() as s:
            return s.get_one(TrainingRound, round_id)

    child = subprocess.Popen([sys.executable, "-c", HANGING_WORKER], env=os.environ.copy())
    try:
        _wait_for("the child to start the round", lambda: round_now().status == "running")
        first = round_now()
        assert first.worker and first.worker.endswith(f":{child.pid}")
        # Beats keep coming while the job hangs: the heartbeat thread is alive.
        _wait_for(
            "two heartbeats",
            lambda: round_now().heartbeat_at > first.heartbeat_at + timedelta(seconds=0.3),
        )
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert round_now().status == RoundStatus.running  # nothing on the database noticed

    policy = HeartbeatPolicy(heartbeat_seconds=0.2)
    outcomes: list[RoundStatus | None] = []
    _wait_for(
        "another worker to reclaim and run the round",
        lambda: outcomes.append(work_once(db, "rescuer", policy=policy)) or outcomes[-1],
        seconds=30.0,
    )
    assert outcomes[-1] == RoundStatus.succeeded
    rnd = round_now()
    assert rnd.status == RoundStatus.succeeded and rnd.model_version_id is not None
    assert rnd.worker == "rescuer" and rnd.attempts == 2
    assert f"attempt 1 failed: worker {first.worker} stopped sending heartbeats" in rnd.log
    [event] = _events(db, "round.reclaimed")
    assert event.details["attempt"] == 1


def test_migration_0008_adds_and_drops_the_heartbeat_and_keeps_one_champion(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    revisions = [str(h["revision"]) for h in reversed(migrate.history(engine))]
    before = revisions[: revisions.index("0008_round_heartbeat")]
    for rev in before:
        migrate.upgrade(engine, rev)
        with engine.begin() as conn:
            fill(conn, rev)
    with engine.begin() as conn:
        # A second champion, as a race before the index could leave one: the newer one stays.
        conn.execute(
            text(
                "INSERT INTO model_versions (id, project_id, version, head, params, classes, "
                "metrics, calibrated, trained_on, artifact_path, status, created_at) VALUES "
                "(3, 1, 3, 'logreg', '{}', '[]', '{}', false, 4, 'm/3', 'champion', "
                "'2026-01-02 05:00:00+00:00')"
            )
        )

    def columns() -> set[str]:
        return {c["name"] for c in inspect(engine).get_columns("training_rounds")}

    def rows(sql: str) -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]

    assert not {"heartbeat_at", "attempts"} & columns()
    migrate.upgrade(engine, "0008_round_heartbeat")
    assert {"heartbeat_at", "attempts"} <= columns()
    # The round that ran counts as one attempt; the one never started as none.
    assert rows("SELECT id, attempts, heartbeat_at FROM training_rounds ORDER BY id") == [
        (1, 1, None),
        (2, 0, None),
    ]
    assert rows("SELECT version, status FROM model_versions ORDER BY version") == [
        (1, "retired"),
        (2, "retired"),
        (3, "champion"),
    ]
    with engine.begin() as conn:
        conn.execute(text("UPDATE training_rounds SET heartbeat_at = started_at WHERE id = 1"))
    assert rows("SELECT heartbeat_at FROM training_rounds WHERE id = 1")[0][0] is not None
    migrate.downgrade(engine, before[-1])
    assert not {"heartbeat_at", "attempts"} & columns()
    assert rows("SELECT id, number, status FROM training_rounds ORDER BY id") == [
        (1, 1, "succeeded"),
        (2, 2, "succeeded"),
    ]
    indexes = {i["name"] for i in inspect(engine).get_indexes("model_versions")}
    assert "uq_model_versions_one_champion" not in indexes
    engine.dispose()
