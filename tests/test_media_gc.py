"""`workbench media gc`: blobs no item references are removed (with their blurred copies),
referenced ones and stray files never; refused while an ingest holds the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from media_factory import make_image
from sqlalchemy import select

from workbench.db.database import Database
from workbench.db.models import AuditEvent, MediaAsset
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.ingest.media_store import StagingRun, collect_garbage
from workbench.services.ingest.write import ingest_path
from workbench.services.review.media_view import display_image


def _ingest(db: Database, tmp_path: Path, name: str, image: str, update: bool = False) -> None:
    manifest = tmp_path / f"{name}.jsonl"
    manifest.write_text(json.dumps({"external_id": "a", "text": name, "image": image}) + "\n")
    ingest_path(db.sessions, db.settings, manifest, "p", Actor.system(), update=update)


def _asset_paths(db: Database) -> set[str]:
    with db.sessions() as s:
        return set(s.scalars(select(MediaAsset.store_path)))


def _replaced_image(db: Database, tmp_path: Path) -> tuple[Path, Path]:
    """Item a first with old.png, then updated to new.png: old.png's blob is an orphan."""
    make_image(tmp_path / "old.png", seed=1)
    make_image(tmp_path / "new.png", seed=2)
    _ingest(db, tmp_path, "first", "old.png")
    (old,) = _asset_paths(db)
    _ingest(db, tmp_path, "second", "new.png", update=True)
    (new,) = _asset_paths(db)
    return db.settings.media_dir / old, db.settings.media_dir / new


def test_gc_removes_only_what_no_item_references(db: Database, tmp_path: Path) -> None:
    old, new = _replaced_image(db, tmp_path)
    assert old.is_file() and new.is_file()  # the update left the old blob behind
    stray = db.settings.media_dir / "notes.txt"
    stray.write_text("not a blob")
    blurred = db.settings.blurred_dir
    old_copy = display_image(old, old.stem, blurred, blur=True, greyscale=True)
    new_copy = display_image(new, new.stem, blurred, blur=True, greyscale=False)

    with db.sessions.begin() as s:
        dry = collect_garbage(s, db.settings, Actor.system(), dry_run=True)
    assert (dry.blobs, dry.unreferenced, dry.removed) == (2, 1, 0)
    assert dry.bytes_unreferenced == old.stat().st_size
    assert old.is_file() and old_copy.is_file()

    with db.sessions.begin() as s:
        done = collect_garbage(s, db.settings, Actor.system(), dry_run=False)
    assert (done.unreferenced, done.removed, done.cached_copies_removed) == (1, 1, 1)
    assert not old.exists() and not old_copy.exists()
    assert new.is_file() and new_copy.is_file() and stray.is_file()
    with db.sessions() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "media.garbage_collected"))
        assert event is not None and event.details["removed"] == 1

    with db.sessions.begin() as s:
        again = collect_garbage(s, db.settings, Actor.system(), dry_run=False)
    assert (again.blobs, again.unreferenced, again.removed) == (1, 0, 0)


def test_a_blob_shared_with_another_item_stays(db: Database, tmp_path: Path) -> None:
    make_image(tmp_path / "shared.png", seed=3)
    make_image(tmp_path / "other.png", seed=4)
    manifest = tmp_path / "two.jsonl"
    manifest.write_text(
        "\n".join(
            json.dumps({"external_id": e, "text": e, "image": "shared.png"}) for e in ("a", "b")
        )
        + "\n"
    )
    ingest_path(db.sessions, db.settings, manifest, "p", Actor.system())
    (shared,) = _asset_paths(db)
    _ingest(db, tmp_path, "a-changed", "other.png", update=True)  # a leaves it, b keeps it
    with db.sessions.begin() as s:
        report = collect_garbage(s, db.settings, Actor.system(), dry_run=False)
    assert report.removed == 0
    assert (db.settings.media_dir / shared).is_file()


def test_gc_is_refused_while_an_ingest_holds_the_store(db: Database, tmp_path: Path) -> None:
    old, _new = _replaced_image(db, tmp_path)
    run = StagingRun(db.settings)
    try:
        with db.sessions.begin() as s, pytest.raises(WorkbenchError, match="ingest"):
            collect_garbage(s, db.settings, Actor.system(), dry_run=False)
        assert old.is_file()
    finally:
        run.discard()
        run.close()
    with db.sessions.begin() as s:
        assert collect_garbage(s, db.settings, Actor.system(), dry_run=False).removed == 1


def test_cli_media_gc_json(cli: Any, db: Database, tmp_path: Path) -> None:
    old, _new = _replaced_image(db, tmp_path)
    dry = cli.json("media", "gc", "--dry-run")
    assert dry["unreferenced"] == 1 and dry["removed"] == 0 and dry["dry_run"] is True
    done = cli.json("media", "gc")
    assert done["removed"] == 1 and not old.exists()
