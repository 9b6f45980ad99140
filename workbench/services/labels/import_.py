"""Labels in from files: parse each row of a JSONL, CSV or Parquet label file, check it by the
rules every label follows (labels/validate.py), and write the file in one transaction.

Every row carries (or is given) an idempotency key, so re-importing a file adds nothing. Keys
are unique per project; a key in the workbench's own formats (`lease:7`: see
`record.RESERVED_KEY_PREFIXES`) names a row of the installation that wrote it, so unless it is
this project's own label coming back, it is stored under the prefix `import:` (`import:lease:7`).
CSV cells the export guarded against spreadsheet formulas (`'=...`) lose that guard here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from workbench.db.models import Label, LabelSource, Project, Role, User
from workbench.db.types import utcnow
from workbench.errors import Problem, WorkbenchError
from workbench.services.audit import Actor, record_event
from workbench.services.ingest.tabular import (
    Format,
    Record,
    detect_format,
    iter_records,
    write_rejects,
)
from workbench.services.labels.current import superseded
from workbench.services.labels.export import EXPORT_COLUMNS, iso_time, unguard_formula
from workbench.services.labels.record import RESERVED_KEY_PREFIXES, label_values
from workbench.services.labels.validate import (
    IN_LIST_SIZE,
    ItemFacts,
    LabelInput,
    PolicyRules,
    check_label,
    item_facts_by_external_id,
    text_problem,
    validation_problems,
)
from workbench.services.membership import require_project_role
from workbench.services.taxonomy import list_policy_versions
from workbench.services.users import validate_user_name

REQUIRED_COLUMNS = ("external_id", "reviewer", "decision")
IMPORTED_KEY_PREFIX = "import:"  # before a reserved key from elsewhere; also of import_key
MAX_KEY = 200  # labels.idempotency_key


def is_reserved_key(key: str) -> bool:
    return key.startswith(RESERVED_KEY_PREFIXES)


def namespaced_key(key: str) -> str:
    """Where a reserved key from another installation (or project) is stored."""
    return IMPORTED_KEY_PREFIX + key


@dataclass
class LabelImportResult:
    """What an import did: rows read, labels added, rows already present, rows rejected."""

    project: str
    file: str
    format: str
    rows: int = 0
    imported: int = 0
    unchanged: int = 0
    rejected: int = 0
    users_created: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rejects_file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "file": self.file,
            "format": self.format,
            "rows": self.rows,
            "imported": self.imported,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "users_created": self.users_created,
            "rejects_file": self.rejects_file,
        }


@dataclass
class LabelRow:
    """One checked row of a label file."""

    line: int
    external_id: str
    reviewer: str
    source: LabelSource
    data: LabelInput


class _RowError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems


def import_key(project: str, external_id: str, reviewer: str, data: LabelInput) -> str:
    """The idempotency key of an imported row that brings none: the same row, the same key."""
    canonical = json.dumps(
        [
            project,
            external_id,
            reviewer,
            data.decision.value,
            list(data.policies),
            data.severity,
            data.rationale,
            list(data.spans),
            None if data.created_at is None else iso_time(data.created_at),
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return IMPORTED_KEY_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value == "")


def _cell_int(name: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise _RowError(
                [Problem(field=name, reason=f"expected an integer, found {value!r}")]
            ) from None
    return value


def _cell_float(name: str, value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise _RowError(
                [Problem(field=name, reason=f"expected a number, found {value!r}")]
            ) from None
    return value


def _cell_datetime(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _RowError(
                [
                    Problem(
                        field="created_at",
                        reason=f"not an ISO 8601 time: {value!r} "
                        "(expected e.g. 2024-05-01T12:00:00Z)",
                    )
                ]
            ) from None
    if isinstance(value, datetime) and value.tzinfo is None:
        raise _RowError(
            [
                Problem(
                    field="created_at",
                    reason=f"{value.isoformat()} has no time zone (add Z or +02:00)",
                )
            ]
        )
    if not isinstance(value, datetime):
        raise _RowError(
            [Problem(field="created_at", reason=f"expected an ISO 8601 time, found {value!r}")]
        )
    return value


def _cell_text(name: str, value: Any) -> str:
    # Numeric ids are common in JSONL and Parquet; they name the same item as their text.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise _RowError([Problem(field=name, reason=f"required, found {value!r}")])
    if problem := text_problem(value):
        raise _RowError([Problem(field=name, reason=problem)])
    return value


def _parse_row(rec: Record, project: str) -> LabelRow:
    raw = rec.data
    unknown = [k for k in raw if k not in EXPORT_COLUMNS]
    if unknown:
        raise _RowError(
            [
                Problem(
                    field=k,
                    reason=f"unknown column (known: {', '.join(EXPORT_COLUMNS)})",
                )
                for k in unknown
            ]
        )
    missing = [c for c in REQUIRED_COLUMNS if _blank(raw.get(c))]
    if missing:
        raise _RowError(
            [Problem(field=c, reason="required, but missing or empty") for c in missing]
        )
    external_id = _cell_text("external_id", raw["external_id"])
    reviewer = _cell_text("reviewer", raw["reviewer"])
    try:
        validate_user_name(reviewer)
    except WorkbenchError as exc:
        raise _RowError([Problem(field="reviewer", reason=exc.message)]) from None

    data: dict[str, Any] = {"decision": raw["decision"]}
    policies = raw.get("policies")
    if isinstance(policies, str):
        # CSV: "hate;harassment". Blanks around codes are tolerated, empty parts are not codes.
        policies = [c.strip() for c in policies.split(";") if c.strip()]
    data["policies"] = [] if policies is None else policies
    spans = raw.get("spans")
    if isinstance(spans, str):
        if spans.strip():
            try:
                spans = json.loads(spans)
            except json.JSONDecodeError as exc:
                raise _RowError(
                    [Problem(field="spans", reason=f"not JSON: {exc.msg} (column {exc.colno})")]
                ) from None
        else:
            spans = None
    data["spans"] = [] if spans is None else spans
    for name in ("severity", "time_spent_ms", "policy_version"):
        if not _blank(raw.get(name)):
            data[name] = _cell_int(name, raw[name])
    if not _blank(raw.get("confidence")):
        data["confidence"] = _cell_float("confidence", raw["confidence"])
    if "rationale" in raw:
        data["rationale"] = raw["rationale"]
    if not _blank(raw.get("created_at")):
        data["created_at"] = _cell_datetime(raw["created_at"])
    for name in ("idempotency_key", "supersedes"):
        if not _blank(raw.get(name)):
            data[name] = raw[name]

    superseded = raw.get("superseded")
    # Derived from the correction chain, so never taken from the file; but a garbled value
    # hints at a shifted or mislabelled column, so it must at least be a boolean.
    if not _blank(superseded) and not (
        isinstance(superseded, bool)
        or (isinstance(superseded, str) and superseded.strip().lower() in ("true", "false"))
    ):
        raise _RowError(
            [Problem(field="superseded", reason=f"expected true or false, found {superseded!r}")]
        )

    source = LabelSource.import_
    if not _blank(raw.get("source")):
        try:
            source = LabelSource(raw["source"])
        except ValueError:
            allowed = ", ".join(s.value for s in LabelSource)
            raise _RowError(
                [Problem(field="source", reason=f"unknown source {raw['source']!r} ({allowed})")]
            ) from None

    key_given = "idempotency_key" in data
    if not key_given:
        data["idempotency_key"] = "-"  # placeholder until the row is known to be valid
    try:
        label = LabelInput.model_validate(data)
    except ValidationError as exc:
        raise _RowError(validation_problems(exc)) from None
    if not key_given:
        label = label.model_copy(
            update={"idempotency_key": import_key(project, external_id, reviewer, label)}
        )
    return LabelRow(rec.line, external_id, reviewer, source, label)


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), IN_LIST_SIZE):
        yield values[i : i + IN_LIST_SIZE]


@dataclass
class _Known:
    """A label the import can refer to: already in the project, or accepted from the file."""

    item_id: int
    reviewer: str
    created_at: datetime
    label_id: int | None = None  # for labels of the database
    line: int | None = None  # the file line, for rows of the file


def parse_label_file(
    path: Path, project: str, fmt: Format | None = None
) -> tuple[list[LabelRow], list[Problem], int]:
    """Every row of a label file checked on its own (columns, decision, policies' shape): the
    good rows, the located problems of the bad ones, and the number of rows read. Checks against
    the project (items, taxonomy) are the caller's: import and evaluation sets differ there."""
    fmt = fmt or detect_format(path)
    name = str(path)
    rows: list[LabelRow] = []
    problems: list[Problem] = []
    n = 0
    for rec in iter_records(path, fmt):
        n += 1
        if isinstance(rec, Problem):
            problems.append(_located(rec, name, rec.line))
            continue
        if fmt == "csv":
            rec = Record(rec.line, {k: unguard_formula(v) for k, v in rec.data.items()}, fmt)
        try:
            rows.append(_parse_row(rec, project))
        except _RowError as err:
            eid = rec.data.get("external_id")
            eid = str(eid) if isinstance(eid, str | int) and not isinstance(eid, bool) else None
            problems.extend(_located(p, name, rec.line, eid) for p in err.problems)
    return rows, problems, n


def _located(p: Problem, file: str, line: int | None, external_id: str | None = None) -> Problem:
    return Problem(
        reason=p.reason,
        line=p.line if p.line is not None else line,
        external_id=p.external_id if p.external_id is not None else external_id,
        field=p.field,
        file=file,
    )


def import_labels(
    session: Session,
    project: Project,
    path: Path,
    actor: Actor,
    *,
    fmt: Format | None = None,
    skip_invalid: bool = False,
    rejects: Path | None = None,
) -> LabelImportResult:
    """Import a label file in one transaction.

    By default all or nothing: any bad row raises WorkbenchError listing every bad row, and
    nothing is written. With `skip_invalid` the good rows are written and the bad ones reported
    (and written to `rejects` as JSON lines when given). Rows whose idempotency key is already
    stored for the same item and reviewer count as `unchanged`, so re-importing adds nothing.
    """
    require_project_role(session, actor, project, Role.lead, action="import labels")
    fmt = fmt or detect_format(path)
    name = str(path)
    result = LabelImportResult(project=project.name, file=name, format=fmt)
    now = utcnow()  # created_at of rows without one: the same for the whole run

    def located(p: Problem, line: int | None, external_id: str | None = None) -> Problem:
        return _located(p, name, line, external_id)

    rows, problems, result.rows = parse_label_file(path, project.name, fmt)

    # Everything the rows refer to, loaded up front: a handful of queries, not one per row.
    facts = item_facts_by_external_id(session, project, (r.external_id for r in rows))
    versions = {pv.version: PolicyRules.of(pv) for pv in list_policy_versions(session, project)}
    if not versions:
        raise WorkbenchError(f"project {project.name!r} has no policy taxonomy")
    current = max(versions)
    known = _load_known(session, project, rows)

    accepted: list[LabelRow] = []
    taken: set[str] = set()  # keys of labels already corrected (in the database or the file)
    stored = [k for k, v in known.items() if v.label_id is not None]
    taken.update(_superseded_keys(session, project, stored))
    renamed: dict[str, str] = {}  # reserved keys of the file -> where this import stores them
    for row in rows:
        item = facts.get(row.external_id)
        key_problem = _resolve_keys(row, item, known, renamed)
        key = row.data.idempotency_key
        seen = known.get(key)
        if (
            key_problem is None
            and item is not None
            and seen is not None
            and seen.item_id == item.id
            and seen.reviewer == row.reviewer
        ):
            # Already stored (or repeated in this file): nothing to add, and nothing to check
            # again, so an old file still re-imports after the taxonomy moved on.
            result.unchanged += 1
            continue
        row_problems: list[Problem] = [] if key_problem is None else [key_problem]
        if item is None:
            row_problems.append(
                Problem(
                    field="external_id",
                    reason=f"unknown external_id: no such item in project {project.name!r}",
                )
            )
        if seen is not None:
            where = f"line {seen.line}" if seen.line is not None else "the database"
            row_problems.append(
                Problem(
                    field="idempotency_key",
                    reason=f"already used by a different label (in {where})",
                )
            )
        version = current if row.data.policy_version is None else row.data.policy_version
        rules = versions.get(version)
        if rules is None:
            row_problems.append(
                Problem(
                    field="policy_version",
                    reason=f"no policy version {version} in project {project.name!r} "
                    f"(it has {sorted(versions)})",
                )
            )
        if item is not None and rules is not None:
            row_problems.extend(check_label(row.data, item, rules, row.source))
        created_at = row.data.created_at or now
        if row.data.supersedes is not None and item is not None:
            target = known.get(row.data.supersedes)
            if target is None:
                reason: str | None = (
                    "no label with that idempotency key in the project or earlier in the file"
                )
            elif target.item_id != item.id:
                reason = "that label is of another item; a correction must be of the same item"
            elif created_at < target.created_at:
                reason = "a correction cannot be older than the label it corrects (created_at)"
            elif row.data.supersedes in taken:
                reason = "that label is already corrected by another label"
            else:
                reason = None
            if reason:
                row_problems.append(Problem(field="supersedes", reason=reason))
        if row_problems:
            problems.extend(located(p, row.line, row.external_id) for p in row_problems)
            continue
        assert item is not None
        accepted.append(row)
        known[key] = _Known(
            item_id=item.id, reviewer=row.reviewer, created_at=created_at, line=row.line
        )
        if row.data.supersedes is not None:
            taken.add(row.data.supersedes)

    problems.sort(key=lambda p: p.line or 0)
    result.problems = problems
    result.rejected = len({p.line for p in problems})
    if rejects is not None:
        write_rejects(rejects, problems)
        result.rejects_file = str(rejects)
    if problems and not skip_invalid:
        raise WorkbenchError(
            f"{name}: {result.rejected} bad row(s) of {result.rows}; nothing was imported "
            "(fix them, or pass --skip-invalid to import the good rows)",
            problems,
        )

    _write_rows(session, project, accepted, facts, versions, current, known, actor, result, now)
    record_event(
        session,
        actor,
        "labels.imported",
        project_id=project.id,
        entity_type="project",
        entity_id=project.name,
        details={
            "file": name,
            "format": fmt,
            "rows": result.rows,
            "imported": result.imported,
            "unchanged": result.unchanged,
            "rejected": result.rejected,
            "users_created": result.users_created,
            "keys_namespaced": len(renamed),
        },
    )
    return result


def _resolve_keys(
    row: LabelRow, item: ItemFacts | None, known: dict[str, _Known], renamed: dict[str, str]
) -> Problem | None:
    """Give the row the keys it is stored and looked up under: a reserved key stays as it is
    only for this project's own label coming back (same item, reviewer and time: an export
    of this project), and is namespaced otherwise; a `supersedes` follows the row it names.
    Returns the problem of a key that is too long once namespaced."""
    key, target = row.data.idempotency_key, row.data.supersedes
    update: dict[str, str] = {}
    if is_reserved_key(key):
        own = known.get(key)
        if not (
            own is not None
            and own.label_id is not None
            and item is not None
            and own.item_id == item.id
            and own.reviewer == row.reviewer
            and own.created_at == row.data.created_at
        ):
            update["idempotency_key"] = renamed[key] = namespaced_key(key)
    if target is not None and target in renamed:
        update["supersedes"] = renamed[target]
    if update:
        row.data = row.data.model_copy(update=update)
    if len(row.data.idempotency_key) > MAX_KEY:
        return Problem(
            field="idempotency_key",
            reason=f"a key starting with {key.split(':')[0]}: is one of the workbench's own; "
            f"from a file it is stored as {IMPORTED_KEY_PREFIX}{key.split(':')[0]}:..., which "
            f"would be over {MAX_KEY} characters",
        )
    return None


def _load_known(session: Session, project: Project, rows: list[LabelRow]) -> dict[str, _Known]:
    """The project's labels the rows may name, by key: each key as written in the file and,
    for reserved keys, as this import would store it."""
    named = {r.data.idempotency_key for r in rows} | {
        r.data.supersedes for r in rows if r.data.supersedes
    }
    keys = sorted(named | {namespaced_key(k) for k in named if is_reserved_key(k)})
    known: dict[str, _Known] = {}
    for chunk in _chunks(keys):
        stmt = (
            select(Label.idempotency_key, Label.id, Label.item_id, Label.created_at, User.name)
            .join(User, User.id == Label.reviewer_id)
            .where(Label.project_id == project.id, Label.idempotency_key.in_(chunk))
        )
        for key, label_id, item_id, created_at, reviewer in session.execute(stmt):
            known[key] = _Known(
                item_id=item_id, reviewer=reviewer, created_at=created_at, label_id=label_id
            )
    return known


def _superseded_keys(session: Session, project: Project, keys: list[str]) -> set[str]:
    out: set[str] = set()
    for chunk in _chunks(keys):
        stmt = select(Label.idempotency_key).where(
            Label.project_id == project.id, Label.idempotency_key.in_(chunk), superseded()
        )
        out.update(session.scalars(stmt))
    return out


def _write_rows(
    session: Session,
    project: Project,
    rows: list[LabelRow],
    items: dict[str, ItemFacts],
    versions: dict[int, PolicyRules],
    current: int,
    known: dict[str, _Known],
    actor: Actor,
    result: LabelImportResult,
    now: datetime,
) -> None:
    names = sorted({r.reviewer for r in rows})
    users: dict[str, User] = {}
    for chunk in _chunks(names):
        users.update({u.name: u for u in session.scalars(select(User).where(User.name.in_(chunk)))})
    for reviewer in names:
        if reviewer not in users:
            # Known only from this file: a reviewer account without a password (cannot log in).
            user = User(name=reviewer, role=Role.reviewer, password_hash=None)
            session.add(user)
            users[reviewer] = user
            result.users_created.append(reviewer)
    if result.users_created:
        session.flush()
        for reviewer in result.users_created:
            record_event(
                session,
                actor,
                "user.added",
                entity_type="user",
                entity_id=reviewer,
                details={
                    "role": Role.reviewer.value,
                    "can_log_in": False,
                    "reason": f"named in labels imported into {project.name!r}",
                },
            )

    # Core executemany INSERTs in file order (ids follow the file, so an export lists ties the
    # same way). A correction needs the id of the label it corrects, so a batch is sent before
    # a row that refers to a label still waiting in it.
    ids: dict[str, int] = {}
    batch: list[dict[str, Any]] = []
    waiting: set[str] = set()
    for row in rows:
        target = row.data.supersedes
        if target in waiting or len(batch) >= 1000:
            _insert_labels(session, batch, ids)
            waiting.clear()
        version = current if row.data.policy_version is None else row.data.policy_version
        values = label_values(
            project,
            items[row.external_id].id,
            users[row.reviewer].id,
            versions[version].policy_version_id,
            row.data,
            row.source,
            row.data.created_at or now,
        )
        if target is not None:
            values["supersedes_id"] = ids[target] if target in ids else known[target].label_id
        batch.append(values)
        waiting.add(row.data.idempotency_key)
    _insert_labels(session, batch, ids)
    result.imported = len(rows)


def _insert_labels(session: Session, batch: list[dict[str, Any]], ids: dict[str, int]) -> None:
    if not batch:
        return
    stmt = insert(Label).returning(Label.idempotency_key, Label.id)
    try:
        # (Not dict(result): a Result has .keys(), so dict() would read it as a mapping.)
        ids.update({key: label_id for key, label_id in session.execute(stmt, batch)})
    except IntegrityError:
        raise WorkbenchError(
            "another writer stored labels with the same idempotency keys (or corrected the same "
            "labels) while this import ran; nothing was imported, run the import again"
        ) from None
    batch.clear()
