"""Adjudication: disagreement and low-alpha slices open one case per item, only leads resolve,
answers are checked against the taxonomy, and the final decision is the training label."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from builders import join_every_project, make_items, make_project, make_user
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from workbench.db.database import Database
from workbench.db.models import (
    Adjudication,
    AdjudicationStatus,
    AuditEvent,
    Decision,
    Item,
    Label,
    LabelSource,
    Project,
    Role,
    User,
)
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.services.audit import Actor
from workbench.services.projects import set_project_setting
from workbench.services.quality import adjudication as adj
from workbench.services.quality.gold import mark_gold
from workbench.services.taxonomy import current_policy_version
from workbench.services.train.train import training_set
from workbench.services.users import add_user

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
SYSTEM = Actor.system()


class Labels:
    """Counted labels made straight through the ORM, one minute apart."""

    def __init__(self, s: Any, project: Project) -> None:
        self.s, self.project = s, project
        self.pv = current_policy_version(s, project)
        self.n = 0
        self.users: dict[str, User] = {}

    def user(self, name: str) -> User:
        if name not in self.users:
            self.users[name] = make_user(self.s, name)
        return self.users[name]

    def __call__(
        self, item: Item, reviewer: str, decision: str, policies: list[str] | None = None,
        **kw: Any,
    ) -> Label:  # fmt: skip
        self.n += 1
        row = Label(
            project_id=self.project.id,
            item_id=item.id,
            reviewer_id=self.user(reviewer).id,
            policy_version_id=self.pv.id,
            decision=Decision(decision),
            policies=policies if policies is not None else [],
            severity=kw.get("severity"),
            rationale=kw.get("rationale", f"{reviewer} thinks {decision}"),
            spans=kw.get("spans", []),
            source=kw.get("source", LabelSource.human),
            idempotency_key=f"k{self.n}",
            supersedes_id=kw.get("supersedes"),
            created_at=kw.get("at", T0 + timedelta(minutes=self.n)),
        )
        self.s.add(row)
        self.s.flush()
        return row


def _lead(s: Any) -> Actor:
    u = make_user(s, "lena", Role.lead)
    return Actor.for_user(u.name, u.id, u.role)


def _cases(s: Any) -> list[Adjudication]:
    return list(s.scalars(select(Adjudication).order_by(Adjudication.item_id)))


def test_disagreement_opens_exactly_one_case_and_refresh_is_idempotent(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        items = make_items(s, p, ["a", "b", "c", "d", "e"])
        lab = Labels(s, p)
        lab(items[0], "ann", "violating", ["hate"])
        lab(items[0], "bob", "not_violating")
        lab(items[1], "ann", "not_violating", ["none"])  # 'none' and no code agree
        lab(items[1], "bob", "not_violating")
        lab(items[2], "ann", "violating", ["hate"])
        lab(items[2], "bob", "violating", ["harassment"])  # same decision, other policy
        lab(items[3], "ann", "violating", ["hate"])  # one reviewer: nothing to adjudicate
        # ann changed her mind on e: only her latest label counts, and then they agree.
        first = lab(items[4], "ann", "violating", ["hate"])
        lab(items[4], "ann", "not_violating", supersedes=first.id)
        lab(items[4], "bob", "not_violating")
        lab(items[4], "cat", "violating", ["hate"], source=LabelSource.propagated)

        first_run = adj.refresh_adjudication_queue(s, p, _lead(s), slices=False)
        assert first_run["opened"] == 2
        assert first_run["by_reason"]["disagreement"] == 2
        cases = _cases(s)
        assert [c.item_id for c in cases] == [items[0].id, items[2].id]
        assert (
            cases[0].reason_detail
            == "decision: not_violating 1, violating 1; policy: (none) 1, hate 1"
        )
        assert cases[1].reason_detail == "policy: harassment 1, hate 1"

        again = adj.refresh_adjudication_queue(s, p, SYSTEM, slices=False)
        assert again["opened"] == 0 and again["skipped"]["already_open"] == 2
        assert len(_cases(s)) == 2
        opened_events = s.scalar(
            select(func.count()).where(AuditEvent.action == "adjudication.opened")
        )
        assert opened_events == 2


def test_low_alpha_slice_opens_cases_for_its_agreeing_items_too(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        set_project_setting(s, p, "adjudication_min_slice_items", 2, SYSTEM)
        set_project_setting(s, p, "adjudication_alpha_threshold", 0.3, SYSTEM)
        de = make_items(s, p, ["a", "b", "c", "d"], prefix="de")
        en = make_items(s, p, ["e", "f"], prefix="en")
        for item in de:
            item.language = "de"
        for item in en:
            item.language = "en"
        lab = Labels(s, p)
        # German slice: alpha 0.125 (two of four items split); English: alpha 1. The whole
        # project (every policy and modality slice): alpha 0.389, above the threshold.
        for item, (x, y) in zip(de + en, ["NN", "UU", "NU", "UN", "UU", "NN"], strict=True):
            for reviewer, code in (("ann", x), ("bob", y)):
                lab(item, reviewer, "not_violating" if code == "N" else "unsure")
        result = adj.refresh_adjudication_queue(s, p, SYSTEM)
        assert result["slices_checked"] is True
        assert [(sl["dimension"], sl["value"]) for sl in result["low_alpha_slices"]] == [
            ("language", "de")
        ]
        assert result["low_alpha_slices"][0]["alpha"] == pytest.approx(0.125)
        by_item = {c.item_id: c for c in _cases(s)}
        assert set(by_item) == {i.id for i in de}
        assert by_item[de[0].id].reason.value == "low_alpha"
        assert by_item[de[0].id].reason_detail == "low-alpha slice language=de, alpha 0.125"
        assert by_item[de[2].id].reason.value == "disagreement"


def test_resolve_by_a_reviewer_is_refused(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["a"])
        lab = Labels(s, p)
        lab(item, "ann", "violating", ["hate"])
        lab(item, "bob", "not_violating")
        adj.refresh_adjudication_queue(s, p, SYSTEM, slices=False)
        (case,) = _cases(s)
        bob = lab.user("bob")
        reviewer = Actor.for_user(bob.name, bob.id, bob.role)
        with pytest.raises(PermissionDenied, match="resolve adjudication cases"):
            adj.resolve_case(s, p, reviewer, case.id, "not_violating", [], None, "my call")
        with pytest.raises(PermissionDenied):
            adj.dismiss_case(s, p, reviewer, case.id, "nah")
        with pytest.raises(PermissionDenied):
            adj.case_detail(s, p, reviewer, case.id)
        assert s.get(Adjudication, case.id).status == AdjudicationStatus.open


def test_resolve_checks_codes_against_the_taxonomy_and_needs_a_note(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["a"])
        lab = Labels(s, p)
        lab(item, "ann", "violating", ["hate"])
        lab(item, "bob", "not_violating")
        lead = _lead(s)
        adj.refresh_adjudication_queue(s, p, lead, slices=False)
        (case,) = _cases(s)
        with pytest.raises(WorkbenchError, match=r"unknown policy code\(s\) \['hat'\]") as exc:
            adj.resolve_case(s, p, lead, case.id, "violating", ["hat"], None, "slur")
        assert exc.value.problems[0].field == "policies"
        assert "hate" in exc.value.problems[0].reason  # the known codes are listed
        with pytest.raises(WorkbenchError, match=r"severity 7|less than or equal to 4"):
            adj.resolve_case(s, p, lead, case.id, "violating", ["hate"], 7, "slur")
        with pytest.raises(WorkbenchError, match="note is required"):
            adj.resolve_case(s, p, lead, case.id, "violating", ["hate"], 2, "  ")
        done = adj.resolve_case(s, p, lead, case.id, "violating", ["hate"], 2, "slur, targeted")
        assert done["status"] == "resolved" and done["closed_by"] == "lena"
        with pytest.raises(WorkbenchError, match="already resolved"):
            adj.resolve_case(s, p, lead, case.id, "not_violating", [], None, "again")
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "adjudication.resolved"))
        assert event is not None and event.actor == "lena"
        assert (
            event.details["decision"] == "violating" and event.details["note"] == "slur, targeted"
        )


def test_case_detail_shows_every_counted_label_with_its_rationale(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["you are all <b>vermin</b>"])
        lab = Labels(s, p)
        old = lab(item, "ann", "not_violating", rationale="missed it")
        lab(item, "ann", "violating", ["hate"], severity=3, rationale="dehumanising",
            spans=[{"start": 12, "end": 24}], supersedes=old.id)  # fmt: skip
        lab(item, "bob", "not_violating", rationale="hyperbole")
        lab(item, "cat", "violating", ["hate"], source=LabelSource.propagated)
        adj.refresh_adjudication_queue(s, p, SYSTEM, slices=False)
        (case,) = _cases(s)
        detail = adj.case_detail(s, p, _lead(s), case.id)
    assert detail["item"]["text"] == "you are all <b>vermin</b>"
    assert [(x["reviewer"], x["decision"], x["rationale"]) for x in detail["labels"]] == [
        ("ann", "violating", "dehumanising"),
        ("bob", "not_violating", "hyperbole"),
    ]
    assert detail["labels"][0]["spans"] == [{"start": 12, "end": 24}]
    assert detail["labels"][0]["severity"] == 3 and detail["labels"][0]["created_at"]
    assert "hate" in [c["code"] for c in detail["taxonomy"]["codes"]]


def test_a_closed_case_reopens_only_when_a_newer_label_arrives(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        (item,) = make_items(s, p, ["a"])
        lab = Labels(s, p)
        lab(item, "ann", "violating", ["hate"])
        lab(item, "bob", "not_violating")
        adj.refresh_adjudication_queue(s, p, SYSTEM, slices=False)
        (case,) = _cases(s)
        adj.dismiss_case(s, p, SYSTEM, case.id, "satire, both readings fine")
        assert adj.refresh_adjudication_queue(s, p, SYSTEM, slices=False)["opened"] == 0
        lab(item, "cat", "violating", ["hate"], at=datetime.now(UTC) + timedelta(minutes=1))
        assert adj.refresh_adjudication_queue(s, p, SYSTEM, slices=False)["opened"] == 1


def test_final_decision_overrides_the_aggregated_label_in_the_training_set(db: Database) -> None:
    with db.sessions.begin() as s:
        p = make_project(s)
        items = make_items(s, p, ["a", "b", "c", "d", "e"])
        lab = Labels(s, p)
        # a: the crowd says hate (2 of 3); the lead decides not violating.
        lab(items[0], "ann", "violating", ["hate"])
        lab(items[0], "bob", "violating", ["hate"])
        lab(items[0], "cat", "not_violating")
        # b: the crowd says not violating; gold says harassment.
        lab(items[1], "ann", "not_violating")
        # c: gold says hate, but the lead's later decision outranks gold.
        lab(items[2], "ann", "violating", ["hate"])
        lab(items[2], "bob", "not_violating")
        # d: the crowd decides; e: the lead's final "unsure" keeps it out of training.
        lab(items[3], "ann", "not_violating")
        lab(items[4], "ann", "violating", ["hate"])
        lab(items[4], "bob", "not_violating")
        lead = _lead(s)
        set_project_setting(s, p, "label_aggregation", "majority", SYSTEM)
        mark_gold(s, p, lead, "i1", "violating", ["harassment"], 2)
        mark_gold(s, p, lead, "i2", "violating", ["hate"], 1)
        case_a = adj.open_case(s, p, lead, "i0", "the crowd read it literally")["id"]
        adj.resolve_case(s, p, lead, case_a, "not_violating", ["none"], None, "quoting to condemn")
        case_c = adj.open_case(s, p, lead, "i2", "gold may be wrong")["id"]
        adj.resolve_case(s, p, lead, case_c, "not_violating", [], None, "news report")
        case_e = adj.open_case(s, p, lead, "i4", "ambiguous")["id"]
        adj.resolve_case(s, p, lead, case_e, "unsure", [], None, "needs policy guidance")
        ts = training_set(s, p)
    got = {
        int(i): (ts.classes[y], float(c), src)
        for i, y, c, src in zip(ts.item_ids, ts.y, ts.confidence, ts.sources, strict=True)
    }
    assert got == {
        items[0].id: ("none", 1.0, "adjudication"),
        items[1].id: ("harassment", 1.0, "gold"),
        items[2].id: ("none", 1.0, "adjudication"),
        items[3].id: ("none", 1.0, "majority"),
    }


def test_adjudicate_cli_json_shapes(db: Database, cli: Any) -> None:
    with db.sessions.begin() as s:
        p = make_project(s, "p")
        items = make_items(s, p, ["a", "b"])
        lab = Labels(s, p)
        lab(items[0], "ann", "violating", ["hate"])
        lab(items[0], "bob", "not_violating")
    refreshed = cli.json("adjudicate", "refresh", "--project", "p", "--no-slices")
    assert refreshed["ok"] is True and refreshed["opened"] == 1
    assert set(refreshed) >= {"by_reason", "skipped", "low_alpha_slices", "case_ids"}
    listed = cli.json("adjudicate", "list", "--project", "p")
    (case,) = listed["cases"]
    assert case["external_id"] == "i0" and case["n_labels"] == 2 and case["status"] == "open"
    shown = cli.json("adjudicate", "show", str(case["id"]), "--project", "p")
    assert [x["reviewer"] for x in shown["labels"]] == ["ann", "bob"]
    bad = cli.json(
        "adjudicate", "resolve", str(case["id"]), "--project", "p", "--decision", "violating",
        "--policy", "nope", "--note", "x", expect=1,
    )  # fmt: skip
    assert bad["ok"] is False and bad["problems"][0]["field"] == "policies"
    done = cli.json(
        "adjudicate", "resolve", str(case["id"]), "--project", "p", "--decision", "violating",
        "--policy", "hate", "--severity", "2", "--note", "slur",
    )  # fmt: skip
    assert (done["status"], done["decision"], done["policies"]) == (
        "resolved",
        "violating",
        ["hate"],
    )
    assert cli.json("adjudicate", "list", "--project", "p")["cases"] == []
    assert len(cli.json("adjudicate", "list", "--project", "p", "--status", "all")["cases"]) == 1
    manual = cli.json("adjudicate", "open", "--project", "p", "--item", "i1", "--note", "odd")
    assert manual["reason"] == "manual"
    dismissed = cli.json(
        "adjudicate", "dismiss", str(manual["id"]), "--project", "p", "--note", "fine"
    )
    assert dismissed["status"] == "dismissed"
    missing = cli.json("adjudicate", "show", "999", "--project", "p", expect=1)
    assert "no adjudication case 999" in missing["error"]
    assert cli("adjudicate", "--help").exit_code == 0


# --- the page ----------------------------------------------------------------------------------

APP = str(Path(__file__).resolve().parents[1] / "workbench" / "ui" / "app.py")
PW = "a long password"
XSS = '<script>alert(1)</script> **bold** <img src=x onerror="alert(2)">'


def lead_page(page: str) -> AppTest:
    """Log in as the lead `lena` and open one of the lead's pages."""
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input(key="login_name").input("lena")
    at.text_input(key="login_password").input(PW)
    at.button[0].click().run()
    # A page given as a function is addressed by the hash of its url_path.
    at._page_hash = calc_hash(page)
    return at.run()


def test_adjudication_page_shows_labels_inert_and_records_the_final_decision(
    sqlite_db: Database,
) -> None:
    st.cache_resource.clear()  # the app caches its database; each test has its own
    with sqlite_db.sessions.begin() as s:
        p = make_project(s, "p")
        (item,) = make_items(s, p, [XSS])
        lab = Labels(s, p)
        lab(item, "ann", "violating", ["hate"], rationale=f"ann: {XSS}")
        lab(item, "bob", "not_violating", rationale="bob: quoting")
        join_every_project(s, add_user(s, "lena", Role.lead, SYSTEM, password=PW))
        adj.refresh_adjudication_queue(s, p, SYSTEM, slices=False)
    at = lead_page("adjudication")
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Adjudication"]
    assert XSS in [t.value for t in at.text]
    assert not any("<script>" in m.value for m in at.markdown)
    labels_table = at.dataframe[1].value
    assert list(labels_table["reviewer"]) == ["ann", "bob"]
    assert list(labels_table["rationale"]) == [f"ann: {XSS}", "bob: quoting"]
    next(r for r in at.radio if r.label == "Final decision").set_value("not_violating")
    at.text_area[0].input("quoting to condemn it")
    next(b for b in at.button if b.label == "Record final decision").click().run()
    assert not at.exception, at.exception
    with sqlite_db.sessions() as s:
        (case,) = s.scalars(select(Adjudication)).all()
        assert case.status == AdjudicationStatus.resolved
        assert (case.decision, case.note, case.closed_by) == (
            Decision.not_violating, "quoting to condemn it", "lena",
        )  # fmt: skip
