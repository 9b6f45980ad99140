"""Run Alembic from inside the installed package (editable or wheel alike)."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from workbench.errors import SchemaOutOfDate, WorkbenchError


def migrations_dir() -> Path:
    return Path(str(resources.files("workbench.migrations")))


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # env.py reuses this engine instead of building its own (same pragmas, same pool). The URL is
    # deliberately not set as `sqlalchemy.url`: ConfigParser reads `%` as interpolation, so a
    # %-escaped password failed every command, and the error message printed the password.
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    try:
        command.downgrade(alembic_config(engine), revision)
    except WorkbenchError:
        raise
    except Exception as exc:  # alembic raises CommandError and friends for a bad target
        raise WorkbenchError(f"cannot downgrade to {revision!r}: {exc}") from exc


def history(engine: Engine) -> list[dict[str, str | None]]:
    script = ScriptDirectory.from_config(alembic_config(engine))
    return [
        {"revision": r.revision, "down_revision": str(r.down_revision), "doc": r.doc}
        for r in script.walk_revisions()
    ]


def backup_sqlite(engine: Engine, backup_dir: Path, revision: str) -> Path:
    """Copy the SQLite database, consistently even while others use it, to
    `backup_dir/workbench-<revision>-<UTC time>.db`, readable by its owner only."""
    backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = backup_dir / f"workbench-{revision}-{stamp}.db"
    n = 1
    while True:
        try:
            # Created empty with mode 0600 first: labels and users are not for other accounts.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            break
        except FileExistsError:
            n += 1
            path = backup_dir / f"workbench-{revision}-{stamp}-{n}.db"
    raw = engine.raw_connection()
    try:
        source = raw.driver_connection
        assert isinstance(source, sqlite3.Connection)
        target = sqlite3.connect(path)
        try:
            # The online backup API copies a consistent snapshot, WAL content included.
            source.backup(target)
            # A standalone file: no -wal/-shm beside it.
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
    finally:
        raw.close()
    return path


def ensure_current(
    engine: Engine, *, auto_upgrade: bool, backup_dir: Path | None = None
) -> Path | None:
    """Bring the embedded database up to date, or refuse to work on an old Postgres schema.

    Why the difference: SQLite is private to this workbench, so upgrading it silently is what a
    user expects; a shared Postgres is upgraded on purpose, by whoever owns it. Before upgrading
    a SQLite database that holds a schema, a copy goes to `backup_dir`; its path is returned.
    """
    current, head = current_revision(engine), head_revision(engine)
    if current == head:
        return None
    if auto_upgrade:
        backup = None
        file = engine.url.database if engine.dialect.name == "sqlite" else None
        on_disk = file not in (None, "", ":memory:")
        # An empty database (no revision yet) holds nothing worth a copy.
        if backup_dir is not None and current is not None and on_disk:
            backup = backup_sqlite(engine, backup_dir, current)
        upgrade(engine)
        return backup
    raise SchemaOutOfDate(
        f"the database schema is at {current or 'no revision (empty database)'}, this workbench "
        f"needs {head}: run `workbench db upgrade` first"
    )
