"""Audit export: stable columns, filters, a CSV that pandas reads back as written, chunked
reading, spreadsheet-safe cells, and a file that is complete or absent."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import CLI
from quality_builders import Labels
from sqlalchemy import select

from workbench.db.database import Database
from workbench.db.models import AuditEvent, Role
from workbench.errors import PermissionDenied, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.projects import create_project
from workbench.services.quality import audit_export as ax

T0 = datetime(2026, 11, 2, 12, tzinfo=UTC)
DETAILS = {"reason": 'a "quoted", comma\nnew line', "text": "naïve 🙂", "n": 3, "nested": [1, None]}


def _event(s: Any, action: str, *, project_id: int | None, days: float, **kw: Any) -> None:
    event = record_event(s, Actor.system(), action, project_id=project_id, **kw)
    event.at = T0 + timedelta(days=days)


def _seed(db: Database) -> None:
    """Two projects' events (created events dated T0 − 1 day) plus one event of no project."""
    with db.sessions.begin() as s:
        p = create_project(s, "p", Actor.system())
        q = create_project(s, "q", Actor.system())
        s.flush()
        for e in s.scalars(select(AuditEvent)):
            e.at = T0 - timedelta(days=1)
        _event(
            s,
            "label.recorded",
            project_id=p.id,
            days=0,
            entity_type="label",
            entity_id=1,
            details=DETAILS,
        )
        _event(s, "labels.imported", project_id=p.id, days=1, details={"rows": 2})
        _event(s, "queue.enqueued", project_id=p.id, days=2, entity_type="batch", entity_id=0)
        _event(s, "label.recorded", project_id=q.id, days=3, entity_type="label", entity_id=2)
        _event(s, "user.added", project_id=None, days=4, entity_type="user", entity_id="ann")


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_export_has_stable_columns_and_round_trips_through_pandas(
    db: Database, tmp_path: Path
) -> None:
    _seed(db)
    out = tmp_path / "audit.csv"
    result = ax.export_audit_csv(db, out, Actor.system())
    frame = _read(out)
    assert tuple(frame.columns) == ax.AUDIT_COLUMNS
    with db.sessions() as s:
        events = list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))
        # The export records itself after it ran; the file holds the events before it.
        assert events[-1].action == "audit.exported"
        events = events[:-1]
        assert result.rows == len(events) == len(frame)
        assert frame["id"].astype(int).tolist() == [e.id for e in events]
        assert frame["action"].tolist() == [e.action for e in events]
        assert [json.loads(d) for d in frame["details"]] == [e.details for e in events]
    stamps = pd.to_datetime(frame["at"], utc=True)
    assert all(a.endswith("+00:00") for a in frame["at"])
    row = frame[frame["action"] == "label.recorded"].iloc[0]
    assert (row["project"], row["entity_type"], row["entity_id"]) == ("p", "label", "1")
    assert json.loads(row["details"]) == DETAILS
    assert stamps[frame["action"] == "label.recorded"].iloc[0] == T0
    assert frame[frame["action"] == "user.added"].iloc[0]["project"] == ""


def test_filters_by_project_time_window_and_action_prefix(db: Database, tmp_path: Path) -> None:
    _seed(db)

    def actions(**kw: Any) -> list[str]:
        out = tmp_path / "f.csv"
        ax.export_audit_csv(db, out, Actor.system(), ax.AuditFilter(**kw))
        return _read(out)["action"].tolist()

    assert actions(project="q") == ["project.created", "taxonomy.version_added", "label.recorded"]
    assert actions(project="p", since=T0, until=T0 + timedelta(days=2)) == [
        "label.recorded",
        "labels.imported",
    ]
    # A prefix is a prefix, not a pattern: "label." is not "labels.", "_" matches only "_".
    assert actions(action_prefix="label.") == ["label.recorded", "label.recorded"]
    assert actions(action_prefix="label_") == []
    assert actions(action_prefix="user.", since=T0 + timedelta(days=4)) == ["user.added"]
    with pytest.raises(WorkbenchError, match="no project named 'nope'"):
        actions(project="nope")
    with pytest.raises(WorkbenchError, match="time window is empty"):
        actions(since=T0, until=T0)


def test_dates_parse_as_utc_and_a_bare_until_date_includes_its_day() -> None:
    assert ax.parse_time("2026-11-02", "--since") == datetime(2026, 11, 2, tzinfo=UTC)
    assert ax.parse_time("2026-11-02", "--until", end_of_day=True) == datetime(
        2026, 11, 3, tzinfo=UTC
    )
    assert ax.parse_time("2026-11-02T14:30:00Z", "--since") == datetime(
        2026, 11, 2, 14, 30, tzinfo=UTC
    )
    assert ax.parse_time("2026-11-02T15:30+01:00", "--since") == datetime(
        2026, 11, 2, 14, 30, tzinfo=UTC
    )
    with pytest.raises(WorkbenchError, match="--since 'last tuesday' is not a date"):
        ax.parse_time("last tuesday", "--since")


def test_small_chunks_give_every_row_once_in_id_order(db: Database) -> None:
    _seed(db)
    with db.sessions() as s:
        whole = list(ax.audit_rows(s, ax.AuditFilter()))
        chunked = list(ax.audit_rows(s, ax.AuditFilter(), chunk_rows=2))
        ids = list(s.scalars(select(AuditEvent.id).order_by(AuditEvent.id)))
    assert chunked == whole
    assert [int(r[0]) for r in chunked] == ids


def test_cells_that_a_spreadsheet_would_run_are_made_text(db: Database, tmp_path: Path) -> None:
    with db.sessions.begin() as s:
        p = create_project(s, "p", Actor.system())
        record_event(s, Actor.system(), "item.flagged", project_id=p.id, entity_type="item",
                     entity_id='=HYPERLINK("http://evil","x")', details={"x": "=1+1"})  # fmt: skip
    out = tmp_path / "a.csv"
    ax.export_audit_csv(db, out, Actor.system(), ax.AuditFilter(action_prefix="item."))
    row = _read(out).iloc[0]
    assert row["entity_id"] == '\'=HYPERLINK("http://evil","x")'
    assert json.loads(row["details"]) == {"x": "=1+1"}  # inside JSON: the cell starts with {


def test_a_failed_export_leaves_the_old_file_and_no_temporary_file(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(db)
    folder = tmp_path / "exports"
    folder.mkdir()
    out = folder / "audit.csv"
    out.write_text("the previous export\n")
    real_rows = ax.audit_rows

    def broken(*args: Any, **kw: Any) -> Any:
        for n, row in enumerate(real_rows(*args, **kw)):
            if n == 3:
                raise OSError("disk full")
            yield row

    monkeypatch.setattr(ax, "audit_rows", broken)
    with pytest.raises(OSError, match="disk full"):
        ax.export_audit_csv(db, out, Actor.system())
    assert out.read_text() == "the previous export\n"
    assert sorted(p.name for p in folder.iterdir()) == ["audit.csv"]
    fresh = folder / "new.csv"
    with pytest.raises(OSError):
        ax.export_audit_csv(db, fresh, Actor.system())
    assert not fresh.exists() and sorted(p.name for p in folder.iterdir()) == ["audit.csv"]
    with db.sessions() as s:
        assert s.scalar(select(AuditEvent).where(AuditEvent.action == "audit.exported")) is None


def test_only_leads_and_admins_may_export(db: Database, tmp_path: Path) -> None:
    with db.sessions.begin() as s:
        lab = Labels(s, create_project(s, "p", Actor.system()))
        users = {r: lab.user(r.value, r) for r in Role}
        actors = {r: Actor.for_user(u.name, u.id, r) for r, u in users.items()}
    out = tmp_path / "a.csv"
    for role in (Role.reviewer, Role.engineer):
        with pytest.raises(PermissionDenied, match="lead or admin"):
            ax.export_audit_csv(db, out, actors[role])
        assert not out.exists()
    # A lead exports the projects they are members of; every project at once is for admins.
    with pytest.raises(PermissionDenied, match="every project"):
        ax.export_audit_csv(db, out, actors[Role.lead])
    assert ax.export_audit_csv(db, out, actors[Role.lead], ax.AuditFilter(project="p")).rows > 0
    assert ax.export_audit_csv(db, out, actors[Role.admin]).rows > 0
    with db.sessions() as s:
        exported = list(
            s.scalars(select(AuditEvent.actor).where(AuditEvent.action == "audit.exported"))
        )
    assert exported == ["lead", "admin"]


def test_audit_export_cli_writes_the_file_and_one_json_object(
    db: Database, cli: CLI, tmp_path: Path
) -> None:
    _seed(db)
    out = tmp_path / "cli.csv"
    data = cli.json(
        "audit", "export", "--out", str(out), "--project", "p", "--action", "label",
        "--since", "2026-11-02", "--until", "2026-11-03",
    )  # fmt: skip
    assert data["rows"] == 2 and data["path"] == str(out)
    assert data["until"] == "2026-11-04T00:00:00+00:00"  # a bare date includes its day
    assert _read(out)["action"].tolist() == ["label.recorded", "labels.imported"]
    with db.sessions() as s:
        assert s.scalar(select(AuditEvent.actor).where(AuditEvent.action == "audit.exported")) == (
            "system"
        )


def test_audit_export_cli_names_a_bad_date_and_writes_nothing(
    db: Database, cli: CLI, tmp_path: Path
) -> None:
    _seed(db)
    out = tmp_path / "cli.csv"
    bad = cli.json("audit", "export", "--out", str(out), "--since", "soon", expect=1)
    assert bad["ok"] is False and "--since 'soon'" in bad["error"]
    result = cli("audit", "export", "--out", str(out), "--until", "soon")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "--until 'soon'" in errors[0]
    assert not out.exists()
    missing = cli.json("audit", "export", "--out", str(out), "--project", "nope", expect=1)
    assert "no project named 'nope'" in missing["error"] and not out.exists()


def test_audit_export_cli_needs_out_as_usage(db: Database, cli: CLI) -> None:
    result = cli("audit", "export", "--project", "p")
    assert result.exit_code == 2 and "--out" in result.stderr
