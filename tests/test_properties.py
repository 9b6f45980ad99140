"""Property-based (Hypothesis): whatever rows a manifest or a label file holds (random values and
types, missing and unknown columns, JSONL or CSV), reading it ends in a WorkbenchError whose
problems name a line, or in a complete write; never another exception, never a partial write."""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from builders import make_items, make_project
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.db.database import Database
from workbench.db.models import Item, Label, Project
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.ingest.write import ingest_path
from workbench.services.labels.export import EXPORT_COLUMNS
from workbench.services.labels.import_ import import_labels
from workbench.services.projects import find_project, get_project

SYSTEM = Actor.system()
PROPERTY = settings(
    max_examples=50,
    deadline=None,
    database=None,  # no .hypothesis folder in the tree
    # The fixtures' database is shared by the examples on purpose: each one rolls back (labels)
    # or writes into a project of its own (ingest).
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Anything a file might hold where a value is expected.
JUNK = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def _rows(
    draw: st.DrawFn,
    good: dict[str, st.SearchStrategy[Any]],
    bad: dict[str, st.SearchStrategy[Any]],
    required: tuple[str, ...],
) -> dict[str, Any]:
    """A row of good values (optional columns maybe missing), then maybe spoiled once: one
    column plausibly wrong or of any type, a required one missing, an unknown one added; or a
    row where every column may be anything. One fault at a time reaches the checks behind the
    first (a row missing its external_id is refused before its severity is read)."""
    row: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {c: good[c] for c in required},
            optional={c: good[c] for c in good if c not in required},
        )
    )
    fault = draw(st.sampled_from(["none", "wrong", "missing", "unknown", "anything"]))
    if fault == "wrong":
        column = draw(st.sampled_from(sorted(good)))
        row[column] = draw(st.one_of(bad[column], JUNK) if column in bad else JUNK)
    elif fault == "missing":
        row.pop(draw(st.sampled_from(required)))
    elif fault == "unknown":
        row["colour"] = draw(JUNK)
    elif fault == "anything":
        anything = {c: st.one_of(good[c], bad.get(c, JUNK), JUNK) for c in good}
        row = draw(st.fixed_dictionaries({}, optional={**anything, "colour": JUNK}))
    return row


def _write(path: Path, rows: list[dict[str, Any]], fmt: str) -> Path:
    if fmt == "jsonl":
        # ensure_ascii: a lone surrogate is written as an escape and comes back as one.
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path
    header = list(dict.fromkeys(itertools.chain.from_iterable(rows))) or ["external_id"]
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    for r in rows:
        writer.writerow([_csv_text(r.get(c)) for c in header])
    # surrogatepass: a lone surrogate becomes bytes that are not UTF-8, as in a broken file.
    path.write_bytes(buf.getvalue().encode("utf-8", errors="surrogatepass"))
    return path


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ";".join(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _assert_located(exc: WorkbenchError, path: Path) -> None:
    assert exc.message
    if not exc.problems:  # about the file as a whole (no rows, no header): it says which
        assert str(path) in exc.message
    for problem in exc.problems:
        assert problem.line is not None and problem.file == str(path), problem


# --------------------------------------------------------------------------------------------
# Label import

LABEL_GOOD: dict[str, st.SearchStrategy[Any]] = {
    "external_id": st.sampled_from(["i0", "i1", "i2"]),
    "reviewer": st.sampled_from(["ann", "bo"]),
    "decision": st.sampled_from(["not_violating", "unsure"]),
    "policies": st.lists(st.sampled_from(["hate", "spam"]), max_size=2, unique=True),
    "severity": st.integers(min_value=1, max_value=2),
    "rationale": st.text(max_size=20),
    "spans": st.sampled_from([[], [{"start": 0, "end": 1}]]),
    "confidence": st.floats(min_value=0, max_value=1),
    "time_spent_ms": st.integers(min_value=0, max_value=10**6),
    "policy_version": st.just(1),
    "source": st.sampled_from(["human", "import", "propagated"]),
    "created_at": st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat()),
    "idempotency_key": st.one_of(
        st.sampled_from(["k1", "k2", "lease:1", "correct:2"]), st.text(min_size=1, max_size=8)
    ),
    "supersedes": st.sampled_from(["k1", "lease:1"]),
    "superseded": st.booleans(),
}
LABEL_BAD: dict[str, st.SearchStrategy[Any]] = {
    "external_id": st.just("nowhere"),
    "reviewer": st.sampled_from(["x y", "-"]),
    "decision": st.sampled_from(["violating", "maybe"]),
    "policies": st.just(["hate", "hate", "nonexistent"]),
    "severity": st.sampled_from([0, 5, " 3 ", "high", 2.5]),
    "time_spent_ms": st.sampled_from([-1, "soon", 2**40]),
    "spans": st.sampled_from([[{"start": 3, "end": 1}], [{"start_s": 0.0}], "[", "{}"]),
    "confidence": st.sampled_from([1.5, "high"]),
    "policy_version": st.sampled_from([2, "1", "v1"]),
    "source": st.just("robot"),
    "created_at": st.sampled_from(["2024-05-01T12:00:00", "yesterday"]),
    "idempotency_key": st.just("lease:" + "9" * 200),
    "supersedes": st.sampled_from(["nothing", "correct:2"]),
    "superseded": st.just("perhaps"),
}
assert set(LABEL_GOOD) == set(EXPORT_COLUMNS)  # every column the import knows is drawn


def _label_count(s: Session, project: Project) -> int:
    return s.scalar(select(func.count()).select_from(Label).where(Label.project_id == project.id))


@pytest.fixture
def labelled(sqlite_db: Database) -> Database:
    with sqlite_db.sessions.begin() as s:
        p = make_project(s)
        make_items(s, p, ["zero", "one", "two"])
    return sqlite_db


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@PROPERTY
@given(
    rows=st.lists(_rows(LABEL_GOOD, LABEL_BAD, ("external_id", "reviewer", "decision")),
                  min_size=1, max_size=4),
    skip_invalid=st.booleans(),
)  # fmt: skip
def test_any_label_file_is_refused_with_located_problems_or_imported_whole(
    labelled: Database, tmp_path: Path, fmt: str, rows: list[dict[str, Any]], skip_invalid: bool
) -> None:
    path = _write(tmp_path / f"labels.{fmt}", rows, fmt)
    with labelled.sessions() as s:
        project = get_project(s, "p")
        try:
            result = import_labels(s, project, path, SYSTEM, skip_invalid=skip_invalid)
        except WorkbenchError as exc:
            event("refused")
            _assert_located(exc, path)
            s.flush()
            assert _label_count(s, project) == 0  # refused before anything was written
        else:
            event("imported, some rows rejected" if result.rejected else "imported whole")
            s.flush()
            assert _label_count(s, project) == result.imported
            assert result.imported + result.unchanged + result.rejected == result.rows
            assert result.rejected == 0 or skip_invalid
            if fmt == "jsonl":  # (a CSV row of empty cells is no row)
                assert result.rows == len(rows)
        finally:
            s.rollback()


# --------------------------------------------------------------------------------------------
# Manifest ingest

MANIFEST_GOOD: dict[str, st.SearchStrategy[Any]] = {
    "external_id": st.text(min_size=1, max_size=8),
    "text": st.text(min_size=1, max_size=30),
    "language": st.sampled_from(["en", "pt-BR"]),
    "metadata": st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4),
                                max_size=2),
    "image": st.none(),
}  # fmt: skip
MANIFEST_BAD: dict[str, st.SearchStrategy[Any]] = {
    "external_id": st.sampled_from(["", "x" * 600]),
    "text": st.sampled_from(["nul\x00", "\ud800 surrogate"]),
    "language": st.sampled_from(["English", ""]),
    "metadata": st.sampled_from(["{not json", "[1]"]),
    "image": st.sampled_from(["a.png", "../outside.png", "manifest.jsonl", "/etc/passwd"]),
}
_projects = itertools.count()


def _item_count(db: Database, name: str) -> int:
    with db.sessions() as s:
        project = find_project(s, name)
        if project is None:
            return 0
        return s.scalar(select(func.count()).select_from(Item).where(Item.project_id == project.id))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@PROPERTY
@given(
    rows=st.lists(
        _rows(MANIFEST_GOOD, MANIFEST_BAD, ("external_id", "text")), min_size=1, max_size=4
    ),
    skip_invalid=st.booleans(),
)
def test_any_manifest_is_refused_with_located_problems_or_ingested_whole(
    sqlite_db: Database, tmp_path: Path, fmt: str, rows: list[dict[str, Any]], skip_invalid: bool
) -> None:
    path = _write(tmp_path / f"manifest.{fmt}", rows, fmt)
    project = f"m{next(_projects)}"  # a project per example: its items are this run's
    try:
        report = ingest_path(
            sqlite_db.sessions, sqlite_db.settings, path, project, SYSTEM,
            skip_invalid=skip_invalid,
        )  # fmt: skip
    except WorkbenchError as exc:
        event("refused")
        _assert_located(exc, path)
        assert _item_count(sqlite_db, project) == 0
    else:
        event("ingested, some rows rejected" if report.rejected else "ingested whole")
        assert _item_count(sqlite_db, project) == report.items_added
        assert report.items_added + report.rejected == report.rows
        assert report.rejected == 0 or skip_invalid
        if fmt == "jsonl":
            assert report.rows == len(rows)
