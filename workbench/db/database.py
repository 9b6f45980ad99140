"""Open the configured database, with its schema checked (and upgraded, on SQLite)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from workbench.config import Settings, get_settings
from workbench.db.engine import make_engine, make_sessionmaker
from workbench.db.migrate import ensure_current


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
        backup = ensure_current(
            engine,
            auto_upgrade=engine.dialect.name == "sqlite",
            backup_dir=settings.backups_dir,
        )
    return Database(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        schema_backup=backup,
    )
