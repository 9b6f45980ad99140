"""Labels out to files: the one record shape of a label, written as JSONL, CSV or Parquet.

Export writes every field, and importing an export (labels/import_.py) gives back the same labels
byte for byte. A CSV is opened in spreadsheets, so its cells are guarded against running as
formulas (`guard_formula`), a guard the import undoes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased, object_session

from workbench.db.models import Item, Label, PolicyVersion, Project, User
from workbench.services.ingest.tabular import Format
from workbench.services.labels.current import is_superseded
from workbench.services.labels.current import superseded as superseded_clause
from workbench.services.labels.validate import SPAN_KEYS

# Export order of the columns; an import accepts exactly these (only the first three required).
EXPORT_COLUMNS: tuple[str, ...] = (
    "external_id",
    "reviewer",
    "decision",
    "policies",
    "severity",
    "rationale",
    "spans",
    "confidence",
    "time_spent_ms",
    "policy_version",
    "source",
    "created_at",
    "idempotency_key",
    "supersedes",
    "superseded",
)


def _record(
    label: Any,  # a Label, or a row with the same column names
    *,
    external_id: str,
    reviewer: str,
    policy_version: int,
    supersedes: str | None,
    superseded: bool,
) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "reviewer": reviewer,
        "decision": label.decision.value,
        "policies": list(label.policies or []),
        "severity": label.severity,
        "rationale": label.rationale if label.rationale != "" else None,
        # One key order on both backends (Postgres JSONB reorders object keys).
        "spans": [{k: s[k] for k in SPAN_KEYS if k in s} for s in label.spans or []],
        "confidence": label.confidence,
        "time_spent_ms": label.time_spent_ms,
        "policy_version": policy_version,
        "source": label.source.value,
        "created_at": label.created_at,
        "idempotency_key": label.idempotency_key,
        "supersedes": supersedes,
        "superseded": superseded,
    }


def label_as_record(label: Label, *, superseded: bool | None = None) -> dict[str, Any]:
    """A label as one export record (created_at stays a datetime; writers format it)."""
    if superseded is None:
        session = object_session(label)
        superseded = session is not None and is_superseded(session, label)
    return _record(
        label,
        external_id=label.item.external_id,
        reviewer=label.reviewer.name,
        policy_version=label.policy_version.version,
        supersedes=label.supersedes.idempotency_key if label.supersedes else None,
        superseded=superseded,
    )


def iter_label_records(session: Session, project: Project) -> Iterator[dict[str, Any]]:
    """Every label of the project as a record, by created_at then id, without a query per row."""
    older = aliased(Label)
    # Columns rather than Label entities: export touches every label once, read-only.
    columns = (
        Label.decision,
        Label.policies,
        Label.severity,
        Label.rationale,
        Label.spans,
        Label.confidence,
        Label.time_spent_ms,
        Label.source,
        Label.created_at,
        Label.idempotency_key,
    )
    stmt = (
        select(
            *columns,
            Item.external_id,
            User.name,
            PolicyVersion.version,
            older.idempotency_key.label("supersedes_key"),
            superseded_clause().label("superseded"),
        )
        .join(Item, Item.id == Label.item_id)
        .join(User, User.id == Label.reviewer_id)
        .join(PolicyVersion, PolicyVersion.id == Label.policy_version_id)
        .outerjoin(older, older.id == Label.supersedes_id)
        .where(Label.project_id == project.id)
        .order_by(Label.created_at, Label.id)
        .execution_options(yield_per=1000)
    )
    for row in session.execute(stmt):
        external_id, reviewer, version, supersedes, superseded = row[len(columns) :]
        yield _record(
            row,
            external_id=external_id,
            reviewer=reviewer,
            policy_version=version,
            supersedes=supersedes,
            superseded=bool(superseded),
        )


# --------------------------------------------------------------------------------------------
# Export


def iso_time(value: datetime) -> str:
    return value.isoformat()


# A cell starting with one of these runs as a formula in Excel, LibreOffice or Google Sheets
# (OWASP, "CSV Injection"): `=HYPERLINK(...)` in a rationale would be a link an auditor clicks.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def guard_formula(cell: str) -> str:
    """`cell` as a spreadsheet shows it as text: a `'` before a formula's first character.

    Also before a cell that already starts with quotes and then such a character, so that
    `unguard_formula` can take exactly one quote off every guarded cell and nothing else:
    `=1` -> `'=1`, `'=1` -> `''=1`, `'plain` stays.
    """
    return "'" + cell if cell.lstrip("'").startswith(FORMULA_START) else cell


def unguard_formula(cell: str) -> str:
    """The cell `guard_formula` was given (a CSV import undoes the export's guard)."""
    if cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_START):
        return cell[1:]
    return cell


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name == "policies":
        return ";".join(value)
    if name == "spans":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if name == "created_at":
        return iso_time(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    return str(value)


def _json_value(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "created_at": iso_time(record["created_at"])}


def _parquet_schema() -> Any:
    # pyarrow is imported only for Parquet: it takes about half a second, and CSV and JSONL
    # exports (and every importer of this module) need none of it.
    import pyarrow as pa

    span = pa.struct(
        [
            ("start", pa.int64()),
            ("end", pa.int64()),
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
        ]
    )
    return pa.schema(
        [
            ("external_id", pa.string()),
            ("reviewer", pa.string()),
            ("decision", pa.string()),
            ("policies", pa.list_(pa.string())),
            ("severity", pa.int64()),
            ("rationale", pa.string()),
            ("spans", pa.list_(span)),
            ("confidence", pa.float64()),
            ("time_spent_ms", pa.int64()),
            ("policy_version", pa.int64()),
            ("source", pa.string()),
            ("created_at", pa.timestamp("us", tz="UTC")),
            ("idempotency_key", pa.string()),
            ("supersedes", pa.string()),
            ("superseded", pa.bool_()),
        ]
    )


def write_label_records(records: Iterable[dict[str, Any]], fmt: Format, sink: BinaryIO) -> int:
    """Write records to a binary stream in `fmt`; returns how many."""
    n = 0
    if fmt == "jsonl":
        for rec in records:
            line = json.dumps(_json_value(rec), ensure_ascii=False) + "\n"
            sink.write(line.encode("utf-8"))
            n += 1
    elif fmt == "csv":
        # newline="": the csv module writes \r\n itself and quotes fields that hold \r or \n,
        # so rationales with any line ending come back unchanged.
        text = io.TextIOWrapper(sink, encoding="utf-8", newline="", write_through=True)
        try:
            writer = csv.writer(text)
            writer.writerow(EXPORT_COLUMNS)
            for rec in records:
                writer.writerow([guard_formula(_csv_cell(c, rec[c])) for c in EXPORT_COLUMNS])
                n += 1
            text.flush()
        finally:
            text.detach()  # leave the caller's stream open
    else:
        import pyarrow as pa  # deferred: see _parquet_schema
        import pyarrow.parquet as pq

        schema = _parquet_schema()
        with pq.ParquetWriter(sink, schema) as writer:
            batch: list[dict[str, Any]] = []

            def flush() -> None:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch.clear()

            for rec in records:
                batch.append(rec)
                n += 1
                if len(batch) >= 10_000:
                    flush()
            if batch or n == 0:
                flush()
    return n


def export_labels(session: Session, project: Project, fmt: Format, sink: BinaryIO) -> int:
    """Write every label of the project, with every field, to `sink`; returns the count."""
    return write_label_records(iter_label_records(session, project), fmt, sink)


def export_labels_to_file(session: Session, project: Project, fmt: Format, path: Path) -> int:
    """Like `export_labels`, written atomically: readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            n = export_labels(session, project, fmt, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
