"""Labels: recording rules, corrections, taxonomy versions, and lossless import/export files."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from builders import make_items, make_user
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from workbench.config import Settings
from workbench.db.database import Database, open_database
from workbench.db.models import AuditEvent, Item, Label, LabelSource, Project, User
from workbench.errors import WorkbenchError
from workbench.schemas import TaxonomySpec
from workbench.services.audit import Actor
from workbench.services.labels import export as export_service
from workbench.services.labels import import_ as import_service
from workbench.services.labels import record as record_service
from workbench.services.labels.current import current_labels
from workbench.services.labels.record import record_label
from workbench.services.labels.validate import LabelInput, parse_label_input
from workbench.services.projects import create_project, get_project
from workbench.services.taxonomy import add_policy_version

SYSTEM = Actor.system()
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _policy(code: str, levels: list[int]) -> dict[str, Any]:
    return {
        "code": code,
        "title": code.title(),
        "guideline": f"guideline for {code}",
        "severity_scale": [{"level": n, "name": f"level {n}"} for n in levels],
    }


def taxonomy_v1() -> TaxonomySpec:
    return TaxonomySpec.model_validate(
        {
            "name": "test taxonomy",
            "policies": [
                _policy("hate", [1, 2, 3, 4]),
                _policy("spam", [1, 2]),
                _policy("ip", [1, 2, 3]),
                _policy("none", []),
            ],
        }
    )


def taxonomy_v2() -> TaxonomySpec:
    # `ip` is gone, `scam` is new.
    return TaxonomySpec.model_validate(
        {
            "name": "test taxonomy v2",
            "policies": [
                _policy("hate", [1, 2, 3, 4]),
                _policy("spam", [1, 2]),
                _policy("scam", [1, 2, 3, 4]),
                _policy("none", []),
            ],
        }
    )


TEXTS = ["first comment", "second comment, a bit longer", "ثالث"]


def make_media_item(session: Session, project: Project, external_id: str = "clip") -> Item:
    item = Item(
        project_id=project.id,
        external_id=external_id,
        text=None,
        modalities=["audio"],
        content_hash=hashlib.sha256(external_id.encode()).hexdigest(),
    )
    session.add(item)
    session.flush()
    return item


def setup_project(session: Session, name: str = "p") -> tuple[Project, list[Item]]:
    project = create_project(session, name, SYSTEM, taxonomy=taxonomy_v1())
    return project, make_items(session, project, TEXTS)


def inp(key: str, **kw: Any) -> LabelInput:
    kw.setdefault("decision", "not_violating")
    return LabelInput(idempotency_key=key, **kw)


def label_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Label)) or 0


# --------------------------------------------------------------------------------------------
# record_label


def test_same_idempotency_key_returns_the_first_label(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items = setup_project(s)
        alice = make_user(s, "alice")
        first, created = record_label(
            s, p, items[0], alice, inp("k1"), source=LabelSource.human, actor=SYSTEM
        )
        again, created_again = record_label(
            s,
            p,
            items[0],
            alice,
            inp("k1", decision="unsure"),
            source=LabelSource.human,
            actor=SYSTEM,
        )
        assert created and not created_again
        assert again.id == first.id and again.decision == "not_violating"
        assert label_count(s) == 1
        recorded = s.scalars(select(AuditEvent).where(AuditEvent.action == "label.recorded"))
        assert len(list(recorded)) == 1


def test_same_idempotency_key_for_another_item_or_reviewer_is_an_error(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items = setup_project(s)
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        record_label(s, p, items[0], alice, inp("k1"), source=LabelSource.human, actor=SYSTEM)
        with pytest.raises(WorkbenchError, match="already belongs to another label"):
            record_label(s, p, items[1], alice, inp("k1"), source=LabelSource.human, actor=SYSTEM)
        with pytest.raises(WorkbenchError, match="already belongs to another label"):
            record_label(s, p, items[0], bob, inp("k1"), source=LabelSource.human, actor=SYSTEM)


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"decision": "violating", "policies": ["nope"], "rationale": "x"}, "policies", "unknown"),
        ({"decision": "violating", "policies": ["none"], "rationale": "x"}, "policies", "'none'"),
        ({"decision": "unsure", "policies": ["none"]}, "policies", "only with not_violating"),
        ({"decision": "violating", "policies": [], "rationale": "x"}, "policies", "at least one"),
        ({"decision": "not_violating", "policies": ["none", "hate"]}, "policies", "combined"),
        ({"decision": "not_violating", "policies": ["hate"]}, "policies", "cannot carry"),
        (
            {"decision": "violating", "policies": ["spam"], "severity": 3, "rationale": "x"},
            "severity",
            "not on the scale",
        ),
        ({"decision": "not_violating", "policies": ["none"], "severity": 1}, "severity", "scale"),
        ({"decision": "violating", "policies": ["hate"], "rationale": "  "}, "rationale", "needs"),
        ({"decision": "violating", "policies": ["hate"]}, "rationale", "needs a rationale"),
        ({"decision": "unsure", "spans": [{"start": 0, "end": 99}]}, "spans", "past the end"),
        ({"decision": "unsure", "spans": [{"start_s": 0.0, "end_s": 1.0}]}, "spans", "no audio"),
    ],
)
def test_record_label_refuses_labels_that_break_the_rules(
    sqlite_db: Database, fields: dict[str, Any], field: str, reason: str
) -> None:
    with sqlite_db.sessions.begin() as s:
        p, items = setup_project(s)
        alice = make_user(s, "alice")
        with pytest.raises(WorkbenchError) as err:
            record_label(
                s, p, items[0], alice, inp("k", **fields), source=LabelSource.human, actor=SYSTEM
            )
        assert any(pr.field == field and reason in pr.reason for pr in err.value.problems), (
            err.value.problems
        )
        assert label_count(s) == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"decision": "maybe"}, "decision"),
        ({"severity": 5}, "severity"),
        ({"severity": 0}, "severity"),
        ({"confidence": 1.5}, "confidence"),
        ({"time_spent_ms": -1}, "time_spent_ms"),
        ({"created_at": datetime(2024, 1, 1)}, "created_at"),  # no time zone
        ({"spans": [{"start": 3, "end": 3}]}, "spans"),
        ({"spans": [{"start": 0.5, "end": 3}]}, "spans"),
        ({"spans": [{"start_s": 2.0, "end_s": 1.0}]}, "spans"),
        ({"spans": [{"start": 0, "end": 1, "start_s": 0.0}]}, "spans"),
        ({"policies": ["hate", "hate"]}, "policies"),
        ({"rationale": "nul \x00 here"}, "rationale"),
        ({"rationale": "lone \ud800 surrogate"}, "rationale"),
    ],
)
def test_label_input_refuses_malformed_fields(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(WorkbenchError) as err:
        parse_label_input({"decision": "unsure", "idempotency_key": "k", **fields})
    assert [p.field for p in err.value.problems] == [field]


def test_valid_spans_and_severity_are_stored(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items = setup_project(s)
        clip = make_media_item(s, p)
        alice = make_user(s, "alice")
        text_label, _ = record_label(
            s,
            p,
            items[0],
            alice,
            inp(
                "t",
                decision="violating",
                policies=["spam"],
                severity=2,
                rationale="ads",
                spans=[{"start": 0, "end": len(TEXTS[0])}],
            ),
            source=LabelSource.human,
            actor=SYSTEM,
        )
        media_label, _ = record_label(
            s,
            p,
            clip,
            alice,
            inp("m", decision="unsure", spans=[{"start_s": 1, "end_s": 2.5}]),
            source=LabelSource.human,
            actor=SYSTEM,
        )
        assert text_label.spans == [{"start": 0, "end": len(TEXTS[0])}]
        assert media_label.spans == [{"start_s": 1.0, "end_s": 2.5}]


def test_nul_in_a_rationale_is_refused_before_the_database_sees_it(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items = setup_project(s)
        alice = make_user(s, "alice")
        with pytest.raises(WorkbenchError, match="NUL"):
            record_label(
                s,
                p,
                items[0],
                alice,
                parse_label_input(
                    {"decision": "unsure", "idempotency_key": "k", "rationale": "a\x00b"}
                ),
                source=LabelSource.human,
                actor=SYSTEM,
            )


def test_a_reviewer_may_not_label_in_someone_elses_name(sqlite_db: Database) -> None:
    from workbench.db.models import Role
    from workbench.errors import PermissionDenied

    with sqlite_db.sessions.begin() as s:
        p, items = setup_project(s)
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        as_bob = Actor.for_user("bob", bob.id, Role.reviewer)
        with pytest.raises(PermissionDenied):
            record_label(s, p, items[0], alice, inp("k"), source=LabelSource.human, actor=as_bob)
        label, created = record_label(
            s, p, items[0], bob, inp("k"), source=LabelSource.human, actor=as_bob
        )
        assert created and label.reviewer_id == bob.id


# --------------------------------------------------------------------------------------------
# Corrections


def test_a_correction_supersedes_the_label_once(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items = setup_project(s)
        alice, lead = make_user(s, "alice"), make_user(s, "lead")
        old, _ = record_label(
            s, p, items[0], alice, inp("a"), source=LabelSource.human, actor=SYSTEM
        )
        other, _ = record_label(
            s, p, items[1], alice, inp("b"), source=LabelSource.human, actor=SYSTEM
        )
        fix = inp(
            "a-fix", decision="violating", policies=["hate"], rationale="slur", supersedes="a"
        )
        new, _ = record_label(s, p, items[0], lead, fix, source=LabelSource.human, actor=SYSTEM)
        assert new.supersedes_id == old.id
        assert {lb.id for lb in current_labels(s, p)} == {new.id, other.id}
        assert export_service.label_as_record(old)["superseded"] is True
        assert export_service.label_as_record(new)["supersedes"] == "a"

        with pytest.raises(WorkbenchError, match="already corrected"):
            record_label(
                s,
                p,
                items[0],
                lead,
                inp("a-fix2", supersedes="a"),
                source=LabelSource.human,
                actor=SYSTEM,
            )
        with pytest.raises(WorkbenchError, match="another item"):
            record_label(
                s,
                p,
                items[0],
                lead,
                inp("b-fix", supersedes="b"),
                source=LabelSource.human,
                actor=SYSTEM,
            )
        with pytest.raises(WorkbenchError, match="no label with that"):
            record_label(
                s,
                p,
                items[0],
                lead,
                inp("x-fix", supersedes="missing"),
                source=LabelSource.human,
                actor=SYSTEM,
            )


def test_two_corrections_racing_for_one_label_cannot_both_land(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.sessions.begin() as s:
        p, items = setup_project(s)
        alice, lead = make_user(s, "alice"), make_user(s, "lead")
        record_label(s, p, items[0], alice, inp("a"), source=LabelSource.human, actor=SYSTEM)
        record_label(
            s,
            p,
            items[0],
            lead,
            inp("fix1", supersedes="a"),
            source=LabelSource.human,
            actor=SYSTEM,
        )
        # The second writer checked before the first committed: its check saw no correction.
        monkeypatch.setattr(record_service, "is_superseded", lambda *_: False)
        with pytest.raises(WorkbenchError, match="corrected by another label at the same time"):
            record_label(
                s,
                p,
                items[0],
                lead,
                inp("fix2", supersedes="a"),
                source=LabelSource.human,
                actor=SYSTEM,
            )
        # The session is still usable: the failed insert was rolled back to its savepoint.
        assert label_count(s) == 2


# --------------------------------------------------------------------------------------------
# Taxonomy versions


def test_taxonomy_v2_keeps_old_labels_on_v1_and_refuses_removed_codes(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items = setup_project(s)
        alice = make_user(s, "alice")
        old, _ = record_label(
            s,
            p,
            items[0],
            alice,
            inp("old", decision="violating", policies=["ip"], severity=3, rationale="copied"),
            source=LabelSource.human,
            actor=SYSTEM,
        )
        pv2, created = add_policy_version(s, p, taxonomy_v2(), SYSTEM)
        assert created and pv2.version == 2

        new, _ = record_label(
            s,
            p,
            items[1],
            alice,
            inp("new", decision="violating", policies=["scam"], rationale="fake shop"),
            source=LabelSource.human,
            actor=SYSTEM,
        )
        with pytest.raises(WorkbenchError, match=r"unknown policy code.*'ip'.*version 2"):
            record_label(
                s,
                p,
                items[2],
                alice,
                inp("gone", decision="violating", policies=["ip"], rationale="copied"),
                source=LabelSource.human,
                actor=SYSTEM,
            )
    with db.sessions() as s:
        p = get_project(s, "p")
        records = {r["idempotency_key"]: r for r in export_service.iter_label_records(s, p)}
        assert records["old"]["policy_version"] == 1 and records["old"]["policies"] == ["ip"]
        assert records["new"]["policy_version"] == 2
        assert s.get(Label, old.id).policy_version.version == 1  # type: ignore[union-attr]
        assert s.get(Label, new.id).policy_version.version == 2  # type: ignore[union-attr]


def test_importing_a_removed_code_needs_the_old_policy_version(
    sqlite_db: Database, tmp_path: Path
) -> None:
    with sqlite_db.sessions.begin() as s:
        p, _ = setup_project(s)
        add_policy_version(s, p, taxonomy_v2(), SYSTEM)
    base = {"external_id": "i0", "reviewer": "r", "decision": "violating", "policies": ["ip"]}
    bad = write_jsonl(tmp_path / "bad.jsonl", [base])
    good = write_jsonl(tmp_path / "good.jsonl", [{**base, "policy_version": 1}])
    with sqlite_db.sessions.begin() as s, pytest.raises(WorkbenchError) as err:
        import_service.import_labels(s, get_project(s, "p"), bad, SYSTEM)
    assert "version 2" in err.value.problems[0].reason
    with sqlite_db.sessions.begin() as s:
        result = import_service.import_labels(s, get_project(s, "p"), good, SYSTEM)
        assert result.imported == 1
        (record,) = export_service.iter_label_records(s, get_project(s, "p"))
        assert record["policy_version"] == 1 and record["policies"] == ["ip"]


# --------------------------------------------------------------------------------------------
# Import: parsing and validation


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_csv_import_reads_codes_spans_severity_and_times_in_utc(
    db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        setup_project(s)
    path = write_csv(
        tmp_path / "labels.csv",
        [
            "external_id",
            "reviewer",
            "decision",
            "policies",
            "severity",
            "rationale",
            "spans",
            "created_at",
        ],
        [
            [
                "i0",
                "ann",
                "violating",
                "hate;spam",
                "2",
                "slur, and ads",
                '[{"start":0,"end":5}]',
                "2024-05-01T14:00:00+02:00",
            ],
            ["i1", "ann", "not_violating", "", "", "", "", "2024-05-01T12:30:00Z"],
        ],
    )
    with db.sessions.begin() as s:
        result = import_service.import_labels(s, get_project(s, "p"), path, SYSTEM)
        assert (result.imported, result.unchanged, result.rejected) == (2, 0, 0)
    with db.sessions() as s:
        first, second = export_service.iter_label_records(s, get_project(s, "p"))
        assert first["policies"] == ["hate", "spam"] and first["severity"] == 2
        assert first["spans"] == [{"start": 0, "end": 5}]
        assert first["created_at"] == T0 and first["created_at"].utcoffset() == timedelta(0)
        assert first["source"] == "import"
        assert first["idempotency_key"].startswith("import:")
        assert second["policies"] == [] and second["rationale"] is None
        assert second["severity"] is None and second["spans"] == []


def test_reimporting_the_same_file_adds_nothing(db: Database, tmp_path: Path) -> None:
    with db.sessions.begin() as s:
        setup_project(s)
    rows = [
        {"external_id": "i0", "reviewer": "ann", "decision": "not_violating"},
        {"external_id": "i1", "reviewer": "ann", "decision": "unsure", "rationale": "hm"},
    ]
    path = write_jsonl(tmp_path / "l.jsonl", rows)
    with db.sessions.begin() as s:
        assert import_service.import_labels(s, get_project(s, "p"), path, SYSTEM).imported == 2
    with db.sessions.begin() as s:
        again = import_service.import_labels(s, get_project(s, "p"), path, SYSTEM)
        assert (again.imported, again.unchanged) == (0, 2)
        assert label_count(s) == 2
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "labels.imported")))
        # One audit event per import run, with counts; none per label.
        assert [(e.details["imported"], e.details["unchanged"]) for e in events] == [
            (2, 0),
            (0, 2),
        ]
        assert s.scalar(select(func.count()).where(AuditEvent.action == "label.recorded")) == 0


BAD_ROWS: list[tuple[dict[str, Any], str, str]] = [
    ({"external_id": "nope", "decision": "unsure"}, "external_id", "unknown external_id"),
    ({"decision": "maybe"}, "decision", "Input should be"),
    ({"decision": "violating", "policies": ["xx"]}, "policies", "unknown policy code"),
    ({"severity": 7}, "severity", "less than or equal to 4"),
    ({"created_at": "2024-05-01T12:00:00"}, "created_at", "no time zone"),
    ({"created_at": "yesterday"}, "created_at", "ISO 8601"),
    ({"superseded": "maybe"}, "superseded", "true or false"),
    ({"source": "robot"}, "source", "unknown source"),
    ({"colour": "red"}, "colour", "unknown column"),
    ({"reviewer": ""}, "reviewer", "required"),
    ({"reviewer": "bad name!"}, "reviewer", "not allowed"),
    ({"policy_version": 9}, "policy_version", "no policy version 9"),
    ({"supersedes": "missing-key"}, "supersedes", "no label with that"),
    ({"spans": "[{"}, "spans", "not JSON"),
    ({"rationale": "a\u0000b"}, "rationale", "NUL"),
]


def test_a_bad_row_stops_the_whole_import_and_every_bad_row_is_listed(
    db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        setup_project(s)
    good = {"external_id": "i0", "reviewer": "ann", "decision": "unsure"}
    rows = [good] + [
        {**good, "idempotency_key": f"k{n}", **bad} for n, (bad, _, _) in enumerate(BAD_ROWS)
    ]
    path = write_jsonl(tmp_path / "l.jsonl", rows)
    with db.sessions() as s, pytest.raises(WorkbenchError) as err:
        import_service.import_labels(s, get_project(s, "p"), path, SYSTEM)
    problems = err.value.problems
    for line, (_, field, reason) in enumerate(BAD_ROWS, start=2):
        assert any(
            p.line == line and p.field == field and reason in p.reason and p.file == str(path)
            for p in problems
        ), (line, field, reason, [str(p) for p in problems if p.line == line])
    assert {p.line for p in problems} == set(range(2, len(BAD_ROWS) + 2))
    with db.sessions() as s:
        assert label_count(s) == 0
        assert s.scalar(select(User).where(User.name == "ann")) is None


def test_skip_invalid_imports_the_good_rows_and_writes_rejects(
    db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        setup_project(s)
    rows = [
        {"external_id": "i0", "reviewer": "ann", "decision": "unsure"},
        {"external_id": "ghost", "reviewer": "ann", "decision": "unsure"},
        {"external_id": "i1", "reviewer": "ann", "decision": "violating"},
        {"external_id": "i2", "reviewer": "bo", "decision": "not_violating", "policies": ["none"]},
    ]
    path = write_jsonl(tmp_path / "l.jsonl", rows)
    rejects = tmp_path / "out" / "rejects.jsonl"
    with db.sessions.begin() as s:
        result = import_service.import_labels(
            s, get_project(s, "p"), path, SYSTEM, skip_invalid=True, rejects=rejects
        )
        assert (result.imported, result.rejected, result.rows) == (2, 2, 4)
        assert sorted(result.users_created) == ["ann", "bo"]
    lines = [json.loads(x) for x in rejects.read_text("utf-8").splitlines()]
    assert [(r["line"], r["external_id"], r["field"]) for r in lines] == [
        (2, "ghost", "external_id"),
        (3, "i1", "policies"),
    ]
    assert all(set(r) == {"line", "external_id", "field", "reason"} for r in lines)
    with db.sessions() as s:
        assert label_count(s) == 2


def test_import_supersedes_labels_earlier_in_the_file_and_in_the_database(
    db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        p, items = setup_project(s)
        alice = make_user(s, "alice")
        record_label(
            s,
            p,
            items[0],
            alice,
            inp("db-1", created_at=T0),
            source=LabelSource.human,
            actor=SYSTEM,
        )
    later = (T0 + timedelta(hours=1)).isoformat()
    rows = [
        {
            "external_id": "i0",
            "reviewer": "lead",
            "decision": "unsure",
            "supersedes": "db-1",
            "idempotency_key": "f-1",
            "created_at": later,
        },
        {
            "external_id": "i1",
            "reviewer": "ann",
            "decision": "unsure",
            "idempotency_key": "f-2",
            "created_at": later,
        },
        {
            "external_id": "i1",
            "reviewer": "lead",
            "decision": "not_violating",
            "supersedes": "f-2",
            "idempotency_key": "f-3",
            "created_at": later,
        },
        # A second correction of f-2 and a correction older than its label are refused.
        {
            "external_id": "i1",
            "reviewer": "lead",
            "decision": "unsure",
            "supersedes": "f-2",
            "idempotency_key": "f-4",
            "created_at": later,
        },
        {
            "external_id": "i0",
            "reviewer": "lead",
            "decision": "unsure",
            "supersedes": "f-1",
            "idempotency_key": "f-5",
            "created_at": T0.isoformat(),
        },
    ]
    path = write_jsonl(tmp_path / "l.jsonl", rows)
    with db.sessions() as s, pytest.raises(WorkbenchError) as err:
        import_service.import_labels(s, get_project(s, "p"), path, SYSTEM)
    assert [(p.line, p.field) for p in err.value.problems] == [(4, "supersedes"), (5, "supersedes")]
    assert "already corrected" in err.value.problems[0].reason
    assert "older" in err.value.problems[1].reason
    write_jsonl(path, rows[:3])
    with db.sessions.begin() as s:
        import_service.import_labels(s, get_project(s, "p"), path, SYSTEM)
    with db.sessions() as s:
        current = {lb.idempotency_key for lb in current_labels(s, get_project(s, "p"))}
        assert current == {"f-1", "f-3"}


# --------------------------------------------------------------------------------------------
# Round trip

TRICKY_RATIONALES = [
    "line one\nline two",
    "windows\r\nline ending",
    "she said \"no\", then 'yes'",
    "comma, semicolon; tab\tend",
    "emoji 🙂👍🏽 and a family 👨‍👩‍👧",
    "right-to-left: שלום עולם مرحبا",
    "combining: e\u0301 a\u0308 n\u0303 (not precomposed)",
    " leading and trailing spaces ",
    "\n",
    "a backslash \\ and a \\n that is not a newline",
    "zero\u200bwidth and nbsp\u00a0here",
]


@pytest.fixture
def fresh_database(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """A second, empty database on the same backend: an export is re-imported where no label
    exists yet (another installation restoring the file)."""
    from workbench.db.engine import make_engine
    from workbench.db.migrate import upgrade

    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        database = open_database(Settings(database_url=url))
        yield database
        database.dispose()
        return
    name = f"wbtest_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(make_engine(url))
        database = open_database(Settings(database_url=url))
        yield database
        database.dispose()
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def populate(session: Session) -> None:
    """Labels touching every field: two taxonomy versions, corrections, spans, every source."""
    p, items = setup_project(session)
    clip = make_media_item(session, p)
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    plus2 = timezone(timedelta(hours=2))
    for n, rationale in enumerate(TRICKY_RATIONALES):
        record_label(
            session,
            p,
            items[n % 3],
            alice if n % 2 else bob,
            inp(
                f"r{n}",
                decision="violating",
                policies=["hate", "ip"] if n % 2 else ["spam"],
                severity=1 + n % 2,
                rationale=rationale,
                spans=[{"start": 0, "end": 2}, {"start": 1, "end": 3}] if n % 3 == 0 else [],
                confidence=[None, 0.1, 1.0, 2 / 3][n % 4],
                time_spent_ms=None if n % 2 else 1234 + n,
                created_at=(T0 + timedelta(minutes=n)).astimezone(plus2),
            ),
            source=[LabelSource.human, LabelSource.import_, LabelSource.propagated][n % 3],
            actor=SYSTEM,
        )
    record_label(
        session,
        p,
        items[0],
        alice,
        inp("r0-fix", supersedes="r0", rationale="", created_at=T0 + timedelta(hours=1)),
        source=LabelSource.human,
        actor=SYSTEM,
    )
    add_policy_version(session, p, taxonomy_v2(), SYSTEM)
    record_label(
        session,
        p,
        clip,
        bob,
        inp(
            "media",
            decision="violating",
            policies=["scam"],
            severity=4,
            rationale="audio scam",
            spans=[{"start_s": 0.25, "end_s": 3.0}],
            created_at=T0 + timedelta(hours=2),
        ),
        source=LabelSource.human,
        actor=SYSTEM,
    )
    # Same created_at as the label before: the tie is broken by id, i.e. recording order.
    record_label(
        session,
        p,
        items[1],
        alice,
        inp("tie", decision="unsure", created_at=T0 + timedelta(hours=2)),
        source=LabelSource.human,
        actor=SYSTEM,
    )


def export_bytes(database: Database, fmt: str) -> bytes:
    buf = io.BytesIO()
    with database.sessions() as s:
        export_service.export_labels(s, get_project(s, "p"), fmt, buf)  # type: ignore[arg-type]
    return buf.getvalue()


def read_records(path: Path) -> list[dict[str, Any]]:
    from workbench.services.ingest.tabular import Record, iter_records

    return [r.data for r in iter_records(path) if isinstance(r, Record)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_label_round_trip_is_lossless(
    db: Database, fresh_database: Database, tmp_path: Path, fmt: str
) -> None:
    with db.sessions.begin() as s:
        populate(s)
    first = tmp_path / f"first.{fmt}"
    first.write_bytes(export_bytes(db, fmt))

    with fresh_database.sessions.begin() as s:
        p, _ = setup_project(s)
        make_media_item(s, p)
        add_policy_version(s, p, taxonomy_v2(), SYSTEM)
    with fresh_database.sessions.begin() as s:
        result = import_service.import_labels(s, get_project(s, "p"), first, SYSTEM)
        assert (result.imported, result.rejected) == (len(TRICKY_RATIONALES) + 3, 0)
        assert sorted(result.users_created) == ["alice", "bob"]
    second = export_bytes(fresh_database, fmt)

    records = read_records(first)
    (tmp_path / f"second.{fmt}").write_bytes(second)
    assert read_records(tmp_path / f"second.{fmt}") == records
    if fmt != "parquet":  # Parquet embeds writer metadata; its records are compared above
        assert second == first.read_bytes()

    by_key = {r["idempotency_key"]: r for r in records}
    for n, rationale in enumerate(TRICKY_RATIONALES):
        assert by_key[f"r{n}"]["rationale"] == rationale  # byte for byte, every format
    assert by_key["r0"]["superseded"] in (True, "true")
    assert by_key["r0-fix"]["supersedes"] == "r0"
    assert by_key["r0-fix"]["rationale"] in (None, "")
    assert str(by_key["media"]["policy_version"]) == "2"
    assert str(by_key["r1"]["policy_version"]) == "1"
    assert [r["idempotency_key"] for r in records][-2:] == ["media", "tie"]

    # And the re-import into the original project recognises every label.
    with db.sessions.begin() as s:
        again = import_service.import_labels(s, get_project(s, "p"), first, SYSTEM)
        assert (again.imported, again.unchanged) == (0, len(records))


def test_parquet_export_has_list_columns_and_utc_times(db: Database) -> None:
    with db.sessions.begin() as s:
        populate(s)
    table = pq.read_table(io.BytesIO(export_bytes(db, "parquet")))
    assert table.column_names == list(export_service.EXPORT_COLUMNS)
    assert str(table.schema.field("policies").type) == "list<element: string>"
    assert str(table.schema.field("spans").type).startswith("list<element: struct<start: int64")
    assert str(table.schema.field("created_at").type) == "timestamp[us, tz=UTC]"


def test_csv_export_joins_codes_and_writes_spans_as_json(db: Database) -> None:
    with db.sessions.begin() as s:
        populate(s)
    rows = list(csv.DictReader(io.StringIO(export_bytes(db, "csv").decode("utf-8"), newline="")))
    r1 = next(r for r in rows if r["idempotency_key"] == "r1")
    r0 = next(r for r in rows if r["idempotency_key"] == "r0")
    assert r1["policies"] == "hate;ip" and r1["confidence"] == "0.1" and r1["time_spent_ms"] == ""
    assert json.loads(r0["spans"]) == [{"start": 0, "end": 2}, {"start": 1, "end": 3}]
    assert r0["created_at"] == "2024-05-01T12:00:00+00:00" and r0["superseded"] == "true"
    assert r1["rationale"] == TRICKY_RATIONALES[1]


# --------------------------------------------------------------------------------------------
# CLI


def test_cli_import_fails_whole_with_located_problems_and_exit_1(
    cli: Any, sqlite_db: Database, tmp_path: Path
) -> None:
    with sqlite_db.sessions.begin() as s:
        setup_project(s)
    path = write_jsonl(
        tmp_path / "l.jsonl",
        [
            {"external_id": "i0", "reviewer": "ann", "decision": "unsure"},
            {"external_id": "zz", "reviewer": "ann", "decision": "unsure"},
        ],
    )
    result = cli("labels", "import", path, "--project", "p")
    assert result.exit_code == 1
    assert f"{path}:2" in result.stderr and "unknown external_id" in result.stderr
    out = cli.json("labels", "import", path, "--project", "p", expect=1)
    assert out["ok"] is False and out["problems"][0]["line"] == 2
    with sqlite_db.sessions() as s:
        assert label_count(s) == 0


def test_cli_import_then_export_round_trips_through_files(
    cli: Any, sqlite_db: Database, tmp_path: Path
) -> None:
    with sqlite_db.sessions.begin() as s:
        setup_project(s)
    path = write_jsonl(
        tmp_path / "l.jsonl",
        [
            {
                "external_id": "i0",
                "reviewer": "ann",
                "decision": "violating",
                "policies": ["hate"],
                "rationale": "x\r\ny",
                "created_at": "2024-05-01T12:00:00Z",
            },
            {"external_id": "bad", "reviewer": "ann", "decision": "unsure"},
        ],
    )
    rejects = tmp_path / "rejects.jsonl"
    summary = cli.json("labels", "import", path, "-p", "p", "--skip-invalid", "--rejects", rejects)
    assert (summary["imported"], summary["rejected"], summary["users_created"]) == (1, 1, ["ann"])
    assert json.loads(rejects.read_text())["line"] == 2

    out = tmp_path / "exp" / "labels.csv"
    done = cli.json("labels", "export", "-p", "p", "--out", out)
    assert done == {"project": "p", "format": "csv", "out": str(out), "labels": 1}
    assert [f.name for f in out.parent.iterdir()] == ["labels.csv"]  # no temp file left
    stdout = cli("labels", "export", "-p", "p", "--format", "csv")
    assert stdout.exit_code == 0
    assert stdout.stdout_bytes == out.read_bytes()
    jsonl = cli("labels", "export", "-p", "p", "--format", "jsonl")
    (record,) = [json.loads(x) for x in jsonl.stdout.splitlines()]
    assert record["rationale"] == "x\r\ny" and record["reviewer"] == "ann"

    again = cli.json("labels", "import", out, "-p", "p")
    assert (again["imported"], again["unchanged"]) == (0, 1)


def test_cli_export_refuses_json_without_out(cli: Any, sqlite_db: Database) -> None:
    with sqlite_db.sessions.begin() as s:
        setup_project(s)
    result = cli("labels", "export", "-p", "p", "--format", "jsonl", "--json")
    assert result.exit_code == 2
    assert "--out" in result.stderr and result.stdout == ""
    result = cli("labels", "export", "-p", "p")
    assert result.exit_code == 2 and "--format" in result.stderr
