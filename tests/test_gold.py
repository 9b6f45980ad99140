"""Gold checks: leads mark answers; gold reaches each reviewer at the rate by its own path,
never twice and without a hint; accuracy with a Wilson interval; alerts once per crossing."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from builders import join_every_project, make_items, make_project, make_user
from sqlalchemy import func, select
from statsmodels.stats.proportion import proportion_confint

from workbench.db.database import Database
from workbench.db.models import (
    AuditEvent,
    Decision,
    EntryKind,
    EntryStatus,
    GoldItem,
    Item,
    Label,
    LabelSource,
    LeaseStatus,
    Project,
    QueueEntry,
    Role,
    User,
)
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.services.audit import Actor
from workbench.services.projects import set_project_setting
from workbench.services.quality import gold
from workbench.services.quality.overview import overlap_items
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.queue.health import queue_health
from workbench.services.queue.lease import finish_lease, lease_next
from workbench.services.review import flow as review
from workbench.services.taxonomy import current_policy_version
from workbench.services.users import add_user

SYSTEM = Actor.system()
NOW = datetime.now(UTC).replace(microsecond=0)


def _actor(user: User) -> Actor:
    return Actor.for_user(user.name, user.id, user.role)


def _gold_project(
    s: Any, *, rate: float, n_gold: int, n_items: int
) -> tuple[Project, list[Item], list[Item]]:
    p = make_project(s)
    set_project_setting(s, p, "gold_rate", rate, SYSTEM)
    golds = make_items(s, p, [f"gold {n}" for n in range(n_gold)], prefix="g")
    items = make_items(s, p, [f"item {n}" for n in range(n_items)])
    enqueue(s, p, [NewEntry(i.id, priority=-n) for n, i in enumerate(items)], SYSTEM)
    for g in golds:
        gold.mark_gold(s, p, SYSTEM, g.external_id, "not_violating", ["none"])
    return p, golds, items


def _take(s: Any, p: Project, user: User, n: int) -> list[tuple[int, EntryKind]]:
    """Lease and submit n items in a row; (item id, entry kind) of each."""
    out = []
    for _ in range(n):
        lease = lease_next(s, p, user)
        assert lease is not None
        entry = s.get(QueueEntry, lease.entry_id)
        out.append((entry.item_id, entry.kind))
        finish_lease(s, lease, status=LeaseStatus.submitted)
    return out


def test_gold_reaches_each_reviewer_at_the_rate_and_never_twice(db: Database) -> None:
    with db.sessions.begin() as s:
        # Rate 0.25: one gold item in every block of four leases.
        p, golds, _ = _gold_project(s, rate=0.25, n_gold=3, n_items=40)
        gold_ids = {g.id for g in golds}
        for name in ("alice", "bob"):
            taken = _take(s, p, make_user(s, name), 16)
            got = [i for i, kind in taken if kind == EntryKind.gold]
            assert all((i in gold_ids) == (k == EntryKind.gold) for i, k in taken)
            for block in range(3):  # one per block while gold lasts
                assert sum(k == EntryKind.gold for _, k in taken[4 * block : 4 * block + 4]) == 1
            assert sorted(got) == sorted(gold_ids)  # every gold item once, none twice
        # The gold entries stay open for further reviewers.
        assert {e.status for e in s.scalars(select(QueueEntry).where(
            QueueEntry.kind == EntryKind.gold))} == {EntryStatus.pending}  # fmt: skip


def test_gold_skips_a_reviewer_who_labelled_the_item_and_the_ordinary_queue_never_serves_it(
    db: Database,
) -> None:
    with db.sessions.begin() as s:
        p, golds, _ = _gold_project(s, rate=0.5, n_gold=1, n_items=12)
        alice = make_user(s, "alice")
        pv = current_policy_version(s, p)
        s.add(Label(project_id=p.id, item_id=golds[0].id, reviewer_id=alice.id,
                    policy_version_id=pv.id, decision=Decision.not_violating,
                    source=LabelSource.import_, idempotency_key="pre"))  # fmt: skip
        s.flush()
        assert all(k != EntryKind.gold for _, k in _take(s, p, alice, 6))
        set_project_setting(s, p, "gold_rate", 0.0, SYSTEM)  # gold off: never served at all
        bob = make_user(s, "bob")
        assert all(k != EntryKind.gold for _, k in _take(s, p, bob, 6))
        assert lease_next(s, p, bob) is None


def test_a_reviewer_sees_no_hint_that_an_item_is_gold(db: Database) -> None:
    with db.sessions.begin() as s:
        p, golds, _ = _gold_project(s, rate=0.5, n_gold=1, n_items=2)
        gold.mark_gold(s, p, SYSTEM, golds[0].external_id, "violating", ["hate"], 2,
                       note="SECRET ANSWER NOTE")  # fmt: skip
        alice = _actor(make_user(s, "alice"))
        seen = []
        for _ in range(3):
            view = review.current_item(s, p, alice)
            assert view is not None and view.lease_id is not None
            seen.append(view)
            review.submit_review(
                s, p, alice, view.lease_id, review.ReviewForm(decision="not_violating")
            )
    fields = {f.name for f in dataclasses.fields(review.ReviewItem)}
    assert fields == {
        "item_id", "external_id", "text", "modalities", "assets", "draft", "lease_id",
        "lease_expires_at", "supersedes_label_id", "idempotency_key", "policy_version",
        "policies", "flagged_affected",
    }  # fmt: skip
    gold_view = next(v for v in seen if v.item_id == golds[0].id)
    plain_view = next(v for v in seen if v.item_id != golds[0].id)
    assert gold_view.draft == plain_view.draft and gold_view.idempotency_key.startswith("lease:")
    assert gold_view.policies == plain_view.policies
    text = repr(gold_view)
    assert "SECRET" not in text and "gold" not in text.replace("gold 0", "")


def test_mark_and_retire_are_for_leads_and_audited(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["a"])
        enqueue(s, p, [NewEntry(item.id)], SYSTEM)
        rita = _actor(make_user(s, "rita"))
        with pytest.raises(PermissionDenied):
            gold.mark_gold(s, p, rita, "i0", "not_violating")
        lead = _actor(make_user(s, "lena", Role.lead))
        assert gold.mark_gold(s, p, lead, "i0", "not_violating")["created"] == 1
        assert gold.mark_gold(s, p, lead, "i0", "not_violating")["unchanged"] == 1
        assert gold.mark_gold(s, p, lead, "i0", "violating", ["hate"], 1)["updated"] == 1
        kinds = {e.kind: e.status for e in s.scalars(select(QueueEntry))}
        # The ordinary entry made way for the gold one.
        assert kinds == {
            EntryKind.selected: EntryStatus.cancelled,
            EntryKind.gold: EntryStatus.pending,
        }
        with pytest.raises(WorkbenchError, match="must be violating or not_violating"):
            gold.mark_gold(s, p, lead, "i0", "unsure")
        gold.retire_gold(s, p, lead, "i0")
        assert gold.gold_answers(s, p) == {}
        assert s.scalar(select(QueueEntry.status).where(QueueEntry.kind == EntryKind.gold)) == (
            EntryStatus.cancelled
        )
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.action.like("gold.%"))))
        assert actions == ["gold.marked", "gold.marked", "gold.retired"]


def _answers(s: Any, p: Project, items: list[Item], reviewer: str, results: list[bool],
             start: datetime) -> None:  # fmt: skip
    """One label per gold item (all `violating`/hate answers): right or wrong, a day apart."""
    pv = current_policy_version(s, p)
    user = s.scalar(select(User).where(User.name == reviewer)) or make_user(s, reviewer)
    for n, (item, right) in enumerate(zip(items, results, strict=False)):
        s.add(Label(
            project_id=p.id, item_id=item.id, reviewer_id=user.id, policy_version_id=pv.id,
            decision=Decision.violating if right else Decision.not_violating,
            policies=["hate"] if right else [], source=LabelSource.human,
            rationale="r", idempotency_key=f"{reviewer}-{item.id}",
            created_at=start + timedelta(days=n),
        ))  # fmt: skip
    s.flush()


def _gold_items(s: Any, p: Project, n: int) -> list[Item]:
    items = make_items(s, p, [f"g{k}" for k in range(n)], prefix="g")
    gold.mark_gold_many(
        s, p, SYSTEM, [gold.GoldInput(i.external_id, "violating", ("hate",), 2) for i in items]
    )
    return items


def test_gold_accuracy_has_the_wilson_interval_of_statsmodels_and_a_weekly_trend(
    db: Database,
) -> None:
    start = NOW - timedelta(days=13)
    with db.sessions.begin() as s:
        p = make_project(s)
        items = _gold_items(s, p, 10)
        _answers(s, p, items, "ann", [True] * 7 + [False] * 3, start)
        # A label on an ordinary item never counts.
        (plain,) = make_items(s, p, ["x"], prefix="x")
        _answers(s, p, [plain], "ann", [False], start)
        result = gold.gold_accuracy(s, p, SYSTEM)
    (ann,) = result["reviewers"]
    low, high = proportion_confint(7, 10, alpha=0.05, method="wilson")
    assert (ann["n"], ann["correct"], ann["accuracy"]) == (10, 7, 0.7)
    assert ann["ci_low"] == pytest.approx(low) and ann["ci_high"] == pytest.approx(high)
    assert ann["ci_low"] == pytest.approx(0.3968, abs=1e-4)  # Wilson (1927), 7 of 10
    assert ann["policy_accuracy"] == 0.7
    assert sum(w["n"] for w in ann["trend"]) == 10
    assert [w["week"] for w in ann["trend"]] == sorted(w["week"] for w in ann["trend"])
    assert len(ann["trend"]) >= 2 and all(0 <= w["accuracy"] <= 1 for w in ann["trend"])


def test_policy_accuracy_needs_the_right_code_too(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        items = _gold_items(s, p, 2)
        pv = current_policy_version(s, p)
        bob = make_user(s, "bob")
        for n, code in enumerate(["hate", "harassment"]):
            s.add(Label(project_id=p.id, item_id=items[n].id, reviewer_id=bob.id,
                        policy_version_id=pv.id, decision=Decision.violating, policies=[code],
                        source=LabelSource.human, rationale="r", idempotency_key=f"b{n}",
                        created_at=NOW - timedelta(days=1)))  # fmt: skip
        s.flush()
        (row,) = gold.gold_accuracy(s, p, SYSTEM)["reviewers"]
    assert (row["correct"], row["policy_correct"]) == (2, 1)


def test_alert_fires_below_the_threshold_once_and_not_with_too_few_answers(db: Database) -> None:
    start = NOW - timedelta(days=20)
    with db.sessions.begin() as s:
        p = make_project(s)
        set_project_setting(s, p, "gold_alert_min_answers", 5, SYSTEM)
        set_project_setting(s, p, "gold_alert_threshold", 0.7, SYSTEM)
        items = _gold_items(s, p, 10)
        _answers(s, p, items[:6], "ann", [True, True, False, False, False, True], start)  # 3/6
        _answers(s, p, items[:3], "bob", [False, False, False], start)  # 0/3: too few
        _answers(s, p, items[:5], "cat", [True] * 5, start)
        first = gold.gold_accuracy(s, p, SYSTEM)
        by = {r["reviewer"]: r for r in first["reviewers"]}
        assert first["alerts"] == ["ann"]
        assert by["ann"]["alert"] and not by["bob"]["alert"] and not by["cat"]["alert"]
        assert first["alerts_recorded"] == [{"reviewer": "ann", "action": "gold.alert_raised"}]
        assert gold.gold_accuracy(s, p, SYSTEM)["alerts_recorded"] == []  # once per crossing
        # An ad hoc window shows figures but never records.
        assert gold.gold_accuracy(s, p, SYSTEM, window_days=0)["alerts_recorded"] == []
        # ann gets better: 7 of 10 is not below 0.7, and the alert clears, once.
        _answers(s, p, items[6:], "ann", [True] * 4, start + timedelta(days=6))
        cleared = gold.gold_accuracy(s, p, SYSTEM)
        assert cleared["alerts"] == []
        assert cleared["alerts_recorded"] == [{"reviewer": "ann", "action": "gold.alert_cleared"}]
        events = list(s.scalars(select(AuditEvent.action).where(
            AuditEvent.action.like("gold.alert%")).order_by(AuditEvent.id)))  # fmt: skip
    assert events == ["gold.alert_raised", "gold.alert_cleared"]


def test_gold_accuracy_is_for_leads(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        rita = _actor(make_user(s, "rita"))
        with pytest.raises(PermissionDenied):
            gold.gold_accuracy(s, p, rita)


def test_mark_from_a_file_is_all_or_nothing_with_located_problems(
    db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        make_items(s, p, ["a", "b", "c"])
    good = tmp_path / "gold.csv"
    good.write_text(
        "external_id,decision,policies,severity,note\n"
        "i0,violating,hate,2,slur\n"
        "i1,not_violating,none,,\n"
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"external_id": "i0", "decision": "violating", "policies": ["hate"]}) + "\n"
        + json.dumps({"external_id": "i1", "decision": "violating", "policies": ["hat"]}) + "\n"
        + json.dumps({"external_id": "nope", "decision": "not_violating"}) + "\n"
        + json.dumps({"external_id": "i2", "decision": "violating", "colour": "red"}) + "\n"
    )  # fmt: skip
    with db.sessions.begin() as s:
        p = make_project_get(s)
        with pytest.raises(WorkbenchError) as exc:
            gold.mark_gold_many(s, p, SYSTEM, gold.read_gold_file(bad))
    # The unknown column is found while reading; nothing else is checked until the file reads.
    assert [(x.line, x.field) for x in exc.value.problems] == [(4, "colour")]
    bad.write_text("\n".join(bad.read_text().splitlines()[:3]) + "\n")
    with db.sessions.begin() as s:
        p = make_project_get(s)
        with pytest.raises(WorkbenchError) as exc:
            gold.mark_gold_many(s, p, SYSTEM, gold.read_gold_file(bad))
    problems = [(x.file, x.line, x.field) for x in exc.value.problems]
    assert problems == [(str(bad), 2, "policies"), (str(bad), 3, "external_id")]
    with db.sessions() as s:
        assert s.scalar(select(func.count()).select_from(GoldItem)) == 0
    with db.sessions.begin() as s:
        result = gold.mark_gold_many(s, make_project_get(s), SYSTEM, gold.read_gold_file(good))
    assert result["created"] == 2


def make_project_get(s: Any) -> Project:
    from workbench.services.projects import get_project

    return get_project(s, "p")


def test_gold_cli_json_shapes(db: Database, cli: Any, tmp_path: Path) -> None:
    with db.sessions.begin() as s:
        p = make_project(s, "p")
        make_items(s, p, ["a", "b", "c"])
    marked = cli.json("gold", "mark", "--project", "p", "--item", "i0", "--decision", "violating",
                      "--policy", "hate", "--severity", "2", "--note", "slur")  # fmt: skip
    assert marked["ok"] and marked["created"] == 1
    assert marked["items"][0] == {
        "external_id": "i0",
        "status": "created",
        "decision": "violating",
        "policies": ["hate"],
        "severity": 2,
    }
    f = tmp_path / "g.csv"
    f.write_text("external_id,decision,policies\ni1,not_violating,\ni2,violating,bogus\n")
    bad = cli.json("gold", "mark", "--project", "p", "--file", str(f), expect=1)
    assert bad["ok"] is False
    assert [(x["file"], x["line"], x["field"]) for x in bad["problems"]] == [
        (str(f), 3, "policies")
    ]
    listed = cli.json("gold", "list", "--project", "p")
    assert [g["external_id"] for g in listed["gold_items"]] == ["i0"]
    acc = cli.json("gold", "accuracy", "--project", "p")
    assert set(acc) >= {"reviewers", "alerts", "threshold", "min_answers", "rule", "window_days"}
    assert acc["reviewers"] == [] and acc["gold_items"] == 1
    assert cli.json("gold", "retire", "--project", "p", "--item", "i0")["retired"] is True
    assert cli.json("gold", "list", "--project", "p")["gold_items"] == []
    assert len(cli.json("gold", "list", "--project", "p", "--all")["gold_items"]) == 1
    usage = cli("gold", "mark", "--project", "p")
    assert usage.exit_code == 2
    assert cli("gold", "--help").exit_code == 0


# --- the page ----------------------------------------------------------------------------------


def test_gold_page_highlights_alerts_and_marks_an_item(sqlite_db: Database) -> None:
    from test_adjudication import PW, lead_page

    st.cache_resource.clear()  # the app caches its database; each test has its own
    with sqlite_db.sessions.begin() as s:
        p = make_project(s, "p")
        set_project_setting(s, p, "gold_alert_min_answers", 3, SYSTEM)
        items = _gold_items(s, p, 4)
        _answers(s, p, items, "<b>ann</b>", [False, False, True, False], NOW - timedelta(days=9))
        _answers(s, p, items, "bob", [True] * 4, NOW - timedelta(days=9))
        make_items(s, p, ["to be gold"], prefix="new")
        join_every_project(s, add_user(s, "lena", Role.lead, SYSTEM, password=PW))
    at = lead_page("gold")
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Gold checks"]
    assert any("below the threshold" in e.value for e in at.error)
    assert "<b>ann</b>" in [t.value for t in at.text]  # the name, shown as text
    assert not any("<b>ann</b>" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    table = table.data if hasattr(table, "data") else table  # a Styler keeps its frame in .data
    assert list(table["reviewer"]) == ["<b>ann</b>", "bob"]
    assert list(table["alert"]) == [True, False]
    at.text_input[0].input("new0")
    next(r for r in at.radio if r.label == "Answer").set_value("not_violating")
    next(b for b in at.button if b.label == "Mark as gold").click().run()
    assert not at.exception, at.exception
    with sqlite_db.sessions() as s:
        assert gold.gold_answers(s, make_project_get(s)).keys() >= {
            s.scalar(select(Item.id).where(Item.external_id == "new0"))
        }
        raised = s.scalar(select(func.count()).where(AuditEvent.action == "gold.alert_raised"))
    assert raised == 1


def test_gold_entries_are_not_counted_as_pending_work_nor_as_overlap(db: Database) -> None:
    from workbench.services.status import project_status

    with db.sessions.begin() as s:
        p, _, _ = _gold_project(s, rate=0.2, n_gold=2, n_items=3)
        lead = make_user(s, "lena", Role.lead)
        health = queue_health(s, p)
        assert (health["pending"], health["gold_active"]) == (3, 2)
        assert project_status(s, p)["queued"] == 3
        assert overlap_items(s, p, _actor(lead)) == []
