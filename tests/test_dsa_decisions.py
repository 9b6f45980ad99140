"""Enforcement decisions and appeals: made when a violating label is recorded (one path or
batched), an adjudication is resolved or a scan blocks; a lead's override is audited; a
complaint goes to someone other than the decider and its outcome reverses or upholds."""

from __future__ import annotations

from typing import Any

import pytest
from builders import make_items, make_project, make_user
from sqlalchemy import func, select

from workbench.db.database import Database
from workbench.db.models import (
    AppealStatus,
    AuditEvent,
    DecisionOrigin,
    EnforcementDecision,
    EntryKind,
    LabelSource,
    Project,
    QueueEntry,
    Role,
    User,
)
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.services.audit import Actor
from workbench.services.labels.record import record_label
from workbench.services.labels.validate import parse_label_input
from workbench.services.quality import adjudication as adj
from workbench.services.queue.batch import Submission, submit_batch
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.queue.lease import lease_batch, lease_next
from workbench.services.report import appeals, decisions
from workbench.services.report.sor_rules import validate_statement
from workbench.services.report.statements import statement_of


def actor(user: User) -> Actor:
    return Actor.for_user(user.name, user.id, user.role)


def label(s: Any, p: Project, item: Any, user: User, decision: str, key: str, **more: Any) -> Any:
    data = parse_label_input(
        {"decision": decision, "idempotency_key": key,
         "policies": ["spam"] if decision == "violating" else [],
         "rationale": f"judged {decision}", **more}
    )  # fmt: skip
    row, _ = record_label(s, p, item, user, data, source=LabelSource.human, actor=actor(user))
    return row


def all_decisions(s: Any) -> list[EnforcementDecision]:
    return list(s.scalars(select(EnforcementDecision).order_by(EnforcementDecision.id)))


def test_a_violating_label_makes_one_decision_with_the_taxonomy_defaults(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["win a free phone at scam.example"])
        item.language = "en"
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        first = label(s, p, item, alice, "violating", "a", rationale="Phishing giveaway.")
        label(s, p, item, bob, "violating", "b")  # overlap agreeing: still one action
        (row,) = all_decisions(s)
        assert row.origin == DecisionOrigin.label and row.label_id == first.id
        assert row.puid == f"wb-p{p.id}-label-{first.id}"
        assert (row.policy_code, row.restriction, row.ground) == ("spam", "demoted", "incompatible")
        assert row.terms_clause and row.category == "SCAMS_AND_FRAUD"
        assert row.content_types == ["text"] and row.automated_decision == "not"
        assert "Phishing giveaway." in row.facts
        statement = statement_of(row)
        assert validate_statement(statement) == []
        assert statement["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_DEMOTED"]
        assert statement["content_language"] == "EN"
        made = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "decision.made"))  # fmt: skip
        assert made == 1


def test_not_violating_and_unsure_labels_make_no_decision(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        a, b = make_items(s, p, ["fine", "hmm"])
        alice = make_user(s, "alice")
        label(s, p, a, alice, "not_violating", "a")
        label(s, p, b, alice, "unsure", "b")
        assert all_decisions(s) == []


def test_a_correction_to_not_violating_reverses_the_decision(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["x"])
        alice = make_user(s, "alice")
        label(s, p, item, alice, "violating", "a")
        label(s, p, item, alice, "not_violating", "a2", supersedes="a")
        (row,) = all_decisions(s)
        assert row.revoked_at is not None and "corrected" in (row.revoked_reason or "")


def test_batched_labels_make_decisions_like_single_ones(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        items = make_items(s, p, ["a", "b", "c"])
        enqueue(s, p, [NewEntry(i.id) for i in items], Actor.system())
        alice = make_user(s, "alice")
        leased = lease_batch(s, p.id, alice.id, 3, 60)
        subs = [
            Submission(le.lease_id, parse_label_input(
                {"decision": "violating" if k < 2 else "not_violating",
                 "policies": ["hate"] if k < 2 else [], "idempotency_key": "x",
                 "rationale": "r"}))
            for k, le in enumerate(leased)
        ]  # fmt: skip
        result = submit_batch(s, alice, subs, actor=actor(alice))
        assert len(result.created) == 3
        rows = all_decisions(s)
        assert len(rows) == 2 and {r.policy_code for r in rows} == {"hate"}
        assert {r.restriction for r in rows} == {"removed"}


def test_an_adjudication_makes_or_reverses_a_decision(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        a, b = make_items(s, p, ["a", "b"])
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        lena = make_user(s, "lena", Role.lead)
        label(s, p, a, alice, "not_violating", "a1")
        label(s, p, a, bob, "unsure", "a2")
        label(s, p, b, alice, "violating", "b1")
        case_a = adj.open_case(s, p, actor(lena), a.external_id, "look")
        adj.resolve_case(s, p, actor(lena), case_a["id"], "violating", ["violence"], 2, "threat")
        case_b = adj.open_case(s, p, actor(lena), b.external_id, "look")
        adj.resolve_case(s, p, actor(lena), case_b["id"], "not_violating", [], None, "joke")
        by_item = {r.item_id: r for r in all_decisions(s)}
        assert by_item[a.id].origin == DecisionOrigin.adjudication
        assert by_item[a.id].decided_by == "lena" and by_item[a.id].revoked_at is None
        assert by_item[b.id].origin == DecisionOrigin.label and by_item[b.id].revoked_at


def test_a_scan_decision_is_automated_and_idempotent(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["known bad image"])
        item.modalities = ["image", "text"]
        scan = Actor.system()
        kw = {"policy_code": "child_safety", "scan_ref": "pdq:abc/1", "actor": scan,
              "facts": "Matched a known hash list."}  # fmt: skip
        row = decisions.record_scan_decision(s, p, item, **kw)
        again = decisions.record_scan_decision(s, p, item, **kw)
        assert again.id == row.id and len(all_decisions(s)) == 1
        assert row.automated_detection and row.automated_decision == "fully"
        assert row.puid == f"wb-p{p.id}-scan-pdq_abc_1"
        statement = statement_of(row)
        assert validate_statement(statement) == []
        assert statement["content_type"] == ["CONTENT_TYPE_IMAGE", "CONTENT_TYPE_TEXT"]
        assert statement["automated_decision"] == "AUTOMATED_DECISION_FULLY"
        with pytest.raises(WorkbenchError, match="not in the project's taxonomy"):
            decisions.record_scan_decision(s, p, item, **{**kw, "policy_code": "nope",
                                                          "scan_ref": "other"})  # fmt: skip
        with pytest.raises(WorkbenchError, match="fully"):
            decisions.record_scan_decision(s, p, item, **kw, automated_decision="not")


def test_a_lead_overrides_restriction_and_ground_audited(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["x"])
        alice = make_user(s, "alice")
        lena = make_user(s, "lena", Role.lead)
        label(s, p, item, alice, "violating", "a")
        (row,) = all_decisions(s)
        with pytest.raises(PermissionDenied):
            decisions.override_decision(s, p, actor(alice), row.puid, {"restriction": "removed"},
                                        "mine")  # fmt: skip
        with pytest.raises(WorkbenchError) as missing:
            decisions.override_decision(s, p, actor(lena), row.puid, {"ground": "illegal"}, "law")
        assert [q.field for q in missing.value.problems] == ["legal_ground"]
        decisions.override_decision(
            s, p, actor(lena), row.puid,
            {"ground": "illegal", "legal_ground": "§ 263 StGB (fraud)",
             "restriction": "account_suspended"}, "fraud, not only spam",
        )  # fmt: skip
        assert (row.ground, row.terms_clause, row.restriction) == (
            "illegal", None, "account_suspended")  # fmt: skip
        statement = statement_of(row)
        assert validate_statement(statement) == []
        assert statement["decision_account"] == "DECISION_ACCOUNT_SUSPENDED"
        assert "decision_visibility" not in statement
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "decision.changed"))
        assert event is not None and event.actor == "lena"
        assert event.details["before"]["ground"] == "incompatible"
        assert event.details["after"]["legal_ground"] == "§ 263 StGB (fraud)"


def _appealed(s: Any) -> tuple[Project, Any, User, User, Any]:
    p = make_project(s)
    (item,) = make_items(s, p, ["x"])
    alice, bob = make_user(s, "alice"), make_user(s, "bob")
    label(s, p, item, alice, "violating", "a")
    (row,) = all_decisions(s)
    appeal = appeals.file_appeal(s, p, Actor.system(), row.puid, "It was a joke.")
    return p, item, alice, bob, appeal


def test_an_appeal_goes_to_someone_other_than_the_decider(db: Database) -> None:
    with db.sessions.begin() as s:
        p, item, alice, bob, appeal = _appealed(s)
        entry = s.get(QueueEntry, appeal.queue_entry_id)
        assert entry is not None and entry.kind == EntryKind.rereview
        assert entry.item_id == item.id
        assert lease_next(s, p, alice) is None  # the decider never gets it back
        lease = lease_next(s, p, bob)
        assert lease is not None and lease.entry_id == entry.id
        with pytest.raises(WorkbenchError, match="open appeal"):
            appeals.file_appeal(s, p, Actor.system(), all_decisions(s)[0].puid, "again")


@pytest.mark.parametrize(("decision", "outcome"), [("not_violating", "reversed"),
                                                   ("violating", "upheld")])  # fmt: skip
def test_the_re_reviewers_label_decides_the_appeal(
    db: Database, decision: str, outcome: str
) -> None:
    with db.sessions.begin() as s:
        p, item, _alice, bob, appeal = _appealed(s)
        label(s, p, item, bob, decision, "b", rationale="second look")
        assert appeal.status == AppealStatus(outcome)
        assert appeal.decided_by == "bob" and appeal.decided_at >= appeal.filed_at
        (row,) = all_decisions(s)  # the re-review makes no second decision
        assert (row.revoked_at is not None) == (outcome == "reversed")


def test_the_decider_cannot_decide_the_appeal_by_hand(db: Database) -> None:
    with db.sessions.begin() as s:
        p, _item, alice, _bob, appeal = _appealed(s)
        alice.role = Role.lead
        with pytest.raises(WorkbenchError, match="someone else"):
            appeals.decide_appeal(s, p, actor(alice), appeal.id, "upheld", "fine")
        lena = make_user(s, "lena", Role.lead)
        result = appeals.decide_appeal(s, p, actor(lena), appeal.id, "reversed", "overreach")
        assert result["status"] == "reversed"
        assert all_decisions(s)[0].revoked_at is not None
        entry = s.get(QueueEntry, appeal.queue_entry_id)
        assert entry is not None and entry.status.value == "cancelled"
        with pytest.raises(WorkbenchError, match="already"):
            appeals.decide_appeal(s, p, actor(lena), appeal.id, "upheld", "x")


def test_the_demo_makes_a_few_decisions_and_a_decided_appeal_once(db: Database) -> None:
    from workbench.services.demo import DEMO_DECISIONS, demo_decisions

    with db.sessions.begin() as s:
        p = make_project(s, "demo")
        items = make_items(s, p, [f"t{k}" for k in range(8)])
        alice = make_user(s, "alice")
        make_user(s, "lena", Role.lead)
        for k, item in enumerate(items):
            data = parse_label_input({"decision": "violating", "policies": ["spam"],
                                      "rationale": "r", "idempotency_key": f"imp{k}"})  # fmt: skip
            record_label(s, p, item, alice, data, source=LabelSource.import_, actor=Actor.system())
        assert all_decisions(s) == []  # imported labels make none by themselves
        made = demo_decisions(s, p, Actor.system())
        assert made == DEMO_DECISIONS + 1
        rows = all_decisions(s)
        assert len(rows) == DEMO_DECISIONS
        (appeal,) = s.scalars(select(appeals.DecisionAppeal))
        assert appeal.status == AppealStatus.upheld and appeal.decided_by == "lena"
        assert demo_decisions(s, p, Actor.system()) == 0
