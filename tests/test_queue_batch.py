"""The batched queue path: leases in batches with the queue's invariants, idempotent batch
submission with counters, done status and an audit event per label, on both backends; and many
reviewer processes at once with some killed mid-lease: nothing lost, nothing twice."""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import time
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from builders import make_items, make_project, make_user
from sqlalchemy import func, select

from workbench.config import Settings
from workbench.db.database import open_database
from workbench.db.engine import make_engine
from workbench.db.migrate import upgrade
from workbench.db.models import (
    AuditEvent,
    EntryKind,
    EntryStatus,
    Item,
    Label,
    LabelSource,
    Lease,
    LeaseStatus,
    QueueEntry,
    User,
)
from workbench.db.types import utcnow
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.labels.export import export_labels
from workbench.services.labels.record import record_label
from workbench.services.labels.validate import parse_label_input
from workbench.services.queue.batch import Submission, submit_batch
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.queue.lease import lease_batch, lease_next
from workbench.services.review import flow as review


def _label(decision: str = "not_violating", **more):  # type: ignore[no-untyped-def]
    # The key is overwritten from the lease by submit_batch.
    return parse_label_input({"decision": decision, "idempotency_key": "x", **more})


def _actor(user: User) -> Actor:
    return Actor.for_user(user.name, user.id, user.role)


def _queue(s, n: int = 5, overlap: int = 1, name: str = "p"):  # type: ignore[no-untyped-def]
    p = make_project(s, name)
    items = make_items(s, p, [f"text {k}" for k in range(n)])
    enqueue(
        s,
        p,
        [NewEntry(i.id, priority=-k, overlap_target=overlap) for k, i in enumerate(items)],
        Actor.system(),
    )
    return p, items


def _submit_all(s, user, leased, **label):  # type: ignore[no-untyped-def]
    return submit_batch(s, user, [Submission(le.lease_id, _label(**label)) for le in leased])


def _entries(s, p):  # type: ignore[no-untyped-def]
    return {
        e.item_id: e for e in s.scalars(select(QueueEntry).where(QueueEntry.project_id == p.id))
    }


def test_batch_lease_fills_each_entry_to_its_overlap_and_never_twice_to_one_reviewer(db) -> None:
    with db.sessions.begin() as s:
        p, items = _queue(s, n=5, overlap=2)
        r = [make_user(s, f"r{k}") for k in range(3)]
        first = lease_batch(s, p.id, r[0].id, 10, 60)
        second = lease_batch(s, p.id, r[1].id, 10, 60)
        third = lease_batch(s, p.id, r[2].id, 10, 60)
        assert len(first) == len(second) == 5 and third == []  # two slots each, both taken
        # Highest priority first (priorities 0, -1, ... follow the items' order).
        assert [le.item_id for le in first] == [i.id for i in items]
        # Asking again returns the leases held, and takes nothing new.
        again = lease_batch(s, p.id, r[0].id, 10, 60)
        assert [le.lease_id for le in again] == [le.lease_id for le in first]
        pairs = s.execute(select(Lease.entry_id, Lease.reviewer_id)).all()
        assert len(pairs) == len(set(pairs)) == 10
        assert all(e.active_leases == 2 for e in _entries(s, p).values())


def test_batch_lease_takes_at_most_n_entries_from_a_longer_queue(db) -> None:
    # Postgres may rescan an `IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` subquery and take
    # more than n rows; the candidates are a materialized CTE so that cannot happen.
    with db.sessions.begin() as s:
        p = make_project(s)
        items = make_items(s, p, [f"text {k}" for k in range(10)])
        enqueue(
            s, p, [NewEntry(i.id, priority=k % 3, overlap_target=2) for k, i in enumerate(items)],
            Actor.system(),
        )  # fmt: skip
        alice = make_user(s, "alice")
    with db.sessions.begin() as s:  # committed first, as a queue is before anyone leases
        leased = lease_batch(s, p.id, alice.id, 4, 60)
        # Priority 2 (items 2, 5, 8), then the oldest of priority 1 (item 1).
        assert [le.item_id for le in leased] == [items[k].id for k in (2, 5, 8, 1)]
        assert s.scalar(select(func.count()).select_from(Lease)) == 4
        assert sum(e.active_leases for e in _entries(s, p).values()) == 4


def test_batch_lease_tops_up_the_leases_a_reviewer_already_holds(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _queue(s, n=6)
        alice = make_user(s, "alice")
        single = lease_next(s, p, alice)  # the review page's path
        assert single is not None
        leased = lease_batch(s, p.id, alice.id, 3, 60)
        assert leased[0].lease_id == single.id and len(leased) == 3
        assert leased[0].idempotency_key == review.lease_key(single.id)


def test_expired_batch_leases_are_reclaimed_and_go_to_other_reviewers(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _queue(s, n=4)
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        now = utcnow()
        held = lease_batch(s, p.id, alice.id, 10, 60, now)
        assert len(held) == 4
        assert lease_batch(s, p.id, bob.id, 10, 60, now + timedelta(seconds=30)) == []
        bobs = lease_batch(s, p.id, bob.id, 10, 60, now + timedelta(seconds=61))
        assert sorted(le.entry_id for le in bobs) == sorted(le.entry_id for le in held)
        statuses = s.scalars(select(Lease.status).where(Lease.reviewer_id == alice.id)).all()
        assert set(statuses) == {LeaseStatus.expired}
        assert all(e.active_leases == 1 for e in _entries(s, p).values())


def test_batch_lease_skips_gold_entries_and_items_the_reviewer_labelled(db) -> None:
    with db.sessions.begin() as s:
        p, items = _queue(s, n=3)
        (gold_item,) = make_items(s, p, ["a gold item"], prefix="g")
        enqueue(s, p, [NewEntry(gold_item.id, kind=EntryKind.gold, priority=10)], Actor.system())
        alice = make_user(s, "alice")
        record_label(
            s, p, items[1], alice,
            parse_label_input({"decision": "not_violating", "idempotency_key": "import:1"}),
            source=LabelSource.human, actor=Actor.system(),
        )  # fmt: skip
        leased = lease_batch(s, p.id, alice.id, 10, 60)
        assert sorted(le.item_id for le in leased) == sorted([items[0].id, items[2].id])


def test_resubmitting_a_batch_records_nothing_and_says_so(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _queue(s, n=4)
        alice = make_user(s, "alice")
        leased = lease_batch(s, p.id, alice.id, 4, 60)
        first = _submit_all(s, alice, leased)
        assert len(first.created) == 4 and not first.already and not first.rejected
        again = _submit_all(s, alice, leased)
        assert not again.created and again.already == first.created and not again.rejected
        assert s.scalar(select(func.count()).select_from(Label)) == 4
        events = s.scalar(select(func.count()).where(AuditEvent.action == "label.recorded"))
        assert events == 4  # the retry wrote no second audit event either
        keys = set(s.scalars(select(Label.idempotency_key)))
        assert keys == {review.lease_key(le.lease_id) for le in leased}


def test_batch_submit_counts_entries_and_marks_them_done_at_their_overlap(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _queue(s, n=3, overlap=2)
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        _submit_all(s, alice, lease_batch(s, p.id, alice.id, 3, 60))
        entries = _entries(s, p)
        for e in entries.values():
            s.refresh(e)
            assert (e.active_leases, e.completed, e.status) == (0, 1, EntryStatus.pending)
        _submit_all(s, bob, lease_batch(s, p.id, bob.id, 3, 60))
        for e in entries.values():
            s.refresh(e)
            assert (e.active_leases, e.completed, e.status) == (0, 2, EntryStatus.done)
        leases = s.scalars(select(Lease)).all()
        assert {le.status for le in leases} == {LeaseStatus.submitted}
        assert all(le.label_id is not None and le.finished_at is not None for le in leases)


def test_every_label_of_a_batch_has_its_own_audit_event(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _queue(s, n=3)
        alice = make_user(s, "alice")
        leased = lease_batch(s, p.id, alice.id, 3, 60)
        result = _submit_all(s, alice, leased, decision="violating", policies=["hate"],
                             rationale="a slur")  # fmt: skip
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "label.recorded")).all()
        assert sorted(int(e.entity_id) for e in events) == sorted(result.created.values())
        for e in events:
            assert e.actor == "alice" and e.actor_user_id == alice.id and e.project_id == p.id
            assert e.details["decision"] == "violating" and e.details["policies"] == ["hate"]
            assert result.created[e.details["lease"]] == int(e.entity_id)


def test_batch_submit_rejects_bad_labels_and_others_leases_and_records_the_rest(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _queue(s, n=3)
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        mine = lease_batch(s, p.id, alice.id, 2, 60)
        (bobs,) = lease_batch(s, p.id, bob.id, 1, 60)
        result = submit_batch(
            s,
            alice,
            [
                Submission(mine[0].lease_id, _label()),
                # A reviewer's violating label needs a rationale (the same check as one label).
                Submission(mine[1].lease_id, _label("violating", policies=["hate"])),
                Submission(bobs.lease_id, _label()),
            ],
        )
        assert list(result.created) == [mine[0].lease_id]
        assert "rationale" in result.rejected[mine[1].lease_id]
        assert "no lease" in result.rejected[bobs.lease_id]
        assert s.scalar(select(func.count()).select_from(Label)) == 1
        assert s.get(Lease, mine[1].lease_id).status == LeaseStatus.active  # still hers to redo


# Labels that break one rule each of `record_label`; the batched path must refuse them alike.
BAD_LABELS = {
    "unknown policy code": {"decision": "violating", "policies": ["no_such"], "rationale": "r"},
    "severity without a code": {"decision": "not_violating", "severity": 2},
    "none with violating": {"decision": "violating", "policies": ["none"], "rationale": "r"},
    "violating without rationale": {"decision": "violating", "policies": ["hate"]},
    "span past the text": {"decision": "not_violating", "spans": [{"start": 0, "end": 999}]},
    "unknown policy version": {"decision": "not_violating", "policy_version": 99},
}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_batch_submit_rejects_what_record_label_rejects_for_the_same_reason(db, case) -> None:
    bad = BAD_LABELS[case]
    with db.sessions.begin() as s:
        p, items = _queue(s, n=1)
        alice = make_user(s, "alice")
        (leased,) = lease_batch(s, p.id, alice.id, 1, 60)
        one = parse_label_input({**bad, "idempotency_key": "one"})
        with pytest.raises(WorkbenchError) as refused:
            record_label(s, p, items[0], alice, one, source=LabelSource.human, actor=_actor(alice))
        result = submit_batch(s, alice, [Submission(leased.lease_id, _label(**bad))])
        assert not result.created
        also = [str(problem) for problem in refused.value.problems[1:]]
        assert result.rejected[leased.lease_id] == "; ".join([refused.value.message, *also])
        assert s.scalar(select(func.count()).select_from(Label)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "label.recorded")) == 0  # fmt: skip


def test_a_batched_label_has_the_audit_event_of_one_recorded_label_plus_its_lease(db) -> None:
    with db.sessions.begin() as s:
        p, items = _queue(s, n=2)
        alice = make_user(s, "alice")
        (leased,) = lease_batch(s, p.id, alice.id, 1, 60)
        other = next(i for i in items if i.id != leased.item_id)
        said = {"decision": "violating", "policies": ["hate"], "severity": 2, "rationale": "r"}
        single, _ = record_label(
            s, p, other, alice, parse_label_input({**said, "idempotency_key": "one"}),
            source=LabelSource.human, actor=_actor(alice),
        )  # fmt: skip
        result = submit_batch(s, alice, [Submission(leased.lease_id, _label(**said))])
        events = {
            e.entity_id: e
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "label.recorded"))
        }
        one, batched = events[str(single.id)], events[str(result.created[leased.lease_id])]
        assert (batched.actor, batched.actor_user_id, batched.project_id, batched.entity_type) == (
            one.actor, one.actor_user_id, one.project_id, one.entity_type,
        )  # fmt: skip
        assert batched.details == {
            **one.details,
            "item": s.get(Item, leased.item_id).external_id,
            "lease": leased.lease_id,
            "batch": 1,
        }


def test_an_expired_lease_counts_only_while_its_slot_is_still_free(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _queue(s, n=2)
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        now = utcnow()
        held = lease_batch(s, p.id, alice.id, 2, 60, now)
        later = now + timedelta(seconds=61)
        # Bob's lease reclaims both expired leases and takes one of the two entries.
        (taken,) = lease_batch(s, p.id, bob.id, 1, 60, later)
        free = next(le for le in held if le.entry_id != taken.entry_id)
        gone = next(le for le in held if le.entry_id == taken.entry_id)
        result = _submit_all(s, alice, held)
        assert list(result.created) == [free.lease_id]
        assert "another reviewer" in result.rejected[gone.lease_id]
        entries = _entries(s, p)
        done = entries[free.item_id]
        s.refresh(done)
        assert (done.active_leases, done.completed, done.status) == (0, 1, EntryStatus.done)
        other = entries[taken.item_id]
        s.refresh(other)
        assert (other.active_leases, other.completed) == (1, 0)


def test_a_batch_lease_can_be_submitted_through_the_review_page_too(db) -> None:
    with db.sessions.begin() as s:
        p, _ = _queue(s, n=2)
        alice = make_user(s, "alice")
        actor = Actor.for_user(alice.name, alice.id, alice.role)
        first, second = lease_batch(s, p.id, alice.id, 2, 60)
        form = review.ReviewForm(decision="not_violating")
        one = review.submit_review(s, p, actor, first.lease_id, form)
        both = _submit_all(s, alice, [first, second])
        assert both.already == {first.lease_id: one.label_id}
        assert list(both.created) == [second.lease_id]


def test_batch_labels_show_in_the_label_export(db) -> None:
    with db.sessions.begin() as s:
        p, items = _queue(s, n=3)
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        _submit_all(s, alice, lease_batch(s, p.id, alice.id, 2, 60))
        _submit_all(s, bob, lease_batch(s, p.id, bob.id, 2, 60))
        sink = io.BytesIO()
        assert export_labels(s, p, "jsonl", sink) == 3
    rows = [json.loads(line) for line in sink.getvalue().decode().splitlines()]
    assert Counter(r["reviewer"] for r in rows) == {"alice": 2, "bob": 1}
    assert all(r["idempotency_key"].startswith("lease:") for r in rows)
    assert {r["external_id"] for r in rows} == {i.external_id for i in items}


# --------------------------------------------------------------------------------------------
# Many reviewer processes at once

REVIEWERS = 8
DEAD = 2  # reviewers killed while they hold a batch
ITEMS = 120
OVERLAP_EVERY = 4  # every 4th item goes to 3 reviewers
BATCH = 7
# Short, so the test waits little for the dead reviewers' leases; on a loaded machine a living
# reviewer's lease may expire too, and its submission is then refused, never counted twice.
LEASE_SECONDS = 4


def _reviewer(url: str, home: str, user_id: int, project_id: int, dies: bool, report, go) -> None:  # type: ignore[no-untyped-def]
    os.environ["WORKBENCH_DATABASE_URL"] = url
    os.environ["WORKBENCH_HOME"] = home
    db = open_database(Settings())
    with db.sessions() as s:
        user = s.get_one(User, user_id)
        s.expunge(user)
    if not dies:
        go.wait()  # the dead take their batches first, so they surely die holding one
    while True:
        with db.sessions.begin() as s:
            leased = lease_batch(s, project_id, user_id, BATCH, LEASE_SECONDS)
        if not leased:
            with db.sessions() as s:
                left = s.scalar(
                    select(func.count()).where(
                        QueueEntry.project_id == project_id,
                        QueueEntry.status == EntryStatus.pending,
                    )
                )
            if not left:
                break
            time.sleep(0.1)  # the dead reviewers' leases have not expired yet
            continue
        if dies:
            report.send(("held", len(leased)))
            os.kill(os.getpid(), signal.SIGKILL)  # vanishes mid-lease
        with db.sessions.begin() as s:
            result = _submit_all(s, user, leased)
            # A retry of the same batch (a reconnect) changes nothing.
            again = _submit_all(s, user, leased)
            assert again.already == result.created and not again.created
        report.send(("ack", list(result.created.values()), len(result.rejected)))
    db.dispose()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_many_reviewer_processes_lose_nothing_and_duplicate_nothing(
    backend: str, request: pytest.FixtureRequest, tmp_path
) -> None:
    if backend == "postgres":
        url = request.getfixturevalue("postgres_url")
        upgrade(make_engine(url))
    else:
        url = f"sqlite:///{tmp_path / 'wb.db'}"
    home = str(tmp_path / "home")
    db = open_database(Settings(database_url=url, home=home))
    with db.sessions.begin() as s:
        p = make_project(s, "conc")
        items = make_items(s, p, [f"item {n}" for n in range(ITEMS)])
        targets = {i.id: (3 if n % OVERLAP_EVERY == 0 else 1) for n, i in enumerate(items)}
        enqueue(s, p, [NewEntry(i, overlap_target=k) for i, k in targets.items()], Actor.system())
        users = [make_user(s, f"r{n}") for n in range(REVIEWERS)]
        project_id = p.id

    ctx = mp.get_context("spawn")
    go = ctx.Event()
    procs, readers = [], []
    for n, u in enumerate(users):
        reader, writer = ctx.Pipe(duplex=False)
        args = (url, home, u.id, project_id, n < DEAD, writer, go)
        proc = ctx.Process(target=_reviewer, args=args)
        proc.start()
        writer.close()
        procs.append(proc)
        readers.append(reader)
    held_by_dead = 0
    for reader in readers[:DEAD]:
        assert reader.poll(120), "a reviewer meant to die never took a batch"
        held_by_dead += reader.recv()[1]
    go.set()
    acknowledged: list[int] = []
    rejected = 0
    deadline = time.monotonic() + 240
    while readers and time.monotonic() < deadline:
        for reader in mp_connection.wait(readers, timeout=1.0):
            try:
                msg = reader.recv()  # type: ignore[union-attr]
            except EOFError:
                readers.remove(reader)
                continue
            assert msg[0] == "ack"
            acknowledged.extend(msg[1])
            rejected += msg[2]
    for proc in procs:
        proc.join(timeout=10)
    assert not readers, "reviewers still running after 240 s"
    assert sorted(proc.exitcode for proc in procs) == [-signal.SIGKILL] * DEAD + [0] * (
        REVIEWERS - DEAD
    )

    with db.sessions() as s:
        labels = s.execute(
            select(Label.id, Label.item_id, Label.reviewer_id, Label.idempotency_key)
        ).all()
        pairs = Counter((lab.item_id, lab.reviewer_id) for lab in labels)
        assert max(pairs.values()) == 1  # never twice to one reviewer
        assert len({lab.idempotency_key for lab in labels}) == len(labels)
        assert Counter(lab.item_id for lab in labels) == Counter(targets)  # overlap met exactly
        assert sorted(acknowledged) == sorted(lab.id for lab in labels)  # none lost, none extra
        audited = set(
            s.scalars(select(AuditEvent.entity_id).where(AuditEvent.action == "label.recorded"))
        )
        assert audited == {str(lab.id) for lab in labels}
        leases = s.execute(
            select(
                Lease.entry_id, Lease.status, Lease.leased_at, Lease.expires_at, Lease.finished_at
            )
        ).all()
        # Every expired lease is a dead reviewer's, or a living one's whose submission came
        # too late and was refused (its item went to someone else); none was counted.
        expired = sum(1 for le in leases if le.status == LeaseStatus.expired)
        assert held_by_dead > 0 and expired == held_by_dead + rejected
        entries = s.execute(
            select(QueueEntry.id, QueueEntry.overlap_target, QueueEntry.active_leases,
                   QueueEntry.completed, QueueEntry.status)
        ).all()  # fmt: skip
        assert all(
            e.active_leases == 0 and e.completed == e.overlap_target and e.status == "done"
            for e in entries
        )
        target_of = {e.id: e.overlap_target for e in entries}
        # At no moment more leases on an entry than its target: check every lease start. A lease
        # holds its slot until it is finished or expires (a late submission accepted after the
        # expiry took a free slot back at that instant). The times are each process's clock,
        # read before its statement waited for locks, hence the small tolerance.
        skew = timedelta(seconds=0.5)
        by_entry = defaultdict(list)
        for le in leases:
            end = le.expires_at if le.finished_at is None else min(le.finished_at, le.expires_at)
            by_entry[le.entry_id].append((le.leased_at, end))
        for entry_id, spans in by_entry.items():
            for n, (start, _) in enumerate(spans):
                others = [
                    1 for k, (s0, e0) in enumerate(spans) if k != n and s0 <= start < e0 - skew
                ]
                assert 1 + len(others) <= target_of[entry_id], (entry_id, spans)
    db.dispose()
