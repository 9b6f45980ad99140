"""Issue #11, labels: idempotency keys are unique per project and never hand a reviewer someone
else's label; imported keys cannot take the workbench's own key formats; the labels CSV is safe
to open in a spreadsheet and still round-trips; the migration to per-project keys goes up and
down with rows, and refuses to go down when two projects share a key."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import make_items, make_project, make_user
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workbench.db import migrate
from workbench.db.database import Database
from workbench.db.engine import make_engine
from workbench.db.models import Item, Label, LabelSource, Lease, LeaseStatus, Project, User
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.labels import export as export_service
from workbench.services.labels import import_ as import_service
from workbench.services.labels.propagation import propagated_training_labels, propagation_key
from workbench.services.labels.record import record_label
from workbench.services.labels.validate import LabelInput, parse_label_input
from workbench.services.projects import get_project
from workbench.services.queue.batch import Submission, submit_batch
from workbench.services.queue.enqueue import NewEntry, enqueue
from workbench.services.queue.lease import lease_key
from workbench.services.review import flow as review
from workbench.services.review.flow import ReviewForm

SYSTEM = Actor.system()
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _actor(user: User) -> Actor:
    return Actor.for_user(user.name, user.id, user.role)


def _queued(s: Session, name: str = "p", n: int = 3) -> tuple[Project, list[Item]]:
    p = make_project(s, name)
    items = make_items(s, p, [f"text {k}" for k in range(n)], prefix="i")
    enqueue(s, p, [NewEntry(i.id, priority=-k) for k, i in enumerate(items)], SYSTEM)
    return p, items


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _labels(s: Session, project: Project | None = None) -> list[Label]:
    stmt = select(Label).order_by(Label.id)
    if project is not None:
        stmt = stmt.where(Label.project_id == project.id)
    return list(s.scalars(stmt))


def _inp(key: str, **kw: Any) -> LabelInput:
    kw.setdefault("decision", "not_violating")
    return LabelInput(idempotency_key=key, **kw)


# --------------------------------------------------------------------------------------------
# A submission is never answered with another reviewer's label


def test_an_imported_lease_key_cannot_swallow_a_reviewers_submission(
    db: Database, tmp_path: Path
) -> None:
    """The report: after importing another installation's labels, alice's submit on her lease
    returned bob's label of another item (created False) and her lease stayed open."""
    with db.sessions.begin() as s:
        p, items = _queued(s)
        alice = make_user(s, "alice")
        shown = review.current_item(s, p, _actor(alice))
        assert shown is not None and shown.lease_id is not None and shown.item_id == items[0].id
        lease_id = shown.lease_id
    foreign = _write_jsonl(
        tmp_path / "other-installation.jsonl",
        [
            {
                "external_id": "i2",
                "reviewer": "bob",
                "decision": "unsure",
                "idempotency_key": lease_key(lease_id),
                "created_at": T0.isoformat(),
            }
        ],
    )
    with db.sessions.begin() as s:
        result = import_service.import_labels(s, get_project(s, "p"), foreign, SYSTEM)
        assert result.imported == 1
    with db.sessions.begin() as s:
        p = get_project(s, "p")
        alice = s.scalars(select(User).where(User.name == "alice")).one()
        done = review.submit_review(s, p, _actor(alice), lease_id, ReviewForm("not_violating"))
        assert done.created
        mine = s.get_one(Label, done.label_id)
        assert (mine.item_id, mine.reviewer_id) == (items[0].id, alice.id)
        assert s.get_one(Lease, lease_id).status == LeaseStatus.submitted
        # The imported label is kept, under a key of the import's own namespace.
        keys = {lb.idempotency_key for lb in _labels(s)}
        assert keys == {lease_key(lease_id), "import:" + lease_key(lease_id)}


def test_a_lease_key_held_by_another_label_is_an_error_naming_the_key(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items = _queued(s)
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        shown = review.current_item(s, p, _actor(alice))
        assert shown is not None and shown.lease_id is not None
        key = lease_key(shown.lease_id)
        # However it got there (an old import, a hand-made row), the key is bob's, elsewhere.
        record_label(s, p, items[2], bob, _inp(key), source=LabelSource.import_, actor=SYSTEM)
        with pytest.raises(WorkbenchError, match=key) as err:
            review.submit_review(s, p, _actor(alice), shown.lease_id, ReviewForm("unsure"))
        assert err.value.problems[0].field == "idempotency_key"
        assert s.get_one(Lease, shown.lease_id).status == LeaseStatus.active


def test_a_correction_key_held_by_another_label_is_an_error_naming_the_key(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items = _queued(s)
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        shown = review.current_item(s, p, _actor(alice))
        assert shown is not None and shown.lease_id is not None
        first = review.submit_review(s, p, _actor(alice), shown.lease_id, ReviewForm("unsure"))
        key = review.correction_key(first.label_id)
        record_label(s, p, items[2], bob, _inp(key), source=LabelSource.import_, actor=SYSTEM)
        review.undo_last(s, p, _actor(alice))
        with pytest.raises(WorkbenchError, match=key):
            review.submit_correction(
                s, p, _actor(alice), first.label_id, ReviewForm("not_violating")
            )


def test_the_same_lease_key_in_another_project_does_not_block_a_batch(db: Database) -> None:
    with db.sessions.begin() as s:
        other = make_project(s, "other")
        (stray,) = make_items(s, other, ["elsewhere"], prefix="o")
        p, _ = _queued(s)
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        shown = review.current_item(s, p, _actor(alice))
        assert shown is not None and shown.lease_id is not None
        key = lease_key(shown.lease_id)
        record_label(s, other, stray, bob, _inp(key), source=LabelSource.import_, actor=SYSTEM)
        label = parse_label_input({"decision": "not_violating", "idempotency_key": "x"})
        result = submit_batch(s, alice, [Submission(shown.lease_id, label)])
        assert result.rejected == {} and list(result.created) == [shown.lease_id]
        again = submit_batch(s, alice, [Submission(shown.lease_id, label)])
        assert again.already == result.created and again.created == {}
        assert [lb.idempotency_key for lb in _labels(s, p)] == [key]


def test_a_batch_refuses_a_lease_key_held_by_another_label_of_the_project(db: Database) -> None:
    with db.sessions.begin() as s:
        p, items = _queued(s)
        alice, bob = make_user(s, "alice"), make_user(s, "bob")
        shown = review.current_item(s, p, _actor(alice))
        assert shown is not None and shown.lease_id is not None
        key = lease_key(shown.lease_id)
        record_label(s, p, items[2], bob, _inp(key), source=LabelSource.import_, actor=SYSTEM)
        label = parse_label_input({"decision": "not_violating", "idempotency_key": "x"})
        result = submit_batch(s, alice, [Submission(shown.lease_id, label)])
        assert key in result.rejected[shown.lease_id] and result.created == {}


def test_idempotency_keys_are_unique_per_project_not_per_database(db: Database) -> None:
    with db.sessions.begin() as s:
        p1, p2 = make_project(s, "p1"), make_project(s, "p2")
        (a,) = make_items(s, p1, ["one"], prefix="a")
        (b,) = make_items(s, p2, ["two"], prefix="b")
        alice = make_user(s, "alice")
        one, created_one = record_label(
            s, p1, a, alice, _inp("k"), source=LabelSource.human, actor=SYSTEM
        )
        two, created_two = record_label(
            s, p2, b, alice, _inp("k"), source=LabelSource.human, actor=SYSTEM
        )
        assert created_one and created_two and one.id != two.id
        # A correction names the label of its own project.
        fix, _ = record_label(
            s, p2, b, alice, _inp("k2", supersedes="k", created_at=T0 + timedelta(days=9999)),
            source=LabelSource.human, actor=SYSTEM,
        )  # fmt: skip
        assert fix.supersedes_id == two.id


# --------------------------------------------------------------------------------------------
# Import: the workbench's own key formats


def _row(external_id: str, reviewer: str, key: str, **more: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "reviewer": reviewer,
        "decision": "not_violating",
        "idempotency_key": key,
        "created_at": T0.isoformat(),
        **more,
    }


def test_import_namespaces_reserved_keys_and_keeps_their_corrections(
    db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        _queued(s)
    later = (T0 + timedelta(hours=1)).isoformat()
    path = _write_jsonl(
        tmp_path / "foreign.jsonl",
        [
            _row("i0", "ann", "lease:7"),
            _row("i0", "ann", "correct:3", supersedes="lease:7", created_at=later),
            _row("i1", "ann", "propagated:1:2", source="propagated"),
            _row("i2", "ann", "plain-key"),
        ],
    )
    with db.sessions.begin() as s:
        result = import_service.import_labels(s, get_project(s, "p"), path, SYSTEM)
        assert (result.imported, result.rejected) == (4, 0)
    with db.sessions() as s:
        by_key = {lb.idempotency_key: lb for lb in _labels(s)}
        assert set(by_key) == {
            "import:lease:7", "import:correct:3", "import:propagated:1:2", "plain-key"
        }  # fmt: skip
        assert by_key["import:correct:3"].supersedes_id == by_key["import:lease:7"].id
    with db.sessions.begin() as s:
        again = import_service.import_labels(s, get_project(s, "p"), path, SYSTEM)
        assert (again.imported, again.unchanged) == (0, 4)


def test_a_projects_own_export_reimports_with_its_reserved_keys_unchanged(
    db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        p, _ = _queued(s)
        alice = make_user(s, "alice")
        shown = review.current_item(s, p, _actor(alice))
        assert shown is not None and shown.lease_id is not None
        review.submit_review(s, p, _actor(alice), shown.lease_id, ReviewForm("unsure"))
    out = tmp_path / "own.jsonl"
    with db.sessions() as s:
        export_service.export_labels_to_file(s, get_project(s, "p"), "jsonl", out)
    with db.sessions.begin() as s:
        result = import_service.import_labels(s, get_project(s, "p"), out, SYSTEM)
        assert (result.imported, result.unchanged) == (0, 1)
        assert [lb.idempotency_key for lb in _labels(s)] == [lease_key(shown.lease_id)]


def test_every_key_the_workbench_makes_is_reserved_from_import() -> None:
    made = [lease_key(7), review.correction_key(7), propagation_key(7, 8)]
    assert all(import_service.is_reserved_key(k) for k in made)
    assert not import_service.is_reserved_key(import_service.namespaced_key(made[0]))


def test_an_imported_propagated_label_counts_for_training_as_its_own_source(
    db: Database, tmp_path: Path
) -> None:
    """Its key is not this installation's `propagated:<label>:<item>` (training read the
    source label's id from it and failed on any other key)."""
    with db.sessions.begin() as s:
        _, items = _queued(s)
    path = _write_jsonl(
        tmp_path / "copies.jsonl",
        [
            _row("i0", "ann", "their-copy", source="propagated"),
            _row("i1", "ann", "propagated:1:2", source="propagated"),
        ],
    )
    with db.sessions.begin() as s:
        import_service.import_labels(s, get_project(s, "p"), path, SYSTEM)
    with db.sessions() as s:
        found = propagated_training_labels(s, get_project(s, "p"))
        assert {i: (lab.idempotency_key, src) for i, (lab, src) in found.items()} == {
            items[0].id: ("their-copy", items[0].id),
            items[1].id: ("import:propagated:1:2", items[1].id),
        }


def test_a_reserved_key_too_long_to_namespace_is_a_located_error(
    db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        _queued(s)
    path = _write_jsonl(
        tmp_path / "long.jsonl", [_row("i0", "ann", "ok"), _row("i1", "ann", "lease:" + "9" * 194)]
    )
    with db.sessions() as s, pytest.raises(WorkbenchError) as err:
        import_service.import_labels(s, get_project(s, "p"), path, SYSTEM)
    ((problem),) = err.value.problems
    assert (problem.file, problem.line, problem.field) == (str(path), 2, "idempotency_key")
    assert "200" in problem.reason


def test_the_same_file_imports_into_two_projects_of_one_database(
    db: Database, tmp_path: Path
) -> None:
    with db.sessions.begin() as s:
        for name in ("p1", "p2"):
            make_items(s, make_project(s, name), ["x"], prefix="i")
    path = _write_jsonl(tmp_path / "l.jsonl", [_row("i0", "ann", "shared-key")])
    for name in ("p1", "p2"):
        with db.sessions.begin() as s:
            assert import_service.import_labels(s, get_project(s, name), path, SYSTEM).imported == 1


# --------------------------------------------------------------------------------------------
# CSV: safe in a spreadsheet, still lossless

DANGEROUS = [
    '=HYPERLINK("http://x","y")',
    "+1+1",
    "-2",
    "@SUM(A1)",
    "\tstarts with a tab",
    "\rstarts with a carriage return",
    "'=already quoted",
    "''+twice",
    "'plain quote",
    "harmless = in the middle",
]


def _spreadsheet_project(s: Session) -> Project:
    p = make_project(s)
    alice = make_user(s, "alice")
    for n, rationale in enumerate(DANGEROUS):
        external_id = f"-{n}" if n % 2 else f"={n}"
        item = Item(
            project_id=p.id, external_id=external_id, text="t", modalities=["text"],
            content_hash=hashlib.sha256(external_id.encode()).hexdigest(),
        )  # fmt: skip
        s.add(item)
        s.flush()
        record_label(
            s, p, item, alice,
            _inp(f"@key{n}" if n % 3 == 0 else f"key{n}", rationale=rationale,
                 created_at=T0 + timedelta(minutes=n)),
            source=LabelSource.human, actor=SYSTEM,
        )  # fmt: skip
    return p


def _export(database: Database, fmt: str) -> bytes:
    buf = io.BytesIO()
    with database.sessions() as s:
        export_service.export_labels(s, get_project(s, "p"), fmt, buf)  # type: ignore[arg-type]
    return buf.getvalue()


def test_csv_export_guards_every_cell_a_spreadsheet_would_run_as_a_formula(db: Database) -> None:
    with db.sessions.begin() as s:
        _spreadsheet_project(s)
    rows = list(csv.DictReader(io.StringIO(_export(db, "csv").decode("utf-8"), newline="")))
    cells = [v for r in rows for v in r.values()]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    by_key = {r["idempotency_key"]: r for r in rows}
    assert by_key["'@key0"]["rationale"] == "'" + DANGEROUS[0]
    assert by_key["key1"]["external_id"] == "'-1"
    assert by_key["'@key6"]["rationale"] == "''=already quoted"  # so the import can undo it
    assert by_key["key8"]["rationale"] == "'plain quote"  # nothing to undo: left as it is
    # JSONL and Parquet are not spreadsheets: their text is never changed.
    jsonl = [json.loads(line) for line in _export(db, "jsonl").decode().splitlines()]
    assert [r["rationale"] for r in jsonl] == DANGEROUS


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_guarded_csv_and_the_other_formats_round_trip_value_for_value(
    db: Database, tmp_path: Path, fmt: str
) -> None:
    with db.sessions.begin() as s:
        _spreadsheet_project(s)
    first = tmp_path / f"first.{fmt}"
    first.write_bytes(_export(db, fmt))
    with db.sessions() as s:
        before = [
            (lb.item.external_id, lb.rationale, lb.idempotency_key, lb.created_at)
            for lb in _labels(s)
        ]
    # Into a second project of the same database (keys are per project) with the same items.
    with db.sessions.begin() as s:
        q = make_project(s, "q")
        for ext, *_ in before:
            s.add(Item(project_id=q.id, external_id=ext, text="t", modalities=["text"],
                       content_hash=hashlib.sha256(ext.encode()).hexdigest()))  # fmt: skip
        s.flush()
        result = import_service.import_labels(s, q, first, SYSTEM)
        assert (result.imported, result.rejected) == (len(DANGEROUS), 0)
    with db.sessions() as s:
        after = [
            (lb.item.external_id, lb.rationale, lb.idempotency_key, lb.created_at)
            for lb in _labels(s, get_project(s, "q"))
        ]
        assert after == before
        buf = io.BytesIO()
        export_service.export_labels(s, get_project(s, "q"), fmt, buf)  # type: ignore[arg-type]
    if fmt != "parquet":  # Parquet embeds writer metadata; its values are compared above
        assert buf.getvalue() == first.read_bytes()


# --------------------------------------------------------------------------------------------
# Migration 0009: UNIQUE(project_id, idempotency_key)

PER_PROJECT = "0009_label_keys_per_project"
BEFORE = "0008_round_heartbeat"


def _seed(conn: Any, projects: int) -> None:
    conn.execute(text("INSERT INTO users (id, name, role, disabled, created_at) "
                      "VALUES (1, 'rev', 'reviewer', false, :t)"), {"t": T0})  # fmt: skip
    for pid in range(1, projects + 1):
        conn.execute(
            text("INSERT INTO projects (id, name, settings, created_at) "
                 "VALUES (:id, :name, '{}', :t)"), {"id": pid, "name": f"p{pid}", "t": T0},
        )  # fmt: skip
        conn.execute(
            text("INSERT INTO policy_versions (id, project_id, version, name, checksum, "
                 "created_at, created_by) VALUES (:id, :id, 1, 'v1', 'c', :t, 'lead')"),
            {"id": pid, "t": T0},
        )  # fmt: skip
        conn.execute(
            text("INSERT INTO items (id, project_id, external_id, text, metadata, modalities, "
                 "content_hash, revision, source, created_at, updated_at) VALUES "
                 "(:id, :id, 'e', 't', '{}', '[\"text\"]', :h, 1, 's', :t, :t)"),
            {"id": pid, "h": f"{pid:064d}", "t": T0},
        )  # fmt: skip


def _add_label(conn: Any, label_id: int, project: int, key: str) -> None:
    conn.execute(
        text("INSERT INTO labels (id, project_id, item_id, reviewer_id, policy_version_id, "
             "decision, policies, spans, source, idempotency_key, created_at) VALUES "
             "(:id, :p, :p, 1, :p, 'violating', '[]', '[]', 'human', :k, :t)"),
        {"id": label_id, "p": project, "k": key, "t": T0},
    )  # fmt: skip


def test_migration_makes_keys_unique_per_project_and_goes_back_down(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine, BEFORE)
    with engine.begin() as conn:
        _seed(conn, projects=2)
        _add_label(conn, 1, 1, "lease:1")
        _add_label(conn, 2, 2, "lease:2")
    migrate.upgrade(engine, PER_PROJECT)
    with engine.connect() as conn:
        _add_label(conn, 3, 2, "lease:1")  # the same key, another project: allowed now
        conn.rollback()
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _add_label(conn, 4, 2, "lease:2")  # the same key in the same project: never
    migrate.downgrade(engine, BEFORE)
    with engine.connect() as conn:
        keys = conn.execute(text("SELECT id, idempotency_key FROM labels ORDER BY id")).all()
        assert [tuple(r) for r in keys] == [(1, "lease:1"), (2, "lease:2")]
    engine.dispose()


def test_downgrade_refuses_when_two_projects_share_a_key_and_loses_nothing(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    migrate.upgrade(engine, PER_PROJECT)
    with engine.begin() as conn:
        _seed(conn, projects=2)
        _add_label(conn, 1, 1, "lease:1")
        _add_label(conn, 2, 2, "lease:1")
    with pytest.raises(WorkbenchError, match="lease:1") as err:
        migrate.downgrade(engine, BEFORE)
    assert "2 project" in err.value.message
    assert migrate.current_revision(engine) == PER_PROJECT
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(text("labels"))) == 2
    engine.dispose()
