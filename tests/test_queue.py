"""Queue leasing: expiry, overlap to k different reviewers, never twice to one reviewer."""

from __future__ import annotations

from datetime import timedelta

from builders import make_items, make_project, make_user

from workbench.db.models import EntryStatus, LeaseStatus, QueueEntry
from workbench.db.types import utcnow
from workbench.services.audit import Actor
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.queue.health import queue_health
from workbench.services.queue.lease import finish_lease, lease_next, reclaim_expired, release


def test_lease_returns_the_same_item_until_it_is_finished(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        items = make_items(s, p, ["a", "b"])
        alice = make_user(s, "alice")
        enqueue(s, p, [NewEntry(i.id, priority=-n) for n, i in enumerate(items)], Actor.system())
        first = lease_next(s, p, alice)
        again = lease_next(s, p, alice)
        assert first is not None and again is not None and first.id == again.id
        assert s.get(QueueEntry, first.entry_id).item_id == items[0].id


def test_expired_lease_returns_item_to_queue(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["a"])
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        enqueue(s, p, [NewEntry(item.id)], Actor.system())
        now = utcnow()
        lease = lease_next(s, p, alice, lease_seconds=60, now=now)
        assert lease is not None
        assert lease_next(s, p, bob, now=now + timedelta(seconds=30)) is None
        later = now + timedelta(seconds=61)
        bobs = lease_next(s, p, bob, now=later)
        assert bobs is not None and bobs.entry_id == lease.entry_id
        s.refresh(lease)
        assert lease.status == LeaseStatus.expired


def test_overlap_item_goes_to_k_different_reviewers_never_twice_to_one(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["a"])
        r = [make_user(s, f"r{n}") for n in range(4)]
        enqueue(s, p, [NewEntry(item.id, overlap_target=3)], Actor.system())
        leases = [lease_next(s, p, u) for u in r[:3]]
        assert all(le is not None for le in leases)
        assert lease_next(s, p, r[3]) is None  # three slots, all taken
        for le in leases:
            assert finish_lease(s, le, status=LeaseStatus.submitted)
        # Finished by r0: it never comes back to r0, and the entry is done after 3 labels.
        assert lease_next(s, p, r[0]) is None
        entry = s.get(QueueEntry, leases[0].entry_id)
        s.refresh(entry)
        assert entry.completed == 3 and entry.status == EntryStatus.done


def test_finishing_a_lease_twice_counts_once(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["a"])
        alice = make_user(s, "alice")
        enqueue(s, p, [NewEntry(item.id, overlap_target=2)], Actor.system())
        lease = lease_next(s, p, alice)
        assert finish_lease(s, lease, status=LeaseStatus.submitted)
        assert not finish_lease(s, lease, status=LeaseStatus.submitted)
        entry = s.get(QueueEntry, lease.entry_id)
        s.refresh(entry)
        assert entry.completed == 1 and entry.active_leases == 0


def test_skip_hands_item_to_others_not_back_to_skipper(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["a"])
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        enqueue(s, p, [NewEntry(item.id)], Actor.system())
        lease = lease_next(s, p, alice)
        release(s, lease, Actor.system(), "not my language")
        assert lease_next(s, p, alice) is None
        assert lease_next(s, p, bob) is not None


def test_enqueue_never_duplicates_an_open_item(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["a"])
        assert len(enqueue(s, p, [NewEntry(item.id)], Actor.system())) == 1
        assert enqueue(s, p, [NewEntry(item.id), NewEntry(item.id)], Actor.system()) == []
        assert queue_health(s, p)["pending"] == 1


def test_reclaim_counts_each_expired_lease_once(db) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        items = make_items(s, p, ["a", "b"])
        alice = make_user(s, "alice")
        enqueue(s, p, [NewEntry(i.id) for i in items], Actor.system())
        now = utcnow()
        lease_next(s, p, alice, lease_seconds=10, now=now)
        assert reclaim_expired(s, p, now + timedelta(seconds=11)) == 1
        assert reclaim_expired(s, p, now + timedelta(seconds=12)) == 0
        assert queue_health(s, p, now + timedelta(seconds=12))["leased"] == 0
