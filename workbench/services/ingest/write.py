"""Ingest content items from a manifest (JSONL, CSV, Parquet) or a folder of media files.

Every row is checked first (fields, paths, media decoded) and every problem is collected; then
one transaction writes the items, the media are staged beside it and published after the commit
(see media_store), and one audit event records the run. By default one bad row means nothing is
written; with `skip_invalid` the good rows are written and the bad ones listed in a rejects file.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from workbench.config import IngestLimits, Settings
from workbench.db.models import Item, MediaAsset, Modality
from workbench.db.types import utcnow
from workbench.errors import Problem, WorkbenchError
from workbench.progress import ProgressFactory, no_progress
from workbench.services.audit import Actor, record_event
from workbench.services.ingest.media import InvalidMedia, MediaInfo, probe_media, sniff_file
from workbench.services.ingest.media_store import (
    RecoveryReport,
    StagingRun,
    recover_staging,
    store_path_for,
)
from workbench.services.ingest.tabular import (
    ReadingStopped,
    Record,
    detect_format,
    iter_records,
    write_rejects,
)
from workbench.services.projects import find_project, get_or_create_project

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
_MAX_NAME = 1024
# BCP 47-shaped (`en`, `pt-BR`, `zh-Hant-TW`); loose on purpose, strict enough to catch "English".
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_QUERY_CHUNK = 500


@dataclass(frozen=True)
class _Media:
    field: str
    info: MediaInfo
    source: Path  # resolved path of the checked file
    original_name: str  # as the manifest wrote it, or the path inside the folder

    @property
    def store_path(self) -> str:
        return store_path_for(self.info.sha256, self.info.extension)


@dataclass
class _Row:
    line: int | None
    file: str
    external_id: str
    text: str | None
    language: str | None
    meta: dict[str, Any]
    media: list[_Media]
    content_hash: str = ""

    @property
    def modalities(self) -> list[str]:
        present = {m.info.modality for m in self.media}
        if self.text is not None:
            present.add(Modality.text)
        return [m.value for m in _MODALITY_ORDER if m in present]


@dataclass(frozen=True)
class IngestReport:
    """The outcome of one `ingest_path` run."""

    project: str
    created_project: bool
    source: str
    source_format: str  # jsonl, csv, parquet or folder
    rows: int
    items_added: int
    items_updated: int
    items_unchanged: int
    exact_duplicates: int  # written items whose content equals an earlier item's
    assets_stored: int  # new files in the media store (a file already there is not copied)
    rejected: int  # bad rows left out (only with skip_invalid)
    hidden_skipped: int  # hidden files and folders a folder ingest passed over
    links_not_followed: int  # symlinked folders inside the folder (their files are reachable)
    rejects_file: str | None
    recovered: RecoveryReport
    problems: list[Problem] = field(default_factory=list)  # one per rejected row

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "created_project": self.created_project,
            "source": self.source,
            "format": self.source_format,
            "rows": self.rows,
            "items_added": self.items_added,
            "items_updated": self.items_updated,
            "items_unchanged": self.items_unchanged,
            "exact_duplicates": self.exact_duplicates,
            "assets_stored": self.assets_stored,
            "rejected": self.rejected,
            "hidden_skipped": self.hidden_skipped,
            "links_not_followed": self.links_not_followed,
            "rejects_file": self.rejects_file,
            "recovered_from_crash": {
                "published": self.recovered.published,
                "deleted": self.recovered.deleted,
            },
            "problems": [p.as_dict() for p in self.problems],
        }


def item_content_hash(
    text: str | None, language: str | None, meta: dict[str, Any], assets: dict[str, str]
) -> str:
    """sha256 over canonical JSON of what makes an item's content: equal hash, same content."""
    payload = {"text": text, "language": language, "metadata": meta, "assets": assets}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- checking rows -----------------------------------------------------------------------------


@dataclass
class _Scan:
    source_format: str
    rows: list[_Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    n_rows: int = 0
    hidden_skipped: int = 0
    links_not_followed: int = 0
    # A CSV that cannot be parsed past some line: later rows are unknown, so never "skippable".
    unreadable_from: Problem | None = None


class _Checker:
    """Checks rows one by one; shares the media probe cache and the seen-ids table."""

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


def _check_record(
    checker: _Checker, rec: Record, name: str, base: Path
) -> tuple[_Row | None, list[Problem]]:
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
    media: list[_Media] = []
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
        media.append(_Media(fname, info, resolved, str(value)))

    if not content_given:
        bad("no content: the item needs text, image, audio or video")
    if problems:
        return None, problems
    assert ext_id is not None
    return _finish_row(rec.line, name, ext_id, text, language, meta, media), []


def _finish_row(
    line: int | None,
    name: str,
    ext_id: str,
    text: str | None,
    language: str | None,
    meta: dict[str, Any],
    media: list[_Media],
) -> _Row:
    row = _Row(line, name, ext_id, text, language, meta, media)
    row.content_hash = item_content_hash(
        text, language, meta, {m.info.modality.value: m.info.sha256 for m in media}
    )
    return row


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
    if len(value) > _MAX_NAME:
        return None, f"path is {len(value)} characters, over {_MAX_NAME}"
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


def _scan_manifest(path: Path, checker: _Checker, progress: ProgressFactory) -> _Scan:
    fmt = detect_format(path)
    name = str(path)
    base = path.resolve().parent
    scan = _Scan(source_format=fmt)
    first_line: dict[str, int] = {}
    bar = progress(total=None, desc="ingest: checking rows")
    try:
        for rec in iter_records(path, fmt):
            scan.n_rows += 1
            bar.update(1)
            if isinstance(rec, Problem):
                scan.problems.append(rec)
                if _stops_csv_reader(rec):
                    scan.unreadable_from = rec
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
            scan.problems.extend(problems)
            if row is not None:
                scan.rows.append(row)
    finally:
        bar.close()
    return scan


def _stops_csv_reader(problem: Problem) -> bool:
    # tabular's CSV reader stops at a broken quote (it cannot resynchronise), so rows after it
    # were never read; a row-width mismatch does not stop it.
    return isinstance(problem, ReadingStopped)


def _walk_folder(root: Path, scan: _Scan) -> Iterator[tuple[str, Path]]:
    """(path relative to root, full path) of every file, hidden ones skipped and counted."""
    root_resolved = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            full = here / d
            rel = full.relative_to(root).as_posix()
            if d.startswith("."):
                scan.hidden_skipped += 1
            elif full.is_symlink():
                if full.resolve().is_relative_to(root_resolved):
                    scan.links_not_followed += 1  # its files are reached by their real path
                else:
                    scan.n_rows += 1
                    scan.problems.append(
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
                scan.hidden_skipped += 1
                continue
            full = here / f
            yield full.relative_to(root).as_posix(), full


def _scan_folder(root: Path, checker: _Checker, progress: ProgressFactory) -> _Scan:
    scan = _Scan(source_format="folder")
    root_resolved = root.resolve()
    files = list(_walk_folder(root, scan))
    bar = progress(total=len(files), desc="ingest: checking files")
    try:
        for rel, full in files:
            scan.n_rows += 1
            bar.update(1)
            row, reason = _check_folder_file(checker, root_resolved, rel, full)
            if reason is not None:
                scan.problems.append(Problem(reason=reason, external_id=rel, file=rel))
            elif row is not None:
                scan.rows.append(row)
    finally:
        bar.close()
    return scan


def _check_folder_file(
    checker: _Checker, root: Path, rel: str, full: Path
) -> tuple[_Row | None, str | None]:
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
        return _finish_row(None, rel, rel, text, None, {}, []), None
    try:
        info = checker.probe(resolved, None)
    except InvalidMedia as exc:
        return None, exc.reason
    media = _Media(info.modality.value, info, resolved, rel)
    return _finish_row(None, rel, rel, None, None, {}, [media]), None


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


# --- planning against the database --------------------------------------------------------------


@dataclass
class _Plan:
    add: list[_Row] = field(default_factory=list)
    update: list[tuple[_Row, int]] = field(default_factory=list)  # (row, existing item id)
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)


def _chunks(values: Sequence[Any], size: int = _QUERY_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _plan(
    session: Session, project_id: int | None, project: str, rows: list[_Row], allow_update: bool
) -> _Plan:
    plan = _Plan()
    existing: dict[str, tuple[int, str]] = {}
    if project_id is not None:
        # One query per 500 ids, not one per row.
        ids = [r.external_id for r in rows]
        for chunk in _chunks(ids):
            for item_id, ext_id, content_hash in session.execute(
                select(Item.id, Item.external_id, Item.content_hash).where(
                    Item.project_id == project_id, Item.external_id.in_(chunk)
                )
            ):
                existing[ext_id] = (item_id, content_hash)
    for row in rows:
        found = existing.get(row.external_id)
        if found is None:
            plan.add.append(row)
        elif found[1] == row.content_hash:
            plan.unchanged += 1
        elif allow_update:
            plan.update.append((row, found[0]))
        else:
            plan.problems.append(
                Problem(
                    reason=(
                        f"already in project {project!r} with different content; "
                        "pass --update to replace it"
                    ),
                    line=row.line,
                    external_id=row.external_id,
                    field="external_id",
                    file=row.file,
                )
            )
    return plan


# --- writing ---------------------------------------------------------------------------------


def _asset(m: _Media) -> MediaAsset:
    return MediaAsset(**_asset_values(m))


def _insert_items(s: Session, project_id: int, rows: list[_Row], source: str) -> list[int]:
    """Insert new items and their assets as bulk INSERTs (RETURNING ids in row order).

    Why not `session.add` per item: building ORM objects and their relationships cost several
    times more than the INSERTs themselves for large manifests.
    """
    ids: list[int] = []
    now = utcnow()
    for chunk in _chunks(rows, 2000):
        values = [
            {
                "project_id": project_id,
                "external_id": r.external_id,
                "text": r.text,
                "language": r.language,
                "meta": r.meta,
                "modalities": r.modalities,
                "content_hash": r.content_hash,
                "source": source,
                "revision": 1,
                "created_at": now,
                "updated_at": now,
            }
            for r in chunk
        ]
        chunk_ids = list(
            s.scalars(insert(Item).returning(Item.id, sort_by_parameter_order=True), values)
        )
        assets = [
            _asset_values(m) | {"item_id": item_id}
            for item_id, r in zip(chunk_ids, chunk, strict=True)
            for m in r.media
        ]
        if assets:
            s.execute(insert(MediaAsset), assets)
        ids.extend(chunk_ids)
    return ids


def _asset_values(m: _Media) -> dict[str, Any]:
    return {
        "modality": m.info.modality,
        "sha256": m.info.sha256,
        "mime_type": m.info.mime_type,
        "size_bytes": m.info.size_bytes,
        "width": m.info.width,
        "height": m.info.height,
        "duration_seconds": m.info.duration_seconds,
        "store_path": m.store_path,
        "original_name": m.original_name,
    }


def _apply_update(item: Item, row: _Row) -> None:
    item.text = row.text
    item.language = row.language
    item.meta = row.meta
    item.modalities = row.modalities
    item.content_hash = row.content_hash
    item.revision = (item.revision or 1) + 1
    item.updated_at = utcnow()
    wanted = {m.info.modality: m for m in row.media}
    # Update in place per modality: a delete and an insert of the same (item, modality) in one
    # flush would meet the unique constraint in the wrong order.
    for asset in list(item.assets):
        new = wanted.pop(asset.modality, None)
        if new is None:
            item.assets.remove(asset)
            continue
        fresh = _asset(new)
        for attr in (
            "sha256",
            "mime_type",
            "size_bytes",
            "width",
            "height",
            "duration_seconds",
            "store_path",
            "original_name",
        ):
            setattr(asset, attr, getattr(fresh, attr))
        asset.perceptual_hash = None  # belongs to the old image
    for m in wanted.values():
        item.assets.append(_asset(m))


def _mark_exact_duplicates(
    session: Session, project_id: int, hashes: Iterable[str], written: set[int]
) -> int:
    """Point every item at the earliest item of the project with its content hash.

    Recomputed for every hash this run touched (new items, and old and new content of updated
    ones), so an update that moves the earliest item out of a group re-roots the group.
    Returns how many written items are duplicates.
    """
    changes: list[dict[str, Any]] = []
    duplicates = 0
    for chunk in _chunks(sorted(set(hashes))):
        groups: dict[str, list[tuple[int, int | None]]] = {}
        for item_id, content_hash, dup in session.execute(
            select(Item.id, Item.content_hash, Item.duplicate_of_id).where(
                Item.project_id == project_id, Item.content_hash.in_(chunk)
            )
        ):
            groups.setdefault(content_hash, []).append((item_id, dup))
        for members in groups.values():
            root = min(i for i, _ in members)
            for item_id, dup in members:
                want = None if item_id == root else root
                if want is not None and item_id in written:
                    duplicates += 1
                if dup != want:
                    changes.append({"id": item_id, "duplicate_of_id": want})
    if changes:
        session.execute(update(Item), changes)
    return duplicates


def _one_per_row(problems: list[Problem]) -> list[Problem]:
    """Merge the problems of each row into one (the rejects file has one line per row)."""
    merged: dict[tuple[int | None, str | None], list[Problem]] = {}
    for p in problems:
        merged.setdefault((p.line, p.file if p.line is None else None), []).append(p)
    out = []
    for group in merged.values():
        first = group[0]
        reason = "; ".join(
            [first.reason] + [f"{p.field}: {p.reason}" if p.field else p.reason for p in group[1:]]
        )
        ext_id = next((p.external_id for p in group if p.external_id is not None), None)
        out.append(
            Problem(
                reason=reason,
                line=first.line,
                external_id=ext_id,
                field=first.field,
                file=first.file,
            )
        )
    return sorted(out, key=lambda p: (p.line is None, p.line or 0, p.file or ""))


def ingest_path(
    sessions: sessionmaker[Session],
    settings: Settings,
    path: Path,
    project: str,
    actor: Actor,
    *,
    update: bool = False,
    skip_invalid: bool = False,
    rejects: Path | None = None,
    progress: ProgressFactory = no_progress,
) -> IngestReport:
    """Check every row of `path`, then write all good rows in one transaction.

    Raises WorkbenchError listing every bad row (nothing written) unless `skip_invalid`, in which
    case bad rows are left out and, when `rejects` is given, written there one JSON line each.
    The project is created when it does not exist and the run writes an item.
    """
    path = Path(path)
    with sessions() as s:
        recovered = recover_staging(s, settings)
    if not path.exists() and not path.is_symlink():
        raise WorkbenchError(f"{path}: no such file or folder")
    checker = _Checker(settings.ingest_limits())
    if path.is_dir():
        scan = _scan_folder(path, checker, progress)
    else:
        scan = _scan_manifest(path, checker, progress)
    if scan.n_rows == 0:
        what = "files (hidden ones are skipped)" if scan.source_format == "folder" else "rows"
        raise WorkbenchError(f"{path}: nothing to ingest: no {what}")
    if skip_invalid and scan.unreadable_from is not None:
        p = scan.unreadable_from
        raise WorkbenchError(
            f"{p}; the rows after it cannot be read, so they cannot be skipped: fix the file",
            [p],
        )

    run: StagingRun | None = None
    published = False
    try:
        with sessions() as s:
            existing_project = find_project(s, project)
            plan = _plan(
                s, existing_project.id if existing_project else None, project, scan.rows, update
            )
            all_problems = sorted(scan.problems + plan.problems, key=_problem_order)
            bad = _one_per_row(all_problems)
            if bad and not skip_invalid:
                raise WorkbenchError(
                    f"{path}: {len(bad)} of {scan.n_rows} rows are bad; nothing was written "
                    "(fix them, or pass --skip-invalid --rejects FILE to write the good rows)",
                    all_problems,
                )
            outcome = _Outcome(
                project=project,
                source=str(path),
                source_format=scan.source_format,
                rows=scan.n_rows,
                items_unchanged=plan.unchanged,
                rejected=len(bad),
                hidden_skipped=scan.hidden_skipped,
                links_not_followed=scan.links_not_followed,
                rejects_file=str(rejects) if rejects is not None and skip_invalid else None,
                recovered=recovered,
                problems=bad,
            )
            if not plan.add and not plan.update:
                if skip_invalid and rejects is not None:
                    write_rejects(rejects, bad)
                return outcome.report()
            run = StagingRun(settings)
            _write(s, run, plan, actor, path, outcome, progress)
            if skip_invalid and rejects is not None:
                # Before the commit: if the rejects cannot be written, nothing is.
                write_rejects(rejects, bad)
            try:
                s.commit()
            except IntegrityError:
                raise WorkbenchError(
                    f"another ingest into project {project!r} wrote some of the same "
                    "external_ids while this one ran; nothing was written, run it again"
                ) from None
        run.publish()
        published = True
        return outcome.report()
    finally:
        if run is not None:
            if not published:
                _settle(sessions, run)
            run.close()


def _problem_order(p: Problem) -> tuple[bool, int, str]:
    return (p.line is None, p.line or 0, p.file or "")


@dataclass
class _Outcome:
    """Report fields, filled in as the run goes."""

    project: str
    source: str
    source_format: str
    rows: int
    items_unchanged: int
    rejected: int
    hidden_skipped: int
    links_not_followed: int
    rejects_file: str | None
    recovered: RecoveryReport
    problems: list[Problem]
    created_project: bool = False
    items_added: int = 0
    items_updated: int = 0
    exact_duplicates: int = 0
    assets_stored: int = 0

    def report(self) -> IngestReport:
        return IngestReport(**{f: getattr(self, f) for f in IngestReport.__dataclass_fields__})


def _write(
    s: Session,
    run: StagingRun,
    plan: _Plan,
    actor: Actor,
    path: Path,
    outcome: _Outcome,
    progress: ProgressFactory,
) -> None:
    """Stage new media, write items, assets, duplicate marks and the audit event (no commit)."""
    rows = plan.add + [r for r, _ in plan.update]
    blobs: dict[str, _Media] = {}
    for row in rows:
        for m in row.media:
            blobs.setdefault(m.store_path, m)
    bar = progress(total=len(blobs), desc="ingest: copying media")
    try:
        for m in blobs.values():
            outcome.assets_stored += run.stage(m.source, m.info.sha256, m.info.extension)
            bar.update(1)
    finally:
        bar.close()

    proj, outcome.created_project = get_or_create_project(s, outcome.project, actor)
    source = str(path.resolve())[:_MAX_NAME]
    new_ids = _insert_items(s, proj.id, plan.add, source)
    old_hashes: set[str] = set()
    by_id = {item_id: row for row, item_id in plan.update}
    for chunk in _chunks(sorted(by_id)):
        for item in s.scalars(
            select(Item).where(Item.id.in_(chunk)).options(selectinload(Item.assets))
        ):
            old_hashes.add(item.content_hash)
            _apply_update(item, by_id[item.id])
    s.flush()
    outcome.items_added = len(plan.add)
    outcome.items_updated = len(plan.update)
    written = set(new_ids) | set(by_id)
    outcome.exact_duplicates = _mark_exact_duplicates(
        s, proj.id, old_hashes | {r.content_hash for r in rows}, written
    )
    details = {
        k: v
        for k, v in outcome.report().as_dict().items()
        if k not in ("project", "problems", "recovered_from_crash")
    }
    record_event(
        s,
        actor,
        "items.ingested",
        project_id=proj.id,
        entity_type="project",
        entity_id=outcome.project,
        details=details,
    )


def _settle(sessions: sessionmaker[Session], run: StagingRun) -> None:
    """After a failure, settle this run's staged files the way crash recovery would.

    Whether the commit happened is only certain from the database itself (an interrupt can land
    between the commit and the next line), so ask it; if it cannot be asked, the files stay for
    the next ingest's `recover_staging`.
    """
    try:
        with sessions() as s:
            run.settle(s)
    except Exception:
        pass
