"""The audit trail as a CSV file for auditors: stable columns, streamed in chunks, written to a
temporary file and renamed, so a reader never sees half an export.

Columns (in this order, always): id, at (UTC, ISO 8601), actor, action, project (name), entity_type,
entity_id, details (JSON, keys sorted). Why a spreadsheet guard: an auditor opens the file in
Excel or LibreOffice, and a text cell that starts with = + - @ would run as a formula there
(entity ids come from ingested content); such cells get a leading apostrophe, which those
programs show as text. The details column is JSON and always starts with `{`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workbench.db.database import Database
from workbench.db.models import AuditEvent, Project, Role
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor, record_event, require_role
from workbench.services.membership import require_member
from workbench.services.projects import get_project

AUDIT_COLUMNS = (
    "id",
    "at",
    "actor",
    "action",
    "project",
    "entity_type",
    "entity_id",
    "details",
)
CHUNK_ROWS = 10_000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class AuditFilter:
    """Which events: one project (None: all, and events of no project), a time window
    [since, until) in UTC, and an action prefix (`label.`, `queue.`)."""

    project: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    action_prefix: str | None = None


@dataclass(frozen=True)
class AuditExport:
    path: str
    rows: int
    columns: tuple[str, ...]
    project: str | None
    since: str | None
    until: str | None
    action_prefix: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(text: str, option: str, *, end_of_day: bool = False) -> datetime:
    """An ISO 8601 date or time; a time without zone is UTC. A bare date is its midnight UTC,
    or with `end_of_day` the next midnight (so `--until 2026-11-30` includes the 30th)."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise WorkbenchError(
            f"{option} {text!r} is not a date or time: expected ISO 8601, like 2026-11-02 or "
            "2026-11-02T14:30:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if end_of_day and _DATE_ONLY.match(value):
        parsed = datetime.combine(parsed.date() + timedelta(days=1), time(), tzinfo=UTC)
    return parsed.astimezone(UTC)


def _cell(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _conditions(session: Session, flt: AuditFilter) -> list[Any]:
    conditions: list[Any] = []
    if flt.project is not None:
        conditions.append(AuditEvent.project_id == get_project(session, flt.project).id)
    if flt.since is not None:
        conditions.append(AuditEvent.at >= _utc(flt.since))
    if flt.until is not None:
        conditions.append(AuditEvent.at < _utc(flt.until))
    if flt.action_prefix:
        conditions.append(AuditEvent.action.startswith(flt.action_prefix, autoescape=True))
    return conditions


def audit_rows(
    session: Session, flt: AuditFilter, *, chunk_rows: int = CHUNK_ROWS
) -> Iterator[list[str]]:
    """The CSV rows of the matching events, oldest id first, read `chunk_rows` at a time.

    Keyset paging on the id (`id > last`, not OFFSET) keeps each chunk one index range scan,
    on SQLite and Postgres alike, and memory bounded by the chunk. The last id is fixed before
    the first chunk, so events written during the export are left for the next one.
    """
    conditions = _conditions(session, flt)
    last_id = session.scalar(select(func.max(AuditEvent.id)).where(*conditions))
    if last_id is None:
        return
    names = dict(session.execute(select(Project.id, Project.name)).all())
    after = 0
    while True:
        batch = session.execute(
            select(
                AuditEvent.id,
                AuditEvent.at,
                AuditEvent.actor,
                AuditEvent.action,
                AuditEvent.project_id,
                AuditEvent.entity_type,
                AuditEvent.entity_id,
                AuditEvent.details,
            )
            .where(*conditions, AuditEvent.id > after, AuditEvent.id <= last_id)
            .order_by(AuditEvent.id)
            .limit(chunk_rows)
        ).all()
        if not batch:
            return
        for event_id, at, actor, action, project_id, entity_type, entity_id, details in batch:
            yield [
                str(event_id),
                _utc(at).isoformat(),
                _cell(actor),
                _cell(action),
                _cell(names.get(project_id) if project_id is not None else None),
                _cell(entity_type),
                _cell(entity_id),
                json.dumps(details or {}, ensure_ascii=False, sort_keys=True, default=str),
            ]
        after = batch[-1][0]


def export_audit_csv(
    db: Database,
    out: Path,
    actor: Actor,
    flt: AuditFilter | None = None,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> AuditExport:
    """Write the matching audit events to `out` (CSV, UTF-8, a header row), atomically.

    The file appears complete or not at all: rows go to a temporary file beside `out`, which
    is renamed over it only after the last row is written and synced. The export itself is
    recorded in the audit trail (who exported what), after it succeeded.
    """
    require_role(actor, Role.lead, Role.admin, action="export the audit trail")
    flt = flt or AuditFilter()
    with db.sessions() as s:
        if flt.project is None:
            # Every project's events and those of no project (accounts, logins): admins only.
            require_role(
                actor, Role.admin, action="export the audit trail of every project (name one)"
            )
        else:
            require_member(s, actor, get_project(s, flt.project))
    if flt.since is not None and flt.until is not None and _utc(flt.since) >= _utc(flt.until):
        raise WorkbenchError(
            f"the time window is empty: since {_utc(flt.since).isoformat()} is not before "
            f"until {_utc(flt.until).isoformat()}"
        )
    out = Path(out)
    if out.is_dir():
        raise WorkbenchError(f"{out}: is a folder, expected a file name like audit.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    rows = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh, db.sessions() as s:
            writer = csv.writer(fh)
            writer.writerow(AUDIT_COLUMNS)
            for row in audit_rows(s, flt, chunk_rows=chunk_rows):
                writer.writerow(row)
                rows += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    result = AuditExport(
        path=str(out),
        rows=rows,
        columns=AUDIT_COLUMNS,
        project=flt.project,
        since=_utc(flt.since).isoformat() if flt.since else None,
        until=_utc(flt.until).isoformat() if flt.until else None,
        action_prefix=flt.action_prefix,
    )
    with db.sessions.begin() as s:
        project_id = get_project(s, flt.project).id if flt.project else None
        record_event(
            s,
            actor,
            "audit.exported",
            project_id=project_id,
            entity_type="audit_export",
            entity_id=out.name,
            details={k: v for k, v in result.as_dict().items() if k not in ("path", "columns")},
        )
    return result
