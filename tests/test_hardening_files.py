"""The home and what it holds are private to the user; artifacts load only from under it; no
password or traceback reaches a person who should not see it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from builders import make_project
from media_factory import make_image
from quality_builders import Labels, add_fused_vectors, separable_vectors
from sqlalchemy import select
from streamlit.config import ShowErrorDetailsConfigOptions

from workbench.cli import _common
from workbench.cli.serve import streamlit_command
from workbench.config import Settings
from workbench.db.database import Database, open_database
from workbench.db.models import MediaAsset, ModelVersion, RoundStatus
from workbench.errors import WorkbenchError
from workbench.services.audit import Actor
from workbench.services.ingest import media_store
from workbench.services.ingest.write import ingest_path
from workbench.services.review.media_view import display_image
from workbench.services.select.batch import select_batch
from workbench.services.train.rounds import run_round_now


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def shared_umask() -> Iterator[None]:
    """The common default umask, under which files come out 0644 and folders 0755."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_home_and_database_files_are_private_to_the_user(sqlite_settings: Settings) -> None:
    db = open_database(sqlite_settings)
    with db.engine.begin() as conn:  # a write, so the -wal and -shm files exist
        conn.exec_driver_sql("INSERT INTO projects (name, settings, created_at) "
                             "VALUES ('p', '{}', '2026-01-01')")  # fmt: skip
        home = sqlite_settings.resolved_home
        files = [home / n for n in ("workbench.db", "workbench.db-wal", "workbench.db-shm")]
        assert all(f.exists() for f in files)
        assert _mode(home) == 0o700
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    db.dispose()


def test_a_home_open_to_others_is_tightened_with_a_warning(
    sqlite_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    home = sqlite_settings.resolved_home
    home.mkdir(mode=0o755)
    (home / "workbench.db").touch(mode=0o644)
    os.chmod(home, 0o755)
    caplog.set_level(logging.WARNING)

    open_database(sqlite_settings).dispose()

    assert _mode(home) == 0o700 and _mode(home / "workbench.db") == 0o600
    assert f"WORKBENCH_HOME {home} was open to other accounts (mode 0o755)" in caplog.text
    caplog.clear()
    open_database(sqlite_settings).dispose()  # already private: nothing to say
    assert "WORKBENCH_HOME" not in caplog.text


def test_media_blobs_and_blurred_copies_are_private(sqlite_db: Database, tmp_path: Path) -> None:
    make_image(tmp_path / "in/a.png")
    manifest = tmp_path / "in/items.jsonl"
    manifest.write_text(json.dumps({"external_id": "a", "text": "t", "image": "a.png"}) + "\n")
    ingest_path(sqlite_db.sessions, sqlite_db.settings, manifest, "p", Actor.system())
    media = sqlite_db.settings.media_dir
    with sqlite_db.sessions() as s:
        asset = s.scalars(select(MediaAsset)).one()
    blob = media / asset.store_path
    folders = [media, blob.parent.parent, blob.parent]
    assert _mode(blob) == 0o600
    assert [_mode(f) for f in folders] == [0o700] * 3

    cache = sqlite_db.settings.blurred_dir
    shown = display_image(blob, asset.sha256, cache, blur=True, greyscale=False)
    assert shown.parent == cache and _mode(shown) == 0o600 and _mode(cache) == 0o700


CLASSES = ["hate", "spam", "none"]


def _trained(db: Database) -> ModelVersion:
    vectors, truth = separable_vectors(CLASSES, 30)
    with db.sessions.begin() as s:
        lab = Labels(s, make_project(s))
        items = [lab.item(f"x{n}") for n in range(len(truth))]
        add_fused_vectors(s, db.settings, lab.project, items, vectors)
        seen: dict[str, int] = {}
        for n, cls in enumerate(truth):
            if seen.get(cls, 0) < 8:
                seen[cls] = seen.get(cls, 0) + 1
                lab.label(f"x{n}", "alice", cls)
    run = run_round_now(db, "p", Actor.system(), refill_queue=False, worker="test")
    assert run.status == RoundStatus.succeeded
    with db.sessions() as s:
        return s.scalars(select(ModelVersion)).one()


def test_model_artifacts_are_private(sqlite_db: Database) -> None:
    mv = _trained(sqlite_db)
    folder = Path(mv.artifact_path).parent
    assert folder.is_relative_to(sqlite_db.settings.resolved_home)
    assert _mode(folder) == 0o700
    files = sorted(folder.iterdir())
    assert {f.name for f in files} >= {"head.joblib", "scores.npy"}
    assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert np.load(mv.scores_path).shape[0] == 90


def test_an_artifact_path_outside_the_home_is_refused_not_loaded(
    sqlite_db: Database, tmp_path: Path
) -> None:
    """The path comes from the database and joblib runs code as it loads: a row pointing
    elsewhere must not make the workbench unpickle a file of someone else's choosing."""
    mv = _trained(sqlite_db)
    elsewhere = tmp_path / "elsewhere" / "head.joblib"
    elsewhere.parent.mkdir()
    shutil.copy(mv.artifact_path, elsewhere)
    link = Path(mv.artifact_path).with_name("link.joblib")
    link.symlink_to(elsewhere)  # inside the home by name, outside once resolved
    for path in (elsewhere, link):
        with sqlite_db.sessions.begin() as s:
            s.get_one(ModelVersion, mv.id).artifact_path = str(path)
        with pytest.raises(WorkbenchError) as exc:
            select_batch(sqlite_db, "p", "margin", 4, Actor.system(), seed=0)
        assert f"model version {mv.version}" in exc.value.message
        assert str(path) in exc.value.message and "outside" in exc.value.message
        # The retrain's warm start and guard read the champion's artifact too.
        run = run_round_now(sqlite_db, "p", Actor.system(), refill_queue=False, worker="test")
        assert run.status == RoundStatus.failed


def test_serve_keeps_tracebacks_out_of_the_browser() -> None:
    cmd = streamlit_command(8501, "127.0.0.1")
    value = cmd[cmd.index("--client.showErrorDetails") + 1]
    # "false" would still show the traceback (Streamlit reads it as "stacktrace").
    assert value == ShowErrorDetailsConfigOptions.NONE


@pytest.mark.parametrize(
    "message",
    [
        "connection to postgresql+psycopg://wb:hunter2@db.example:5432/x failed",
        "bad URL postgresql://wb:hun@ter2@db.example/x",
        "libpq: host=db user=wb password=hunter2 dbname=x: timeout",
    ],
)
def test_an_unexpected_error_never_prints_a_database_password(
    cli, monkeypatch: pytest.MonkeyPatch, message: str
) -> None:
    def broken(*_a: object, **_k: object) -> Database:
        raise RuntimeError(message)

    monkeypatch.setattr(_common, "open_database", broken)
    monkeypatch.setenv("WORKBENCH_DEBUG", "1")  # the traceback is redacted too
    for args in (("project", "list"), ("project", "list", "--json")):
        result = cli(*args)
        assert result.exit_code == 1
        shown = result.stdout + result.stderr
        assert "internal error: RuntimeError" in shown and "***" in shown
        assert "hunter2" not in shown and "ter2" not in shown


def test_recovery_leaves_a_run_being_born_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `.new-` folder whose lock file exists but is not locked yet is a run being born; a
    concurrent ingest's recovery must not remove it (it did, and a scan answered 500)."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    settings = Settings()
    db = open_database(settings)
    staging = settings.staging_dir
    staging.mkdir(parents=True, exist_ok=True)
    born = staging / ".new-0123abcd"
    born.mkdir()
    (born / ".lock").write_text("")  # created, not locked yet
    with db.sessions() as s:
        media_store.recover_staging(s, settings)
    assert born.is_dir()
    old = time.time() - 2 * 3600  # a birth that crashed long ago is recovered
    os.utime(born, (old, old))
    with db.sessions() as s:
        media_store.recover_staging(s, settings)
    assert not born.exists()
    db.dispose()
