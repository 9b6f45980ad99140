"""Read record files (JSONL, CSV, Parquet) row by row, locating every bad row by its line.

Ingest manifests and label files share this reader, so both report problems the same way:
`file:line`, the record's external_id when known, the field, and a reason.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from workbench.errors import Problem, WorkbenchError

Format = Literal["jsonl", "csv", "parquet"]
_EXTENSIONS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}

# CSV fields may hold whole rationales and episode descriptions.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True)
class ReadingStopped(Problem):
    """A problem after which the rest of the file could not be read (a broken CSV quote).

    Callers must not treat the rows after it as absent-but-fine: they were never seen.
    """


@dataclass(frozen=True)
class Record:
    """One row. `line` is the 1-based line where it starts (the row number for Parquet)."""

    line: int
    data: dict[str, Any]
    fmt: Format


def detect_format(path: Path) -> Format:
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(_EXTENSIONS))
        raise WorkbenchError(f"{path}: unsupported file type {path.suffix!r} (expected {known})")
    return fmt


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise WorkbenchError(f"{path}: no such file")
    if path.is_dir():
        raise WorkbenchError(f"{path}: is a folder, expected a file")
    if not os.access(path, os.R_OK):
        raise WorkbenchError(f"{path}: cannot be read (permission denied)")


def iter_records(path: Path, fmt: Format | None = None) -> Iterator[Record | Problem]:
    """Yield each row as a Record, or a Problem for a row that cannot be parsed at all."""
    _check_readable(path)
    fmt = fmt or detect_format(path)
    name = str(path)
    if fmt == "jsonl":
        yield from _iter_jsonl(path, name)
    elif fmt == "csv":
        yield from _iter_csv(path, name)
    else:
        yield from _iter_parquet(path, name)


def _iter_jsonl(path: Path, name: str) -> Iterator[Record | Problem]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Problem(
                    file=name,
                    line=lineno,
                    reason=f"not valid UTF-8 ({exc.reason} at byte {exc.start} of the line)",
                )
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Problem(
                    file=name, line=lineno, reason=f"malformed JSON: {exc.msg} (column {exc.colno})"
                )
                continue
            if not isinstance(obj, dict):
                yield Problem(
                    file=name,
                    line=lineno,
                    reason=f"expected a JSON object, found {type(obj).__name__}",
                )
                continue
            yield Record(line=lineno, data=obj, fmt="jsonl")


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _iter_csv(path: Path, name: str) -> Iterator[Record | Problem]:
    # surrogateescape keeps going past bad bytes, so each bad row is reported by its own line.
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        text = fh.read()
    if text.startswith("\ufeff"):
        text = text[1:]
    stream = io.StringIO(text, newline="")
    reader = csv.reader(stream, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise WorkbenchError(f"{name}: empty CSV file (expected a header row)") from None
    except csv.Error as exc:
        raise WorkbenchError(f"{name}:1: malformed CSV header: {exc}") from None
    header = [h.strip() for h in header]
    if any(_has_surrogates(h) for h in header):
        raise WorkbenchError(f"{name}:1: the header is not valid UTF-8")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise WorkbenchError(f"{name}:1: repeated columns {dup}")
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # csv.reader cannot resynchronise reliably after a broken quote; stop here.
            yield ReadingStopped(
                file=name,
                line=start,
                reason=f"malformed CSV: {exc}; the rest of the file could not be read",
            )
            return
        line = start
        start = reader.line_num + 1
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            yield Problem(
                file=name,
                line=line,
                reason=f"malformed CSV: {len(row)} fields, the header has {len(header)}",
            )
            continue
        bad = [h for h, v in zip(header, row, strict=True) if _has_surrogates(v)]
        if bad:
            yield Problem(file=name, line=line, field=bad[0], reason="not valid UTF-8")
            continue
        yield Record(line=line, data=dict(zip(header, row, strict=True)), fmt="csv")


def _iter_parquet(path: Path, name: str) -> Iterator[Record | Problem]:
    # Deferred: pyarrow takes ~0.3 s to load, and only Parquet manifests need it.
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise WorkbenchError(f"{name}: not a readable Parquet file: {exc}") from None
    row = 0
    for batch in pf.iter_batches(batch_size=10_000):
        for obj in batch.to_pylist():
            row += 1
            yield Record(line=row, data=obj, fmt="parquet")


def write_rejects(path: Path, problems: Iterable[Problem]) -> int:
    """Write rejected rows as JSON lines `{line, external_id, field, reason}`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for p in problems:
                fh.write(
                    json.dumps(
                        {
                            "line": p.line,
                            "external_id": p.external_id,
                            "field": p.field,
                            "reason": p.reason,
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                )
                n += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
