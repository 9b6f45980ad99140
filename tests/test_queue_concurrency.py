"""Many reviewers at once on Postgres: no entry over-leased, overlap met exactly, no label lost or
duplicated, and the leases of reviewers who vanish mid-item expire and are finished by others."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import pytest
from builders import make_items, make_project, make_user
from sqlalchemy import select

from workbench.config import Settings
from workbench.db.database import open_database
from workbench.db.engine import make_engine
from workbench.db.migrate import upgrade
from workbench.db.models import Label, Lease, LeaseStatus, QueueEntry
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.projects import get_project, set_project_setting
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.review import flow as review

pytestmark = pytest.mark.postgres

REVIEWERS = 12
DEAD = 3  # reviewers who take one lease and vanish
ITEMS = 40
OVERLAP_EVERY = 4  # every 4th item goes to 3 reviewers


def test_many_reviewers_at_once_meet_overlap_without_loss_or_duplicates(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("WORKBENCH_DATABASE_URL", postgres_url)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    upgrade(make_engine(postgres_url))
    db = open_database(Settings())
    with db.sessions.begin() as s:
        p = make_project(s, "conc")
        set_project_setting(s, p, "lease_seconds", 10, Actor.system())
        items = make_items(s, p, [f"item {n}" for n in range(ITEMS)])
        targets = {i.id: (3 if n % OVERLAP_EVERY == 0 else 1) for n, i in enumerate(items)}
        enqueue(s, p, [NewEntry(i, overlap_target=k) for i, k in targets.items()], Actor.system())
        users = [make_user(s, f"r{n}") for n in range(REVIEWERS)]
        actors = [Actor.for_user(u.name, u.id, u.role) for u in users]

    acknowledged: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(actor: Actor, dies: bool) -> None:
        try:
            while True:
                with db.sessions.begin() as s:
                    project = get_project(s, "conc")
                    item = review.current_item(s, project, actor)
                    if item is None:
                        return
                    if dies:
                        return  # holds the lease and never comes back
                    form = review.ReviewForm(decision="not_violating")
                    assert item.lease_id is not None
                    result = review.submit_review(s, project, actor, item.lease_id, form)
                    # A retry of the same submission (a double click) changes nothing.
                    again = review.submit_review(s, project, actor, item.lease_id, form)
                    assert again.label_id == result.label_id and not again.created
                with lock:
                    acknowledged.append(result.label_id)
        except WorkbenchError as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(a, n < DEAD)) for n, a in enumerate(actors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]
    # The dead reviewers' leases expire; the living finish those items after the expiry.
    time.sleep(11)
    for t in [threading.Thread(target=work, args=(a, False)) for a in actors[DEAD:]]:
        t.start()
        t.join(timeout=300)
    assert not errors, errors[:3]

    with db.sessions() as s:
        labels = s.execute(
            select(Label.id, Label.item_id, Label.reviewer_id, Label.idempotency_key)
        ).all()
        per_item = Counter(lab.item_id for lab in labels)
        pairs = Counter((lab.item_id, lab.reviewer_id) for lab in labels)
        assert max(pairs.values()) == 1  # never twice to one reviewer
        assert len({lab.idempotency_key for lab in labels}) == len(labels)
        assert per_item == Counter(targets)  # overlap met exactly, every item done
        assert sorted(acknowledged) == sorted(lab.id for lab in labels)  # none lost, none extra
        leases = s.execute(
            select(Lease.entry_id, Lease.status, Lease.leased_at, Lease.finished_at)
        ).all()
        assert sum(1 for le in leases if le.status == LeaseStatus.expired) == DEAD
        # At no moment more leases on an entry than its target: check every lease start.
        by_entry = defaultdict(list)
        for le in leases:
            by_entry[le.entry_id].append(le)
        target_of = dict(s.execute(select(QueueEntry.id, QueueEntry.overlap_target)).all())
        for entry_id, rows in by_entry.items():
            for le in rows:
                live = [
                    o
                    for o in rows
                    if o.leased_at <= le.leased_at
                    and (o.finished_at is None or o.finished_at > le.leased_at)
                ]
                assert len(live) <= target_of[entry_id], (entry_id, rows)
    db.dispose()
