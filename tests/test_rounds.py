"""Retrain rounds: one open round per project, each claimed by exactly one worker, failures
recorded with their error, and rounds started every N new labels."""

from __future__ import annotations

import threading

import pytest
from builders import make_items, make_project, make_user
from sqlalchemy import select

from workbench.db.models import Decision, Label, LabelSource, Role, RoundStatus, TrainingRound
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.services.audit import Actor
from workbench.services.projects import set_project_setting
from workbench.services.taxonomy import current_policy_version
from workbench.services.train.rounds import (
    claim_next_round,
    maybe_request_round,
    request_round,
    run_claimed_round,
    run_round_now,
)
from workbench.services.train.worker import work_once


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
