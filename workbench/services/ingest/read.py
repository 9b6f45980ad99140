"""Read a manifest (JSONL, CSV, Parquet) or a folder of media into checked, typed item rows.

Every row is checked (fields, paths, media decoded) and every problem is collected with where it
is (file, line, field); nothing here touches the database.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from workbench.config import IngestLimits
from workbench.db.models import Modality
from workbench.errors import Problem, WorkbenchError
from workbench.progress import ProgressFactory, no_progress
from workbench.services.ingest.media import InvalidMedia, MediaInfo, probe_media, sniff_file
from workbench.services.ingest.media_store import store_path_for
from workbench.services.ingest.tabular import ReadingStopped, Record, detect_format, iter_records

KNOWN_FIELDS = ("external_id", "text", "image", "audio", "video", "language", "metadata")
MEDIA_FIELDS: dict[str, Modality] = {
    "image": Modality.image,
    "audio": Modality.audio,
    "video": Modality.video,
}
_MODALITY_ORDER = (Modality.text, Modality.image, Modality.audio, Modality.video)
# Column sizes of the items and media_assets tables.
_MAX_EXTERNAL_ID = 512
_MAX_LANGUAGE = 35
MAX_NAME = 1024
# BCP 47-shaped (`en`, `pt-BR`, `zh-Hant-TW`); loose on purpose, strict enough to catch "English".
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


@dataclass(frozen=True)
class RowMedia:
    """One media file of a row, probed and proven to decode."""

    field: str
    info: MediaInfo
    source: Path  # resolved path of the checked file
    original_name: str  # as the manifest wrote it, or the path inside the folder

    @property
    def store_path(self) -> str:
        return store_path_for(self.info.sha256, self.info.extension)


@dataclass(frozen=True)
class ItemRow:
    """One good row: an item's content as it will be written."""

    line: int | None  # None for a file of a folder
    file: str
    external_id: str
    text: str | None
    language: str | None
    meta: dict[str, Any]
    media: list[RowMedia]

    @property
    def modalities(self) -> list[str]:
        present = {m.info.modality for m in self.media}
        if self.text is not None:
            present.add(Modality.text)
        return [m.value for m in _MODALITY_ORDER if m in present]


@dataclass
class ReadResult:
    """The good rows of a source and a located problem for each bad one."""

    source_format: str  # jsonl, csv, parquet or folder
    rows: list[ItemRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    n_rows: int = 0
    hidden_skipped: int = 0
    links_not_followed: int = 0
    # A CSV that cannot be parsed past some line: later rows are unknown, so never "skippable".
    unreadable_from: Problem | None = None


def read_source(
    path: Path, limits: IngestLimits, progress: ProgressFactory = no_progress
) -> ReadResult:
    """Read and check every row of the manifest or folder at `path`.

    Raises WorkbenchError when there is nothing to read (no such path, no rows, a manifest that
    cannot be opened); a bad row is a problem in the result, never an exception.
    """
    if not path.exists() and not path.is_symlink():
        raise WorkbenchError(f"{path}: no such file or folder")
    checker = _Checker(limits)
    if path.is_dir():
        result = _read_folder(path, checker, progress)
    else:
        result = _read_manifest(path, checker, progress)
    if result.n_rows == 0:
        what = "files (hidden ones are skipped)" if result.source_format == "folder" else "rows"
        raise WorkbenchError(f"{path}: nothing to ingest: no {what}")
    return result


class _Checker:
    """Checks rows one by one; shares the media probe cache across rows."""

    def __init__(self, limits: IngestLimits) -> None:
        self.limits = limits
        self._probed: dict[tuple[Path, Modality | None], MediaInfo | InvalidMedia] = {}

    def probe(self, path: Path, expect: Modality | None) -> MediaInfo:
        key = (path, expect)
        if key not in self._probed:
            try:
                self._probed[key] = probe_media(path, self.limits, expect)
            except InvalidMedia as exc:
                self._probed[key] = exc
        found = self._probed[key]
        if isinstance(found, InvalidMedia):
            raise found
        return found

    def check_text(self, value: str) -> str | None:
        """The reason `value` cannot be stored as an item's text, or None."""
        if _has_surrogates(value):
            return "not valid UTF-8 (it holds a lone surrogate such as \\udc80)"
        if "\x00" in value:
            return "contains a NUL character (\\u0000), which Postgres cannot store"
        size = len(value.encode("utf-8"))
        if size > self.limits.max_text_bytes:
            return (
                f"text is {size} bytes (UTF-8), over the limit of {self.limits.max_text_bytes} "
                "(WORKBENCH_INGEST_MAX_TEXT_BYTES)"
            )
        return None


def _has_surrogates(value: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in value)


def _absent(value: Any, fmt: str) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):  # pandas writes missing cells as NaN
        return True
    return fmt == "csv" and isinstance(value, str) and value == ""


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


# --- manifests ----------------------------------------------------------------------------------


def _read_manifest(path: Path, checker: _Checker, progress: ProgressFactory) -> ReadResult:
    fmt = detect_format(path)
    name = str(path)
    base = path.resolve().parent
    result = ReadResult(source_format=fmt)
    first_line: dict[str, int] = {}
    bar = progress(total=None, desc="ingest: checking rows")
    try:
        for rec in iter_records(path, fmt):
            result.n_rows += 1
            bar.update(1)
            if isinstance(rec, Problem):
                result.problems.append(rec)
                if _stops_csv_reader(rec):
                    result.unreadable_from = rec
                continue
            row, problems = _check_record(checker, rec, name, base)
            ext_id = rec.data.get("external_id")
            if isinstance(ext_id, str) and ext_id:
                if ext_id in first_line:
                    problems.append(
                        Problem(
                            reason=f"external_id repeats line {first_line[ext_id]}",
                            line=rec.line,
                            external_id=ext_id,
                            field="external_id",
                            file=name,
                        )
                    )
                    row = None
                else:
                    first_line[ext_id] = rec.line
            result.problems.extend(problems)
            if row is not None:
                result.rows.append(row)
    finally:
        bar.close()
    return result


def _stops_csv_reader(problem: Problem) -> bool:
    # tabular's CSV reader stops at a broken quote (it cannot resynchronise), so rows after it
    # were never read; a row-width mismatch does not stop it.
    return isinstance(problem, ReadingStopped)


def _check_record(
    checker: _Checker, rec: Record, name: str, base: Path
) -> tuple[ItemRow | None, list[Problem]]:
    data = rec.data
    problems: list[Problem] = []
    raw_id = data.get("external_id")
    ext_id = raw_id if isinstance(raw_id, str) and raw_id else None

    def bad(reason: str, field_name: str | None = None) -> None:
        problems.append(
            Problem(reason=reason, line=rec.line, external_id=ext_id, field=field_name, file=name)
        )

    # external_id
    if _absent(raw_id, rec.fmt) or raw_id == "":
        bad("missing external_id (a non-empty string is required)", "external_id")
    elif not isinstance(raw_id, str):
        bad(f"external_id must be a string, found {_type_name(raw_id)} {raw_id!r}", "external_id")
    elif _has_surrogates(raw_id) or "\x00" in raw_id:
        ext_id = None
        bad("external_id is not valid UTF-8 text or contains NUL", "external_id")
    elif len(raw_id) > _MAX_EXTERNAL_ID:
        bad(f"external_id is {len(raw_id)} characters, over {_MAX_EXTERNAL_ID}", "external_id")

    for key in data:
        if key not in KNOWN_FIELDS:
            hint = difflib.get_close_matches(str(key), KNOWN_FIELDS, n=1)
            also = f"; did you mean {hint[0]!r}?" if hint else ""
            bad(f"unknown field (known: {', '.join(KNOWN_FIELDS)}){also}", str(key))

    # text
    text: str | None = None
    raw_text = data.get("text")
    content_given = False
    if not _absent(raw_text, rec.fmt):
        content_given = True
        if not isinstance(raw_text, str):
            bad(f"text must be a string, found {_type_name(raw_text)}", "text")
        elif reason := checker.check_text(raw_text):
            bad(reason, "text")
        elif raw_text:
            text = raw_text
        else:
            content_given = False  # "" is no text

    # language
    language: str | None = None
    raw_lang = data.get("language")
    if not _absent(raw_lang, rec.fmt):
        if not isinstance(raw_lang, str):
            bad(f"language must be a string, found {_type_name(raw_lang)}", "language")
        elif len(raw_lang) > _MAX_LANGUAGE or not _LANGUAGE.match(raw_lang):
            bad(
                f"language {raw_lang[:40]!r} is not a language tag such as 'en' or 'pt-BR'",
                "language",
            )
        else:
            language = raw_lang

    # metadata
    meta: dict[str, Any] = {}
    raw_meta = data.get("metadata")
    if not _absent(raw_meta, rec.fmt):
        parsed, reason = _parse_metadata(raw_meta, rec.fmt, checker.limits)
        if reason:
            bad(reason, "metadata")
        else:
            meta = parsed

    # media
    media: list[RowMedia] = []
    for fname, modality in MEDIA_FIELDS.items():
        value = data.get(fname)
        if _absent(value, rec.fmt):
            continue
        content_given = True
        resolved, reason = _resolve_inside(base, value)
        if reason:
            bad(reason, fname)
            continue
        assert resolved is not None
        try:
            info = checker.probe(resolved, modality)
        except InvalidMedia as exc:
            bad(f"{value}: {exc.reason}", fname)
            continue
        media.append(RowMedia(fname, info, resolved, str(value)))

    if not content_given:
        bad("no content: the item needs text, image, audio or video")
    if problems:
        return None, problems
    assert ext_id is not None
    return ItemRow(rec.line, name, ext_id, text, language, meta, media), []


def _parse_metadata(raw: Any, fmt: str, limits: IngestLimits) -> tuple[dict[str, Any], str | None]:
    value = raw
    # CSV cells are text, and Parquet writers often store JSON as a string column.
    if isinstance(raw, str) and fmt in ("csv", "parquet"):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            return {}, f"metadata is not valid JSON: {exc.msg} (column {exc.colno})"
    if not isinstance(value, dict):
        return {}, f"metadata must be a JSON object, found {_type_name(value)}"
    try:
        dumped = json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=True)
        size = len(dumped.encode("utf-8"))
    except (TypeError, ValueError) as exc:
        return {}, f"metadata cannot be stored as JSON: {exc}"
    except UnicodeEncodeError:
        return {}, "metadata is not valid UTF-8 (it holds a lone surrogate)"
    if "\\u0000" in dumped:
        return {}, "metadata contains a NUL character (\\u0000), which Postgres cannot store"
    if size > limits.max_metadata_bytes:
        return {}, (
            f"metadata is {size} bytes of JSON, over the limit of {limits.max_metadata_bytes} "
            "(WORKBENCH_INGEST_MAX_METADATA_BYTES)"
        )
    # Round-trip so what is hashed is exactly what the database gives back.
    return json.loads(dumped), None


def _resolve_inside(base: Path, value: Any) -> tuple[Path | None, str | None]:
    """Resolve a manifest path against its folder, refusing anything that leaves the folder."""
    if not isinstance(value, str):
        return None, f"must be a path (a string), found {_type_name(value)}"
    if not value.strip():
        return None, "empty path"
    if "\x00" in value or _has_surrogates(value):
        return None, "the path holds a NUL or an invalid character"
    if len(value) > MAX_NAME:
        return None, f"path is {len(value)} characters, over {MAX_NAME}"
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return None, f"{value}: absolute paths are not allowed (give it relative to the manifest)"
    if ".." in posix.parts or ".." in windows.parts:
        return None, f"{value}: '..' is not allowed: paths must stay inside the manifest's folder"
    full = base / posix
    resolved = full.resolve()
    if not resolved.is_relative_to(base):
        return None, f"{value}: resolves outside the manifest's folder (a symlink to {resolved})"
    if not resolved.exists():
        if full.is_symlink():
            return None, f"{value}: broken symlink (to {os.readlink(full)})"
        return None, f"{value}: no such file"
    if not resolved.is_file():
        return None, f"{value}: not a regular file"
    return resolved, None


# --- folders ------------------------------------------------------------------------------------


def _read_folder(root: Path, checker: _Checker, progress: ProgressFactory) -> ReadResult:
    result = ReadResult(source_format="folder")
    root_resolved = root.resolve()
    files = list(_walk_folder(root, result))
    bar = progress(total=len(files), desc="ingest: checking files")
    try:
        for rel, full in files:
            result.n_rows += 1
            bar.update(1)
            row, reason = _check_folder_file(checker, root_resolved, rel, full)
            if reason is not None:
                result.problems.append(Problem(reason=reason, external_id=rel, file=rel))
            elif row is not None:
                result.rows.append(row)
    finally:
        bar.close()
    return result


def _walk_folder(root: Path, result: ReadResult) -> Iterator[tuple[str, Path]]:
    """(path relative to root, full path) of every file, hidden ones skipped and counted."""
    root_resolved = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            full = here / d
            rel = full.relative_to(root).as_posix()
            if d.startswith("."):
                result.hidden_skipped += 1
            elif full.is_symlink():
                if full.resolve().is_relative_to(root_resolved):
                    result.links_not_followed += 1  # its files are reached by their real path
                else:
                    result.n_rows += 1
                    result.problems.append(
                        Problem(
                            reason=f"symlink points outside the folder (to {full.resolve()})",
                            external_id=rel,
                            file=rel,
                        )
                    )
            else:
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            if f.startswith("."):
                result.hidden_skipped += 1
                continue
            full = here / f
            yield full.relative_to(root).as_posix(), full


def _check_folder_file(
    checker: _Checker, root: Path, rel: str, full: Path
) -> tuple[ItemRow | None, str | None]:
    if len(rel) > _MAX_EXTERNAL_ID:
        return None, f"the path is {len(rel)} characters, over the external_id limit of 512"
    if _has_surrogates(rel):
        return None, "the file name is not valid UTF-8"
    resolved = full.resolve()
    if full.is_symlink():
        if not resolved.is_relative_to(root):
            return None, f"symlink points outside the folder (to {resolved})"
        if not resolved.exists():
            return None, f"broken symlink (to {os.readlink(full)})"
    if not resolved.is_file():
        return None, "not a regular file"
    try:
        sniffed = sniff_file(resolved)
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    if sniffed.media_type is None and full.suffix.lower() == ".txt":
        text, reason = _read_text_file(checker, resolved)
        if reason is not None:
            return None, reason
        return ItemRow(None, rel, rel, text, None, {}, []), None
    try:
        info = checker.probe(resolved, None)
    except InvalidMedia as exc:
        return None, exc.reason
    media = RowMedia(info.modality.value, info, resolved, rel)
    return ItemRow(None, rel, rel, None, None, {}, [media]), None


def _read_text_file(checker: _Checker, path: Path) -> tuple[str | None, str | None]:
    limit = checker.limits.max_text_bytes
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        return None, (
            f"text file is over the limit of {limit} bytes (WORKBENCH_INGEST_MAX_TEXT_BYTES)"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8 text ({exc.reason} at byte {exc.start})"
    if reason := checker.check_text(text):
        return None, reason
    if not text.strip():
        return None, "no content: the text file is empty"
    return text, None
