"""Write an ingest: items and media assets in one transaction, media published after the commit.

`ingest_path` is the entry point: it reads the source (read.py), plans it against the database
(plan.py), then writes every good row at once. The media are staged beside the transaction and
published after the commit (see media_store), and one audit event records the run. By default one
bad row means nothing is written; with `skip_invalid` the good rows are written and the bad ones
listed in a rejects file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from workbench.config import Settings
from workbench.db.models import Item, MediaAsset
from workbench.db.types import utcnow
from workbench.errors import Problem, WorkbenchError
from workbench.progress import ProgressFactory, no_progress
from workbench.services.audit import Actor, record_event
from workbench.services.ingest.media_store import RecoveryReport, StagingRun, recover_staging
from workbench.services.ingest.plan import IngestPlan, PlannedItem, chunks, plan_rows
from workbench.services.ingest.read import MAX_NAME, RowMedia, read_source
from workbench.services.ingest.tabular import write_rejects
from workbench.services.projects import find_project, get_or_create_project


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
    source = read_source(path, settings.ingest_limits(), progress)
    if skip_invalid and source.unreadable_from is not None:
        p = source.unreadable_from
        raise WorkbenchError(
            f"{p}; the rows after it cannot be read, so they cannot be skipped: fix the file",
            [p],
        )

    run: StagingRun | None = None
    published = False
    try:
        with sessions() as s:
            existing_project = find_project(s, project)
            plan = plan_rows(
                s, existing_project.id if existing_project else None, project, source.rows, update
            )
            all_problems = sorted(source.problems + plan.problems, key=_problem_order)
            bad = _one_per_row(all_problems)
            if bad and not skip_invalid:
                raise WorkbenchError(
                    f"{path}: {len(bad)} of {source.n_rows} rows are bad; nothing was written "
                    "(fix them, or pass --skip-invalid --rejects FILE to write the good rows)",
                    all_problems,
                )
            outcome = _Outcome(
                project=project,
                source=str(path),
                source_format=source.source_format,
                rows=source.n_rows,
                items_unchanged=plan.unchanged,
                rejected=len(bad),
                hidden_skipped=source.hidden_skipped,
                links_not_followed=source.links_not_followed,
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


def _problem_order(p: Problem) -> tuple[bool, int, str]:
    return (p.line is None, p.line or 0, p.file or "")


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


def _write(
    s: Session,
    run: StagingRun,
    plan: IngestPlan,
    actor: Actor,
    path: Path,
    outcome: _Outcome,
    progress: ProgressFactory,
) -> None:
    """Stage new media, write items, assets, duplicate marks and the audit event (no commit)."""
    planned = plan.add + list(plan.update.values())
    blobs: dict[str, RowMedia] = {}
    for p in planned:
        for m in p.row.media:
            blobs.setdefault(m.store_path, m)
    bar = progress(total=len(blobs), desc="ingest: copying media")
    try:
        for m in blobs.values():
            outcome.assets_stored += run.stage(m.source, m.info.sha256, m.info.extension)
            bar.update(1)
    finally:
        bar.close()

    proj, outcome.created_project = get_or_create_project(s, outcome.project, actor)
    source = str(path.resolve())[:MAX_NAME]
    new_ids = _insert_items(s, proj.id, plan.add, source)
    old_hashes: set[str] = set()
    by_id = plan.update
    for chunk in chunks(sorted(by_id)):
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
        s, proj.id, old_hashes | {p.content_hash for p in planned}, written
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


def _insert_items(s: Session, project_id: int, items: list[PlannedItem], source: str) -> list[int]:
    """Insert new items and their assets as bulk INSERTs (RETURNING ids in row order).

    Why not `session.add` per item: building ORM objects and their relationships cost several
    times more than the INSERTs themselves for large manifests.
    """
    ids: list[int] = []
    now = utcnow()
    for chunk in chunks(items, 2000):
        values = [
            {
                "project_id": project_id,
                "external_id": p.row.external_id,
                "text": p.row.text,
                "language": p.row.language,
                "meta": p.row.meta,
                "modalities": p.row.modalities,
                "content_hash": p.content_hash,
                "source": source,
                "revision": 1,
                "created_at": now,
                "updated_at": now,
            }
            for p in chunk
        ]
        chunk_ids = list(
            s.scalars(insert(Item).returning(Item.id, sort_by_parameter_order=True), values)
        )
        assets = [
            _asset_values(m) | {"item_id": item_id}
            for item_id, p in zip(chunk_ids, chunk, strict=True)
            for m in p.row.media
        ]
        if assets:
            s.execute(insert(MediaAsset), assets)
        ids.extend(chunk_ids)
    return ids


def _asset_values(m: RowMedia) -> dict[str, Any]:
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


def _asset(m: RowMedia) -> MediaAsset:
    return MediaAsset(**_asset_values(m))


def _apply_update(item: Item, planned: PlannedItem) -> None:
    row = planned.row
    item.text = row.text
    item.language = row.language
    item.meta = row.meta
    item.modalities = row.modalities
    item.content_hash = planned.content_hash
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
    for chunk in chunks(sorted(set(hashes))):
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
