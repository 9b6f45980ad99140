"""The content-addressed media store (`media/ab/cd/<sha256>.<ext>`) and its two-phase writes.

An ingest copies new files into a staging folder of its own, commits its database transaction,
then publishes the staged files into the store with `os.replace` (atomic on one filesystem).
A crash between those steps leaves staged files behind; `recover_staging` (run at the start of
every ingest) publishes those that a committed `media_assets` row references and deletes the
rest, so the store always ends up as it was before the run, or as the run meant to leave it.

Blobs nothing references any more (an `ingest --update` replaced an item's image, say) are
removed by `collect_garbage`. An ingest holds a shared lock on the store from staging to
publishing and the collector an exclusive one, so it never removes a blob that a run has just
found in the store and is about to reference.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from workbench.config import Settings, private_dir, private_file
from workbench.db.models import MediaAsset
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor, record_event

try:  # POSIX: a live run holds an advisory lock on its staging folder
    import fcntl
except ImportError:  # pragma: no cover - Windows: recovery cannot tell live runs from dead ones
    fcntl = None  # type: ignore[assignment]

_STORE_LOCK = "media.lock"  # beside the store, in the workbench home
_RUN_PREFIX = "run-"
_NEW_PREFIX = ".new-"
# A `.new-` folder younger than this is a run being born, never a crashed one.
_BIRTH_GRACE_S = 3600.0
_LOCK_NAME = ".lock"
_BLOB_NAME = re.compile(r"^(?P<sha>[0-9a-f]{64})\.(?P<ext>[a-z0-9]{1,8})$")
_CHUNK = 1024 * 1024
_QUERY_CHUNK = 500


def store_path_for(sha256: str, extension: str) -> str:
    """Where a blob lives, relative to the store root: `ab/cd/<sha256>.<ext>`."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}.{extension}"


def _fsync_dir(path: Path) -> None:
    # Makes a rename durable on POSIX; directories cannot be opened for fsync on Windows.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _try_lock(fh: IO[Any], *, shared: bool = False, wait: bool = False) -> bool:
    if fcntl is None:
        return True
    flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    try:
        fcntl.flock(fh.fileno(), flags if wait else flags | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _store_lock(settings: Settings) -> IO[Any]:
    settings.ensure_home()
    return (settings.resolved_home / _STORE_LOCK).open("a")


@dataclass
class StagingRun:
    """One ingest's private staging folder, locked for as long as the run lives.

    Files are first copied to a temp name and renamed when complete, so a staged blob name
    (`<sha256>.<ext>`) always means a whole file with that hash.
    """

    settings: Settings
    path: Path = field(init=False)
    staged: dict[str, Path] = field(init=False, default_factory=dict)  # store_path -> file
    _lock: IO[Any] | None = field(init=False, default=None)
    _store: IO[Any] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # Shared with other runs, exclusive of the garbage collector (which is brief): waits.
        self._store = _store_lock(self.settings)
        _try_lock(self._store, shared=True, wait=True)
        staging = self.settings.staging_dir
        private_dir(staging)
        run_id = uuid.uuid4().hex
        # Lock first, then make the folder visible under its run name: recovery never sees an
        # unlocked folder of a live run.
        new = staging / f"{_NEW_PREFIX}{run_id}"
        new.mkdir(mode=0o700)
        self._lock = (new / _LOCK_NAME).open("w")
        _try_lock(self._lock)
        self.path = staging / f"{_RUN_PREFIX}{run_id}"
        os.replace(new, self.path)

    @property
    def media_dir(self) -> Path:
        return self.settings.media_dir

    def in_store(self, store_path: str) -> bool:
        return (self.media_dir / store_path).is_file()

    def stage(self, source: Path, sha256: str, extension: str) -> bool:
        """Copy `source` into staging unless the store or this run already has the blob.

        Returns True when a new file was staged. The copy is hashed as it is written, so a
        source changed since it was checked is refused rather than stored under a wrong name.
        """
        store_path = store_path_for(sha256, extension)
        if store_path in self.staged or self.in_store(store_path):
            return False
        final = self.path / f"{sha256}.{extension}"
        tmp = self.path / f"{sha256}.{extension}.tmp"
        digest = hashlib.sha256()
        try:
            with source.open("rb") as src, tmp.open("wb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise WorkbenchError(
                f"{source}: cannot be copied into the media store: {exc}"
            ) from None
        if digest.hexdigest() != sha256:
            tmp.unlink(missing_ok=True)
            raise WorkbenchError(
                f"{source}: the file changed while it was being ingested (its sha256 is no "
                "longer the one checked); nothing was written"
            )
        private_file(tmp)  # harmful content: for the owner only, like the folders above it
        os.replace(tmp, final)
        self.staged[store_path] = final
        return True

    def publish(self) -> int:
        """Move every staged blob into the store (after the database commit). Idempotent."""
        n = 0
        for store_path, staged in sorted(self.staged.items()):
            if _publish_one(staged, self.media_dir / store_path):
                n += 1
        _fsync_dir(self.media_dir)
        self.staged.clear()
        self._remove_folder()
        return n

    def settle(self, session: Session) -> None:
        """Publish what a committed row references and drop the rest (after a failure)."""
        files = (
            [p for p in self.path.iterdir() if p.name != _LOCK_NAME] if self.path.is_dir() else []
        )
        _recover_files(session, self.settings, files)
        self.staged.clear()
        self._remove_folder()

    def discard(self) -> None:
        """Drop everything staged (the transaction did not commit)."""
        self.staged.clear()
        self._remove_folder()

    def close(self) -> None:
        for lock in (self._lock, self._store):
            if lock is not None:
                lock.close()  # closing the file releases the lock
        self._lock = self._store = None

    def _remove_folder(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _publish_one(staged: Path, dest: Path) -> bool:
    """Move one staged blob to its store path; False when the store already had it."""
    if dest.is_file():
        # Same name means same sha256, so same bytes: keep the stored one.
        staged.unlink(missing_ok=True)
        return False
    private_dir(dest.parent)
    os.replace(staged, dest)
    return True


@dataclass(frozen=True)
class RecoveryReport:
    """What `recover_staging` found from runs that died: blobs published and files deleted."""

    published: int = 0
    deleted: int = 0
    live_runs_skipped: int = 0


def recover_staging(session: Session, settings: Settings) -> RecoveryReport:
    """Finish or undo what crashed ingests left in staging.

    A staged blob that a committed `media_assets` row references belongs to a transaction that
    committed, so it is published; any other staged file belongs to one that did not, so it is
    deleted. Folders of runs still alive (their lock is held) are left alone.
    """
    staging = settings.staging_dir
    if not staging.is_dir():
        return RecoveryReport()
    published = deleted = live = 0
    for entry in sorted(staging.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            lock_path = entry / _LOCK_NAME
            if entry.name.startswith(_NEW_PREFIX) and _younger_than(entry, _BIRTH_GRACE_S):
                # A run being born: between creating its lock file and locking it, the file
                # exists unlocked, so the lock cannot tell; a concurrent ingest's recovery
                # removed such a folder under a live run (seen as a 500 from concurrent scans).
                # Only a folder left from a birth that crashed long ago is recovered.
                continue
            with _open_lock(lock_path) as lock:
                if lock is not None and not _try_lock(lock):
                    live += 1
                    continue
                files = [p for p in entry.iterdir() if p.name != _LOCK_NAME]
                p_, d_ = _recover_files(session, settings, files)
                published += p_
                deleted += d_
                shutil.rmtree(entry, ignore_errors=True)
        else:
            p_, d_ = _recover_files(session, settings, [entry])
            published += p_
            deleted += d_
    if published:
        _fsync_dir(settings.media_dir)
    return RecoveryReport(published=published, deleted=deleted, live_runs_skipped=live)


def _younger_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except FileNotFoundError:
        return True  # gone already: nothing to recover


class _open_lock:
    """Open a run's lock file if it exists (context manager yielding the file or None)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: IO[Any] | None = None

    def __enter__(self) -> IO[Any] | None:
        try:
            self.fh = self.path.open("a")
        except OSError:
            self.fh = None
        return self.fh

    def __exit__(self, *exc: object) -> None:
        if self.fh is not None:
            self.fh.close()


def _recover_files(session: Session, settings: Settings, files: list[Path]) -> tuple[int, int]:
    blobs: dict[str, Path] = {}
    deleted = 0
    for f in files:
        m = _BLOB_NAME.match(f.name)
        if m is None or not f.is_file() or f.is_symlink():
            # A temp file of an unfinished copy, or something nobody should have put here.
            _remove(f)
            deleted += 1
            continue
        blobs[store_path_for(m["sha"], m["ext"])] = f
    referenced = _referenced(session, {p.rsplit("/", 1)[1].split(".")[0] for p in blobs})
    published = 0
    for store_path, f in sorted(blobs.items()):
        if store_path in referenced:
            _publish_one(f, settings.media_dir / store_path)
            published += 1
        else:
            _remove(f)
            deleted += 1
    return published, deleted


def _referenced(session: Session, hashes: set[str]) -> set[str]:
    """Store paths of committed media_assets rows among these sha256s (indexed lookup)."""
    found: set[str] = set()
    ordered = sorted(hashes)
    for i in range(0, len(ordered), _QUERY_CHUNK):
        chunk = ordered[i : i + _QUERY_CHUNK]
        found.update(
            session.scalars(
                select(MediaAsset.store_path).where(MediaAsset.sha256.in_(chunk)).distinct()
            )
        )
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class GarbageReport:
    blobs: int  # blobs in the store
    unreferenced: int  # of those, referenced by no media_assets row
    bytes_unreferenced: int
    removed: int  # 0 on a dry run
    cached_copies_removed: int  # blurred/greyscale copies of removed or unknown blobs
    dry_run: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _store_blobs(media_dir: Path) -> dict[str, Path]:
    """store_path -> file of every blob at its content address (`ab/cd/<sha256>.<ext>`)."""
    blobs: dict[str, Path] = {}
    if not media_dir.is_dir():
        return blobs
    for top in sorted(media_dir.iterdir()):
        if not (top.is_dir() and len(top.name) == 2):
            continue
        for sub in sorted(top.iterdir()):
            if not (sub.is_dir() and len(sub.name) == 2):
                continue
            for f in sorted(sub.iterdir()):
                m = _BLOB_NAME.match(f.name)
                if m is None or not f.is_file() or f.is_symlink():
                    continue
                path = store_path_for(m["sha"], m["ext"])
                if path == f"{top.name}/{sub.name}/{f.name}":
                    blobs[path] = f
    return blobs


def collect_garbage(
    session: Session, settings: Settings, actor: Actor, *, dry_run: bool
) -> GarbageReport:
    """Remove the store's blobs that no `media_assets` row references, and the review page's
    blurred copies of images no blob is kept for. Files that are not blobs at their content
    address are never touched. Refuses while an ingest is running."""
    with _store_lock(settings) as lock:
        if not _try_lock(lock):
            raise WorkbenchError(
                "an ingest is writing to the media store; run the garbage collection again "
                "when it has finished"
            )
        blobs = _store_blobs(settings.media_dir)
        sha_of = {path: path.rsplit("/", 1)[1].split(".")[0] for path in blobs}
        referenced = _referenced(session, set(sha_of.values()))
        orphans = {path: f for path, f in blobs.items() if path not in referenced}
        kept = {sha_of[path] for path in blobs if path in referenced}
        size = sum(f.stat().st_size for f in orphans.values())
        cached = 0
        if not dry_run:
            for f in orphans.values():
                f.unlink(missing_ok=True)
            if settings.blurred_dir.is_dir():
                for f in settings.blurred_dir.iterdir():
                    if f.is_file() and f.name.split("-", 1)[0] not in kept:
                        f.unlink(missing_ok=True)
                        cached += 1
        report = GarbageReport(
            blobs=len(blobs), unreferenced=len(orphans), bytes_unreferenced=size,
            removed=0 if dry_run else len(orphans), cached_copies_removed=cached,
            dry_run=dry_run,
        )  # fmt: skip
        if not dry_run:
            record_event(session, actor, "media.garbage_collected", details=report.as_dict())
        return report
