"""Open the configured database, with its schema checked (and upgraded, on SQLite)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DatabaseError, InterfaceError
from sqlalchemy.orm import Session, sessionmaker

from workbench.config import Settings, get_settings
from workbench.db.engine import make_engine, make_sessionmaker, redact_passwords
from workbench.db.migrate import ensure_current
from workbench.errors import WorkbenchError


@dataclass
class Database:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    # The copy taken before this open upgraded the SQLite schema, if it did.
    schema_backup: Path | None = None

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(settings: Settings | None = None, *, check_schema: bool = True) -> Database:
    settings = settings or get_settings()
    settings.ensure_home()
    engine = make_engine(settings.url, busy_timeout_ms=settings.sqlite_busy_timeout_ms)
    backup = None
    if check_schema:
        try:
            backup = ensure_current(
                engine,
                auto_upgrade=engine.dialect.name == "sqlite",
                backup_dir=settings.backups_dir,
            )
        except (DatabaseError, InterfaceError) as exc:
            # Not a bug of ours: the server is down, the file is not a database, a role is
            # missing. Say which database and what the driver said, never the password.
            engine.dispose()
            where = redact_passwords(engine.url.render_as_string(hide_password=True))
            reason = redact_passwords(
                str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            )
            raise WorkbenchError(
                f"WORKBENCH_DATABASE_URL: cannot use the database at {where}: {reason}"
            ) from None
    return Database(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        schema_backup=backup,
    )
