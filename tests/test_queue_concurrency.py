"""Many reviewers at once on Postgres: no entry over-leased, overlap met exactly, no label lost or
duplicated, and the leases of reviewers who vanish mid-item expire and are finished by others
who all come for those items at the same moment."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import make_items, make_project, make_user
from sqlalchemy import select

from workbench.config import Settings
from workbench.db.database import Database, open_database
from workbench.db.engine import make_engine
from workbench.db.migrate import upgrade
from workbench.db.models import EntryStatus, Label, Lease, LeaseStatus, QueueEntry
from workbench.db.types import utcnow
from workbench.services.audit import Actor
from workbench.services.projects import get_project, set_project_setting
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.review import flow as review

pytestmark = pytest.mark.postgres

REVIEWERS = 12
DEAD = 3  # reviewers who take one lease and vanish
ITEMS = 40
OVERLAP_EVERY = 4  # every 4th item goes to 3 reviewers
# Long enough that no lease lapses while the first phase runs, however slow the machine; the
# second phase then runs on a clock moved past it instead of waiting for it.
LEASE_SECONDS = 600
JOIN_TIMEOUT_S = 300

Clock = Callable[[], datetime]


class Reviewers:
    """Reviewer threads that all start at one moment (a barrier) and work until the queue has
    nothing more for them; what they submitted and every error are collected."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.acknowledged: list[int] = []
        self.held: list[int] = []  # lease ids of reviewers who vanished
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()

    def work(self, actor: Actor, *, dies: bool, start: threading.Barrier, clock: Clock) -> None:
        try:
            start.wait(timeout=60)
            while True:
                # Lease and submit in transactions of their own, as the review page does (a
                # page run, then a click): a slot leased twice would show as two labels.
                with self.db.sessions.begin() as s:
                    project = get_project(s, "conc")
                    item = review.current_item(s, project, actor, now=clock())
                    if item is None:
                        return
                    assert item.lease_id is not None
                    lease_id = item.lease_id
                if dies:
                    with self.lock:
                        self.held.append(lease_id)
                    return  # holds the lease and never comes back
                form = review.ReviewForm(decision="not_violating")
                with self.db.sessions.begin() as s:
                    project = get_project(s, "conc")
                    result = review.submit_review(s, project, actor, lease_id, form, now=clock())
                # A retry of the same submission (a double click) changes nothing.
                with self.db.sessions.begin() as s:
                    project = get_project(s, "conc")
                    again = review.submit_review(s, project, actor, lease_id, form, now=clock())
                assert again.label_id == result.label_id and not again.created
                with self.lock:
                    self.acknowledged.append(result.label_id)
        except Exception as exc:  # reported by `run`, in the test's thread
            with self.lock:
                self.errors.append(exc)

    def run(self, actors: list[tuple[Actor, bool]], clock: Clock) -> None:
        """All of `actors` (with whether each vanishes) at once, until each is done."""
        start = threading.Barrier(len(actors))
        threads = [
            threading.Thread(
                target=self.work, args=(actor,), kwargs={"dies": dies, "start": start,
                                                         "clock": clock}
            )
            for actor, dies in actors
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=JOIN_TIMEOUT_S)
        assert not any(t.is_alive() for t in threads), "a reviewer thread never finished"
        assert not self.errors, self.errors[:3]


def _leases(db: Database) -> list[Any]:
    with db.sessions() as s:
        return list(s.execute(select(Lease.id, Lease.entry_id, Lease.status)).all())


def test_many_reviewers_at_once_meet_overlap_without_loss_or_duplicates(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", postgres_url)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    upgrade(make_engine(postgres_url))
    db = open_database(Settings())
    with db.sessions.begin() as s:
        p = make_project(s, "conc")
        set_project_setting(s, p, "lease_seconds", LEASE_SECONDS, Actor.system())
        items = make_items(s, p, [f"item {n}" for n in range(ITEMS)])
        targets = {i.id: (3 if n % OVERLAP_EVERY == 0 else 1) for n, i in enumerate(items)}
        enqueue(s, p, [NewEntry(i, overlap_target=k) for i, k in targets.items()], Actor.system())
        users = [make_user(s, f"r{n}") for n in range(REVIEWERS)]
        actors = [Actor.for_user(u.name, u.id, u.role) for u in users]
    with db.sessions() as s:
        target_of = dict(s.execute(select(QueueEntry.id, QueueEntry.overlap_target)).all())

    # Phase 1: three reviewers take an item each and vanish (first, so that a thread started
    # late still finds one), then all the others at once.
    reviewers = Reviewers(db)
    reviewers.run([(a, True) for a in actors[:DEAD]], clock=utcnow)
    reviewers.run([(a, False) for a in actors[DEAD:]], clock=utcnow)
    assert len(reviewers.held) == DEAD
    first = _leases(db)
    # Nothing was released or expired yet, so every lease ever taken is still counted here: an
    # entry with more leases than its target was over-leased at some moment.
    per_entry = Counter(le.entry_id for le in first)
    assert all(n <= target_of[e] for e, n in per_entry.items()), per_entry
    assert sorted(le.id for le in first if le.status == LeaseStatus.active) == sorted(
        reviewers.held
    )
    held_entries = Counter(le.entry_id for le in first if le.id in set(reviewers.held))

    # Phase 2: the vanished reviewers' leases have expired (the clock is past them) and the
    # living all come for the freed slots at the same moment.
    def after_expiry() -> datetime:
        return utcnow() + timedelta(seconds=LEASE_SECONDS + 1)

    reviewers.run([(a, False) for a in actors[DEAD:]], clock=after_expiry)

    with db.sessions() as s:
        labels = s.execute(
            select(Label.id, Label.item_id, Label.reviewer_id, Label.idempotency_key)
        ).all()
        entries = s.execute(
            select(QueueEntry.id, QueueEntry.status, QueueEntry.active_leases, QueueEntry.completed)
        ).all()
    leases = _leases(db)

    # No lost item: overlap met exactly, every item done, every acknowledged label there.
    per_item = Counter(lab.item_id for lab in labels)
    assert per_item == Counter(targets)
    assert sorted(reviewers.acknowledged) == sorted(lab.id for lab in labels)
    assert all(
        e.status == EntryStatus.done and e.active_leases == 0 and e.completed == target_of[e.id]
        for e in entries
    ), [e for e in entries if e.completed != target_of[e.id] or e.active_leases]
    # No duplicate: never twice to one reviewer, one label per submission.
    pairs = Counter((lab.item_id, lab.reviewer_id) for lab in labels)
    assert max(pairs.values()) == 1
    assert len({lab.idempotency_key for lab in labels}) == len(labels)
    # No double lease: the vanished leases, and only they, expired; each freed slot went to
    # exactly one of the reviewers who raced for it.
    expired = sorted(le.id for le in leases if le.status == LeaseStatus.expired)
    assert expired == sorted(reviewers.held)
    new = Counter(le.entry_id for le in leases if le.id not in {f.id for f in first})
    assert new == held_entries, (new, held_entries)
    assert all(le.status != LeaseStatus.active for le in leases)
    db.dispose()
